"""GenEval's rules on hand-built detections: one case per rule, with the expected reasons in GenEval's words."""

import pytest

from models.errors import GenEvalFileError, MissingColourError
from models.eval.geneval.rules import (
    Detection,
    RuleSettings,
    Verdict,
    box_iou,
    evaluate,
    filter_detections,
    relative_position,
)


def det(x1: float, y1: float, x2: float, y2: float, score: float = 0.99, colour: str | None = None) -> Detection:
    return Detection(box=(x1, y1, x2, y2), score=score, colour=colour)


def scores(kept: dict[str, list[Detection]], name: str) -> list[float]:
    return [d.score for d in kept[name]]


# ----------------------------------------------------------------------------------------------------
# Filtering
# ----------------------------------------------------------------------------------------------------


def test_threshold_is_strict_and_empty_classes_are_dropped():
    raw = {"dog": [det(0, 0, 9, 9, 0.3), det(0, 0, 9, 9, 0.31), det(0, 0, 9, 9, 0.9)], "cat": [det(0, 0, 9, 9, 0.2)]}
    kept = filter_detections(raw, "single_object")
    assert scores(kept, "dog") == [0.9, 0.31]
    assert "cat" not in kept


def test_counting_prompts_use_the_higher_threshold():
    raw = {"dog": [det(0, 0, 9, 9, 0.9), det(0, 0, 9, 9, 0.95), det(0, 0, 9, 9, 0.5)]}
    assert scores(filter_detections(raw, "counting"), "dog") == [0.95]
    assert scores(filter_detections(raw, "two_object"), "dog") == [0.95, 0.9, 0.5]


def test_at_most_sixteen_per_class_best_first():
    raw = {"dog": [det(i, 0, i + 9, 9, 0.31 + i / 100) for i in range(20)]}
    kept = filter_detections(raw, "single_object")
    assert scores(kept, "dog") == sorted((0.31 + i / 100 for i in range(4, 20)), reverse=True)


def test_equal_scores_keep_their_input_order():
    raw = {"dog": [det(0, 0, 9, 9, 0.5), det(20, 0, 29, 9, 0.7), det(40, 0, 49, 9, 0.5)]}
    assert [d.box[0] for d in filter_detections(raw, "single_object")["dog"]] == [20, 0, 40]


def test_masks_travel_with_their_detections():
    mask = [[True, False]]  # any array type; a classifier downstream reads it
    kept = filter_detections({"dog": [Detection((0, 0, 9, 9), 0.9, mask=mask, colour="red")]}, "single_object")
    assert kept["dog"][0].mask is mask and kept["dog"][0].colour == "red"


def test_iou_counts_boundary_pixels():
    # each box spans 10 x 10 pixels; they share 5 columns: 50 / (100 + 100 - 50)
    assert box_iou((0, 0, 9, 9), (5, 0, 14, 9)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 9, 9), (20, 20, 29, 29)) == 0


def test_nms_is_off_by_default_and_runs_after_the_cap():
    raw = {"dog": [det(0, 0, 9, 9, 0.9), det(1, 0, 10, 9, 0.8), det(50, 50, 60, 60, 0.7)]}
    assert len(filter_detections(raw, "single_object")["dog"]) == 3
    with_nms = filter_detections(raw, "single_object", settings=RuleSettings(max_overlap=0.5))
    assert scores(with_nms, "dog") == [0.9, 0.7]
    # 16 copies of one box outrank a separate box: the cap removes it before NMS merges the copies
    crowded = {"dog": [det(0, 0, 9, 9, 0.9)] * 16 + [det(50, 50, 60, 60, 0.5)]}
    assert scores(filter_detections(crowded, "single_object", settings=RuleSettings(max_overlap=0.5)), "dog") == [0.9]


# ----------------------------------------------------------------------------------------------------
# Counts and exclude clauses
# ----------------------------------------------------------------------------------------------------

