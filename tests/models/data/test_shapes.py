"""The shapes dataset: determinism by seed, captions that match the metadata, scenes that match the captions."""

import itertools
import math
import random

import pytest

from models.data.shapes import DEFAULT_IMAGE_SIZE, ShapesDataset
from models.data.shapes_prompts import (
    caption,
    color_attr,
    colors,
    counting,
    evaluation_prompts,
    position,
    sample_metadata,
    single_object,
    two_object,
)
from models.data.shapes_render import GAP_FRACTION, MARGIN_FRACTION, layout_scene, render_scene
from models.data.shapes_vocab import BACKGROUND, NUM_CLASSES, PALETTE, class_id, class_name
from models.errors import ShapesSceneError
from models.eval.geneval.prompts import TAGS, metadata_problem
from models.eval.geneval.rules import COLOURS, relative_position

SIZE = 64  # small images keep the tests fast; sizes, gaps and margins scale with the image


# ----------------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------------


def test_sample_depends_only_on_seed_and_index():
    first, again = ShapesDataset(SIZE, seed=3, length=40), ShapesDataset(SIZE, seed=3, length=40)
    backwards = [again[i] for i in reversed(range(40))][::-1]  # another order, another instance
    for i in range(40):
        a, b = first[i], backwards[i]
        assert a.image.tobytes() == b.image.tobytes()
        assert (a.caption, a.metadata, a.class_id) == (b.caption, b.metadata, b.class_id)


def test_other_seed_gives_other_samples():
    a, b = ShapesDataset(SIZE, seed=0, length=20), ShapesDataset(SIZE, seed=1, length=20)
    differing = sum(a[i].image.tobytes() != b[i].image.tobytes() for i in range(20))
    assert differing == 20


def test_task_weights_set_how_often_each_task_is_drawn():
    weighted = ShapesDataset(SIZE, seed=1, length=600, tags=("colors", "position"), weights=(1.0, 3.0))
    tags = [weighted[i].metadata["tag"] for i in range(600)]
    assert 0.68 < tags.count("position") / 600 < 0.82  # 3 in 4 expected
    only = ShapesDataset(SIZE, seed=1, length=20, tags=TAGS, weights=tuple(float(tag == "color_attr") for tag in TAGS))
    assert {only[i].metadata["tag"] for i in range(20)} == {"color_attr"}
    # equal weights draw through another call than the unweighted default, whose samples stay as they were
    unweighted = ShapesDataset(SIZE, seed=1, length=20)
    assert unweighted.weights is None and unweighted[0].caption == ShapesDataset(SIZE, seed=1, length=20)[0].caption


def test_render_scene_is_deterministic_by_rng():
    metadata = position("circle", "left of", "square", subject_count=2)
    same = [render_scene(metadata, SIZE, random.Random(7)).tobytes() for _ in range(2)]
    other = render_scene(metadata, SIZE, random.Random(8)).tobytes()
    assert same[0] == same[1] != other


def test_default_size_and_image_mode():
    sample = ShapesDataset(length=1)[0]
    assert sample.image.size == (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE) and sample.image.mode == "RGB"


# ----------------------------------------------------------------------------------------------------
# Captions and metadata
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "prompt"),
    [
        (single_object("circle"), "a photo of a circle"),
        (two_object("circle", "square"), "a photo of a circle and a square"),
        (counting("triangle", 3), "a photo of three triangles"),
        (counting("triangle", 3, "green"), "a photo of three green triangles"),
        (colors("circle", "orange"), "a photo of an orange circle"),
        (position("square", "left of", "triangle"), "a photo of a square left of a triangle"),
        (
            position("square", "left of", "triangle", subject_colour="blue", target_colour="yellow"),
            "a photo of a blue square left of a yellow triangle",
        ),
        (
            position("circle", "left of", "square", subject_colour="red", target_colour="blue", subject_count=2),
            "a photo of two red circles left of a blue square",
        ),
        (color_attr("circle", "red", "square", "blue"), "a photo of a red circle and a blue square"),
    ],
)
def test_captions(metadata, prompt):
    assert metadata["prompt"] == prompt
    assert metadata_problem(metadata) is None


def test_metadata_has_genevals_form():
    assert counting("square", 2) == {
        "tag": "counting",
        "include": [{"class": "square", "count": 2}],
        "exclude": [{"class": "square", "count": 3}],
        "prompt": "a photo of two squares",
    }
    # GenEval's position lines: the target is clause 0, the subject points at it
    assert position("circle", "above", "square")["include"] == [
        {"class": "square", "count": 1},
        {"class": "circle", "count": 1, "position": ["above", 0]},
    ]


def test_dataset_captions_match_metadata_and_scenes():
    dataset = ShapesDataset(SIZE, seed=5, length=120)
    for i in range(len(dataset)):
        sample = dataset[i]
        assert sample.caption == sample.metadata["prompt"] == caption(sample.metadata["include"])
        assert sample.metadata["tag"] in TAGS and metadata_problem(sample.metadata) is None
    assert {dataset[i].metadata["tag"] for i in range(len(dataset))} == set(TAGS)


