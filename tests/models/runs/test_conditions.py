"""Prompt arguments, prompts files and class ids turned into a run's conditions."""

import json

import pytest

from models.errors import InvalidClassLabelError, InvalidPromptError, PromptsFileError
from models.network.config import check_class_labels
from models.pipeline.requests import Condition
from models.runs.conditions import gather_conditions, parse_class_ids, read_prompts_file


def test_class_ids_ranges_and_lists():
    assert parse_class_ids(["207", "980"]) == [207, 980]
    assert parse_class_ids(["0-3"]) == [0, 1, 2, 3]
    assert parse_class_ids(["1,5-6", " 9 "]) == [1, 5, 6, 9]
    assert len(parse_class_ids(["0-999"])) == 1000


@pytest.mark.parametrize("value", ["cat", "-1", "3-", "5-2", "1.5", ""])
def test_bad_class_ids(value):
    with pytest.raises(InvalidClassLabelError, match="--class"):
        parse_class_ids([value])


def test_class_ids_checked_against_the_model():
    check_class_labels([0, 9], num_classes=10)
    with pytest.raises(InvalidClassLabelError, match=r"class id\(s\) 10, 1000 out of range: this model knows classes 0-9"):
        check_class_labels([1, 1000, 10], num_classes=10)


def test_txt_prompts_file_skips_blank_lines(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a cat\n\n   \n  a dog on a skateboard  \n")
    assert read_prompts_file(path) == [Condition(prompt="a cat"), Condition(prompt="a dog on a skateboard")]


def test_jsonl_prompts_file_with_overrides(tmp_path):
    path = tmp_path / "prompts.jsonl"
    lines = [
        {"prompt": "a cat", "negative_prompt": "blurry", "seed": 100, "n": 2},
        {"prompt": "a dog", "tag": "single_object", "include": [{"class": "dog", "count": 1}]},  # GenEval keys
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    assert read_prompts_file(path) == [
        Condition(prompt="a cat", negative_prompt="blurry", seed=100, num_images=2),
        Condition(prompt="a dog"),
    ]


@pytest.mark.parametrize(
    "name, text, fragment",
    [
        ("empty.txt", "", "has no prompts"),
        ("blank.txt", "\n  \n", "has no prompts"),
        ("empty.jsonl", "\n", "has no prompts"),
        ("bad.jsonl", '{"prompt": "ok"}\n{"prompt": "a cat"\n', "bad.jsonl:2: not valid JSON"),
        ("list.jsonl", '["a cat"]\n', "list.jsonl:1: expected a JSON object"),
        ("noprompt.jsonl", '{"text": "a cat"}\n', 'noprompt.jsonl:1: "prompt" must be a non-empty string'),
        ("seed.jsonl", '{"prompt": "a", "seed": "5"}\n', '"seed" must be an integer'),
        ("n.jsonl", '{"prompt": "a", "n": 0}\n', '"n" must be ≥ 1'),
    ],
)
def test_malformed_prompts_files(tmp_path, name, text, fragment):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PromptsFileError) as caught:
        read_prompts_file(path)
    assert fragment in str(caught.value)


def test_binary_prompts_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PromptsFileError, match="not UTF-8"):
        read_prompts_file(path)


def test_conditions_are_prompts_or_classes_not_both(tmp_path):
    with pytest.raises(InvalidPromptError, match="not both"):
        gather_conditions(["a cat"], None, ["1"])
    with pytest.raises(InvalidPromptError, match="nothing to generate"):
        gather_conditions(None, None, None)
    with pytest.raises(InvalidPromptError, match="a prompt is empty"):
        gather_conditions(["  "], None, None)
    path = tmp_path / "more.txt"
    path.write_text("b\n")
    assert [c.prompt for c in gather_conditions(["a"], path, None)] == ["a", "b"]
