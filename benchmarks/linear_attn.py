"""Time LINA's attention core on one GPU: plain-PyTorch reference vs fused Triton kernel vs softmax SDPA.

Every op starts from the `qkv` Linear's output [B, N, 3·D] and ends with [B, N, D] (heads merged), so the
projections, identical for all three, are left out:
- reference: `models.ops.linear_attn.reference.linear_attention_qkv` (what the model runs today);
- fused: `models.ops.linear_attn.linear_attention_qkv`, without and with the decoder's KV gate, eagerly and
  replayed from a CUDA graph (pure GPU time, no launch overhead);
- SDPA: `F.scaled_dot_product_attention` on the same q, k, v views, as `SoftmaxAttention` does.
Each is warmed up, then timed call by call with CUDA events; the table gives medians in ms. "GB/s" is the
fused kernel's (gated, graph) effective bandwidth over its compulsory traffic: read qkv once, write the output.

    python -m benchmarks.linear_attn             # from the repository root: N = 320, 1280, 5120, 20480;
                                                 # B = 2, D = 1536, H = 16, bf16
    python -m benchmarks.linear_attn --sweep     # also the fused kernel's tile constants at N = 5120

This is a script for a CUDA machine, not a test.
"""

import argparse
import itertools
import statistics
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

import models.ops.linear_attn.fused as fused
from models.ops.linear_attn.reference import linear_attention_qkv as reference_attention
from models.perf.timing import cuda_times

BYTES_PER_GB = 1e9
# Tile constants tried by --sweep, one pass at a time (the other pass keeps its defaults).
STATE_SWEEP = {"ROWS_PER_CHUNK": (256, 512, 1024), "STATE_BLOCK_N": (32, 64), "STATE_NUM_WARPS": (4, 8)}
OUTPUT_SWEEP = {"ROWS_PER_OUTPUT_PROGRAM": (128, 256, 512), "OUTPUT_BLOCK_N": (64, 128), "OUTPUT_NUM_WARPS": (4, 8)}
SWEEP_SEQ_LEN = 5120  # the 1024px decoder's sequence (Lv + L)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2, help="B (2 = one image with its CFG twin)")
    parser.add_argument("--dim", type=int, default=1536, help="D")
    parser.add_argument("--heads", type=int, default=16, help="H")
    parser.add_argument("--seq-lens", default="320,1280,5120,20480", help="comma-separated N values")
    parser.add_argument("--dtype", choices=("bfloat16", "float16"), default="bfloat16")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--sweep", action="store_true", help="also time the fused kernel's tile constants")
    return parser.parse_args()


def median_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median over `repeats` calls, each bracketed by CUDA events, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    return statistics.median(cuda_times(fn, repeats))


def graphed(fn: Callable[[], object]) -> Callable[[], object]:
    """`fn` captured once in a CUDA graph (after a warm-up on a side stream, as torch.cuda.graphs asks)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def sdpa_attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Softmax attention from the same qkv, head split and merge included, as SoftmaxAttention.forward."""
    batch, seq_len, width = qkv.shape
    dim = width // 3
    q, k, v = qkv.view(batch, seq_len, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)  # [B, H, N, d] each
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, seq_len, dim)


def make_inputs(args: argparse.Namespace, seq_len: int, dtype: torch.dtype):
    generator = torch.Generator("cuda").manual_seed(0)
    qkv = torch.randn(args.batch, seq_len, 3 * args.dim, device="cuda", dtype=dtype, generator=generator)
    gates = [
        torch.rand(1, args.heads, seq_len, 1, device="cuda", dtype=dtype, generator=generator) + 0.5 for _ in range(2)
    ]
    return qkv, gates


def relative_rms(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).pow(2).mean().sqrt() / expected.pow(2).mean().sqrt()).item()


@torch.inference_mode()
def time_row(args: argparse.Namespace, seq_len: int, dtype: torch.dtype) -> list[str]:
    qkv, gates = make_inputs(args, seq_len, dtype)
    heads = args.heads
    error = relative_rms(fused.linear_attention_qkv(qkv, heads, *gates), reference_attention(qkv, heads, *gates))
    times = {
        "reference": median_ms(lambda: reference_attention(qkv, heads, *gates), args.warmup, args.repeats),
        "fused": median_ms(lambda: fused.linear_attention_qkv(qkv, heads), args.warmup, args.repeats),
        "fused_gate": median_ms(lambda: fused.linear_attention_qkv(qkv, heads, *gates), args.warmup, args.repeats),
        "fused_graph": median_ms(
            graphed(lambda: fused.linear_attention_qkv(qkv, heads, *gates)), args.warmup, args.repeats
        ),
        "sdpa": median_ms(lambda: sdpa_attention(qkv, heads), args.warmup, args.repeats),
    }
    traffic = (qkv.numel() + qkv.numel() // 3) * qkv.element_size()
    bandwidth = traffic / (times["fused_graph"] / 1000) / BYTES_PER_GB
    return [
        f"{seq_len}",
        *(f"{times[key]:.3f}" for key in ("reference", "fused", "fused_gate", "fused_graph", "sdpa")),
        f"{times['reference'] / times['fused_gate']:.1f}×",
        f"{times['sdpa'] / times['fused_gate']:.1f}×",
        f"{bandwidth:.0f}",
        f"{error:.1e}",
    ]


@torch.inference_mode()
def sweep(args: argparse.Namespace, dtype: torch.dtype) -> list[list[str]]:
    """Time the gated fused op at SWEEP_SEQ_LEN for every combination of one pass's constants."""
    qkv, gates = make_inputs(args, SWEEP_SEQ_LEN, dtype)
    rows = []
    for table in (STATE_SWEEP, OUTPUT_SWEEP):
        defaults = {name: getattr(fused, name) for name in table}
        for values in itertools.product(*table.values()):
            setting = dict(zip(table, values))
            for name, value in setting.items():
                setattr(fused, name, value)
            try:
                ms = median_ms(lambda: fused.linear_attention_qkv(qkv, args.heads, *gates), args.warmup, args.repeats)
                rows.append([", ".join(f"{name}={value}" for name, value in setting.items()), f"{ms:.3f}"])
            finally:
                for name, value in defaults.items():
                    setattr(fused, name, value)
    return rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> None:
    args = parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/linear_attn.py needs a CUDA GPU (the fused kernel is GPU-only)")
    dtype = getattr(torch, args.dtype)
    header = [
        "N",
        "reference ms",
        "fused ms",
        "fused+gate ms",
        "fused+gate graph ms",
        "SDPA ms",
        "fused+gate vs reference",
        "fused+gate vs SDPA",
        "GB/s",
        "rel RMS vs reference",
    ]
    rows = [time_row(args, int(n), dtype) for n in args.seq_lens.split(",")]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, B={args.batch}, D={args.dim}, "
          f"H={args.heads}, {args.dtype}, median of {args.repeats} after {args.warmup} warm-up calls\n")
    print(markdown(header, rows))
    if args.sweep:
        print(f"\nFused + gate at N = {SWEEP_SEQ_LEN} by tile constants (defaults elsewhere):\n")
        print(markdown(["setting", "ms"], sweep(args, dtype)))


if __name__ == "__main__":
    main()
