"""Output naming, templates, writability checks, PNG metadata round trip and the resume rule."""

import dataclasses
import os
from pathlib import Path

import pytest
from PIL import Image

from models.errors import OutputError
from models.pipeline.requests import ImageRequest
from models.runs.metadata import METADATA_KEY, PARAMETERS_KEY, ImageMetadata, read_metadata, read_png_text
from models.runs.outputs import check_writable, is_finished, latents_path, plan_outputs, prompt_slug, save_png

PROMPT_JOBS = [ImageRequest(index=0, seed=5, prompt="A cat, on a Sofa!"), ImageRequest(index=1, seed=6, prompt="A cat, on a Sofa!")]
CLASS_JOBS = [ImageRequest(index=0, seed=5, class_label=207), ImageRequest(index=1, seed=6, class_label=980)]


def metadata(**changes) -> ImageMetadata:
    base = ImageMetadata(
        model="lina-t2i-1024", repo_id="techmonsterwang/LINA-t2i-d48w1536-sdxl1024", revision="0123456789abcdef" * 2 + "01234567",
        task="t2i", index=0, seed=5, prompt="a café, 東京", negative_prompt="blurry", class_label=None, size=(64, 64),
        ar_steps=4, diffusion_steps=3, cfg=7.0, cfg_min=None, dtype="fp32", device="cpu", lina_version="0.1.0",
        torch_version="2.4.0",
    )
    return dataclasses.replace(base, **changes)


def test_slugs():
    assert prompt_slug(PROMPT_JOBS[0]) == "a-cat-on-a-sofa"
    assert prompt_slug(CLASS_JOBS[0]) == "class-207"
    assert prompt_slug(ImageRequest(index=0, seed=1, prompt="東京")) == "prompt"
    assert len(prompt_slug(ImageRequest(index=0, seed=1, prompt="word " * 100))) <= 48


def test_folder_output_uses_the_default_names():
    paths = plan_outputs("out", PROMPT_JOBS)
    assert paths == {0: Path("out/00000-5-a-cat-on-a-sofa.png"), 1: Path("out/00001-6-a-cat-on-a-sofa.png")}


def test_template_output():
    assert plan_outputs("x/{class}/{seed}.png", CLASS_JOBS) == {0: Path("x/207/5.png"), 1: Path("x/980/6.png")}
    assert plan_outputs("img-{index:03d}.png", CLASS_JOBS)[1] == Path("img-001.png")


def test_single_file_output_only_for_one_image():
    assert plan_outputs("cat.png", PROMPT_JOBS[:1]) == {0: Path("cat.png")}
    with pytest.raises(OutputError, match="names one file but this run makes 2 images"):
        plan_outputs("cat.png", PROMPT_JOBS)


@pytest.mark.parametrize(
    "output, jobs, fragment",
    [
        ("out/{prompt_slug}.png", PROMPT_JOBS, "same file name; add {index}"),
        ("out/{nope}.png", PROMPT_JOBS, "unknown placeholders ['nope']"),
        ("out/{}.png", PROMPT_JOBS, "unknown placeholders"),
        ("out/{seed", PROMPT_JOBS, "malformed"),
        ("out/{seed}", PROMPT_JOBS, "must end in .png"),
        ("out/{class}.png", PROMPT_JOBS, "uses {class}, but this run has prompts"),
        ("out/{index:q}.png", PROMPT_JOBS, "cannot be filled"),
    ],
)
def test_bad_outputs(output, jobs, fragment):
    with pytest.raises(OutputError) as caught:
        plan_outputs(output, jobs)
    assert fragment in str(caught.value)


def test_check_writable_creates_folders(tmp_path):
    check_writable({tmp_path / "a" / "b"})
    assert (tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe file is gone


def test_output_below_a_file_is_not_writable(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot write to output folder"):
        check_writable({tmp_path / "file" / "out"})


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_not_writable(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(OutputError, match="Permission denied"):
        check_writable({folder})


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs sysfs, where even root cannot create folders")
def test_folder_nobody_may_create_is_not_writable():
    with pytest.raises(OutputError, match="cannot write to output folder /sys/lina-test"):
        check_writable({Path("/sys/lina-test")})


def test_metadata_from_before_the_kernels_field_reads_as_reference():
    data = metadata().to_json()
    del data["kernels"]
    assert ImageMetadata.from_json(data).kernels == "reference"


def test_png_metadata_round_trip(tmp_path):
    record = metadata()
    path = tmp_path / "out.png"
    save_png(Image.new("RGB", (8, 8), "red"), path, record)
    assert read_metadata(path) == record
    text = read_png_text(path)
    assert text[PARAMETERS_KEY].splitlines() == [
        "a café, 東京",
        "Negative prompt: blurry",
        "Steps: 4, Diffusion steps: 3, Sampler: LINA autoregressive + flow Euler, CFG scale: 7.0, CFG min: 7.0, "
        "Seed: 5, Size: 64x64, Model: techmonsterwang/LINA-t2i-d48w1536-sdxl1024, Model hash: 0123456789, "
        "Dtype: fp32, Kernels: reference, Version: lina 0.1.0",
    ]
    assert METADATA_KEY in text
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temp file left


def test_resume_rule(tmp_path):
    record = metadata()
    path = tmp_path / "out.png"
    assert not is_finished(path, record, overwrite=False)
    save_png(Image.new("RGB", (8, 8)), path, record)
    assert is_finished(path, record, overwrite=False)
    assert is_finished(path, dataclasses.replace(record, index=3, device="cuda:0"), overwrite=False)
    assert not is_finished(path, record, overwrite=True)
    with pytest.raises(OutputError, match="exists with other settings"):
        is_finished(path, dataclasses.replace(record, seed=6), overwrite=False)
    foreign = tmp_path / "foreign.png"
    Image.new("RGB", (8, 8)).save(foreign)
    with pytest.raises(OutputError, match="is not an image of this run"):
        is_finished(foreign, record, overwrite=False)


def test_latents_path():
    assert latents_path(Path("out/00001-5-cat.png")) == Path("out/00001-5-cat.latents.safetensors")
