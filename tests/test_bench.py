"""`fomm-live bench --quick` on the tiny golden model: every documented JSON field is there, with sane values.

No timing is asserted: only that the figures exist and are consistent (p50 <= p95 <= p99, positive fps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import golden_dir

from fomm_live.live.cli import main
from fomm_live.live.stats import STAGES


@pytest.fixture(scope="module")
def bench_result(tmp_path_factory) -> tuple[dict, Path]:
    folder = golden_dir("tiny")
    out = tmp_path_factory.mktemp("bench")
    cache = out / "cache"
    mp = pytest.MonkeyPatch()
    mp.setenv("FOMM_LIVE_CACHE", str(cache))
    try:
        code = main(["bench", "--quick", "--checkpoint", str(folder / "checkpoint.pth.tar"), "--config",
                     str(folder / "config.yaml"), "--device", "cpu", "--stats-json", str(out / "bench.json"), "--plot",
                     str(out / "bench.png")])
    finally:
        mp.undo()
    assert code == 0
    return json.loads((out / "bench.json").read_text()), out


def _ordered(figures: dict, keys=("p50", "p95", "p99")) -> bool:
    values = [figures[k] for k in keys]
    return all(v > 0 for v in values) and values == sorted(values)


def test_header_names_the_machine_and_versions(bench_result) -> None:
    result, _ = bench_result
    machine = result["machine"]
    for key in ("cpu", "logical_cpus", "gpu", "torch", "tensorrt", "mediapipe"):
        assert key in machine, key
    assert machine["logical_cpus"] >= 1 and machine["torch"]
    assert result["quick"] is True and result["weights"].endswith("checkpoint.pth.tar")


def test_model_figures_include_the_reference_path_and_speedups(bench_result) -> None:
    result, _ = bench_result
    paths = result["model"]["paths"]
    assert "reference" in paths and "eager-fp32" in paths
    for name, path in paths.items():
        for part in ("keypoints", "generator", "frame"):
            figures = path[part]
            assert _ordered(figures), (name, part, figures)
            assert figures["fps_p50"] > 0
        assert path["speedup_frame_p50"] > 0, name
        assert path["warmup_ms"] and all(t > 0 for t in path["warmup_ms"])
    assert paths["reference"]["speedup_frame_p50"] == pytest.approx(1.0)
    for name in ("openvino-int8", "onnxruntime-int8", "torch-int8"):  # a row, or the reason it is not there
        assert name in paths or result["model"]["skipped"].get(name), name
    assert paths["eager-fp32"]["max_abs_error_vs_reference"] < 1e-4


def test_pipeline_runs_every_backend_paced_and_unpaced(bench_result) -> None:
    result, _ = bench_result
    runs = {(run["backend"], run["mode"]): run for run in result["pipeline"]}
    assert set(runs) == {(b, m) for b in ("fomm", "landmarks") for m in ("realtime", "unpaced")}
    for key, run in runs.items():
        assert run["frames_in"] > 0 and run["frames_out"] + run["frames_dropped"] == run["frames_in"], key
        assert run["achieved_fps"] > 0
        assert _ordered(run["end_to_end_ms"]), (key, run["end_to_end_ms"])
        for stage in STAGES:
            assert stage in run["stages_ms"], (key, stage)
        for stage in ("face_tracking", "keypoints", "generator", "compose", "output"):
            assert run["stages_ms"][stage]["count"] > 0, (key, stage)
            assert run["stages_ms"][stage]["p50"] <= run["stages_ms"][stage]["p99"]


def test_plot_is_written(bench_result) -> None:
    _, out = bench_result
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
