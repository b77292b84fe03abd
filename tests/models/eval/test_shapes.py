"""The shapes benchmark: the detector against the renderer's ground truth, GenEval verdicts, the folder scorer,
prompt files of your own."""

import json
import random
from collections import deque

import numpy as np
import pytest
from PIL import Image, ImageFilter

from models.data.shapes import DEFAULT_IMAGE_SIZE, ShapesDataset
from models.data.shapes_prompts import colors, counting, evaluation_prompts, position, single_object, two_object
from models.data.shapes_render import draw_scene, layout_scene, render_scene
from models.errors import GenEvalFileError
from models.eval.geneval.layout import prompt_folders, read_prompt_metadata, sample_images
from models.eval.geneval.prompts import TAGS
from models.eval.geneval.results import read_results
from models.eval.geneval.summary import verify
from models.eval.shapes.benchmark import (
    evaluate_shapes,
    read_prompt_file,
    score_image,
    score_shapes_folder,
    write_ground_truth,
)
from models.eval.shapes.detector import detect_shapes, label_components

SIZE = 64  # the detector is size-free; the acceptance test below uses the dataset's default size


def _render(metadata, seed=0, size=SIZE):
    return render_scene(metadata, size, random.Random(seed))


# ----------------------------------------------------------------------------------------------------
# The acceptance item: ground truth scores (at least) 0.99
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ground_truth(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes-ground-truth")
    write_ground_truth(folder, size=DEFAULT_IMAGE_SIZE, images_per_prompt=4, seed=0)
    return folder, score_shapes_folder(folder)


def test_scorer_passes_ground_truth_of_every_prompt(ground_truth):
    _, summary = ground_truth
    assert summary.images == len(evaluation_prompts()) * 4
    assert [task.tag for task in summary.tasks] == list(TAGS)
    assert all(task.accuracy >= 0.99 for task in summary.tasks), summary
    assert summary.overall >= 0.99
    assert summary.overall == 1.0  # what it scores today; the line above is the acceptance bar


def test_results_file_is_genevals_and_consistent(ground_truth):
    folder, _ = ground_truth
    lines = read_results(folder / "results.jsonl")
    assert len(lines) == len(evaluation_prompts()) * 4
    first = lines[0]
    assert first.filename.endswith("00000/samples/00000.png") and first.correct and first.reason == ""
    assert first.metadata == evaluation_prompts()[0] and first.details["circle"][0][4] == 1.0
    report = verify(lines)  # the recorded verdicts follow from the recorded detections
    assert report.agree == report.checked > 0 and not report.disagreements


def test_ground_truth_layout(ground_truth):
    folder, _ = ground_truth
    folders = prompt_folders(folder)
    assert [index for index, _ in folders] == list(range(len(evaluation_prompts())))
    assert read_prompt_metadata(folders[5][1]) == evaluation_prompts()[5]
    assert [path.name for path in sample_images(folders[5][1])] == ["00000.png", "00001.png", "00002.png", "00003.png"]


# ----------------------------------------------------------------------------------------------------
# The detector
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64, 128])
def test_detections_are_the_drawn_objects(size):
    dataset = ShapesDataset(size, seed=11, length=60)
    for i in range(len(dataset)):
        rng = random.Random(f"detector/{i}")
        objects = layout_scene(dataset[i].metadata, size, rng)
        found = sorted(
            (shape, d.colour, d.box) for shape, detections in detect_shapes(draw_scene(objects, size)).items()
            for d in detections
        )
        drawn = sorted((o.shape, o.colour, o.box) for o in objects)
        assert [f[:2] for f in found] == [d[:2] for d in drawn]
        # boxes agree to the pixel, but for a triangle's anti-aliased tip
        assert all(np.abs(np.subtract(f[2], d[2])).max() <= 1 for f, d in zip(found, drawn))


def test_blurred_shapes_keep_their_shape():
    """A small model's images are soft: blur cuts a triangle's tip, but its centre of mass stays low."""
    for i, metadata in enumerate(evaluation_prompts()[::3]):
        image = _render(metadata, seed=i, size=DEFAULT_IMAGE_SIZE).filter(ImageFilter.GaussianBlur(1.5))
        _, verdict = score_image(image, metadata)
        assert verdict.correct, (metadata["prompt"], verdict.reason)


