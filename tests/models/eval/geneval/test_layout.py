"""GenEval's folder layout: names, the metadata round trip, and which folders and images GenEval would score."""

import json

import pytest

from models.errors import GenEvalFileError
from models.eval.geneval.layout import (
    prompt_folder,
    prompt_folders,
    read_prompt_metadata,
    sample_images,
    sample_path,
    write_prompt_metadata,
)

METADATA = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}],
            "prompt": "a photo of a red car"}


def test_names_follow_geneval(tmp_path):
    assert prompt_folder(tmp_path, 7) == tmp_path / "00007"
    assert sample_path(tmp_path, 552, 3) == tmp_path / "00552" / "samples" / "00003.png"


def test_metadata_round_trip_as_one_json_object(tmp_path):
    path = write_prompt_metadata(tmp_path, 12, METADATA)
    assert path == tmp_path / "00012" / "metadata.jsonl"
    assert json.loads(path.read_text()) == METADATA  # GenEval's json.load of the whole file
    assert read_prompt_metadata(tmp_path / "00012") == METADATA
    assert [p.name for p in (tmp_path / "00012").iterdir()] == ["metadata.jsonl"]  # no temp file left


def test_unreadable_metadata(tmp_path):
    folder = tmp_path / "00000"
    folder.mkdir()
    with pytest.raises(GenEvalFileError, match="no such file"):
        read_prompt_metadata(folder)
    (folder / "metadata.jsonl").write_text(json.dumps(METADATA) + "\n" + json.dumps(METADATA) + "\n")
    with pytest.raises(GenEvalFileError, match="not one JSON object"):
        read_prompt_metadata(folder)


def test_prompt_folders_are_the_all_digit_ones_in_numeric_order(tmp_path):
    for name in ("00010", "00002", "notes", "0003a"):
        (tmp_path / name).mkdir()
    (tmp_path / "00004").write_text("a file, not a folder")
    assert prompt_folders(tmp_path) == [(2, tmp_path / "00002"), (10, tmp_path / "00010")]
    with pytest.raises(GenEvalFileError, match="no such folder"):
        prompt_folders(tmp_path / "absent")


def test_sample_images_are_the_files_geneval_scores(tmp_path):
    samples = tmp_path / "00000" / "samples"
    samples.mkdir(parents=True)
    for name in ("00010.png", "00002.png", "grid.png", ".00001.png.tmp", "00003.jpg", "7.png"):
        (samples / name).write_bytes(b"")
    (samples / "00005.png").mkdir()
    names = [path.name for path in sample_images(tmp_path / "00000")]
    assert names == ["00002.png", "7.png", "00010.png"]
    assert sample_images(tmp_path / "missing") == []
