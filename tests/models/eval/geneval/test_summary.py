"""The summary against numbers worked out by hand, and `verify` on agreeing, disagreeing and colour lines."""

import pytest

from models.eval.geneval.results import ResultLine
from models.eval.geneval.summary import summarize, verify

BENCH = {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}
COW = {"tag": "single_object", "include": [{"class": "cow", "count": 1}], "prompt": "a photo of a cow"}
CLOCKS = {"tag": "counting", "include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}],
          "prompt": "a photo of two clocks"}
RED_CAR = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"}
DOG_ABOVE_CAT = {"tag": "position", "include": [{"class": "cat", "count": 1},
                                                {"class": "dog", "count": 1, "position": ["above", 0]}],
                 "prompt": "a photo of a dog above a cat"}


def line(
    metadata: dict, correct: bool, reason: str = "", details: dict | None = None, name: str = "x.png"
) -> ResultLine:
    return ResultLine(name, metadata["tag"], metadata["prompt"], correct, reason, metadata, details or {})


def test_summary_numbers():
    lines = [
        line(BENCH, True), line(BENCH, False),  # prompt with a correct image
        line(COW, False), line(COW, False),  # prompt without one
        line(CLOCKS, True), line(CLOCKS, True), line(CLOCKS, False),
    ]
    summary = summarize(lines)
    assert (summary.images, summary.prompts) == (7, 3)
    assert summary.correct_images == pytest.approx(3 / 7)
    assert summary.correct_prompts == pytest.approx(2 / 3)
    assert [(t.tag, t.correct, t.images) for t in summary.tasks] == [("single_object", 1, 4), ("counting", 2, 3)]
    assert summary.overall == pytest.approx((1 / 4 + 2 / 3) / 2)  # tasks weigh equally, whatever their size
    assert summary.missing_tasks == ("two_object", "colors", "position", "color_attr")
    assert summary.to_json()["tasks"] == {"single_object": 0.25, "counting": pytest.approx(2 / 3)}


def test_tasks_are_listed_in_geneval_order():
    lines = [line(CLOCKS, True), line(RED_CAR, True), line(BENCH, True), line(DOG_ABOVE_CAT, False)]
    assert [t.tag for t in summarize(lines).tasks] == ["single_object", "counting", "colors", "position"]


def clocks(*scores: float) -> dict:
    return {"clock": [[20.0 * i, 0.0, 20.0 * i + 10, 10.0, score] for i, score in enumerate(scores)]}


def test_verify_agrees_with_correct_records_and_finds_wrong_ones():
    lines = [
        line(CLOCKS, True, "", clocks(0.99, 0.95), name="right.png"),
        line(CLOCKS, False, "expected clock<3, found 3", clocks(0.99, 0.95, 0.93), name="right-too.png"),
        line(CLOCKS, True, "", clocks(0.99), name="wrong-verdict.png"),
        # a third clock under the counting threshold: GenEval would not have kept it
        line(CLOCKS, False, "expected clock<3, found 3", clocks(0.99, 0.95, 0.5), name="unfiltered.png"),
    ]
    report = verify(lines)
    assert (report.checked, report.agree, report.colour_dependent) == (4, 2, 0)
    assert [d.filename for d in report.disagreements] == ["wrong-verdict.png", "unfiltered.png"]
    assert report.disagreements[0].derived.reason == "expected clock>=2, found 1"
    assert report.to_json() == {"checked": 4, "agree": 2, "colour_dependent": 0}


def test_verify_counts_colour_lines_apart():
    car = {"car": [[0.0, 0.0, 10.0, 10.0, 0.9]]}
    lines = [line(RED_CAR, True, "", car), line(RED_CAR, False, "expected car>=1, found 0", {})]
    report = verify(lines)
    # the first needs the car's colour; the second fails before any colour is asked for
    assert (report.checked, report.agree, report.colour_dependent) == (1, 1, 1)


def test_verify_ignores_the_order_of_found_relations():
    details = {"cat": [[50.0, 50.0, 60.0, 60.0, 0.9]], "dog": [[80.0, 80.0, 90.0, 90.0, 0.9]]}  # right of and below
    reasons = ["expected dog above target, found right of and below target",
               "expected dog above target, found below and right of target"]
    report = verify([line(DOG_ABOVE_CAT, False, reason, details) for reason in reasons])
    assert (report.checked, report.agree) == (2, 2)
