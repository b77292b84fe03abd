"""End-to-end pipeline tests on tiny real folders: seeds, batching invariance, loading errors."""

import json
import shutil

import numpy as np
import pytest
import torch

from models import load_pipeline
from models.errors import (
    CheckpointMismatchError,
    InvalidClassLabelError,
    InvalidDtypeError,
    InvalidPromptError,
    MissingComponentError,
    ModelNotFoundError,
    UnknownArchError,
    UnsupportedSizeError,
    WeightsNotCachedError,
)
from models.pipeline.requests import ImageRequest
from models.sampling.settings import SamplingSettings

FAST = SamplingSettings(ar_steps=4, diffusion_steps=3, cfg=3.0, cfg_min=1.0)


@pytest.fixture(scope="module")
def c2i(tiny_c2i_folder):
    return load_pipeline(tiny_c2i_folder, device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def t2i(tiny_t2i_folder):
    return load_pipeline(tiny_t2i_folder, device="cpu", dtype="fp32")


def pixels(image) -> np.ndarray:
    return np.asarray(image)


# ----------------------------------------------------------------------------------------------------
# Seeds and batching
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [FAST, SamplingSettings(4, 3, cfg=1.0), SamplingSettings(4, 3, cfg=2.0)], ids=["ramp", "no-cfg", "const-cfg"])
def test_c2i_image_in_batch_equals_image_alone(c2i, settings):
    requests = [ImageRequest(seed=11, class_label=3), ImageRequest(seed=12, class_label=7), ImageRequest(seed=13, class_label=3)]
    batched = c2i.sample_latents(requests, settings)
    for i, request in enumerate(requests):
        alone = c2i.sample_latents([request], settings)
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-5, rtol=1e-5)


def test_t2i_image_in_batch_equals_image_alone(t2i):
    requests = [
        ImageRequest(seed=1, prompt="a red cube"),
        ImageRequest(seed=2, prompt="two cats on a very long sofa in the sun", negative_prompt="blurry"),
        ImageRequest(seed=3, prompt=""),
    ]
    batched = t2i.sample_latents(requests, FAST)
    for i, request in enumerate(requests):
        torch.testing.assert_close(batched[i : i + 1], t2i.sample_latents([request], FAST), atol=1e-5, rtol=1e-5)


def test_same_seed_same_image_and_seed_offsets(c2i):
    two = c2i(class_labels=[5], seed=5, num_images_per_prompt=2, ar_steps=4, diffusion_steps=3)
    again = c2i(class_labels=[5], seed=5, num_images_per_prompt=2, ar_steps=4, diffusion_steps=3)
    second_alone = c2i(class_labels=[5], seed=6, ar_steps=4, diffusion_steps=3)
    assert two.seeds == [5, 6]
    assert all((pixels(a) == pixels(b)).all() for a, b in zip(two.images, again.images))
    assert (pixels(two.images[1]) == pixels(second_alone.images[0])).all()
    assert not (pixels(two.images[0]) == pixels(two.images[1])).all()


def test_batch_size_does_not_change_images(t2i):
    kwargs = dict(seed=3, num_images_per_prompt=2, ar_steps=3, diffusion_steps=2, cfg=2.0)
    whole = t2i(["a dog", "a boat"], **kwargs)
    chunked = t2i(["a dog", "a boat"], batch_size=1, **kwargs)
    for a, b in zip(whole.images, chunked.images):
        assert np.abs(pixels(a).astype(int) - pixels(b).astype(int)).max() <= 1


def test_guidance_changes_the_image(c2i):
    request = [ImageRequest(seed=4, class_label=2)]
    plain = c2i.sample_latents(request, SamplingSettings(4, 3, cfg=1.0))
    guided = c2i.sample_latents(request, SamplingSettings(4, 3, cfg=4.0))
    assert not torch.allclose(plain, guided)


def test_progress_reports_every_ar_step(c2i):
    seen = []
    c2i.sample_latents([ImageRequest(seed=0, class_label=1)], FAST, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i + 1, len(seen)) for i in range(len(seen))] and seen[-1][0] == seen[-1][1]


def test_returned_latents_and_image_size(c2i):
    out = c2i(class_labels=[1, 2], seed=0, ar_steps=3, diffusion_steps=2, return_latents=True)
    assert out.latents.shape == (2, 16, 4, 4)
    assert [image.size for image in out.images] == [(64, 64)] * 2
    assert c2i.default_settings().cfg_min == 1.0 and c2i.task == "c2i"


def test_softmax_pipeline_generates(tiny_c2i_softmax_folder):
    pipe = load_pipeline(tiny_c2i_softmax_folder, device="cpu")
    assert pipe.config.attention == "softmax"
    assert len(pipe(class_labels=[0], seed=0, ar_steps=2, diffusion_steps=2).images) == 1


def test_save_and_reload_gives_same_images(c2i, tmp_path):
    c2i.save_pretrained(tmp_path / "copy")
    copy = load_pipeline(tmp_path / "copy", device="cpu")
    request = [ImageRequest(seed=9, class_label=4)]
    assert torch.equal(c2i.sample_latents(request, FAST), copy.sample_latents(request, FAST))


def test_bf16_runs_on_cpu(tiny_c2i_folder):
    pipe = load_pipeline(tiny_c2i_folder, device="cpu", dtype="bf16")
    latents = pipe.sample_latents([ImageRequest(seed=0, class_label=0)], FAST)
    assert latents.dtype == torch.bfloat16 and torch.isfinite(latents.float()).all()


# ----------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------