TWO_DOGS = {"tag": "counting", "include": [{"class": "dog", "count": 2}], "exclude": [{"class": "dog", "count": 3}],
            "prompt": "a photo of two dogs"}


@pytest.mark.parametrize(
    ("dogs", "verdict"),
    [
        (2, Verdict(True, "")),
        (1, Verdict(False, "expected dog>=2, found 1")),
        (3, Verdict(False, "expected dog<3, found 3")),
        (0, Verdict(False, "expected dog>=2, found 0")),
    ],
    ids=["exact", "too-few", "too-many-exclude", "none"],
)
def test_counting_is_exact_through_the_exclude_clause(dogs, verdict):
    detections = {"dog": [det(20 * i, 0, 20 * i + 9, 9) for i in range(dogs)]} if dogs else {}
    assert evaluate(detections, TWO_DOGS) == verdict


def test_every_failed_clause_gets_a_line():
    metadata = {"tag": "two_object", "include": [{"class": "dog", "count": 1}, {"class": "cat", "count": 1}],
                "exclude": [{"class": "bird", "count": 1}], "prompt": "a photo of a dog and a cat"}
    verdict = evaluate({"bird": [det(0, 0, 9, 9)]}, metadata)
    assert verdict == Verdict(False, "expected dog>=1, found 0\nexpected cat>=1, found 0\nexpected bird<1, found 1")


# ----------------------------------------------------------------------------------------------------
# Colour
# ----------------------------------------------------------------------------------------------------


def colour_prompt(count: int, colour: str = "red") -> dict:
    return {"tag": "colors", "include": [{"class": "car", "count": count, "color": colour}], "prompt": "a red car"}


def test_colour_clause_passes_and_fails_with_a_tally():
    assert evaluate({"car": [det(0, 0, 9, 9, colour="red")]}, colour_prompt(1)) == Verdict(True, "")
    assert evaluate({"car": [det(0, 0, 9, 9, colour="blue")]}, colour_prompt(1)) == Verdict(
        False, "expected red car>=1, found 0 red; and 1 blue"
    )


def test_colour_counts_only_the_best_count_detections_and_tallies_in_colour_order():
    cars = [det(0, 0, 9, 9, 0.9, "blue"), det(20, 0, 29, 9, 0.8, "red"), det(40, 0, 49, 9, 0.7, "red")]
    expected = Verdict(False, "expected red car>=2, found 1 red; and 1 red, 1 blue")
    assert evaluate({"car": cars}, colour_prompt(2)) == expected


def test_colour_classifier_is_asked_only_for_the_clause_objects():
    asked = []

    def classify(detection: Detection, name: str) -> str:
        asked.append((detection.box, name))
        return "red"

    cars = [det(0, 0, 9, 9, 0.9), det(20, 0, 29, 9, 0.8)]
    assert evaluate({"car": cars}, colour_prompt(1), classify) == Verdict(True, "")
    assert asked == [((0, 0, 9, 9), "car")]


def test_colour_without_colour_or_classifier_is_an_error():
    with pytest.raises(MissingColourError, match="car"):
        evaluate({"car": [det(0, 0, 9, 9)]}, colour_prompt(1))
    # too few objects: the colour is never needed
    assert evaluate({}, colour_prompt(1)) == Verdict(False, "expected car>=1, found 0")


def test_colour_attribute_prompts_check_both_objects():
    metadata = {"tag": "color_attr", "include": [{"class": "tie", "count": 1, "color": "white"},
                                                 {"class": "skateboard", "count": 1, "color": "purple"}],
                "prompt": "a photo of a white tie and a purple skateboard"}
    verdict = evaluate({"tie": [det(0, 0, 9, 9, colour="purple")]}, metadata)
    reason = "expected white tie>=1, found 0 white; and 1 purple\nexpected skateboard>=1, found 0"
    assert verdict == Verdict(False, reason)


# ----------------------------------------------------------------------------------------------------
# Relative position
# ----------------------------------------------------------------------------------------------------

