"""Time one diffusion-head call of a 1024-px image and count its kernels (docs/performance.md, "The diffusion head").

Builds the released `lina-t2i-1024` transformer with random weights on the fused kernels and, for the padded token
counts of a 1024-px AR step (2 CFG rows × 16, 32 or 64 tokens), runs the sampler's 25-step head loop
(`denoise_tokens`) with the AdaLN statistics per step and hoisted:
- µs per head call: the loop captured as a CUDA graph (as the sampler runs it), replayed 50 times, / 25;
- kernels per call and their GPU time: one eager loop under `torch.profiler`, / 25.

    python -m benchmarks.head_calls        # from the repository root, on a CUDA machine; --table for the top kernels

This is a script for a CUDA machine, not a test.
"""

import argparse
import time
from functools import partial

import torch
from torch.profiler import ProfilerActivity, profile

from models.network.config import released_transformer_config
from models.network.transformer import LinaTransformer
from models.sampling.cuda_graphs import HeadGraphCache
from models.sampling.sampler import denoise_tokens
from models.sampling.scheduler import FlowMatchEulerScheduler

TOKENS = (16, 32, 64)
GUIDED_ROWS = 2  # [cond ; uncond]
CFG_SCALE = 7.0
DIFFUSION_STEPS = 25
REPLAYS = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="also print the profiler's kernel table at 64 tokens")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = LinaTransformer(released_transformer_config("t2i", 1024)).to(device, torch.bfloat16)
    model.set_kernels("fused")
    head = model.image_decoder
    scheduler = FlowMatchEulerScheduler()
    sigmas, timesteps = scheduler.sigmas(DIFFUSION_STEPS)
    time_embeddings = head.time_embeddings(timesteps.to(device), GUIDED_ROWS)
    cond_dim = head.time_cond_embed.condition_proj.fc1.in_features
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, head parameters "
          f"{sum(p.numel() for p in head.parameters()):,}")
    with torch.inference_mode():
        for tokens in TOKENS:
            noise = torch.randn(1, tokens, head.head.out_features, device=device, dtype=torch.bfloat16)
            z = torch.randn(GUIDED_ROWS, tokens, cond_dim, device=device, dtype=torch.bfloat16)
            for hoist in (False, True):
                solve = partial(denoise_tokens, head, scheduler, sigmas, time_embeddings, CFG_SCALE, hoist=hoist)
                graphs = HeadGraphCache()
                graphs.run(solve, noise, z)
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(REPLAYS):
                    graphs.run(solve, noise, z)
                torch.cuda.synchronize()
                graph_us = (time.perf_counter() - start) / REPLAYS / DIFFUSION_STEPS * 1e6
                with profile(activities=[ProfilerActivity.CUDA]) as profiler:
                    solve(noise, z)
                    torch.cuda.synchronize()
                kernels = [event for event in profiler.events() if event.device_type.name == "CUDA"]
                kernel_us = sum(event.device_time for event in kernels) / DIFFUSION_STEPS
                statistics = "hoisted " if hoist else "per step"
                print(f"{tokens} tokens, AdaLN statistics {statistics}: {graph_us:.1f} µs per call from the graph; "
                      f"{len(kernels) / DIFFUSION_STEPS:.1f} kernels per call, "
                      f"{kernel_us:.1f} µs of kernel time", flush=True)
                if args.table and tokens == TOKENS[-1] and hoist:
                    table = profiler.key_averages().table(sort_by="device_time_total", row_limit=20,
                                                          max_name_column_width=60)
                    print(table)


if __name__ == "__main__":
    main()
