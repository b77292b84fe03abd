"""Where a fresh process's first image goes, beside its second (docs/performance.md, "Time to the first image").

Run it once per process, as a user's `lina generate` runs: it times the imports, `load_pipeline` (the text encoder
streamed, as `lina generate` loads it), then two identical generations of one image, each split into the text
encoding, every AR step (the device synchronised after each, so each step's time is its own) and the VAE decode.
What the first call costs beyond the second is the one-time warm-up: Triton kernels loaded or compiled, cuBLAS
and cuDNN set up, and a CUDA graph of the diffusion-head loop captured for each new number of tokens per step.

    python -m benchmarks.random_pipeline lina-t2i-1024 /tmp/t2i-1024
    python -m benchmarks.first_image /tmp/t2i-1024 --json graphs.json             # Triton's cache cold, then warm
    python -m benchmarks.first_image /tmp/t2i-1024 --eager-head --json eager.json  # the head without CUDA graphs
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from models import load_pipeline  # noqa: E402
from models.sampling.sampler import ar_schedule  # noqa: E402

IMPORTED = time.perf_counter()
PROMPT = "a cat on a sofa"


def synchronised_time(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def one_generation(pipe, seed: int) -> dict:
    """Seconds of one image's text encoding (prompt and empty negative, as the pipeline encodes them), sampling
    (its AR steps one by one; the first holds the pipeline's own text encoding) and decode."""
    clock = partial(synchronised_time, pipe.device)
    requests = pipe.build_requests(PROMPT, None, seed=seed, num_images_per_prompt=1, negative_prompt=None)
    start = clock()
    with torch.inference_mode():
        for prompt in (PROMPT, ""):
            pipe.text_encoder.encode([prompt], pipe.config.text_token_len)
    text = clock() - start
    stamps = [clock()]
    latents = pipe.sample_latents(requests, progress=lambda done, total: stamps.append(clock()))
    sample = clock() - stamps[0]
    start = clock()
    pipe.decode(latents)
    return {"text": text, "sample": sample, "steps": [b - a for a, b in zip(stamps, stamps[1:])],
            "decode": clock() - start, "head_graphs": None if pipe.head_graphs is None else len(pipe.head_graphs)}


def warm_up_by_step_kind(first: list[float], second: list[float], counts: list[int]) -> dict:
    """The first call's extra seconds on AR steps whose token count is new (a head graph is captured there) and on
    steps that repeat an earlier count."""
    seen, extra = set(), {"new_token_count": 0.0, "repeated_token_count": 0.0}
    for a, b, count in zip(first, second, counts):
        extra["repeated_token_count" if count in seen else "new_token_count"] += a - b
        seen.add(count)
    return extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a text-to-image pipeline folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--eager-head", action="store_true", help="run the diffusion-head loop without CUDA graphs")
    parser.add_argument("--json", type=Path, help="write the record here")
    args = parser.parse_args()

    device = torch.device(args.device)
    start = synchronised_time(device)
    pipe = load_pipeline(args.folder, device=device, offload_text_encoder=device.type == "cuda")
    load = synchronised_time(device) - start
    if args.eager_head:
        pipe.head_graphs = None
    first, second = one_generation(pipe, seed=0), one_generation(pipe, seed=0)
    settings = pipe.default_settings()
    counts = ar_schedule(pipe.config.num_image_tokens, settings.ar_steps)
    record = {
        "imports": IMPORTED - STARTED, "load": load, "first": first, "second": second,
        "warm_up": warm_up_by_step_kind(first["steps"], second["steps"], counts),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "torch": torch.__version__,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(record))
    parts = " ".join(f"{key} {first[key]:.2f}/{second[key]:.2f} s" for key in ("text", "sample", "decode"))
    print(f"imports {record['imports']:.2f} s, load {load:.2f} s; first/second: {parts}; head graphs "
          f"{first['head_graphs']}; warm-up on new/repeated token counts {record['warm_up']['new_token_count']:.2f}/"
          f"{record['warm_up']['repeated_token_count']:.2f} s")


if __name__ == "__main__":
    main()
