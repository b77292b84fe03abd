"""The human report of `lina profile pipeline`: the phase table, throughput, memory and MFU."""

from typing import TYPE_CHECKING, Any

from rich.markup import escape

from lina_cli.commands.profile.common import si_format

if TYPE_CHECKING:
    from rich.console import Console

_PHASE_LABELS = {
    "conditioning": "conditioning",
    "context": "context encoding",
    "image_encoder": "AR loop: image encoder",
    "encoder_half": "  encoder half",
    "decoder_half": "  decoder half",
    "head": "AR loop: diffusion head",
    "vae_decode": "VAE decode",
    "other": "other (orders, set-up, Python)",
    "ar_loop": "AR loop",
    "sampling": "sampling (all but the decode)",
    "total": "total",
}
_SUMMARY_PHASES = ("ar_loop", "sampling", "total")  # below the line: sums of the rows above


def print_pipeline_report(record: dict[str, Any], console: "Console") -> None:
    console.print(_pipeline_table(record))
    per_image = record["per_image_ms"]
    per_image_text = f"{per_image / 1000:.3f} s" if per_image >= 1000 else f"{per_image:.1f} ms"
    parts = [f"{per_image_text} per image", f"{record['images_per_s']:.3g} images/s"]
    memory = record["memory_mb"]
    if memory is not None:
        parts.append(
            f"peak memory {memory['peak_allocated']:,.0f} MB allocated, {memory['peak_reserved']:,.0f} MB reserved "
            f"({memory['allocated_before_runs']:,.0f} MB before the runs)"
        )
    console.print("[bold]" + escape(" · ".join(parts)) + "[/bold]")
    achieved = record["achieved_tflops"].get("sampling")
    if achieved is not None:
        line = f"sampling at {achieved:.3g} TFLOP/s (closed-form FLOPs / median time)"
        if record["mfu"] is not None:
            line += f": MFU {100 * record['mfu']:.1f} % of {record['peak_tflops']:g} TFLOP/s"
        else:
            line += "; pass --peak-tflops for the model-FLOPs utilisation"
        console.print(escape(line))
    for note in record["notes"]:
        console.print(f"[dim]{escape(note)}[/dim]")
    env = record["environment"]
    gpu = f", driver {env['driver']}, CUDA {env['cuda']}" if "gpu" in env else ""
    console.print(f"[dim]measured with torch {escape(env['torch'])}{escape(gpu)}[/dim]")


def _pipeline_table(record: dict[str, Any]):
    from rich.table import Table

    timing, sampling = record["timing"], record["sampling"]
    where = record["environment"].get("gpu", timing["device"])
    height, width = record["image_size"]
    guidance = f"CFG {sampling['cfg']:g}" + (
        f" ramping from {sampling['cfg_min']:g}" if sampling["cfg_min"] is not None else " constant"
    )
    title = (
        f"{record['model']} ({record['task']} {height}×{width}, {record['attention']} attention, {record['weights']} "
        f"weights) on {where}, batch {record['batch_size']}, {timing['dtype']}, {timing['kernels']} kernels\n"
        f"{sampling['ar_steps']} AR steps ({sampling['ar_steps_run']} non-empty), {sampling['diffusion_steps']} "
        f"diffusion steps, {guidance}; median of {timing['repeats']} runs after {timing['warmup']} warm-up "
        f"({timing['clock']})"
    )
    table = Table(title=escape(title))
    for header in ("phase", "median ms", "p10–p90 ms", "min–max ms", "share", "ms / image", "FLOPs", "achieved"):
        table.add_column(header, justify="left" if header == "phase" else "right")
    phases, total = record["phases_ms"], record["phases_ms"]["total"]["median"]
    for name, label in _PHASE_LABELS.items():
        if name not in phases:
            continue
        if name == _SUMMARY_PHASES[0]:
            table.add_section()
        stats = phases[name]
        flops = record["flops"].get(name)
        rate = record["achieved_tflops"].get(name)
        table.add_row(
            label,
            f"{stats['median']:.2f}",
            f"{stats['p10']:.2f}–{stats['p90']:.2f}",
            f"{stats['min']:.2f}–{stats['max']:.2f}",
            f"{100 * stats['median'] / total:.1f} %",
            f"{stats['median'] / record['batch_size']:.2f}",
            si_format(flops, "FLOP") if flops else "—",
            si_format(rate * 1e12, "FLOP/s") if rate else "—",
        )
    return table
