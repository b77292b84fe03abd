"""Linear and softmax attention against independent float64 formulations written here (docs/architecture.md, "Blocks and linear attention")."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.network.attention import LinearAttention, SoftmaxAttention, linear_attention
from tests.numerics import relative_rms

EPS = 1e-6  # φ(x) = ReLU(x) + 1e-6 and the normaliser's 1e-6 (docs/architecture.md, "Blocks and linear attention")


# ----------------------------------------------------------------------------------------------------
# Independent references (float64, quadratic form: explicit sums over key positions j)
# ----------------------------------------------------------------------------------------------------


def reference_linear_core(q, k, v, key_gate=None, value_gate=None):
    """o_i = Σ_j (q_i·k_j) v_j / N ÷ (q_i·Σ_j k_j / N + ε); q, k already φ-mapped; all [B, H, N, d]; gates [H, N]."""
    if key_gate is not None:
        k = k * key_gate[None, :, :, None]
        v = v * value_gate[None, :, :, None]
    n = q.shape[-2]
    scores = torch.einsum("bhid,bhjd->bhij", q, k)  # un-normalised kernel similarities
    numerator = torch.einsum("bhij,bhje->bhie", scores, v) / n
    denominator = scores.sum(dim=-1, keepdim=True) / n + EPS
    return numerator / denominator


def reference_depthwise_conv(image, weight, bias):
    """5×5 depthwise cross-correlation with zero padding 2, as 25 shifted, per-channel-weighted copies.

    image [B, h, w, D] (channels last), weight [D, 1, 5, 5], bias [D] → [B, h, w, D].
    """
    _, rows, cols, _ = image.shape
    size = weight.shape[-1]
    half = size // 2
    padded = torch.zeros(image.shape[0], rows + 2 * half, cols + 2 * half, image.shape[-1], dtype=image.dtype)
    padded[:, half : half + rows, half : half + cols] = image
    out = bias.expand_as(image).clone()
    for dy in range(size):
        for dx in range(size):
            out += padded[:, dy : dy + rows, dx : dx + cols] * weight[:, 0, dy, dx]
    return out


def reference_linear_attention_module(module: LinearAttention, x: torch.Tensor) -> torch.Tensor:
    """Full LinearAttention forward in float64 from the module's weights; x [B, N, D] → [B, N, D]."""
    p = {name: t.detach().double() for name, t in module.state_dict().items()}
    x = x.double()
    batch, seq_len, dim = x.shape
    heads, head_dim = module.num_heads, dim // module.num_heads
    qkv = x @ p["qkv.weight"].T + p["qkv.bias"]  # [q (D) | k (D) | v (D)], head h owns channels h·d..h·d+d−1

    def split_heads(t):  # [B, N, D] → [B, H, N, d]
        return torch.stack([t[..., h * head_dim : (h + 1) * head_dim] for h in range(heads)], dim=1)

    q = split_heads(F.relu(qkv[..., :dim]) + EPS)
    k = split_heads(F.relu(qkv[..., dim : 2 * dim]) + EPS)
    v = split_heads(qkv[..., 2 * dim :])
    gates = (p["key_scale"][0, :, :, 0], p["value_scale"][0, :, :, 0]) if "key_scale" in p else (None, None)
    o = reference_linear_core(q, k, v, *gates)
    out = torch.cat([o[:, h] for h in range(heads)], dim=-1)  # heads back to channel blocks, [B, N, D]
    if "dw_conv.weight" in p:
        rows, cols = module.token_grid
        prefix = seq_len - rows * cols
        image = x[:, prefix:].reshape(batch, rows, cols, dim)
        conv = reference_depthwise_conv(image, p["dw_conv.weight"], p["dw_conv.bias"]).reshape(batch, rows * cols, dim)
        out = out + torch.cat([torch.zeros(batch, prefix, dim, dtype=out.dtype), conv], dim=1)
    return out @ p["proj.weight"].T + p["proj.bias"]


def reference_softmax_attention_module(module: SoftmaxAttention, x: torch.Tensor) -> torch.Tensor:
    p = {name: t.detach().double() for name, t in module.state_dict().items()}
    x = x.double()
    dim = x.shape[-1]
    heads, head_dim = module.num_heads, dim // module.num_heads
    qkv = x @ p["qkv.weight"].T + p["qkv.bias"]
    outs = []
    for h in range(heads):
        q, k, v = (qkv[..., part * dim + h * head_dim : part * dim + (h + 1) * head_dim] for part in range(3))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
        outs.append(weights @ v)
    return torch.cat(outs, dim=-1) @ p["proj.weight"].T + p["proj.bias"]


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Redraw every parameter (gates included) so that no unit or zero init hides a bug; gates are non-unit, > 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("_scale"):
                param.copy_(torch.rand(param.shape, generator=generator) * 1.5 + 0.25)
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


