"""The training loss against an independent re-computation (docs/training.md), the mask-ratio law, the initialisation
and the frozen parameters, and the float32 attention core under autocast."""

import math

import pytest
import torch

from models.network.config import SchedulerConfig
from models.network.vae import AutoencoderKL
from models.ops.linear_attn.reference import linear_attention
from models.train.init_weights import frozen_modules, new_transformer, prepare_for_training_
from models.train.objective import (
    MASK_RATIO_HIGH,
    MASK_RATIO_LOW,
    FlowTrainingSchedule,
    StepNoise,
    training_loss,
    truncated_normal,
)
from models.train.optim import parameter_groups
from models.train.throughput import forward_macs_per_image, mean_mask_ratio, training_flops_per_image
from tests.factories import randomize_, tiny_transformer_config, tiny_vae_config

DROPOUT = 0.5  # high, so a batch of four has dropped and kept conditions
REPEAT = 2


def reference_loss(transformer, moments, conditions, noise, vae_config, dropout):
    """The objective as the paper and the authors' `get_losses` state it, one token at a time with the head's per-row API."""
    config = transformer.config
    repeat, batch, tokens = noise.timestep.shape
    p, channels = config.patch_size, config.image_dim
    mean, logvar = moments.float().chunk(2, dim=1)
    x0 = mean + torch.exp(0.5 * logvar) * noise.latent
    if vae_config.shift_factor is not None:
        x0 = x0 - vae_config.shift_factor
    x0 = x0 * vae_config.scaling_factor

    dropped = [bool(u < dropout) for u in noise.dropout]
    if config.is_text_conditioned:
        null = transformer.text_embed.weight[: config.text_token_len]
        features = torch.stack([null if d else f for d, f in zip(dropped, conditions, strict=True)])
        condition = transformer.text_embed(features)
    else:
        labels = torch.tensor([config.num_classes if d else int(c) for d, c in zip(dropped, conditions, strict=True)])
        condition = transformer.condition_tokens_from_labels(labels)
    context = transformer.encode_context(condition)

    known_count = int(round((1 - noise.mask_ratio) * tokens))
    known = torch.stack([torch.argsort(row)[:known_count] for row in noise.order])
    mask = torch.ones(batch, tokens)
    for b in range(batch):
        mask[b, known[b]] = 0
    embedded = transformer.image_encoder.patch_embed(x0)
    embedded = embedded * (1 - mask[..., None]) + transformer.mask_embed.mask_token * mask[..., None]
    embedded = embedded + transformer.image_positions(x0.device, torch.float32)
    z = transformer.image_encoder(embedded, context, known)

    # token (r, c) of a p×p patch grid, values ordered (row in patch, column in patch, channel)
    grid_w = config.token_grid[1]
    x0_tokens = torch.stack([
        torch.stack([x0[b, :, (n // grid_w) * p:(n // grid_w + 1) * p, (n % grid_w) * p:(n % grid_w + 1) * p]
                     .permute(1, 2, 0).reshape(-1) for n in range(tokens)])
        for b in range(batch)
    ])
    total, weights = 0.0, 0.0
    for r in range(repeat):
        for b in range(batch):
            for n in range(tokens):
                index = min(int(torch.sigmoid(noise.timestep[r, b, n].float()) * 1000), 999)
                sigma = torch.tensor(float(1000 - index), dtype=torch.float32) / 1000
                eps = noise.noise[r, b, n]
                noisy = sigma * eps + (1 - sigma) * x0_tokens[b, n]
                velocity = transformer.image_decoder(noisy[None, None], (sigma * 1000)[None], z[b, n][None, None])
                error = ((velocity[0, 0] - (eps - x0_tokens[b, n])) ** 2).mean()
                total = total + mask[b, n] * error
                weights = weights + mask[b, n]
    assert channels * p * p == x0_tokens.shape[-1]
    return total / (weights + 1e-5)


@pytest.mark.parametrize("task", ["t2i", "c2i"])
def test_loss_equals_an_independent_recomputation(task):
    config = tiny_transformer_config(task)
    transformer = new_transformer(config, seed=0)
    randomize_(transformer, seed=1)  # a zero-initialised head would hide the head's inputs
    vae_config = tiny_vae_config(task).__class__.from_dict({**tiny_vae_config(task).to_dict(), "shift_factor": 0.3})
    with torch.device("meta"):
        vae = AutoencoderKL(vae_config)
    batch = 4
    generator = torch.Generator().manual_seed(5)
    moments = torch.randn(batch, 2 * config.image_dim, *config.latent_size, generator=generator)
    moments[:, config.image_dim:] = moments[:, config.image_dim:] * 0.5 - 2  # log-variances around -2
    if task == "t2i":
        conditions = torch.randn(batch, config.text_token_len, config.text_token_dim, generator=generator)
    else:
        conditions = torch.tensor([3, 7, 0, 12])
    noise = StepNoise.draw(config, batch, REPEAT, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
    assert 0 < (noise.dropout < DROPOUT).sum() < batch

    with torch.no_grad():
        loss = training_loss(transformer, moments, conditions, noise, scale=vae.scale,
                             schedule=FlowTrainingSchedule(SchedulerConfig()), condition_dropout=DROPOUT)
        expected = reference_loss(transformer, moments, conditions, noise, vae_config, DROPOUT)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_a_batch_split_in_two_gives_the_same_numbers_to_each_image():
    config = tiny_transformer_config("c2i")
    whole = StepNoise.draw(config, 6, REPEAT, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    part = whole.rows(2, 4)
    assert part.mask_ratio == whole.mask_ratio
    assert torch.equal(part.noise, whole.noise[:, 2:4]) and torch.equal(part.order, whole.order[2:4])
    assert part.latent.shape == (2, config.image_dim, *config.latent_size)
    assert whole.noise.shape == (REPEAT, 6, config.num_image_tokens, config.token_dim)


def test_training_timesteps_follow_the_authors_table():
    schedule = FlowTrainingSchedule(SchedulerConfig())
    normals = torch.tensor([-30.0, 0.0, 1.0, 30.0])
    drawn = schedule.index(normals)
    sigma, t = schedule.sigmas[drawn], schedule.timesteps[drawn]
    index = torch.tensor([0, 500, int(torch.sigmoid(torch.tensor(1.0)) * 1000), 999])
    torch.testing.assert_close(sigma, (1000 - index).float() / 1000)
    torch.testing.assert_close(t, sigma * 1000)


def test_mask_ratio_is_the_truncated_normal():
    assert truncated_normal(0.0, 1.0, 0.25, MASK_RATIO_LOW, MASK_RATIO_HIGH) == pytest.approx(MASK_RATIO_LOW)
    assert truncated_normal(1 - 1e-12, 1.0, 0.25, MASK_RATIO_LOW, MASK_RATIO_HIGH) == pytest.approx(MASK_RATIO_HIGH)
    # the mean of the quantile function over a fine grid of u is E[r] (the closed form used for FLOPs)
    grid = 4000
    mean = sum(truncated_normal((i + 0.5) / grid, 1.0, 0.25, MASK_RATIO_LOW, MASK_RATIO_HIGH) for i in range(grid)) / grid
    assert mean == pytest.approx(mean_mask_ratio(), abs=1e-5)
    # its density is the normal's, renormalised: P(r ≤ 0.85) = (Φ(−0.6) − Φ(−1.2)) / (Φ(0) − Φ(−1.2))
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    u = (phi(-0.6) - phi(-1.2)) / (phi(0) - phi(-1.2))
    assert truncated_normal(u, 1.0, 0.25, MASK_RATIO_LOW, MASK_RATIO_HIGH) == pytest.approx(0.85)


def test_scratch_initialisation_is_the_authors():
    config = tiny_transformer_config("c2i")
    first, second = new_transformer(config, seed=3), new_transformer(config, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True))
    assert not torch.equal(new_transformer(config, seed=4).mask_embed.bos_token, first.mask_embed.bos_token)

    head = first.image_decoder
    for name, tensor in head.state_dict().items():
        if name.startswith(("head.", "norm.proj", "patch_embed.proj.bias")) or ".norm1.proj" in name:
            assert not tensor.any(), name
    noisy = torch.randn(2, 3, config.token_dim)
    assert not head(noisy, torch.tensor([500.0, 20.0]), torch.randn(2, 3, config.width)).any()  # zero velocity
    gates = [p for name, p in first.named_parameters() if name.endswith(("key_scale", "value_scale"))]
    assert gates and all(bool((gate == 1).all()) for gate in gates)
    qkv = first.image_encoder.blocks[0].attn.qkv.weight
    assert qkv.abs().max() <= 1 / math.sqrt(config.width) and qkv.std() > 0.5 / math.sqrt(3 * config.width)
    assert first.label_embed.weight.std().item() == pytest.approx(0.02, rel=0.2)


def test_frozen_parameters_and_weight_decay_groups():
    transformer = prepare_for_training_(new_transformer(tiny_transformer_config("t2i"), seed=0))
    frozen = {name for name, p in transformer.named_parameters() if not p.requires_grad}
    prefixes = ("text_embed.norm.", "video_pos_embed.", "video_encoder.patch_embed.")
    assert frozen == {name for name, _ in transformer.named_parameters() if name.startswith(prefixes)}
    assert frozen == {f"{m}.{n}" for module in frozen_modules(transformer) for m in [_name_of(transformer, module)]
                      for n, _ in module.named_parameters()}

    decayed, plain = parameter_groups(transformer, 0.02)
    names = {id(p): n for n, p in transformer.named_parameters()}
    plain_names, decayed_names = {names[id(p)] for p in plain["params"]}, {names[id(p)] for p in decayed["params"]}
    assert {"image_encoder.blocks.0.norm1.weight", "image_decoder.blocks.0.norm2.bias", "image_encoder.norm.bias"} <= plain_names
    assert {"image_encoder.blocks.0.attn.qkv.bias", "image_decoder.blocks.0.norm1.proj.weight", "mask_embed.mask_token",
            "image_encoder.blocks.3.attn.key_scale"} <= decayed_names
    assert not (plain_names | decayed_names) & frozen
    assert decayed["weight_decay"] == 0.02 and plain["weight_decay"] == 0.0


def _name_of(root: torch.nn.Module, module: torch.nn.Module) -> str:
    return next(name for name, candidate in root.named_modules() if candidate is module)


def test_linear_attention_core_stays_float32_under_autocast():
    generator = torch.Generator().manual_seed(0)
    q, k = torch.rand(1, 2, 8, 4, generator=generator), torch.rand(1, 2, 8, 4, generator=generator)
    v = torch.randn(1, 2, 8, 4, generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear_attention(q, k, v)
    assert out.dtype == torch.float32
    assert torch.equal(out, linear_attention(q, k, v))


def test_training_flops_grow_by_the_head_per_loss_repeat():
    config = tiny_transformer_config("t2i")
    width, head, token_dim = config.width, config.head_arch.width, config.token_dim
    per_token = (token_dim * head + config.head_arch.depth * 5 * head * head + 2 * head * head + head * token_dim
                 + width * head + head * head  # condition_proj
                 + 256 * head + head * head)  # timestep_proj of the token's own t
    extra = forward_macs_per_image(config, 5).macs - forward_macs_per_image(config, 4).macs
    assert extra == config.num_image_tokens * per_token
    assert training_flops_per_image(config, 4) == 3 * 2 * forward_macs_per_image(config, 4).macs
