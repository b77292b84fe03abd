"""The human report of `lina profile attention`: MAC/FLOP tables, the breakdown, latency and notes."""

from typing import TYPE_CHECKING, Any

from rich.markup import escape

from lina_cli.commands.profile.common import si_format

if TYPE_CHECKING:
    from rich.console import Console

_SCOPE_LABELS = {
    "core": "attention core", "module": "attention module", "block": "transformer block", "ar_step": "one AR step"
}
_LINEAR_TERMS = {
    "qkv": "qkv", "proj": "proj", "normaliser": "q·k̄", "kv_state": "kᵀv", "q_state": "q·S", "dw_conv": "dw conv"
}
_UNCOUNTED_LABELS = {"kv_gate": "KV-gate multiplies", "softmax_exp": "softmax exps"}


def _size(record: dict[str, Any]) -> str:
    return f"{record['resolution']} px" if record["resolution"] is not None else "—"


def print_attention_report(records: list[dict[str, Any]], console: "Console") -> None:
    from models.perf.flops import FLOP_CONVENTION, MAC_CONVENTION, NOT_COUNTED

    console.print(_counts_table(records))
    console.print(_breakdown_table(records))
    for record in records:
        uncounted = {**record["linear"]["uncounted"], **record["softmax"]["uncounted"]}
        parts = "; ".join(f"{_UNCOUNTED_LABELS[key]} {si_format(value, '')}" for key, value in uncounted.items())
        console.print(f"[dim]Elementwise work outside both counts at N = {record['seq_len']}: {parts}.[/dim]")
    latency = _latency_table(records)
    if latency is not None:
        console.print(latency)
        env = records[0]["environment"]
        gpu = f", driver {env['driver']}, CUDA {env['cuda']}" if "gpu" in env else ""
        console.print(f"[dim]measured with torch {escape(env['torch'])}{escape(gpu)}[/dim]")
    for module, core in sorted({(r["crossover_seq_len"]["module"], r["crossover_seq_len"]["core"]) for r in records}):
        console.print(f"Linear attention needs fewer MACs than softmax from N = {module} (module), N = {core} (core).")
    for record in records:
        if "ar_step" in record:
            step = record["ar_step"]
            console.print(
                f"[dim]AR step at {_size(record)}: step {step['index']} of {step['num_steps']} of the default "
                f"{record['task']} schedule, {step['known']} known + {step['predicted']} predicted tokens, "
                f"{step['diffusion_steps']} head calls on {step['rows_per_image']} rows per image (CFG); "
                "the context encoder runs once per image and is not in it.[/dim]"
            )
    console.print(f"[dim]{MAC_CONVENTION}. {FLOP_CONVENTION}. {NOT_COUNTED[0].upper() + NOT_COUNTED[1:]}.[/dim]")


def _counts_table(records: list[dict[str, Any]]):
    from rich.table import Table

    from models.perf.attention_profile import SCOPES, scope_counts, scope_macs

    first = records[0]
    table = Table(title=f"Linear vs softmax attention, D = {first['dim']}, H = {first['heads']}, B = {first['batch']}")
    headers = (
        "size", "N", "scope", "linear (MACs)", "softmax (MACs)", "ratio", "linear (FLOPs)", "softmax (FLOPs)",
        "flop_counter",
    )
    for header in headers:
        table.add_column(header, justify="left" if header in ("size", "scope") else "right")
    for record in records:
        for scope in SCOPES:
            linear, softmax = scope_macs(record, "linear", scope), scope_macs(record, "softmax", scope)
            if linear is None:
                continue
            agrees = all(scope_counts(record, attention, scope)["counter_agrees"] for attention in ("linear", "softmax"))
            table.add_row(
                _size(record), str(record["seq_len"]), _SCOPE_LABELS[scope],
                si_format(linear, "MAC"), si_format(softmax, "MAC"), f"{linear / softmax:.3f}",
                si_format(2 * linear, "FLOP"), si_format(2 * softmax, "FLOP"),
                "[green]matches[/green]" if agrees else "[red]differs (see --json)[/red]",
            )
        table.add_section()
    return table


def _breakdown_table(records: list[dict[str, Any]]):
    from rich.table import Table

    table = Table(title="Attention module breakdown (MACs, fvcore convention)")
    for header in ("N", *_LINEAR_TERMS.values(), "linear core", "softmax core (QKᵀ + AV)"):
        table.add_column(header, justify="right")
    for record in records:
        linear = record["linear"]["breakdown_macs"]
        terms = (si_format(linear[key], "MAC") if key in linear else "—" for key in _LINEAR_TERMS)
        cores = (si_format(record[attention]["core"]["macs"], "MAC") for attention in ("linear", "softmax"))
        table.add_row(str(record["seq_len"]), *terms, *cores)
    return table


def _latency_table(records: list[dict[str, Any]]):
    """The timing table, or None when nothing was timed (--no-time)."""
    from rich.table import Table

    from models.perf.attention_profile import TIMED_VARIANTS

    if "timing" not in records[0]:
        return None
    timing = records[0]["timing"]
    where = escape(records[0]["environment"].get("gpu", timing["device"]))
    runs = f"median of {timing['repeats']} after {timing['warmup']} warm-up"
    table = Table(title=f"Latency per module call on {where} ({runs})")
    for header in ("N", "implementation", "dtype", "median ms", "p10–p90 ms", "peak MB"):
        table.add_column(header, justify="left" if header == "implementation" else "right")
    for record in records:
        for variant in TIMED_VARIANTS:
            row = record.get(variant.key, {})
            if "error" in row:
                table.add_row(str(record["seq_len"]), variant.label, row["dtype"], f"[red]{row['error']}[/red]", "", "")
            elif "latency_ms" in row:
                peak = f"{row['peak_mem_mb']:.1f}" if "peak_mem_mb" in row else "—"
                spread = f"{row['latency_p10_ms']:.3f}–{row['latency_p90_ms']:.3f}"
                median = f"{row['latency_ms']:.3f}"
                table.add_row(str(record["seq_len"]), variant.label, row["dtype"], median, spread, peak)
        table.add_section()
    return table
