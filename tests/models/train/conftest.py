"""Tiny real training parts for the training tests: a VAE trained for a few steps and a random text encoder, 32 px."""

import pytest

from models.train.recipe import VAERecipe

IMAGE_SIZE = 32
# Four levels (stride 8, as SDXL's VAE) of 8 channels: the smallest VAE of the t2i layout.
TINY_VAE = VAERecipe(
    image_size=IMAGE_SIZE, block_out_channels=(8, 8, 8, 8), norm_num_groups=4, steps=3, batch_size=4, log_every=1,
    stats_images=8,
)
TEXT_HIDDEN = 32
# A run short enough for two CPU cores: 4 images per step of a 16-image dataset, the tiny geometry.
TINY_RUN = {"image_size": IMAGE_SIZE, "dataset_size": 16, "steps": 6, "batch_size": 4, "lr": 3e-3, "warmup": 2,
            "ema_every": 1, "ema_decay": 0.9, "checkpoint_every": 3, "log_every": 1}


@pytest.fixture(scope="session")
def tiny_parts(tmp_path_factory):
    """A folder with vae/, text_encoder/ and tokenizer/ made by the library's own stages."""
    from models.train.text_parts import build_text_parts, save_text_parts, shapes_captions
    from models.train.vae_stage import train_vae

    folder = tmp_path_factory.mktemp("parts")
    train_vae(folder, TINY_VAE)
    save_text_parts(build_text_parts(shapes_captions(200), hidden_size=TEXT_HIDDEN, layers=1), folder)
    return folder


@pytest.fixture
def tiny_spec(tiny_parts):
    """The spec of a tiny text-to-image run on the shapes dataset (build it per test: specs are cheap)."""
    from models.train.run import plan_run

    return plan_run(dict(TINY_RUN), parts=tiny_parts, geometry="tiny")
