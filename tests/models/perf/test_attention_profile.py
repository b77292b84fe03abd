"""FlopCounterMode on the real modules agrees with the closed forms; records, timing and output files."""

import csv
import json

import pytest
import torch
import torch.nn.functional as F

from models.errors import InvalidConfigError
from models.perf.attention_profile import (
    ATTENTIONS,
    ProfileCase,
    cases_from_resolutions,
    cases_from_seq_lens,
    closed_form,
    count_flops,
    measured_flops,
    profile_attention,
)
from models.perf.flops import ARStep, AttentionShape, decoder_shape, module_macs
from models.perf.report_files import CSV_COLUMNS, save_plot, write_csv, write_json
from models.perf.timing import TimingSettings
from tests.factories import tiny_transformer_config
from tests.models.perf.test_flops import PAPER, PAPER_LINEAR_TOTAL, PAPER_SOFTMAX_TOTAL

# N = 80 fits the decoder layout: an 8×8 image grid plus a 4×4 context grid; d = 16.
TINY_DECODER = AttentionShape(seq_len=80, dim=64, heads=4, batch=2, image_grid=(8, 8))
TINY_ENCODER = AttentionShape(seq_len=37, dim=64, heads=4, batch=2)
CPU_FAST = TimingSettings.resolve("cpu", "fp32", warmup=0, repeats=2)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("scope", ["core", "module", "block"])
@pytest.mark.parametrize("shape", [TINY_DECODER, TINY_ENCODER], ids=["decoder", "encoder"])
def test_closed_form_equals_flop_counter_on_cpu(shape, scope, attention):
    case = ProfileCase(shape)
    assert measured_flops(case, attention, scope, "cpu") == closed_form(case, attention, scope).flops


def test_cpu_sdpa_kernel_is_not_counted_as_zero():
    q = k = v = torch.rand(2, 4, 50, 16)
    flops = count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    assert flops == 2 * (2 * 2 * 4 * 50 * 50 * 16)  # QKᵀ and AV, 2 FLOPs per multiply-add


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_paper_size_counted_on_meta_device(attention):
    case = ProfileCase(PAPER)
    total = PAPER_LINEAR_TOTAL if attention == "linear" else PAPER_SOFTMAX_TOTAL
    assert measured_flops(case, attention, "module") == 2 * total
    assert measured_flops(case, attention, "core") == closed_form(case, attention, "core").flops


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize(("task", "device"), [("t2i", "meta"), ("c2i", "cpu")])
def test_ar_step_closed_form_equals_flop_counter_on_a_tiny_model(task, device, attention):
    config = tiny_transformer_config(task)
    step = ARStep(known=5, predicted=3, diffusion_steps=4, rows_per_image=2)
    case = ProfileCase(decoder_shape(config, batch=2), task, None, config, step)
    assert measured_flops(case, attention, "ar_step", device) == closed_form(case, attention, "ar_step").flops


def test_ar_step_of_the_released_1024_model_on_meta():
    (case,) = cases_from_resolutions([1024])
    assert measured_flops(case, "linear", "ar_step") == closed_form(case, "linear", "ar_step").flops


def test_cases_from_resolutions_and_seq_lens():
    case_1024, = cases_from_resolutions([1024])
    assert (case_1024.shape.seq_len, case_1024.shape.image_grid, case_1024.ar_step.index) == (5120, (64, 64), 63)
    (custom,) = cases_from_resolutions([1024], dim=1024, heads=8)
    assert (custom.shape.dim, custom.shape.heads, custom.config, custom.ar_step) == (1024, 8, None, None)
    decoder, encoder = cases_from_seq_lens([5120, 4096])
    assert (decoder.shape.image_grid, encoder.shape.image_grid) == ((64, 64), None)
    assert (decoder.shape.dim, decoder.shape.heads) == (1536, 16)
    with pytest.raises(InvalidConfigError, match="resolution"):
        closed_form(encoder, "linear", "ar_step")


def test_timing_settings_defaults_and_checks():
    settings = TimingSettings.resolve("cpu")
    assert (settings.dtype, settings.warmup, settings.repeats) == (torch.float32, 1, 3)
    with pytest.raises(InvalidConfigError, match="repeats"):
        TimingSettings.resolve("cpu", repeats=0)


def test_records_follow_the_json_schema():
    records = profile_attention([ProfileCase(TINY_DECODER), ProfileCase(TINY_ENCODER)], CPU_FAST, count_device="cpu")
    for record, shape in zip(records, (TINY_DECODER, TINY_ENCODER)):
        assert (record["seq_len"], record["dim"], record["heads"], record["batch"]) == (shape.seq_len, 64, 4, 2)
        for attention in ATTENTIONS:
            entry = record[attention]
            assert entry["macs"] == module_macs(shape, attention).macs
            assert entry["flops"] == entry["measured_flops"] == 2 * entry["macs"]
            assert all(entry[scope]["counter_agrees"] for scope in ("core", "block")) and entry["counter_agrees"]
            assert entry["latency_p10_ms"] <= entry["latency_ms"] <= entry["latency_p90_ms"]
            assert entry["repeats"] == 2 and "peak_mem_mb" not in entry  # peak memory is a CUDA measurement
        assert "linear_fp32" not in record  # same as `linear` when timing in fp32
        assert record["environment"]["torch"] == torch.__version__
        assert record["ratio_macs"]["module"] == record["linear"]["macs"] / record["softmax"]["macs"]
        assert "ar_step" not in record and "ar_step" not in record["linear"]
        assert json.loads(json.dumps(record)) == record
    assert records[0]["layout"] == "decoder" and records[1]["layout"] == "encoder"


def test_bf16_timing_adds_the_fp32_reference_row():
    bf16 = TimingSettings.resolve("cpu", "bf16", warmup=0, repeats=1)
    (record,) = profile_attention([ProfileCase(TINY_ENCODER)], bf16, count_device="cpu")
    assert record["linear"]["dtype"] == record["softmax"]["dtype"] == "bf16"
    assert record["linear_fp32"]["dtype"] == "fp32" and record["linear_fp32"]["latency_ms"] > 0


def test_files_json_csv_and_plot(tmp_path):
    cases = [ProfileCase(AttentionShape(n, 64, 4, image_grid=(s, s))) for n, s in ((80, 8), (320, 16))]
    records = profile_attention(cases, CPU_FAST, count_device="cpu")
    write_json(records, tmp_path / "out" / "profile.json")
    write_csv(records, tmp_path / "profile.csv")
    save_plot(records, tmp_path / "profile.png")
    save_plot(profile_attention(cases), tmp_path / "counts-only.png")
    assert json.loads((tmp_path / "out" / "profile.json").read_text()) == records
    with open(tmp_path / "profile.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(row["seq_len"], row["attention"]) for row in rows] == [
        ("80", "linear"), ("80", "softmax"), ("320", "linear"), ("320", "softmax")
    ]
    assert int(rows[1]["module_macs"]) == records[0]["softmax"]["macs"] and float(rows[0]["latency_ms"]) > 0
    for name in ("profile.png", "counts-only.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counts-only.png", "out", "profile.csv", "profile.png"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_timing_records_memory_and_gpu():
    timing = TimingSettings.resolve("cuda", "bf16", warmup=1, repeats=3)
    (record,) = profile_attention([ProfileCase(TINY_DECODER)], timing)
    for key in ("softmax", "linear", "linear_fp32"):
        assert record[key]["latency_ms"] > 0 and record[key]["peak_mem_mb"] > 0
    assert record["environment"]["gpu"] == torch.cuda.get_device_name()
    assert {"driver", "cuda", "torch"} <= set(record["environment"])