def test_noise_is_not_an_object():
    noise = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    assert detect_shapes(Image.fromarray(noise)) == {}
    assert detect_shapes(Image.new("RGB", (SIZE, SIZE), (128, 128, 128))) == {}


def _bfs_labels(mask):
    """Independent reference: 8-connected components by breadth-first search, numbered in raster order."""
    labels = np.zeros(mask.shape, dtype=np.int64)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        labels[start] = count
        queue = deque([start])
        while queue:
            y, x = queue.popleft()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    inside = 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1]
                    if inside and mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = count
                        queue.append((ny, nx))
    return labels, count


@pytest.mark.parametrize("density", [0.2, 0.45, 0.6])
def test_label_components_matches_bfs(density):
    rng = np.random.default_rng(int(density * 100))
    for shape in [(1, 1), (7, 13), (40, 40)]:
        mask = rng.random(shape) < density
        labels, count = label_components(mask)
        expected, expected_count = _bfs_labels(mask)
        assert count == expected_count
        np.testing.assert_array_equal(labels, expected)


def test_a_long_snake_is_one_component():
    """One path that winds through the whole mask: the labels must travel its full length."""
    mask = np.zeros((41, 41), dtype=bool)
    mask[::4, 1:-1] = True  # rows joined alternately at the right and the left end
    for row in range(0, 36, 8):
        mask[row + 1 : row + 4, -2] = True
        mask[row + 5 : row + 8, 1] = True
    assert label_components(mask)[1] == _bfs_labels(mask)[1] == 1


# ----------------------------------------------------------------------------------------------------
# Verdicts on wrong images
# ----------------------------------------------------------------------------------------------------


def test_wrong_colour():
    _, verdict = score_image(_render(colors("circle", "red")), colors("circle", "blue"))
    assert not verdict.correct
    assert verdict.reason == "expected blue circle>=1, found 0 blue; and 1 red"


def test_too_few_and_too_many():
    _, verdict = score_image(_render(counting("square", 2)), counting("square", 3))
    assert (verdict.correct, verdict.reason) == (False, "expected square>=3, found 2")
    _, verdict = score_image(_render(counting("square", 3)), counting("square", 2))
    assert (verdict.correct, verdict.reason) == (False, "expected square<3, found 3")


def test_wrong_position():
    image = _render(position("circle", "left of", "square"))
    _, verdict = score_image(image, position("circle", "right of", "square"))
    assert (verdict.correct, verdict.reason) == (False, "expected circle right of target, found left of target")
    _, verdict = score_image(image, position("circle", "left of", "square"))
    assert verdict.correct


def test_wrong_shape():
    _, verdict = score_image(_render(single_object("triangle")), single_object("circle"))
    assert (verdict.correct, verdict.reason) == (False, "expected circle>=1, found 0")
    _, verdict = score_image(_render(two_object("triangle", "square")), two_object("triangle", "circle"))
    assert (verdict.correct, verdict.reason) == (False, "expected circle>=1, found 0")


# ----------------------------------------------------------------------------------------------------
# Generating with a pipeline
# ----------------------------------------------------------------------------------------------------


def test_evaluate_shapes_writes_genevals_layout(tiny_t2i_folder, tmp_path):
    from models import load_pipeline

    pipe = load_pipeline(tiny_t2i_folder, device="cpu")
    prompts = [evaluation_prompts()[0], evaluation_prompts()[-1]]
    summary = evaluate_shapes(
        pipe, tmp_path, images_per_prompt=2, seed=5, ar_steps=1, diffusion_steps=1, prompts=prompts, batch_size=2
    )
    finished = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.png")}
    again = evaluate_shapes(pipe, tmp_path, images_per_prompt=2, seed=5, ar_steps=1, diffusion_steps=1, prompts=prompts)
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.png")} == finished  # resumed: nothing remade
    assert again.overall == summary.overall
    # image j of prompt p has seed 5 + 2p + j: the last image is what one call with that seed makes
    alone = pipe(prompts=[prompts[1]["prompt"]], seed=8, ar_steps=1, diffusion_steps=1).images[0]
    with Image.open(tmp_path / "00001" / "samples" / "00001.png") as saved:
        assert np.abs(np.asarray(saved, dtype=np.int16) - np.asarray(alone, dtype=np.int16)).max() <= 1
    assert summary.images == 4 and [task.tag for task in summary.tasks] == ["single_object", "color_attr"]
    for index, metadata in enumerate(prompts):
        folder = tmp_path / f"{index:05d}"
        assert read_prompt_metadata(folder) == metadata
        images = sample_images(folder)
        assert [path.name for path in images] == ["00000.png", "00001.png"]
        with Image.open(images[0]) as image:
            assert image.size == (64, 64)
    assert len(read_results(tmp_path / "results.jsonl")) == 4