# ----------------------------------------------------------------------------------------------------
# The functional core
# ----------------------------------------------------------------------------------------------------

CORE_CASES = [(1, 1, 1, 4), (2, 17, 3, 4), (2, 64, 2, 8), (3, 33, 4, 5)]  # (B, N, H, d)
CORE_IDS = [f"B{b}-N{n}-H{h}-d{d}" for b, n, h, d in CORE_CASES]


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
@pytest.mark.parametrize("batch,seq,heads,head_dim", CORE_CASES, ids=CORE_IDS)
def test_linear_attention_core_float64(batch, seq, heads, head_dim, gated, assert_close):
    generator = torch.Generator().manual_seed(seq)
    shape = (batch, heads, seq, head_dim)
    q = F.relu(torch.randn(shape, generator=generator, dtype=torch.float64)) + EPS
    k = F.relu(torch.randn(shape, generator=generator, dtype=torch.float64)) + EPS
    v = torch.randn(shape, generator=generator, dtype=torch.float64)
    gates = (None, None)
    if gated:
        gates = tuple(torch.rand(1, heads, seq, 1, generator=generator, dtype=torch.float64) + 0.5 for _ in "kv")
    actual = linear_attention(q, k, v, *gates)
    expected = reference_linear_core(q, k, v, *(g[0, :, :, 0] if g is not None else None for g in gates))
    assert_close(actual, expected, torch.float64)


def test_linear_attention_epsilon_sits_inside_the_mean():
    """With tiny features the ε of q·mean(k) + ε dominates: checks ε is added after the 1/N, not after the sum."""
    generator = torch.Generator().manual_seed(0)
    shape = (1, 2, 9, 4)
    q, k = (torch.rand(shape, generator=generator, dtype=torch.float64) * 1e-3 for _ in "qk")
    v = torch.randn(shape, generator=generator, dtype=torch.float64)
    actual = linear_attention(q, k, v)
    torch.testing.assert_close(actual, reference_linear_core(q, k, v), rtol=1e-12, atol=0)
    # the same inputs with ε added to the un-normalised sum differ clearly
    wrong = torch.einsum("bhid,bhjd,bhje->bhie", q, k, v) / (torch.einsum("bhid,bhjd->bhi", q, k)[..., None] + EPS)
    assert (actual - wrong).abs().max() > 1e-3 * actual.abs().max()


# ----------------------------------------------------------------------------------------------------
# The module, encoder mode and decoder mode
# ----------------------------------------------------------------------------------------------------

ENCODER_CASES = [(1, 1, 1, 8), (2, 17, 3, 12), (2, 40, 2, 16)]  # (B, N, H, D)
ENCODER_IDS = [f"B{b}-N{n}-H{h}-D{d}" for b, n, h, d in ENCODER_CASES]


@pytest.mark.parametrize("batch,seq,heads,dim", ENCODER_CASES, ids=ENCODER_IDS)
def test_linear_attention_encoder_module(batch, seq, heads, dim, assert_close):
    module = LinearAttention(dim, heads)
    randomise(module, seed=dim)
    assert not module.is_decoder and not hasattr(module, "key_scale")
    x = torch.randn(batch, seq, dim, generator=torch.Generator().manual_seed(1))
    assert_close(module(x), reference_linear_attention_module(module, x), torch.float32)


# (B, prefix Lv, token grid, H, D): N = Lv + h·w
DECODER_CASES = [(2, 2, (3, 5), 3, 12), (1, 0, (4, 4), 2, 8), (2, 4, (1, 6), 1, 6), (1, 3, (5, 2), 4, 16)]


@pytest.mark.parametrize(
    "batch,prefix,grid,heads,dim",
    DECODER_CASES,
    ids=[f"B{b}-N{p + g[0] * g[1]}-grid{g[0]}x{g[1]}-H{h}-D{d}" for b, p, g, h, d in DECODER_CASES],
)
def test_linear_attention_decoder_module(batch, prefix, grid, heads, dim, assert_close):
    seq = prefix + grid[0] * grid[1]
    module = LinearAttention(dim, heads, gate_len=seq, token_grid=grid)
    randomise(module, seed=seq)
    assert module.is_decoder and module.key_scale.shape == (1, heads, seq, 1)
    x = torch.randn(batch, seq, dim, generator=torch.Generator().manual_seed(2))
    assert_close(module(x), reference_linear_attention_module(module, x), torch.float32)


