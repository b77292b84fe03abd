"""Training FLOPs per image from closed forms, and model FLOPs utilisation (MFU) on GPUs of known peak.

The forward pass of one training image is counted with the closed forms of `models.perf.flops` (matrix
products and convolutions, FLOPs = 2 × MACs): the context encoder on P + Lv tokens, the encoder half on
Lv + n known tokens (n at the mask ratio's mean), the decoder half on Lv + L, and the head on R·L tokens
(condition and per-token time projections included). Training costs about three forward passes (the backward
pass computes gradients of both activations and weights), as in PaLM's MFU (arXiv 2204.02311, Appendix B).
MFU = achieved FLOP/s ÷ the GPU's dense bf16 peak; it is None where the peak is unknown (CPUs, fp32, other GPUs).
"""

import math

import torch

from models.network.config import TransformerConfig
from models.network.embeddings import TIMESTEP_FEATURES
from models.perf.flops import AttentionShape, MacCount, block_macs, decoder_shape, head_call_macs, head_condition_macs
from models.train.objective import MASK_RATIO_HIGH, MASK_RATIO_LOW, MASK_RATIO_MEAN, MASK_RATIO_STD

TRAINING_PASSES = 3  # forward + backward ≈ 3 forward passes
# Dense bf16 tensor-core peaks from the vendors' data sheets (SXM parts), FLOP/s.
PEAK_BF16_FLOPS = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362.05e12, "A10G": 70e12}


def _pdf(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def mean_mask_ratio() -> float:
    """E[r] of the truncated normal: μ + σ·(φ(α) − φ(β)) / (Φ(β) − Φ(α)), α, β the standardised bounds."""
    alpha = (MASK_RATIO_LOW - MASK_RATIO_MEAN) / MASK_RATIO_STD
    beta = (MASK_RATIO_HIGH - MASK_RATIO_MEAN) / MASK_RATIO_STD
    return MASK_RATIO_MEAN + MASK_RATIO_STD * (_pdf(alpha) - _pdf(beta)) / (_cdf(beta) - _cdf(alpha))


def forward_macs_per_image(config: TransformerConfig, loss_repeat: int) -> MacCount:
    """Multiply-adds of one image's training forward pass (at the mean number of known tokens)."""
    arch, attention = config.image_encoder_arch, config.attention
    width, heads, tokens, context = arch.width, arch.num_heads, config.num_image_tokens, config.num_context_tokens
    known = round(tokens * (1 - mean_mask_ratio()))
    video = config.video_encoder_arch
    count = block_macs(AttentionShape(config.condition_len + context, width, heads), attention).times(video.depth)
    if config.is_text_conditioned:
        count += MacCount({"text_proj": config.condition_len * config.text_token_dim * width})
    count += MacCount({"canvas_embed": tokens * config.token_dim * width})
    count += block_macs(AttentionShape(context + known, width, heads), attention).times(config.encoder_depth)
    count += block_macs(decoder_shape(config), attention).times(arch.depth - config.encoder_depth)
    rows = loss_repeat  # the head sees every token of each repeat
    head_width = config.head_arch.width
    count += head_condition_macs(config, rows, tokens) + head_call_macs(config, rows, tokens)
    return count + MacCount({"head": rows * tokens * (TIMESTEP_FEATURES * head_width + head_width * head_width)})


def training_flops_per_image(config: TransformerConfig, loss_repeat: int) -> float:
    return TRAINING_PASSES * forward_macs_per_image(config, loss_repeat).flops


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """The dense bf16 peak of a known CUDA GPU, or None (CPU, other dtypes, unknown GPUs)."""
    if device.type != "cuda" or dtype != torch.bfloat16:
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)


def model_flops_utilisation(images_per_second: float, flops_per_image: float, peak: float | None) -> float | None:
    return None if peak is None else images_per_second * flops_per_image / peak
