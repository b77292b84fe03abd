"""The seed contract: one request per image, numbered condition by condition, image i seeded seed + i."""

import pytest

from models.errors import InvalidPromptError
from models.pipeline.requests import Condition, build_requests


def test_seed_contract_is_seed_plus_global_index():
    jobs = build_requests([Condition(prompt="a"), Condition(prompt="b")], seed=5, num_images=2)
    assert [(job.index, job.seed, job.prompt) for job in jobs] == [(0, 5, "a"), (1, 6, "a"), (2, 7, "b"), (3, 8, "b")]


def test_line_seed_and_count_override_the_run():
    conditions = [Condition(prompt="a", seed=100, num_images=3), Condition(prompt="b", negative_prompt="x")]
    jobs = build_requests(conditions, seed=5, num_images=1, negative_prompt="ugly")
    assert [(job.index, job.seed) for job in jobs] == [(0, 100), (1, 101), (2, 102), (3, 8)]
    assert [job.negative_prompt for job in jobs] == ["ugly", "ugly", "ugly", "x"]


def test_no_conditions_or_no_images_is_an_error():
    with pytest.raises(InvalidPromptError, match="nothing to generate"):
        build_requests([], seed=0)
    with pytest.raises(InvalidPromptError, match="must be ≥ 1"):
        build_requests([Condition(prompt="a")], seed=0, num_images=0)
