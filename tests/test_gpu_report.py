"""``benchmarks.gpu_report`` runs where the GPU machine runs it: the dry run on the CPU under an interpreter that
cannot import any package that machine lacks, and the section machinery that keeps a failing section from ending
the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO, golden_dir

from benchmarks import gpu_report
from benchmarks.gpu_correctness import golden_variants

# Packages the GPU machine does not have (it has torch, Triton, NumPy, PyYAML, OpenCV, ONNX Runtime for the CPU).
BLOCKED = ("mediapipe", "av", "tqdm", "pyvirtualcam", "onnx", "onnxscript", "ray", "torch_tensorrt")

# A sitecustomize that hides BLOCKED from every import finder: ``import av`` raises ModuleNotFoundError and
# ``importlib.util.find_spec("av")`` returns None, as on a machine where the package is not installed.
HIDING_SITECUSTOMIZE = textwrap.dedent(f"""
    import sys

    BLOCKED = {set(BLOCKED)!r}


    class Hide:
        def __init__(self, inner):
            self.inner = inner

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                return None
            find = getattr(self.inner, "find_spec", None)
            return find(name, path, target) if find is not None else None

        def find_distributions(self, *args, **kwargs):
            find = getattr(self.inner, "find_distributions", None)
            return find(*args, **kwargs) if find is not None else iter(())

        def invalidate_caches(self):
            if hasattr(self.inner, "invalidate_caches"):
                self.inner.invalidate_caches()


    sys.meta_path[:] = [Hide(finder) for finder in sys.meta_path]
