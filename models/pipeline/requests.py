"""What to generate: conditions, one request per image, and the seed contract that numbers them.

Seed contract: image i of a run, counted condition by condition (image j of condition c is i = c·n + j), uses
`seed + i`, so an image never depends on batch size, resume or the number of GPUs. A condition that sets its
own `seed` (a `.jsonl` prompts line) gives its images `seed`, `seed + 1`, … instead.
"""

from dataclasses import dataclass

from models.errors import InvalidPromptError


@dataclass(frozen=True)
class Condition:
    """One prompt (text-to-image) or class id (class-conditional), with its per-line overrides."""

    prompt: str | None = None
    class_label: int | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    num_images: int | None = None


@dataclass(frozen=True)
class ImageRequest:
    """One image to generate: its seed, its condition and its index in the run (for file names and sharding)."""

    seed: int
    prompt: str | None = None
    class_label: int | None = None
    negative_prompt: str | None = None  # t2i only; None or "" selects the checkpoint's null text rows
    index: int = 0


def build_requests(
    conditions: list[Condition], *, seed: int, num_images: int = 1, negative_prompt: str | None = None
) -> list[ImageRequest]:
    """One request per image, in condition order, numbered and seeded by the seed contract.

    Args:
        conditions: prompts or class ids, in order.
        seed: the run's base seed.
        num_images: images per condition, unless a condition sets its own.
        negative_prompt: used where a condition has none of its own.
    """
    if not conditions:
        raise InvalidPromptError("nothing to generate: give prompts, --prompts-file or --class ids")
    if num_images < 1:
        raise InvalidPromptError(f"{num_images} images per prompt: must be ≥ 1")
    requests: list[ImageRequest] = []
    for condition in conditions:
        for j in range(condition.num_images or num_images):
            index = len(requests)
            requests.append(
                ImageRequest(
                    index=index,
                    seed=(condition.seed + j) if condition.seed is not None else seed + index,
                    prompt=condition.prompt,
                    class_label=condition.class_label,
                    negative_prompt=condition.negative_prompt if condition.negative_prompt is not None else negative_prompt,
                )
            )
    return requests