def test_layout_satisfies_metadata():
    gap, margin = round(GAP_FRACTION * SIZE), round(MARGIN_FRACTION * SIZE)
    for i in range(300):
        rng = random.Random(i)
        metadata = sample_metadata(TAGS[i % len(TAGS)], rng)
        objects = layout_scene(metadata, SIZE, rng)
        owners = [index for index, clause in enumerate(metadata["include"]) for _ in range(clause["count"])]
        assert len(objects) == len(owners)
        groups: dict[int, list] = {}
        for placed, owner in zip(objects, owners):
            clause = metadata["include"][owner]
            assert placed.shape == clause["class"]
            assert placed.colour == clause.get("color", placed.colour) and placed.colour in PALETTE
            x1, y1, x2, y2 = placed.box
            assert x2 - x1 == y2 - y1 and min(x1, y1) >= margin and max(x2, y2) <= SIZE - margin
            groups.setdefault(owner, []).append(placed)
        for a, b in itertools.combinations(objects, 2):  # boxes apart by at least the gap on one axis
            assert max(a.box[0] - b.box[2], b.box[0] - a.box[2], a.box[1] - b.box[3], b.box[1] - a.box[3]) >= gap
        for index, clause in enumerate(metadata["include"]):
            if "position" in clause:
                relation, target = clause["position"]
                for subject, other in itertools.product(groups[index], groups[target]):
                    assert relative_position(subject.box, other.box) == (relation,)


# ----------------------------------------------------------------------------------------------------
# Class ids, palette, evaluation set
# ----------------------------------------------------------------------------------------------------


def test_class_ids_of_single_objects():
    dataset = ShapesDataset(SIZE, seed=2, length=60, tags=("colors",))
    for i in range(len(dataset)):
        sample = dataset[i]
        (clause,) = sample.metadata["include"]
        assert sample.class_id == class_id(clause["color"], clause["class"])
        assert class_name(sample.class_id) == f"{clause['color']} {clause['class']}"
    mixed = ShapesDataset(SIZE, seed=2, length=60)
    for i in range(len(mixed)):
        sample = mixed[i]
        objects = sum(clause["count"] for clause in sample.metadata["include"])
        assert (sample.class_id is None) == (objects > 1)
    assert sorted(class_id(name.split()[0], name.split()[1]) for name in map(class_name, range(NUM_CLASSES))) == list(
        range(NUM_CLASSES)
    )


def test_palette_is_well_separated_and_uses_genevals_names():
    assert len(PALETTE) >= 6 and set(PALETTE) <= set(COLOURS)
    colours = [*PALETTE.values(), BACKGROUND]
    assert BACKGROUND not in PALETTE.values()
    assert min(math.dist(a, b) for a, b in itertools.combinations(colours, 2)) >= 100


def test_evaluation_prompts_are_fixed_and_valid():
    prompts = evaluation_prompts()
    assert prompts == evaluation_prompts()
    counts = {tag: sum(p["tag"] == tag for p in prompts) for tag in TAGS}
    assert counts == dict(zip(TAGS, (12, 12, 18, 24, 24, 24)))
    tags = [p["tag"] for p in prompts]
    assert tags == sorted(tags, key=TAGS.index)  # grouped by task, in GenEval's order
    for entry in prompts:
        assert metadata_problem(entry) is None and entry["prompt"] == caption(entry["include"])
    for entry in prompts:
        if entry["tag"] == "color_attr":
            first, second = entry["include"]
            assert first["class"] != second["class"] and first["color"] != second["color"]


def test_relation_weights_set_how_often_each_relation_is_drawn():
    sideways = ShapesDataset(SIZE, seed=1, length=40, tags=("position",), relation_weights=(1.0, 1.0, 0.0, 0.0))
    relations = [sideways[i].metadata["include"][1]["position"][0] for i in range(40)]
    assert set(relations) == {"left of", "right of"}
    # unweighted position scenes are those of earlier versions (captions made before relation weights existed),
    # so the caches and runs of earlier recipes stay reproducible
    plain = ShapesDataset(SIZE, seed=1, length=4, tags=("position",))
    assert [plain[i].caption for i in range(4)] == [
        "a photo of a triangle left of a circle", "a photo of two circles right of a triangle",
        "a photo of a purple triangle left of a green circle", "a photo of a square above a triangle",
    ]


# ----------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 16}, "at least 32 px"),
        ({"length": 0}, "at least 1"),
        ({"tags": ("spatial",)}, "choose one or more of single_object"),
        ({"tags": ("colors", "position"), "weights": (1.0,)}, "one weight ≥ 0 per task"),
        ({"tags": ("colors", "position"), "weights": (0.0, 0.0)}, "not all 0"),
        ({"relation_weights": (1.0, 1.0)}, "one weight ≥ 0 for each of left of, right of, above, below"),
    ],
)
def test_bad_dataset_options(kwargs, message):
    with pytest.raises(ShapesSceneError, match=message):
        ShapesDataset(**kwargs)


def _with_include(include):
    """Metadata the builders refuse to make, written by hand."""
    return {"tag": "two_object", "include": include, "prompt": "a photo of something"}


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (_with_include([{"class": "circle", "count": 3}, {"class": "square", "count": 2}]), "5 objects asked for"),
        (_with_include([{"class": "circle", "count": 1, "color": "pink"}]), "'pink' is not in the palette"),
        (_with_include([{"class": "hexagon", "count": 1}]), "unknown shape 'hexagon'"),
        ({"tag": "colors", "prompt": "x"}, "'include' is missing"),
    ],
)
def test_bad_scenes(metadata, message):
    with pytest.raises(ShapesSceneError, match=message):
        render_scene(metadata, SIZE, random.Random(0))


def test_captions_refuse_what_a_scene_cannot_hold():
    with pytest.raises(ShapesSceneError, match="1 to 4"):
        counting("circle", 5)


def test_index_out_of_range():
    with pytest.raises(IndexError):
        ShapesDataset(SIZE, length=3)[3]
