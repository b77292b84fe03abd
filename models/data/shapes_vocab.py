"""The words and colours of the shapes dataset: shapes, the palette, the background, class ids.

The palette uses GenEval's colour names (its CLIP classifier's list in `evaluation/evaluate_images.py`,
github.com/djghosh13/geneval) and keeps the ones whose RGB values stay far apart, so that a nearest-colour
classifier is unambiguous on the median colour of an object: every two palette colours, and every palette
colour and the background, are at least 100 apart in RGB (Euclidean). Pink and brown are left out: they sit
near white/red and red/orange/black, and a small model's blurred colours would land between them.
"""

SHAPES = ("circle", "square", "triangle")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles"}

# Name → RGB; the order fixes the class ids.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (240, 130, 20),
    "yellow": (245, 230, 50),
    "green": (30, 170, 60),
    "blue": (30, 70, 230),
    "purple": (150, 40, 200),
    "black": (20, 20, 20),
    "white": (240, 240, 240),
}
COLOUR_NAMES = tuple(PALETTE)
# Mid grey: none of the palette, and far enough from black and white that both read as objects.
BACKGROUND = (128, 128, 128)

# GenEval's counting prompts spell counts as words.
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
MAX_OBJECTS = 4

NUM_CLASSES = len(COLOUR_NAMES) * len(SHAPES)


def class_id(colour: str, shape: str) -> int:
    """The class of a single-object image: colour-major, `colour index × len(SHAPES) + shape index`."""
    return COLOUR_NAMES.index(colour) * len(SHAPES) + SHAPES.index(shape)


def class_name(class_id: int) -> str:
    """The words of a class id, e.g. 0 → 'red circle' (the label table of a class-conditional model)."""
    colour, shape = divmod(class_id, len(SHAPES))
    return f"{COLOUR_NAMES[colour]} {SHAPES[shape]}"
