"""GenEval's metadata file and the authors' rewritten prompts: reading, checking, matching, and the errors."""

import json

import pytest

from models.errors import GenEvalFileError
from models.eval.geneval.prompts import RewrittenPrompt, conditioning_prompts, read_metadata, read_rewritten

METADATA = [
    {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
    {"tag": "counting", "include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}],
     "prompt": "a photo of two clocks"},
    {"tag": "position",
     "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1, "position": ["above", 0]}],
     "prompt": "a photo of a dog above a cat"},
]


def write_lines(path, entries):
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries), encoding="utf-8")
    return path


def test_metadata_is_read_as_written(tmp_path):
    path = write_lines(tmp_path / "evaluation_metadata.jsonl", METADATA)
    path.write_text(path.read_text() + "\n")  # a trailing blank line is fine
    assert read_metadata(path) == METADATA
    assert list(read_metadata(path)[1]) == ["tag", "include", "exclude", "prompt"]  # key order kept


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"tag": "colors", "prompt": "x"}), "'include' is missing"),
        (json.dumps({"tag": "colors", "include": [], "prompt": "x"}), "'include' is empty"),
        (json.dumps({"tag": "colors", "include": [{"class": "car", "count": 1, "color": "teal"}], "prompt": "x"}),
         "colour 'teal'"),
        (json.dumps({"tag": "counting", "include": [{"class": "car", "count": 0}], "prompt": "x"}), "positive integer"),
        (json.dumps({"tag": "position", "include": [{"class": "car", "count": 1, "position": ["above", 0]}],
                     "prompt": "x"}), "earlier include clause"),
        (json.dumps({"tag": "position", "include": [{"class": "car", "count": 1}, {"class": "dog", "count": 1,
                     "position": ["near", 0]}], "prompt": "x"}), "relation one of"),
    ],
    ids=["json", "no-include", "empty-include", "colour", "count", "self-target", "relation"],
)
def test_bad_metadata_names_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "meta.jsonl"
    path.write_text(json.dumps(METADATA[0]) + "\n" + bad_line + "\n")
    with pytest.raises(GenEvalFileError, match=message) as error:
        read_metadata(path)
    assert f"{path}:2:" in str(error.value)


def test_missing_and_empty_metadata_files(tmp_path):
    with pytest.raises(GenEvalFileError, match="no such file"):
        read_metadata(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(GenEvalFileError, match="no metadata lines"):
        read_metadata(tmp_path / "empty.jsonl")


def rewritten_file(tmp_path, entries):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def test_rewritten_prompts_condition_by_id(tmp_path):
    entries = [{"id": i, "prompt": m["prompt"], "dense_prompt": f"dense {i}"} for i, m in enumerate(METADATA)]
    path = rewritten_file(tmp_path, entries[::-1])  # order in the file does not matter, ids do
    rewritten = read_rewritten(path)
    assert rewritten[0] == RewrittenPrompt(0, "a photo of a bench", "dense 0")
    assert conditioning_prompts(METADATA, rewritten, path) == ["dense 0", "dense 1", "dense 2"]
    assert conditioning_prompts(METADATA, None) == [m["prompt"] for m in METADATA]


def test_rewritten_prompts_made_for_other_metadata_are_refused(tmp_path):
    entries = [{"id": 0, "prompt": "a photo of a cow", "dense_prompt": "d"}]
    path = rewritten_file(tmp_path, entries)
    with pytest.raises(GenEvalFileError, match="another metadata file"):
        conditioning_prompts(METADATA[:1], read_rewritten(path), path)
    with pytest.raises(GenEvalFileError, match="no entry with id 1"):
        conditioning_prompts(METADATA[:2], read_rewritten(rewritten_file(tmp_path, [
            {"id": 0, "prompt": "a photo of a bench", "dense_prompt": "d"}])), path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{\"id\": 0,", "not valid JSON"),
        ("{}", "non-empty JSON list"),
        (json.dumps([{"id": "0", "prompt": "a", "dense_prompt": "b"}]), "entry 0 is not"),
        (json.dumps([{"id": 0, "prompt": "a", "dense_prompt": " "}]), "entry 0 is not"),
        (json.dumps([{"id": 0, "prompt": "a", "dense_prompt": "b"}, {"id": 0, "prompt": "a", "dense_prompt": "c"}]),
         "repeats id 0"),
    ],
    ids=["json", "not-list", "id-type", "empty-dense", "duplicate"],
)
def test_bad_rewritten_files(tmp_path, content, message):
    path = tmp_path / "prompts.json"
    path.write_text(content)
    with pytest.raises(GenEvalFileError, match=message) as error:
        read_rewritten(path)
    assert str(path) in str(error.value)
