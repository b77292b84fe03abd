"""`lina eval geneval summary` through the real app: the table, JSON on stdout and to a file, --verify, bad input."""

import json

import pytest

from models.eval.geneval.results import ResultLine, write_results
from models.eval.geneval.rules import Detection, evaluate

BENCH = {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}
CLOCKS = {"tag": "counting", "include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}],
          "prompt": "a photo of two clocks"}
RED_CAR = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"}


def judged(metadata: dict, count: int, colour: str | None = None, name: str = "x.png") -> ResultLine:
    """A line judged by our rules on `count` side-by-side boxes of the prompt's first class."""
    boxes = [Detection((20.0 * i, 0.0, 20.0 * i + 10, 10.0), 0.99, colour=colour) for i in range(count)]
    kept = {metadata["include"][0]["class"]: boxes} if boxes else {}
    return ResultLine.from_verdict(name, metadata, kept, evaluate(kept, metadata))


@pytest.fixture
def results_file(tmp_path):
    lines = [
        judged(BENCH, 1), judged(BENCH, 0), judged(BENCH, 1), judged(BENCH, 1),  # 3 / 4
        judged(CLOCKS, 2), judged(CLOCKS, 3),  # 1 / 2
        judged(RED_CAR, 1, "red"), judged(RED_CAR, 1, "blue"),  # 1 / 2, both need the colour to re-judge
    ]
    path = tmp_path / "results.jsonl"
    write_results(path, lines)
    return path


EXPECTED = {"overall": (3 / 4 + 1 / 2 + 1 / 2) / 3, "tasks": {"single_object": 0.75, "counting": 0.5, "colors": 0.5},
            "images": 8, "prompts": 3, "correct_images": 5 / 8, "correct_prompts": 1.0}


def test_json_on_stdout(lina, results_file):
    result = lina("eval", "geneval", "summary", results_file, "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data.pop("overall") == pytest.approx(EXPECTED["overall"])
    assert data == {key: value for key, value in EXPECTED.items() if key != "overall"}  # no "verify" without --verify


def test_table_and_verify_json_file(lina, results_file, tmp_path):
    result = lina("eval", "geneval", "summary", results_file, "--verify", "--json", tmp_path / "score.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "score.json").read_text())
    assert data["verify"] == {"checked": 6, "agree": 6, "colour_dependent": 2}
    assert data["overall"] == pytest.approx(EXPECTED["overall"])
    for text in ("single_object", "counting", "colors", "0.58333", "overall", "6 of 6", "2 reach a colour clause"):
        assert text in result.stdout
    assert "no two_object, position, color_attr images" in result.stdout


def test_a_disagreeing_verdict_fails_verify(lina, tmp_path):
    wrong = judged(CLOCKS, 3, name="out/00001/samples/00002.png")
    wrong = ResultLine(**{**wrong.__dict__, "correct": True, "reason": ""})
    path = tmp_path / "results.jsonl"
    write_results(path, [judged(CLOCKS, 2), wrong])
    result = lina("eval", "geneval", "summary", path, "--verify")
    assert result.exit_code == 1
    assert "1 of 2" in result.stdout and "out/00001/samples/00002.png" in result.stdout
    assert "expected clock<3, found 3" in result.stdout


def test_a_bad_results_file_is_one_error_line(lina, tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"tag": "counting"}\n')
    result = lina("eval", "geneval", "summary", path)
    assert result.exit_code == 1
    assert f"{path}:1: missing key(s)" in result.output.replace("\n", "")
    assert "Traceback" not in result.output


def test_a_missing_file_is_a_usage_error(lina, tmp_path):
    assert lina("eval", "geneval", "summary", tmp_path / "absent.jsonl").exit_code == 2


def test_bare_groups_print_help(lina):
    assert "geneval" in lina("eval").output
    assert "summary" in lina("eval", "geneval").output