""")


def _blocked_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDING_SITECUSTOMIZE, encoding="utf-8")
    return {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPO}"}


def test_the_blocker_hides_the_packages(tmp_path: Path) -> None:
    """The interpreter of the dry run really lacks the packages (else the dry run would prove nothing)."""
    code = ("import importlib.util, sys\n"
            f"for name in {BLOCKED!r}:\n"
            "    assert importlib.util.find_spec(name) is None, name\n"
            "    try:\n"
            "        __import__(name)\n"
            "    except ModuleNotFoundError:\n"
            "        continue\n"
            "    sys.exit(f'{name} imported')\n"
            "print('hidden')\n")
    out = subprocess.run([sys.executable, "-c", code], env=_blocked_env(tmp_path), cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "hidden" in out.stdout, out.stderr[-2000:]


def test_dry_run_on_cpu_without_the_missing_packages(tmp_path: Path) -> None:
    """``--device cpu --quick`` under that interpreter: exit 0, both files, every key of the report's schema, golden
    parity passed at fp32, and each row that needs a hidden package skipped with a reason naming it."""
    golden = golden_dir("tiny")
    out_dir = tmp_path / "out"
    # A generous budget: on a loaded 2-core test machine the default would cut the last rows short.
    cmd = [sys.executable, "-m", "benchmarks.gpu_report", "--out", str(out_dir), "--device", "cpu", "--quick",
           "--golden", str(golden), "--budget-s", "3000"]
    run = subprocess.run(cmd, env=_blocked_env(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (out_dir / "gpu_report.md").read_text(encoding="utf-8").startswith("# fomm-live GPU report")
    report = json.loads((out_dir / "gpu_report.json").read_text(encoding="utf-8"))

    for key in ("environment", "correctness", "model", "batch", "pipeline"):
        assert key in report and "error" not in report[key], (key, report.get(key))
    env = report["environment"]
    for key in ("gpu", "torch", "triton", "onnxruntime", "packages_importable"):
        assert key in env
    assert not any(env["packages_importable"][name] for name in BLOCKED)
    assert all(not found for module, found in env["module_level_imports_of_missing_packages"].items()
               if module != "torch"), env["module_level_imports_of_missing_packages"]

    correctness = report["correctness"]
    assert set(correctness) >= {"golden", "kernels", "self_checks"}
    rows = correctness["golden"]["variants"]["tiny"]
    for name in ("fp32", "reference-uncached-fp32", "torch-export-fp32"):
        assert rows[name]["passed"] is True, (name, rows[name])
    assert correctness["golden"]["passed"] is True
    assert "onnxscript" in rows["onnxruntime-fp32"]["skipped"]
    assert "torch_tensorrt" in rows["tensorrt-fp16"]["skipped"]
    assert "CUDA" in correctness["kernels"]["skipped"]
    engines = correctness["self_checks"]["engines"]
    assert engines["onnxruntime-fp32"]["verdict"] == "skipped" and "onnxscript" in engines["onnxruntime-fp32"]["detail"]
    assert engines["eager-fp32"]["verdict"] in ("passed", "no self-check data"), engines["eager-fp32"]

    model = report["model"]
    assert {"reference", "eager-fp32"} <= set(model["paths"])
    for row in model["paths"].values():
        for part in ("keypoints", "generator", "frame"):
            assert {"p50_ms", "p95_ms", "p99_ms"} <= set(row[part])
        assert "warmup_ms" in row
    assert "onnxscript" in model["skipped"]["onnxruntime-fp32"]
    assert "torch_tensorrt" in model["skipped"]["tensorrt-fp16"]

    sizes = report["batch"]["sizes"]
    assert list(sizes) == [str(n) for n in (1, 2, 4, 8, 16, 32)]
    for size, row in sizes.items():
        assert {"p50", "p95", "p99"} <= set(row["step_ms"]), (size, row)
        assert row["frames_per_second"] > 0 and "gpu_memory_mb" in row

    clips = report["pipeline"]["clips"]
    assert set(clips) == {"640x480", "1280x720"}
    for clip, runs in clips.items():
        assert {"unpaced", "paced-30fps", "paced-60fps"} <= set(runs), clip
        for label, row in runs.items():
            assert {"p50", "p95", "p99"} <= set(row["end_to_end_ms"]), (clip, label, row)
            assert {"keypoints", "generator"} <= set(row["stages_ms"]), (clip, label)
            assert row["frames_out"] > 0 and row["achieved_fps"] > 0
            assert "gpu_busy_fraction" in row and row["gpu_busy_fraction"] is None  # no GPU: null with a reason
            assert row["gpu_busy_note"]


def test_a_failing_section_is_recorded_and_the_run_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ctx: gpu_report.Context) -> dict:
        raise RuntimeError("stand-in failure of the batch section")

    def after(ctx: gpu_report.Context) -> dict:
        return {"ran": True}

    monkeypatch.setattr(gpu_report, "SECTIONS", [(("batch",), broken), (("pipeline",), after)])
    assert gpu_report.main(["--out", str(tmp_path), "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "gpu_report.json").read_text(encoding="utf-8"))
    assert "stand-in failure of the batch section" in report["batch"]["error"]
    assert report["pipeline"]["ran"] is True
    assert report["model"] == {"skipped": "not reached"}
    assert "stand-in failure of the batch section" in (tmp_path / "gpu_report.md").read_text(encoding="utf-8")


def test_sections_past_the_time_budget_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(gpu_report, "SECTIONS", [(("model",), lambda ctx: calls.append("model") or {})])
    assert gpu_report.main(["--out", str(tmp_path), "--device", "cpu", "--budget-s", "0"]) == 0
    report = json.loads((tmp_path / "gpu_report.json").read_text(encoding="utf-8"))
    assert not calls
    assert "time budget" in report["model"]["skipped"]


def test_prepare_copies_one_golden_variant(tmp_path: Path) -> None:
    target = tmp_path / ".gpu" / "golden" / "tiny"
    assert gpu_report.prepare(golden_dir("tiny"), target) == 0
    assert sorted(p.name for p in target.iterdir()) == sorted(gpu_report.GOLDEN_COPY)
    assert golden_variants(tmp_path / ".gpu" / "golden") == [target]  # a parent of variants is accepted too
    assert gpu_report.prepare(tmp_path, tmp_path / "elsewhere") == 1  # not a golden variant: refused


def test_compiled_paths_are_timed_last_and_their_checks_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compile phase's bookkeeping on a CUDA run, with a stand-in for the benchmark (no GPU here): a compiled path
    that failed its check is a failed self-check and an untimed row; one that passed joins the model's paths."""
    def stand_in(ctx, paths, *, with_compile, iterations, warmup) -> dict:
        assert with_compile and len(paths) == 1
        reference = {"frame": {"p50_ms": 10.0}}
        if paths[0] == "eager-fp16-compile":
            return {"paths": {"reference": reference}, "skipped": {paths[0]: "torch.compile failed its check"}}
        return {"paths": {"reference": reference, paths[0]: {"frame": {"p50_ms": 4.0}}}, "skipped": {}}

    monkeypatch.setattr(gpu_report, "_benchmark", stand_in)
    ctx = gpu_report.Context(device_spec="cpu", golden=None, quick=True, deadline=time.monotonic() + 600)
    monkeypatch.setattr(gpu_report.Context, "cuda", property(lambda self: True))
    report = {"model": {"paths": {"reference": {}}, "skipped": {"eager-fp16-compile": "pending",
                                                                "eager-fp16-cudagraphs": "pending"}},
              "correctness": {"self_checks": {"engines": {}}}}
    gpu_report.model_compiled(ctx, report)
    engines = report["correctness"]["self_checks"]["engines"]
    assert engines["eager-fp16-compile"]["verdict"] == "failed"
    assert "failed its check" in report["model"]["skipped"]["eager-fp16-compile"]
    assert engines["eager-fp16-cudagraphs"]["verdict"] == "passed"
    assert report["model"]["paths"]["eager-fp16-cudagraphs"]["own_reference_frame_p50_ms"] == 10.0
    assert "eager-fp16-cudagraphs" not in report["model"]["skipped"]

    report["model"]["skipped"]["eager-fp16-compile"] = "pending"
    ctx.deadline = time.monotonic() + 1  # too little time left to compile: skipped, with the reason, in both places
    gpu_report.model_compiled(ctx, report)
    assert "time budget" in report["model"]["skipped"]["eager-fp16-compile"]
    assert engines["eager-fp16-compile"]["verdict"] == "skipped"
