"""The decoder blocks' conv branch in plain PyTorch: the readable reference and the default op (docs/architecture.md, "Blocks and linear attention").

A k×k depthwise convolution (zero padding k//2) over the image rows of the block input, laid out as the
token grid, is added to the image rows of the attention output; prefix (context) rows get nothing. These
are the reference's very ops, so images stay bit-identical to the authors'. `fused.py` has the same signature.

Shapes: B batch, N = prefix + L rows, L = h·w image tokens, D channels.
"""

import torch
import torch.nn.functional as F


def add_depthwise_conv(
    out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, token_grid: tuple[int, int]
) -> torch.Tensor:
    """out with dwconv(image rows of x) added to its image rows.

    Args:
        out: attention output [B, N, D].
        x: block input [B, N, D]; its last h·w rows are the image tokens, row-major on the grid.
        weight, bias: the depthwise Conv2d's [D, 1, k, k] and [D], k odd.
        token_grid: (h, w).

    Returns:
        [B, N, D], a new tensor.
    """
    batch, seq_len, dim = x.shape
    grid_h, grid_w = token_grid
    prefix = seq_len - grid_h * grid_w
    image = x[:, prefix:].reshape(batch, grid_h, grid_w, dim).permute(0, 3, 1, 2)  # [B, D, h, w]
    conv = F.conv2d(image, weight, bias, padding=weight.shape[-1] // 2, groups=dim)  # [B, D, h, w]
    conv = conv.flatten(2).transpose(1, 2)  # [B, L, D]
    return torch.cat([out[:, :prefix], out[:, prefix:] + conv], dim=1)