TARGET = (50, 50, 60, 60)  # the cat; each dog box below is 10 x 10 too, so the dead zone is 0.1 x 20 = 2 px per axis


def position_prompt(relation: str) -> dict:
    return {"tag": "position", "include": [{"class": "cat", "count": 1},
                                           {"class": "dog", "count": 1, "position": [relation, 0]}],
            "prompt": f"a photo of a dog {relation} a cat"}


@pytest.mark.parametrize(
    ("dog", "relations"),
    [
        ((20, 50, 30, 60), ("left of",)),
        ((80, 50, 90, 60), ("right of",)),
        ((50, 20, 60, 30), ("above",)),
        ((50, 80, 60, 90), ("below",)),
        ((20, 20, 30, 30), ("left of", "above")),  # 45°: both components 28 / 42.4 > 0.5
        ((20, 40, 30, 50), ("left of",)),  # shallow: dy = 8 / 31.6 < 0.5
        ((52, 50, 62, 60), ()),  # 2 px apart: inside the dead zone
    ],
    ids=["left", "right", "above", "below", "diagonal", "shallow", "ambiguous"],
)
def test_relative_position(dog, relations):
    assert relative_position(dog, TARGET) == relations


def test_the_dead_zone_grows_with_the_boxes():
    big, other = (0, 0, 100, 100), (110, 0, 210, 100)  # centres 110 px apart, summed widths 200 px
    assert relative_position(big, other) == ("left of",)  # (110 - 20) / 110 > 0.5
    assert relative_position(big, other, threshold=0.5) == ()  # (110 - 100) / 110 < 0.5


@pytest.mark.parametrize("relation", ["left of", "right of", "above", "below"])
def test_position_clause_in_each_direction(relation):
    dogs = {"left of": (20, 50, 30, 60), "right of": (80, 50, 90, 60),
            "above": (50, 20, 60, 30), "below": (50, 80, 60, 90)}
    detections = {"cat": [det(*TARGET)], "dog": [det(*dogs[relation])]}
    assert evaluate(detections, position_prompt(relation)) == Verdict(True, "")


def test_position_failures_name_what_was_found():
    wrong_side = {"cat": [det(*TARGET)], "dog": [det(80, 50, 90, 60)]}
    verdict = evaluate(wrong_side, position_prompt("left of"))
    assert verdict == Verdict(False, "expected dog left of target, found right of target")
    ambiguous = {"cat": [det(*TARGET)], "dog": [det(52, 50, 62, 60)]}
    verdict = evaluate(ambiguous, position_prompt("right of"))
    assert verdict == Verdict(False, "expected dog right of target, found  target")  # no relation: two spaces
    diagonal = {"cat": [det(*TARGET)], "dog": [det(20, 20, 30, 30)]}
    verdict = evaluate(diagonal, position_prompt("below"))
    assert verdict == Verdict(False, "expected dog below target, found left of and above target")


def test_position_compares_only_the_best_object_of_each_group():
    # a second, lower-scoring cat lies left of the dog; the clause asks for one cat, so only the best is a target
    detections = {"cat": [det(*TARGET, 0.9), det(0, 50, 10, 60, 0.8)], "dog": [det(20, 50, 30, 60)]}
    assert evaluate(detections, position_prompt("left of")) == Verdict(True, "")


def test_position_without_its_target_group():
    verdict = evaluate({"dog": [det(20, 50, 30, 60)]}, position_prompt("left of"))
    assert verdict == Verdict(False, "expected cat>=1, found 0\nno target for dog to be left of")


def test_position_naming_a_later_group_is_refused():
    metadata = {"tag": "position", "include": [{"class": "dog", "count": 1, "position": ["left of", 1]},
                                               {"class": "cat", "count": 1}], "prompt": "?"}
    with pytest.raises(GenEvalFileError, match="does not precede"):
        evaluate({"dog": [det(0, 0, 9, 9)], "cat": [det(20, 0, 29, 9)]}, metadata)