def test_decoder_conv_branch_reaches_only_image_rows():
    prefix, grid, dim = 2, (3, 5), 12
    module = LinearAttention(dim, 3, gate_len=prefix + 15, token_grid=grid)
    randomise(module, seed=3)
    x = torch.randn(2, prefix + 15, dim, generator=torch.Generator().manual_seed(4))
    before = module(x)
    with torch.no_grad():
        module.dw_conv.weight.mul_(-2.0)
        module.dw_conv.bias.add_(1.0)
    after = module(x)
    torch.testing.assert_close(after[:, :prefix], before[:, :prefix])
    assert (after[:, prefix:] - before[:, prefix:]).abs().min() > 0


def test_decoder_gates_index_positions_of_the_full_sequence():
    """Changing the gate of one key position changes every output row (it is a key, not a query, gate)."""
    prefix, grid, dim, heads = 2, (3, 5), 12, 3
    module = LinearAttention(dim, heads, gate_len=prefix + 15, token_grid=grid)
    randomise(module, seed=5)
    x = torch.randn(1, prefix + 15, dim, generator=torch.Generator().manual_seed(6))
    before = module(x)
    with torch.no_grad():
        module.value_scale[:, :, 0] *= 3.0  # first context position, every head
    after = module(x)
    assert ((after - before).abs().amax(dim=-1) > 1e-6).all()


@pytest.mark.parametrize("decoder", [False, True], ids=["encoder", "decoder"])
def test_linear_attention_bf16_runs_core_in_float32(decoder, assert_close):
    """A bf16 module returns bf16 close to the float64 reference of the same (bf16-rounded) weights."""
    prefix, grid, dim, heads = 2, (3, 5), 12, 3
    seq = prefix + 15
    module = LinearAttention(dim, heads, gate_len=seq, token_grid=grid) if decoder else LinearAttention(dim, heads)
    randomise(module, seed=7)
    module = module.to(torch.bfloat16)
    x = torch.randn(2, seq, dim, generator=torch.Generator().manual_seed(8)).to(torch.bfloat16)
    out = module(x)
    assert out.dtype == torch.bfloat16
    assert_close(out, reference_linear_attention_module(module, x), torch.bfloat16)


@pytest.mark.parametrize("decoder", [False, True], ids=["encoder", "decoder"])
def test_linear_attention_bf16_core_is_float32(decoder):
    """Under bf16 only the core runs in high precision: the module equals bf16 layers around an exact core.

    The emulation takes the module's own bf16 qkv / conv / proj layers and the float64 reference core; a
    core run in bf16 instead is visibly further away, which keeps this test discriminating.
    """
    prefix, grid, dim, heads = 3, (7, 9), 16, 2
    seq = prefix + grid[0] * grid[1]
    module = LinearAttention(dim, heads, gate_len=seq, token_grid=grid) if decoder else LinearAttention(dim, heads)
    randomise(module, seed=9)
    module = module.to(torch.bfloat16)
    x = torch.randn(1, seq, dim, generator=torch.Generator().manual_seed(10)).to(torch.bfloat16)
    q, k, v = module.qkv(x).view(1, seq, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)  # [B, H, N, d]
    q, k = F.relu(q) + EPS, F.relu(k) + EPS

    def emulate(core: torch.Tensor) -> torch.Tensor:
        out = core.transpose(1, 2).reshape(1, seq, dim).to(torch.bfloat16)
        if decoder:
            image = x[:, prefix:].reshape(1, *grid, dim).permute(0, 3, 1, 2)
            conv = module.dw_conv(image).flatten(2).transpose(1, 2)
            out = torch.cat([out[:, :prefix], out[:, prefix:] + conv], dim=1)
        return module.proj(out)

    gates = (None, None)
    if decoder:
        gates = (module.key_scale[0, :, :, 0].double(), module.value_scale[0, :, :, 0].double())
    exact_core = emulate(reference_linear_core(q.double(), k.double(), v.double(), *gates))
    bf16_gates = (module.key_scale, module.value_scale) if decoder else (None, None)
    bf16_core = emulate(linear_attention(q, k, v, *bf16_gates))
    out = module(x)
    assert out.dtype == torch.bfloat16
    assert relative_rms(out, exact_core) <= 1e-3  # at most a few 1-ulp flips from fp32 summation order
    assert relative_rms(bf16_core, exact_core) >= 2e-3


# ----------------------------------------------------------------------------------------------------
# Softmax baseline
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch,seq,heads,dim", ENCODER_CASES, ids=ENCODER_IDS)
def test_softmax_attention_module(batch, seq, heads, dim, assert_close):
    module = SoftmaxAttention(dim, heads)
    randomise(module, seed=dim + 1)
    x = torch.randn(batch, seq, dim, generator=torch.Generator().manual_seed(3))
    assert_close(module.double()(x.double()), reference_softmax_attention_module(module, x), torch.float64)
    assert_close(module.float()(x), reference_softmax_attention_module(module, x), torch.float32)
