"""`lina eval shapes` through the real app: --score-only on ground-truth renders, JSON output, flag checks,
--prompts with a tiny model."""

import json
import shutil

import pytest

from models.data.shapes_prompts import evaluation_prompts, position
from models.eval.geneval.layout import prompt_folders, read_prompt_metadata, sample_images
from models.eval.shapes.benchmark import write_ground_truth
from models.runs.metadata import METADATA_KEY, read_png_text
from tests.cli.conftest import FAST

TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
# the README's compound prompt, without the captions' "a photo of"
COMPOUND = position("circle", "left of", "square", subject_colour="red", target_colour="blue", subject_count=2) | {
    "prompt": "two red circles left of a blue square"
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The prompt set drawn by the renderer, one image per prompt (a perfect model's output)."""
    folder = tmp_path_factory.mktemp("shapes") / "truth"
    write_ground_truth(folder, size=64, images_per_prompt=1)
    return folder


@pytest.fixture
def truth(rendered, tmp_path):
    """A private copy, since scoring writes results.jsonl into the folder."""
    return shutil.copytree(rendered, tmp_path / "truth")


def test_score_only_prints_the_table(lina, truth):
    result = lina("eval", "shapes", "--score-only", truth)
    assert result.exit_code == 0, result.output
    for text in (*TASKS, "overall (mean of 6 tasks)", "1.00000", f"{len(evaluation_prompts())} images"):
        assert text in result.stdout
    lines = (truth / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(evaluation_prompts()) and all(json.loads(line)["correct"] for line in lines)


def test_score_only_json(lina, truth, tmp_path):
    result = lina("eval", "shapes", "--score-only", truth, "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["overall"] == 1.0 and data["tasks"] == dict.fromkeys(TASKS, 1.0)
    assert data["images"] == len(evaluation_prompts()) and data["results"] == str(truth / "results.jsonl")
    result = lina("eval", "shapes", "--score-only", truth, "--json", tmp_path / "score.json")
    assert result.exit_code == 0 and "overall" in result.stdout
    assert json.loads((tmp_path / "score.json").read_text())["overall"] == 1.0


def test_a_wrong_image_is_counted(lina, truth):
    # the first single_object prompt asks for a circle; give it the image of another prompt's square
    square = next(i for i, m in enumerate(evaluation_prompts()) if m["prompt"] == "a photo of a square")
    shutil.copy(truth / f"{square:05d}" / "samples" / "00000.png", truth / "00000" / "samples" / "00000.png")
    result = lina("eval", "shapes", "--score-only", truth, "--json", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tasks"]["single_object"] == pytest.approx(11 / 12)
    first = json.loads((truth / "results.jsonl").read_text().splitlines()[0])
    assert (first["correct"], first["reason"]) == (False, "expected circle>=1, found 0")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--score-only", "x", "-m", "lina-shapes"], "drop --model"),
        (["--score-only", "x", "-o", "y"], "drop --output"),
        (["--seed", "1"], "which model?"),
    ],
)
def test_flags_that_do_not_fit(lina, args, message):
    result = lina("eval", "shapes", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_bare_command_prints_help(lina):
    result = lina("eval", "shapes")
    assert "--score-only" in result.output and "lina eval shapes -m lina-shapes" in result.output
    # shapes models are small: this command's batch default is its own, not the shared setting's 1
    assert "[default: 16]" in " ".join(result.output.replace("│", " ").split())


def test_missing_folder_is_one_line(lina, tmp_path):
    result = lina("eval", "shapes", "--score-only", tmp_path / "nowhere")
    assert result.exit_code == 1
    assert "nowhere: no such folder" in result.output


def test_an_output_folder_of_another_prompt_set_is_refused(lina, truth):
    other = json.loads((truth / "00001" / "metadata.jsonl").read_text())
    (truth / "00000" / "metadata.jsonl").write_text(json.dumps(other))  # folder 0 now holds another prompt
    result = lina("eval", "shapes", "-m", "lina-shapes", "-o", truth)
    assert result.exit_code == 1
    assert "holds prompt folders of another prompt set" in result.output and "--score-only" in result.output


def test_class_conditional_model_is_refused(lina, tiny_c2i_folder, tmp_path):
    result = lina("eval", "shapes", "-m", tiny_c2i_folder, "-o", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 1
    assert "is a c2i model" in result.output
    assert not [path for path in (tmp_path / "out").rglob("*") if path.is_file()]  # no metadata, no images


# ----------------------------------------------------------------------------------------------------
# --prompts FILE
# ----------------------------------------------------------------------------------------------------


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "my-prompts.jsonl"
    path.write_text(json.dumps(COMPOUND) + "\n\n")  # a trailing blank line is allowed
    return path


def test_own_prompts_one_prompt_many_seeds(lina, tiny_t2i_folder, prompts_file, tmp_path):
    out = tmp_path / "out"
    result = lina("eval", "shapes", "-m", tiny_t2i_folder, "--prompts", prompts_file, "-n", "3", "-o", out, *FAST,
                  "--json", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 3
    [(index, folder)] = prompt_folders(out)
    assert index == 0 and read_prompt_metadata(folder) == COMPOUND
    assert [path.name for path in sample_images(folder)] == ["00000.png", "00001.png", "00002.png"]
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    assert all(line["prompt"] == COMPOUND["prompt"] and json.loads(line["metadata"]) == COMPOUND for line in lines)


def test_the_sampler_options_reach_the_images(lina, tiny_t2i_folder, prompts_file, tmp_path):
    out = tmp_path / "out"
    result = lina("eval", "shapes", "-m", tiny_t2i_folder, "--prompts", prompts_file, "-n", "1", "-o", out, *FAST,
                  "--cfg", "3", "--cfg-min", "1.5", "--json", "-")
    assert result.exit_code == 0, result.output
    [(_, folder)] = prompt_folders(out)
    [image] = sample_images(folder)
    record = json.loads(read_png_text(image)[METADATA_KEY])
    assert (record["ar_steps"], record["diffusion_steps"], record["cfg"], record["cfg_min"]) == (4, 3, 3.0, 1.5)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"tag": "colors", "include": [', "not valid JSON"),
        (json.dumps(COMPOUND).replace('"blue"', '"teal"'), "include clause 0 has colour 'teal'"),
        (json.dumps(COMPOUND).replace('"circle"', '"star"'), "include clause 1 has shape 'star'"),
    ],
    ids=["json", "colour", "shape"],
)
def test_a_bad_prompts_line_is_one_line_with_its_number(lina, tmp_path, line, message):
    path = tmp_path / "my-prompts.jsonl"
    path.write_text(json.dumps(COMPOUND) + "\n" + line + "\n")
    # read before the model loads, so the alias is never resolved
    result = lina("eval", "shapes", "-m", "lina-shapes", "--prompts", path, "-o", tmp_path / "out")
    assert result.exit_code == 1
    [error] = [text for text in result.output.splitlines() if text.startswith("error:")]
    assert error.startswith(f"error: {path}:2: ") and message in error
    assert not (tmp_path / "out").exists()


def test_prompts_with_score_only_is_refused(lina, prompts_file):
    result = lina("eval", "shapes", "--score-only", "x", "--prompts", prompts_file)
    assert result.exit_code == 2
    assert "drop --prompts" in result.output
