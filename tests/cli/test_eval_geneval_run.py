"""`lina eval geneval run` and `score` through the real app, with tiny random models written by the tests: GenEval's
folder layout, results.jsonl and its protocol file, resume, and bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from models.eval.geneval.results import KEYS
from tests.cli.conftest import FAST
from tests.models.eval.geneval.factories import save_mmdet_checkpoint, write_tiny_clip_folder

METADATA = [
    {"tag": "single_object", "include": [{"class": "car", "count": 1}], "prompt": "a photo of a car"},
    {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "blue"}], "prompt": "a photo of a blue car"},
]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("geneval-cli-weights")
    return save_mmdet_checkpoint(folder / "tiny.pth", favour="car"), write_tiny_clip_folder(folder / "clip")


@pytest.fixture
def scoring(weights, tmp_path, monkeypatch):
    """The tiny detector and CLIP as command-line options, with the lina cache in the test's folder."""
    monkeypatch.setenv("LINA_CACHE", str(tmp_path / "lina-cache"))
    return ["--detector-weights", weights[0], "--clip-weights", weights[1], "--device", "cpu"]


@pytest.fixture
def metadata_file(tmp_path):
    path = tmp_path / "evaluation_metadata.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in METADATA))
    return path


def write_folder(root, images_per_prompt=2):
    rng = np.random.default_rng(0)
    for index, metadata in enumerate(METADATA):
        samples = root / f"{index:05d}" / "samples"
        samples.mkdir(parents=True)
        (root / f"{index:05d}" / "metadata.jsonl").write_text(json.dumps(metadata) + "\n")
        for j in range(images_per_prompt):
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(samples / f"{j:04d}.png")
    return root


def test_score_a_folder_made_elsewhere(lina, scoring, weights, tmp_path):
    folder = write_folder(tmp_path / "images")
    result = lina("eval", "geneval", "score", folder, *scoring, "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["images"] == 4 and set(data["tasks"]) == {"single_object", "colors"}
    assert data["tasks"]["single_object"] == 1.0  # the tiny detector sees a car with score > 0.3 everywhere
    protocol = data["protocol"]
    assert protocol["detector"]["backend"] == "geneval-mask2former"
    assert protocol["detector"]["weights"]["path"] == str(weights[0].resolve())
    assert len(protocol["detector"]["weights"]["sha256"]) == 64 and protocol["detector"]["converted"]["sha256"]
    assert protocol["prompts"]["conditioning"] == "unknown"  # PNGs without lina metadata
    lines = [json.loads(text) for text in (folder / "results.jsonl").read_text().splitlines()]
    assert [tuple(line) for line in lines] == [KEYS] * 4
    assert lines[0]["filename"].endswith("00000/samples/0000.png")
    assert json.loads((folder / "results.protocol.json").read_text()) == protocol


def test_score_prints_the_table_and_the_protocol(lina, scoring, tmp_path, metadata_file):
    folder = write_folder(tmp_path / "images", images_per_prompt=1)
    result = lina("eval", "geneval", "score", folder, *scoring, "--metadata", metadata_file,
                  "--results", tmp_path / "out" / "r.jsonl")
    assert result.exit_code == 0, result.output
    for text in ("single_object", "colors", "overall", "geneval-mask2former", "CLIP", "sha256"):
        assert text in result.stdout
    assert (tmp_path / "out" / "r.jsonl").is_file() and (tmp_path / "out" / "r.protocol.json").is_file()


def test_score_refuses_a_folder_that_is_not_the_metadata(lina, scoring, tmp_path, metadata_file):
    folder = write_folder(tmp_path / "images", images_per_prompt=1)
    (folder / "00001" / "metadata.jsonl").write_text(json.dumps(METADATA[0]) + "\n")
    result = lina("eval", "geneval", "score", folder, *scoring, "--metadata", metadata_file)
    assert result.exit_code == 1
    assert "is not line 2 of" in result.stderr


def test_run_generates_scores_and_resumes(lina, scoring, tiny_t2i_folder, tmp_path, metadata_file):
    out = tmp_path / "geneval"
    command = ["eval", "geneval", "run", "-m", tiny_t2i_folder, "--metadata", metadata_file, "--images-per-prompt", "2",
               "-o", out, "-s", "7", *FAST, *scoring, "--json", tmp_path / "score.json"]
    first = lina(*command)
    assert first.exit_code == 0, first.output
    pngs = sorted(out.glob("*/samples/*.png"))
    assert [p.relative_to(out).as_posix() for p in pngs] == [
        "00000/samples/00000.png", "00000/samples/00001.png", "00001/samples/00000.png", "00001/samples/00001.png"]
    assert json.loads((out / "00001" / "metadata.jsonl").read_text()) == METADATA[1]
    score = json.loads((tmp_path / "score.json").read_text())
    assert score["images"] == 4 and score["protocol"]["prompts"]["conditioning"] == "original"
    assert score["protocol"]["prompts"]["metadata"]["path"] == str(metadata_file.resolve())
    assert score["protocol"]["generation"]["seed"] == 7 and score["protocol"]["generation"]["ar_steps"] == 4
    stamps = [p.stat().st_mtime_ns for p in pngs]

    again = lina(*command)
    assert again.exit_code == 0, again.output
    assert "0 made now, 4 already finished" in again.stderr
    assert [p.stat().st_mtime_ns for p in pngs] == stamps


def test_run_conditions_on_rewritten_prompts(lina, scoring, tiny_t2i_folder, tmp_path, metadata_file):
    rewritten = tmp_path / "prompts.json"
    rewritten.write_text(json.dumps([{"id": i, "prompt": m["prompt"], "dense_prompt": m["prompt"] + ", detailed"}
                                     for i, m in enumerate(METADATA)]))
    out = tmp_path / "geneval"
    result = lina("eval", "geneval", "run", "-m", tiny_t2i_folder, "--metadata", metadata_file, "--rewritten", rewritten,
                  "--images-per-prompt", "1", "--limit", "1", "-o", out, *FAST, *scoring, "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["images"] == 1 and data["protocol"]["prompts"]["conditioning"] == "rewritten"
    assert data["protocol"]["prompts"]["rewritten"]["sha256"]
    recorded = json.loads(Image.open(out / "00000" / "samples" / "00000.png").text["lina"])
    assert recorded["prompt"] == "a photo of a car, detailed"


def test_run_refuses_rewritten_prompts_for_another_metadata(lina, tmp_path, metadata_file):
    rewritten = tmp_path / "prompts.json"
    rewritten.write_text(json.dumps([{"id": 0, "prompt": "a photo of a cat", "dense_prompt": "a cat"}]))
    result = lina("eval", "geneval", "run", "--metadata", metadata_file, "--rewritten", rewritten, "--device", "cpu")
    assert result.exit_code == 1
    assert "made for another metadata file" in result.stderr


def test_unknown_detector_is_a_usage_error(lina, tmp_path):
    result = lina("eval", "geneval", "score", tmp_path, "--detector", "yolo")
    assert result.exit_code == 2
    assert "expected one of geneval-mask2former, mmdetection, hf-mask2former" in result.output