# ----------------------------------------------------------------------------------------------------
# Prompt files of your own
# ----------------------------------------------------------------------------------------------------

# the README's compound prompt, without the captions' "a photo of"
COMPOUND = position("circle", "left of", "square", subject_colour="red", target_colour="blue", subject_count=2) | {
    "prompt": "two red circles left of a blue square"
}


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_prompt_file_is_read_as_written(tmp_path):
    lines = [json.dumps(COMPOUND), "", "  ", json.dumps(colors("circle", "red"))]
    path = _write_lines(tmp_path / "prompts.jsonl", lines)
    assert read_prompt_file(path) == [COMPOUND, colors("circle", "red")]
    assert list(read_prompt_file(path)[0]) == ["tag", "include", "prompt"]  # key order kept


def test_the_fixed_set_round_trips_through_a_prompt_file(tmp_path):
    path = _write_lines(tmp_path / "prompts.jsonl", [json.dumps(metadata) for metadata in evaluation_prompts()])
    assert read_prompt_file(path) == evaluation_prompts()


def test_ground_truth_of_a_compound_prompt_is_scored_correct(tmp_path):
    [metadata] = read_prompt_file(_write_lines(tmp_path / "prompts.jsonl", [json.dumps(COMPOUND)]))
    for seed in range(8):
        _, verdict = score_image(_render(metadata, seed=seed, size=DEFAULT_IMAGE_SIZE), metadata)
        assert verdict.correct, (seed, verdict.reason)
    mirrored = json.loads(_with_clause(position=["right of", 0]))
    _, verdict = score_image(_render(metadata, seed=0, size=DEFAULT_IMAGE_SIZE), mirrored)
    assert not verdict.correct  # the verdict does look at the relation


def _with_clause(**changes):
    return json.dumps({**COMPOUND, "include": [COMPOUND["include"][0], {**COMPOUND["include"][1], **changes}]})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"tag": "colors", "include": [', "not valid JSON"),
        (_with_clause(color="teal"), "include clause 1 has colour 'teal'; use a palette colour: red, orange"),
        (_with_clause(color="pink"), "has colour 'pink'"),  # a GenEval colour, but not the palette's
        (_with_clause(**{"class": "star"}), "include clause 1 has shape 'star'; use a shape the detector knows"),
        (json.dumps({**COMPOUND, "exclude": [{"class": "dog", "count": 1}]}), "exclude clause 0 has shape 'dog'"),
        (_with_clause(count=0), "needs a positive integer 'count'"),
        (_with_clause(position=["beside", 0]), "has position ['beside', 0]"),
        (json.dumps({"tag": "colors", "include": [{"class": "circle", "count": 1}]}), "'prompt' is missing"),
        ("[1, 2]", "expected a JSON object"),
    ],
    ids=["json", "colour", "geneval-colour", "shape", "exclude-shape", "count", "relation", "no-prompt", "not-object"],
)
def test_a_bad_line_is_named_with_its_number(tmp_path, line, message):
    path = _write_lines(tmp_path / "prompts.jsonl", [json.dumps(COMPOUND), "", line])
    with pytest.raises(GenEvalFileError) as caught:
        read_prompt_file(path)
    assert str(caught.value).startswith(f"{path}:3: ")
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("text", ["", "\n  \n"], ids=["empty", "blank"])
def test_a_file_without_prompts_is_refused(tmp_path, text):
    path = tmp_path / "prompts.jsonl"
    path.write_text(text)
    with pytest.raises(GenEvalFileError, match="holds no prompts"):
        read_prompt_file(path)


def test_a_missing_prompt_file_is_named(tmp_path):
    with pytest.raises(GenEvalFileError, match="nowhere.jsonl: no such file"):
        read_prompt_file(tmp_path / "nowhere.jsonl")
