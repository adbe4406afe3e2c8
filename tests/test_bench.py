"""`onediff bench` runs on the tiny config and writes well-formed output (benchmarks are not tests)."""

import json

import pytest

from onediff_idc.cli import main


def test_bench_tiny_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--config", "tiny", "--repeats", "1", "--batch", "2", "--no-cache-throughput", "--out", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "| llava baseline |" in table and "| onediff pool=2 |" in table
    report = json.loads(out.read_text())
    assert report["matmul_peak_flops_per_s"] > 0 and report["batch"] == 2
    labels = [r["label"] for r in report["results"]]
    assert labels == ["onediff pool=1", "onediff pool=2", "llava baseline"]
    for result in report["results"]:
        for key in (
            "latency_b1_cache_s",
            "latency_b1_no_cache_s",
            "throughput_b2_cache_pairs_per_s",
            "train_samples_per_s",
            "train_step_flops",
            "peak_memory_bytes",
            "mfu",
            "kv_cache_speedup_b1",
        ):
            assert result[key] > 0, key
    pooled, unpooled = report["results"][1], report["results"][0]
    assert pooled["image_tokens_per_image"] < unpooled["image_tokens_per_image"]
    llava = report["results"][2]
    assert llava["throughput_vs_llava"] == 1.0 and llava["delta_tokens"] == 0


@pytest.mark.parametrize(
    "argv, message",
    [(["--config", "full"], "needs a GPU"), (["--device", "cuda", "--config", "tiny"], "no CUDA device")],
)
def test_bench_refuses_what_this_machine_cannot_run(capsys, argv, message):
    assert main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err


def test_caption_path_bench_reports_cold_start_floor_and_batch_throughput(tmp_path):
    from tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "model")
    out = tmp_path / "caption-path.json"
    assert main(["bench", "--caption-path", "--model", str(model), "--repeats", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["cold_caption_seconds"] > report["import_floor_seconds"] > 0  # a caption costs more than imports
    # the ratio of the unrounded times, so recomputing it from the rounded seconds may differ in the last digit
    ratio = report["cold_caption_seconds"] / report["import_floor_seconds"]
    assert report["cold_over_floor"] == pytest.approx(ratio, abs=0.011)
    assert report["model_class_floor_seconds"] > 0  # beside the cold start; no timing order is asserted
    for rates in (report["pairs_per_second"], report["pairs_per_second_with_change_fields"]):
        assert set(rates) == {"batch_1", "batch_8", "batch_16"} and all(rate > 0 for rate in rates.values())
