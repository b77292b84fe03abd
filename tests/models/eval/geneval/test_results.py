"""GenEval's results.jsonl: the line format (metadata and details as JSON strings), round trip, and errors."""

import json

import pytest

from models.errors import GenEvalFileError
from models.eval.geneval.results import KEYS, ResultLine, read_results, write_results
from models.eval.geneval.rules import Detection, evaluate, filter_detections

METADATA = {"tag": "counting", "include": [{"class": "dog", "count": 2}], "exclude": [{"class": "dog", "count": 3}],
            "prompt": "a photo of two dogs"}


def judged_line() -> ResultLine:
    raw = {"dog": [Detection((10.0, 20.0, 110.0, 220.0), 0.9757505059242249), Detection((0, 0, 5, 5), 0.5),
                   Detection((300.0, 20.0, 400.0, 220.0), 0.95)]}
    kept = filter_detections(raw, METADATA["tag"])
    return ResultLine.from_verdict("out/00004/samples/00000.png", METADATA, kept, evaluate(kept, METADATA))


def test_a_line_as_geneval_writes_it(tmp_path):
    line = judged_line()
    assert line.correct and line.reason == ""
    assert line.details == {"dog": [[10.0, 20.0, 110.0, 220.0, 0.9757505059242249], [300.0, 20.0, 400.0, 220.0, 0.95]]}
    path = tmp_path / "results.jsonl"
    write_results(path, [line, line])
    raw = [json.loads(text) for text in path.read_text().splitlines()]
    assert len(raw) == 2 and list(raw[0]) == list(KEYS)
    assert raw[0]["metadata"] == json.dumps(METADATA)  # a JSON string inside the line, as GenEval stores it
    assert json.loads(raw[0]["details"]) == line.details
    assert read_results(path) == [line, line]


def test_recorded_detections_come_back_as_detections():
    assert judged_line().detections()["dog"][1] == Detection((300.0, 20.0, 400.0, 220.0), 0.95)


def test_objects_instead_of_strings_are_accepted(tmp_path):
    data = judged_line().to_json()
    data["metadata"], data["details"] = json.loads(data["metadata"]), json.loads(data["details"])
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(data) + "\n")
    assert read_results(path) == [judged_line()]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("details"), "missing key"),
        (lambda d: d.update(correct="yes"), "'correct' should be true or false"),
        (lambda d: d.update(metadata="{oops"), "'metadata' is not valid JSON"),
        (lambda d: d.update(details=json.dumps({"dog": [[1, 2, 3]]})), "details of 'dog'"),
        (lambda d: d.update(tag=3), "'tag' should be a string"),
    ],
    ids=["missing", "correct", "metadata", "details", "tag"],
)
def test_bad_lines_name_file_line_and_key(tmp_path, change, message):
    good = judged_line().to_json()
    bad = dict(good)
    change(bad)
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(GenEvalFileError, match=message) as error:
        read_results(path)
    assert f"{path}:2:" in str(error.value)


def test_empty_results_file(tmp_path):
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(GenEvalFileError, match="no result lines"):
        read_results(tmp_path / "results.jsonl")
