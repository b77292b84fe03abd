"""Training throughput of a LINA geometry on one GPU: images/s and MFU of `Trainer.train_step`, eager and compiled,
at several batch sizes, on synthetic cached data (docs/training.md, "Why the step is slow").

The step is the trainer's own (the objective, AdamW, gradient norm, EMA every `--ema-every` steps); only the
cache is synthetic (random moments and text rows of the demo's shapes), so the numbers need no VAE or dataset.
Each configuration warms up (compilation, autotuning, recompiles for new known-token counts), then times
`--steps` steps between CUDA synchronisations; the median of `--repeats` such windows is reported.

    python -m benchmarks.train_throughput --batch 512 1024 2048 --compile both --out results.jsonl
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from models.network.config import VAEConfig
from models.network.vae import AutoencoderKL
from models.train.latents import LatentCache, TextFeatures
from models.train.prepare import TrainingData
from models.train.recipe import PRESETS, TrainRecipe, VAERecipe, transformer_config_for
from models.train.run import Components, RunSpec
from models.train.trainer import Trainer

TEXT_DIM = 128  # the demo text encoder's width (`lina train text-encoder`)
CAPTION_ROWS = 10  # tokens of a typical shapes caption
NUM_CAPTIONS = 1000


def synthetic_data(vae_config: VAEConfig, latent_size: int, images: int, device: torch.device) -> TrainingData:
    """Random moments [N, 2C, h, w] and text rows in the cache's layout, on `device`."""
    channels = vae_config.latent_channels
    moments = torch.randn(images, 2 * channels, latent_size, latent_size, device=device).half()
    moments[:, channels:] = -4.0  # small posterior variance, as a trained VAE's
    caption_ids = torch.randint(NUM_CAPTIONS, (images,), device=device)
    latents = LatentCache(moments, torch.full((images,), -1, device=device), caption_ids, [""] * NUM_CAPTIONS)
    offsets = torch.arange(NUM_CAPTIONS + 1, device=device) * CAPTION_ROWS
    text = TextFeatures(torch.randn(NUM_CAPTIONS * CAPTION_ROWS, TEXT_DIM, device=device).half(), offsets)
    return TrainingData(latents, text, AutoencoderKL(vae_config))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(spec: RunSpec, data: TrainingData, device: torch.device, compiled: bool, args) -> dict:
    torch._dynamo.reset()  # each configuration compiles afresh, not on the graphs (and dynamic shapes) of the last
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(Path(run_dir), spec, data, device, compile_blocks=compiled)
        started = time.perf_counter()
        for _ in range(args.warmup):
            trainer.train_step()
        synchronize(device)
        warmup_seconds = time.perf_counter() - started
        windows = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step()
            synchronize(device)
            windows.append((time.perf_counter() - started) / args.steps)
    step_seconds = statistics.median(windows)
    images_per_second = spec.recipe.batch_size / step_seconds
    return {
        "attention": spec.transformer.attention, "compiled": compiled, "batch_size": spec.recipe.batch_size,
        "step_ms": round(1000 * step_seconds, 2), "images_per_second": round(images_per_second, 1),
        "mfu": None if trainer.peak is None else round(images_per_second * trainer.flops_per_image / trainer.peak, 4),
        "training_gflop_per_image": round(trainer.flops_per_image / 1e9, 3), "warmup_seconds": round(warmup_seconds, 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    parser.add_argument("--attention", nargs="+", default=["linear"], choices=["linear", "softmax"])
    parser.add_argument("--batch", nargs="+", type=int, default=[512, 1024, 2048])
    parser.add_argument("--compile", choices=["no", "yes", "both"], default="both")
    parser.add_argument("--size", type=int, default=128, help="image side in px")
    parser.add_argument("--ema-every", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=40, help="untimed steps per configuration")
    parser.add_argument("--steps", type=int, default=30, help="steps per timed window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (a quick check of the script)")
    parser.add_argument("--out", type=Path, help="append one JSON line per configuration here")
    args = parser.parse_args()

    device = torch.device(args.device)
    vae_config = VAERecipe(image_size=args.size).vae_config()
    latent_size = args.size // vae_config.stride
    compile_modes = {"no": [False], "yes": [True], "both": [False, True]}[args.compile]
    data = synthetic_data(vae_config, latent_size, max(args.batch) * 4, device)
    components = Components(Path("vae"), Path("text_encoder"), Path("tokenizer"))
    for attention in args.attention:
        config = transformer_config_for(PRESETS[args.preset], task="t2i", image_size=args.size, vae=vae_config,
                                        text_dim=TEXT_DIM, attention=attention)
        for compiled in compile_modes:
            for batch in args.batch:
                recipe = TrainRecipe(image_size=args.size, batch_size=batch, lr=1e-3, warmup=10, ema_every=args.ema_every)
                result = measure(RunSpec(recipe, config, components), data, device, compiled, args)
                line = json.dumps(result)
                print(line, flush=True)
                if args.out:
                    with args.out.open("a", encoding="utf-8") as file:
                        file.write(line + "\n")


if __name__ == "__main__":
    main()