def test_dtypes_by_torch_name_and_an_unknown_one(tiny_c2i_folder):
    assert load_pipeline(tiny_c2i_folder, device="cpu", dtype="bfloat16").dtype == torch.bfloat16
    with pytest.raises(InvalidDtypeError, match="'float64' is not one lina computes in: use auto, bf16, fp16, fp32"):
        load_pipeline(tiny_c2i_folder, device="cpu", dtype="float64")


def test_class_label_out_of_range(c2i):
    with pytest.raises(InvalidClassLabelError, match="0-999"):
        c2i(class_labels=[1000], seed=0)
    with pytest.raises(InvalidClassLabelError):
        c2i(class_labels=[-1], seed=0)


def test_wrong_condition_kind_and_empty_lists(c2i, t2i):
    with pytest.raises(InvalidPromptError, match="class labels"):
        c2i("a cat", seed=0)
    with pytest.raises(InvalidPromptError, match="prompts"):
        t2i(class_labels=[1], seed=0)
    with pytest.raises(InvalidPromptError, match="empty"):
        t2i([], seed=0)
    with pytest.raises(InvalidPromptError, match="empty"):
        c2i.sample_latents([], FAST)


def test_unsupported_size(c2i):
    c2i.check_size(64)
    with pytest.raises(UnsupportedSizeError, match="64x64"):
        c2i.check_size(128)


def test_missing_folder_and_missing_components(tmp_path, tiny_c2i_folder):
    with pytest.raises(ModelNotFoundError):
        load_pipeline(tmp_path / "nope")
    with pytest.raises(MissingComponentError, match="model_index.json"):
        load_pipeline(tmp_path)
    broken = tmp_path / "no-vae"
    shutil.copytree(tiny_c2i_folder, broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(MissingComponentError, match="vae"):
        load_pipeline(broken)


def test_t2i_without_text_encoder(tmp_path, tiny_t2i_folder):
    broken = tmp_path / "no-text"
    shutil.copytree(tiny_t2i_folder, broken)
    shutil.rmtree(broken / "tokenizer")
    with pytest.raises(MissingComponentError, match="tokenizer"):
        load_pipeline(broken)


def test_unknown_arch_in_folder(tmp_path, tiny_c2i_folder):
    broken = tmp_path / "bad-arch"
    shutil.copytree(tiny_c2i_folder, broken)
    config_path = broken / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config["arch"][1] = "vit_large"
    config_path.write_text(json.dumps(config))
    with pytest.raises(UnknownArchError, match="vit_large"):
        load_pipeline(broken)


def test_checkpoint_of_another_resolution(tmp_path, tiny_c2i_folder):
    broken = tmp_path / "other-size"
    shutil.copytree(tiny_c2i_folder, broken)
    config_path = broken / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(image_size=[128, 128], image_base_size=[8, 8], video_base_size=[1, 4, 4])
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match="key_scale"):
        load_pipeline(broken)


def test_offline_and_not_cached_names_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(WeightsNotCachedError, match="lina download lina-c2i-256"):
        load_pipeline("lina-c2i-256", offline=True)


def test_a_folder_can_carry_its_own_sampler_defaults(c2i, tmp_path):
    """`lina_sampling` in model_index.json replaces the task's paper defaults; explicit values still win."""
    import json

    from models.constants import MODEL_INDEX_NAME, SAMPLING_DEFAULTS_KEY
    from models.errors import InvalidConfigError

    own = SamplingSettings(ar_steps=8, diffusion_steps=5, cfg=3.0)
    c2i.sampling_defaults = own
    try:
        c2i.save_pretrained(tmp_path / "own")
    finally:
        c2i.sampling_defaults = None
    loaded = load_pipeline(tmp_path / "own", device="cpu", dtype="fp32")
    assert loaded.default_settings() == own
    assert loaded.sampling_settings(ar_steps=2) == SamplingSettings(ar_steps=2, diffusion_steps=5, cfg=3.0)
    assert c2i.default_settings().ar_steps == 64  # a folder without the entry keeps the paper's c2i settings

    index = json.loads((tmp_path / "own" / MODEL_INDEX_NAME).read_text())
    index[SAMPLING_DEFAULTS_KEY] = {"ar_steps": 0, "diffusion_steps": 5, "cfg": 3.0}
    (tmp_path / "own" / MODEL_INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(InvalidConfigError, match="lina_sampling"):
        load_pipeline(tmp_path / "own", device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the text encoder's GPU memory is the point")
def test_an_offloaded_text_encoder_waits_in_cpu_memory_and_changes_no_pixel(tiny_t2i_folder):
    kept = load_pipeline(tiny_t2i_folder, device="cuda", dtype="bf16")
    assert not kept.text_encoder.offload and kept.text_encoder.weights_device.type == "cuda"
    same = kept("a red cube on a table", seed=0, ar_steps=4, diffusion_steps=3).images[0]  # also warms cuBLAS up
    pipe = load_pipeline(tiny_t2i_folder, device="cuda", dtype="bf16", offload_text_encoder=True)
    assert pipe.text_encoder.offload and pipe.text_encoder.weights_device.type == "cpu"
    weights = sum(p.numel() * p.element_size() for p in pipe.text_encoder.model.parameters())
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    condition, _ = pipe._conditions([ImageRequest(seed=0, prompt="a red cube on a table")])
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() - before < weights / 4  # condition tokens only, no weights left behind
    image = pipe("a red cube on a table", seed=0, ar_steps=4, diffusion_steps=3).images[0]
    assert np.array_equal(pixels(image), pixels(same))
