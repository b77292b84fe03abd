"""Files of the profile commands: JSON for any records, and for `lina profile attention` CSV rows and a plot.

Every file is written atomically (a temporary file, then a rename).
"""

import csv
import io
import json
from pathlib import Path
from typing import Any

from models.files import write_atomic
from models.perf.attention_profile import ATTENTIONS, TIMED_VARIANTS, scope_macs

CSV_COLUMNS = (
    "task", "resolution", "seq_len", "dim", "heads", "batch", "attention", "dtype",
    "core_macs", "module_macs", "module_flops", "module_measured_flops", "block_macs", "ar_step_macs",
    "latency_ms", "latency_p10_ms", "latency_p90_ms", "peak_mem_mb",
)


def csv_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration and timed variant; MAC columns are MACs (fvcore), `*_flops` are 2 × MACs."""
    rows = []
    for record in records:
        for key in ("linear", "softmax", *(v.key for v in TIMED_VARIANTS if v.key not in ("linear", "softmax"))):
            if key not in record:
                continue
            counts = record["softmax" if key == "softmax" else "linear"]
            timed = record[key]
            rows.append({
                **{name: record[name] for name in ("task", "resolution", "seq_len", "dim", "heads", "batch")},
                "attention": key,
                "dtype": timed.get("dtype"),
                "core_macs": counts["core"]["macs"],
                "module_macs": counts["macs"],
                "module_flops": counts["flops"],
                "module_measured_flops": counts["measured_flops"],
                "block_macs": counts["block"]["macs"],
                "ar_step_macs": counts.get("ar_step", {}).get("macs"),
                **{name: timed.get(name) for name in ("latency_ms", "latency_p10_ms", "latency_p90_ms", "peak_mem_mb")},
            })
    return rows


def records_to_csv(records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(records))
    return buffer.getvalue()


def records_to_json(records: list[dict[str, Any]]) -> str:
    return json.dumps(records, indent=2) + "\n"


def write_json(records: list[dict[str, Any]], path: str | Path) -> None:
    """Write the records as a JSON list (atomically)."""
    write_atomic(Path(path), lambda tmp: tmp.write_text(records_to_json(records), encoding="utf-8"))


def write_csv(records: list[dict[str, Any]], path: str | Path) -> None:
    """Write `csv_rows(records)` (atomically)."""
    write_atomic(Path(path), lambda tmp: tmp.write_text(records_to_csv(records), encoding="utf-8"))


_PLOT_COLORS = {"softmax": "tab:blue", "linear": "tab:orange", "linear_fp32": "tab:red", "linear_fused": "tab:green"}


def save_plot(records: list[dict[str, Any]], path: str | Path) -> None:
    """A PNG for a slide: module and core GMACs (and, when measured, latency) against size, linear vs softmax.

    The x axis is the resolution when every record has one (ticks also give N), else the sequence length N.
    """
    from matplotlib.figure import Figure  # optional heavy dependency, only needed here

    by_resolution = all(record["resolution"] is not None for record in records)
    xs = [record["resolution"] if by_resolution else record["seq_len"] for record in records]
    ticks = [f"{r['resolution']}\nN={r['seq_len']}" if by_resolution else str(r["seq_len"]) for r in records]
    timed = _timed_keys(records)
    fig = Figure(figsize=(11 if timed else 6, 4.4), layout="constrained")
    axes = fig.subplots(1, 2 if timed else 1, squeeze=False)[0]
    for key in ATTENTIONS:
        color = _PLOT_COLORS[key]
        for scope, style in (("module", "o-"), ("core", "o:")):
            giga = [scope_macs(record, key, scope) / 1e9 for record in records]
            axes[0].plot(xs, giga, style, color=color, label=f"{key} {scope}")
    axes[0].set_ylabel("GMACs (fvcore multiply-adds; FLOPs = 2×)")
    axes[0].set_title(f"Attention cost, D={records[0]['dim']}, H={records[0]['heads']}, B={records[0]['batch']}")
    for key, label in timed:
        points = [(x, r[key]["latency_ms"]) for x, r in zip(xs, records) if "latency_ms" in r.get(key, {})]
        axes[1].plot(*zip(*points), "s-", color=_PLOT_COLORS.get(key), label=label)
    if timed:
        timing = records[0]["timing"]
        where = records[0]["environment"].get("gpu", timing["device"])
        axes[1].set_ylabel("latency per module call (ms, median)")
        axes[1].set_title(f"Latency on {where}, {timing['dtype']}")
    for axis in axes:
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xticks(xs, ticks)
        axis.minorticks_off()
        axis.set_xlabel("resolution (px)" if by_resolution else "sequence length N")
        axis.grid(True, which="major", alpha=0.3)
        axis.legend(fontsize=8)
    write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=150))


def _timed_keys(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(record key, label) of every variant with a measured latency."""
    keys = []
    for variant in TIMED_VARIANTS:
        if any("latency_ms" in record.get(variant.key, {}) for record in records):
            keys.append((variant.key, variant.label))
    return keys
