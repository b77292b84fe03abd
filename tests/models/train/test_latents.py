"""Caches of VAE moments and text features: what they hold, their keys, and the feature matrices they rebuild."""

import json

import numpy as np
import torch

from models.network.embeddings import TextEmbed
from models.network.text_encoder import PhiTextEncoder
from models.network.vae import AutoencoderKL
from models.train.data import ShapesSource, open_source, to_unit_range
from models.train.latents import (
    TextFeatures,
    build_latent_cache,
    build_text_features,
    latent_cache_path,
    load_latent_cache,
    load_text_features,
    text_cache_path,
)
from tests.models.train.conftest import IMAGE_SIZE


def test_latent_cache_holds_the_vae_moments_and_conditions(tiny_parts, tmp_path):
    source = ShapesSource(IMAGE_SIZE, 6, "t2i")
    path = latent_cache_path(tmp_path, source, tiny_parts / "vae")
    assert path != latent_cache_path(tmp_path, ShapesSource(IMAGE_SIZE, 7, "t2i"), tiny_parts / "vae")
    vae = AutoencoderKL.from_pretrained(tiny_parts / "vae")
    built = build_latent_cache(path, source, vae, IMAGE_SIZE, batch_size=4)
    cache = load_latent_cache(path)
    assert torch.equal(cache.moments, built.moments) and cache.captions == built.captions

    images = torch.stack([torch.from_numpy(np.array(source.example(i).image)).permute(2, 0, 1)
                          for i in range(6)])
    with torch.no_grad():
        mean, logvar = vae.encode(to_unit_range(images))
    torch.testing.assert_close(cache.moments.float(), torch.cat([mean, logvar], 1).half().float())
    captions = [source.example(i).caption for i in range(6)]
    assert [cache.captions[i] for i in cache.caption_ids] == captions
    assert len(set(captions)) == len(cache.captions)
    assert json.loads(path.with_suffix(".json").read_text())["data"] == source.spec()


def test_text_features_rebuild_the_inference_feature_matrix(tiny_parts, tmp_path):
    encoder = PhiTextEncoder.from_pretrained(tiny_parts / "text_encoder", tiny_parts / "tokenizer")
    captions = ["a photo of a red circle", "a photo of two blue squares left of a triangle", ""]
    rows = 6  # shorter than the second caption: truncated like the pipeline
    path = text_cache_path(tmp_path, captions, tiny_parts / "text_encoder", tiny_parts / "tokenizer", rows)
    build_text_features(path, captions, encoder, rows)
    features = load_text_features(path)
    embed = TextEmbed(encoder.hidden_size, 16, rows)
    torch.nn.init.normal_(embed.weight, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([1, 0, 2, 1])
    got = features.batch(ids, embed.weight[:rows])
    expected = embed.build_features([encoder.encode([captions[i]], rows)[0].half().float() for i in ids])
    torch.testing.assert_close(got, expected)
    assert got.shape == (4, rows, encoder.hidden_size)


def test_no_rows_at_all_gives_null_rows():
    features = TextFeatures(torch.zeros(0, 3, dtype=torch.float16), torch.tensor([0, 0]))
    null = torch.randn(4, 3)
    assert torch.equal(features.batch(torch.tensor([0, 0]), null), null.expand(2, -1, -1))


def test_class_folders_and_captions_files(tmp_path):
    from PIL import Image

    for name, colour in (("cats", (200, 0, 0)), ("dogs", (0, 0, 200))):
        (tmp_path / "classes" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 30), colour).save(tmp_path / "classes" / name / f"{i}.png")
    source = open_source(str(tmp_path / "classes"), task="c2i", size=16, dataset_size=1)
    assert source.num_classes == 2 and len(source) == 4
    example = source.example(3)
    assert example.class_id == 1 and example.image.size == (16, 16)

    (tmp_path / "captioned").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "captioned" / "a.png")
    (tmp_path / "captioned" / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "a black square"}\n')
    captions = open_source(str(tmp_path / "captioned"), task="t2i", size=16, dataset_size=1)
    assert captions.example(0).caption == "a black square" and captions.captions() == ["a black square"]
