"""``benchmarks.gpu_report`` runs where the GPU machine runs it: the dry run on the CPU under an interpreter that
cannot import any package that machine lacks, and the section machinery that keeps a failing section from ending
the report."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, golden_dir

from fomm_live.benchmarks import gpu_report
from fomm_live.benchmarks.golden import golden_variants
from fomm_live.live.backends import Backend, Rendered

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
    # As on the GPU machine: no Triton interpreter (tests/test_kernels.py turns it on for this process when it runs
    # first in the same session, and the variable would reach the child).
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FOMM_LIVE_KERNELS")}
    return {**env, "PYTHONPATH": f"{site}{os.pathsep}{REPO}"}


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
    cmd = [sys.executable, "-m", "fomm_live.benchmarks.gpu_report", "--out", str(out_dir), "--device", "cpu", "--quick",
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
    assert engines["eager-fp32"]["verdict"] == "nothing checked", engines["eager-fp32"]  # it is the reference
    # bf16 is checked against float32 on its first frame, and the report reads that check from engine.checks.
    assert engines["eager-bf16"]["verdict"] in ("passed", "failed") and engines["eager-bf16"]["paths"] == ["bf16"]

    model = report["model"]
    assert {"reference", "eager-fp32"} <= set(model["paths"])
    for row in model["paths"].values():
        for part in ("keypoints", "generator", "frame"):
            assert {"p50", "p95", "p99", "mean", "count"} <= set(row[part])
        assert "warmup_ms" in row
    assert "onnxscript" in model["skipped"]["onnxruntime-fp32"]
    assert "torch_tensorrt" in model["skipped"]["tensorrt-fp16"]

    # The schema: per-size rows directly under "batch", per-clip rows directly under "pipeline".
    batch = report["batch"]
    assert list(batch) == ["settings"] + [str(n) for n in (1, 2, 4, 8, 16, 32)]
    timed_ms = 0.0
    for size, row in batch.items():
        if size == "settings":
            continue
        assert {"p50", "p95", "p99"} <= set(row["step_ms"]), (size, row)
        assert row["frames_per_second"] > 0 and "gpu_memory_mb" in row
        timed_ms += math.ceil(row["steps"] / 2) * row["step_ms"]["p50"]  # at least half the steps took the p50
    # The section's wall time (rounded to 0.1 s) holds every step it timed.
    assert timed_ms > 0 and batch["settings"]["seconds"] >= timed_ms / 1000 - 0.05, (timed_ms, batch["settings"])

    pipeline = report["pipeline"]
    assert set(pipeline) == {"settings", "640x480", "1280x720"}
    assert pipeline["settings"]["composes_on_device"] is False  # the CPU backend fits frames with OpenCV
    for clip in ("640x480", "1280x720"):
        runs = pipeline[clip]
        assert {"unpaced", "paced-30fps", "paced-60fps"} <= set(runs), clip
        for label, row in runs.items():
            assert {"p50", "p95", "p99"} <= set(row["end_to_end_ms"]), (clip, label, row)
            assert {"keypoints", "generator"} <= set(row["stages_ms"]), (clip, label)
            assert row["frames_out"] > 0 and row["achieved_fps"] > 0
            assert "gpu_busy_fraction" in row and row["gpu_busy_fraction"] is None  # no GPU: null with a reason
            assert row["gpu_busy_note"]
            assert row["timed_calls"]["detect"] > 0 and row["timed_calls"]["render"] > 0, row["timed_calls"]
    assert pipeline["1280x720"]["unpaced-FOMM_LIVE_PIPELINING=0"]["pipelining"] is False
    assert pipeline["1280x720"]["unpaced-framing-photo"]["framing"] == "photo"  # run's default output is measured
    markdown = (out_dir / "gpu_report.md").read_text(encoding="utf-8")
    assert "| 32 |" in markdown and "| 1280x720 | paced-60fps |" in markdown  # the renderer reads the new layout


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
        reference = {"frame": {"p50": 10.0}}
        if paths[0] == "eager-fp16-compile":
            return {"paths": {"reference": reference}, "skipped": {paths[0]: "torch.compile failed its check"}}
        return {"paths": {"reference": reference, paths[0]: {"frame": {"p50": 4.0}}}, "skipped": {}}

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


# --- the CUDA-only branches, proved on the CPU ------------------------------------------------------------------------

# Run in a fresh interpreter: TRITON_INTERPRET is read when the kernel modules are first imported, so it must be set
# before anything imports them (this test process may already have).
INTERPRETED_CHECKS = textwrap.dedent("""
    import json, sys
    import torch
    from fomm_live.benchmarks.gpu_correctness import self_checks
    from fomm_live.benchmarks.gpu_kernels import kernel_checks
    from fomm_live.models import build_networks, load_config

    cpu = torch.device("cpu")
    dense = [(2, 3, 2, 7, 5, True, 1.3), (1, 2, 1, 5, 6, False, 1.0)]
    deform = [(2, 1, 3, 6, 5, True, True, None), (1, 1, 4, 8, 6, False, False, (5, 3))]
    kernel_rows = kernel_checks(cpu, dense_shapes=dense, deform_shapes=deform)
    kp_detector, generator = build_networks(load_config(sys.argv[1]))
    engines = self_checks(cpu, (kp_detector.eval(), generator.eval()), image_size=128, cuda_paths=True,
                          only=("eager-fp16", "eager-fp16-kernels"))
    print(json.dumps({"kernels": kernel_rows, "self_checks": engines}))
""")


def test_kernel_checks_and_kernel_engines_run_in_tritons_interpreter() -> None:
    """The report's CUDA-only correctness code on the CPU, with the kernels in Triton's interpreter: the kernel rows
    (the ops' current signatures, every dtype, a jacobian-free and a resized case) all pass, and the fp16 engines'
    self-checks are read from ``engine.checks`` with the paths the engine records (fp16 and both kernel ops)."""
    pytest.importorskip("triton", reason="the kernels need triton (its CPU interpreter here)")
    config = golden_dir("tiny") / "config.yaml"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, "-c", INTERPRETED_CHECKS, str(config)], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])

    kernels = result["kernels"]
    assert kernels["interpreted"] is True
    assert len(kernels["rows"]) == 3 * 4, list(kernels["rows"])  # 3 dtypes x (2 dense + 2 deform shapes)
    failed = {name: row for name, row in kernels["rows"].items() if not row.get("passed")}
    assert not failed and kernels["passed"] is True, failed

    engines = result["self_checks"]["engines"]
    assert set(engines) == {"eager-fp16", "eager-fp16-kernels"}
    assert engines["eager-fp16"]["verdict"] == "passed" and engines["eager-fp16"]["paths"] == ["fp16"], engines
    row = engines["eager-fp16-kernels"]
    assert row["verdict"] == "passed", row
    assert row["paths"] == ["fp16", "kernel:deform_features", "kernel:dense_motion_inputs"], row
    assert all(check["ok"] and check["max_abs"] is not None for check in row["checks"]), row["checks"]


def test_kernel_checks_are_skipped_on_the_cpu_without_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    from fomm_live.benchmarks.gpu_kernels import kernel_checks

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    result = kernel_checks(torch.device("cpu"))
    assert set(result) == {"skipped"} and "CUDA" in result["skipped"]


def _project_imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(module, name or None, line) of every import of a project module in ``path``, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
    return [(m, n, line) for m, n, line in found if m.partition(".")[0] == "fomm_live"]


def test_every_import_in_the_report_resolves() -> None:
    """Each import of a project module in the report's files, including the lazy ones on CUDA-only branches (the
    TensorRT engine, the kernels), names a module and an attribute that exist: a moved or renamed name fails here,
    not on the GPU."""
    files = sorted((REPO / "fomm_live" / "benchmarks").glob("gpu_*.py"))
    assert {p.name for p in files} >= {"gpu_report.py", "gpu_correctness.py", "gpu_kernels.py", "gpu_batch.py",
                                       "gpu_pipeline.py", "gpu_environment.py", "gpu_report_markdown.py"}
    broken = []
    for path in files:
        for module, name, line in _project_imports(path):
            try:
                imported = importlib.import_module(module)
            except ImportError as err:
                broken.append(f"{path.name}:{line}: import {module}: {err}")
                continue
            if name is None or hasattr(imported, name):
                continue
            if not hasattr(imported, "__path__") or importlib.util.find_spec(f"{module}.{name}") is None:
                broken.append(f"{path.name}:{line}: {module} has no {name}")
    assert not broken, "\n".join(broken)


def test_tensorrt_and_onnx_candidates_construct_their_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The TensorRT rows are offered only on CUDA with torch-tensorrt; with that check passed by a stand-in, the rows'
    factories import ``models.engines.tensorrt`` and call ``TensorRTEngine`` with arguments it accepts (it then
    refuses the CPU, as it must). The ONNX Runtime row is a factory wherever its packages are installed."""
    from fomm_live.benchmarks import gpu_correctness
    from fomm_live.models import build_networks, load_config
    from fomm_live.models.engines import EngineError

    monkeypatch.setattr(gpu_correctness, "tensorrt_unavailable", lambda device: None)
    networks = build_networks(load_config(golden_dir("tiny") / "config.yaml"))
    cpu = torch.device("cpu")
    candidates = gpu_correctness.engine_candidates(cpu, networks, image_size=128, cuda_paths=True)
    assert callable(candidates["tensorrt-fp16"]) and callable(candidates["eager-fp16-kernels"])
    with pytest.raises(EngineError, match="CUDA"):
        candidates["tensorrt-fp16"]()
    golden = {name: factory for name, _, factory in gpu_correctness.golden_rows(cpu)}
    animator = types.SimpleNamespace(kp_detector=networks[0], generator=networks[1], image_size=128)
    with pytest.raises(EngineError, match="CUDA"):
        golden["tensorrt-fp16"](animator)
    onnx_missing = gpu_correctness.onnx_unavailable(cpu)
    assert callable(candidates["onnxruntime-fp32"]) == (onnx_missing is None), onnx_missing
    assert callable(golden["onnxruntime-fp32"]) == (onnx_missing is None)


class StandInDeviceBackend(Backend):
    """A stand-in for the FOMM backend on CUDA: it composes on the device, so its frames stay tensors until the
    compositor fits them (``live.framing.compositor.FaceCompositor``); ``render`` returns a fixed frame."""

    name = "stand-in"
    size = 32
    composes_on_device = True

    def __init__(self) -> None:
        self.neutral = None

    def set_source(self, image: np.ndarray) -> None:
        pass

    def detect(self, frame: np.ndarray) -> np.ndarray:
        return np.zeros((10, 2), dtype=np.float32)

    def calibrate(self, motion) -> None:
        self.neutral = motion

    def reset_calibration(self) -> None:
        self.neutral = None

    @property
    def calibrated(self) -> bool:
        return self.neutral is not None

    def render(self, motion, *, detail: bool = False) -> Rendered:
        return Rendered(torch.full((1, 3, self.size, self.size), 0.5))


def test_gpu_busy_covers_render_when_the_backend_composes_on_the_device() -> None:
    """On CUDA the FOMM backend composes on the device: the timing wrapper passes its declared fields through (the
    loop fits its tensors on the device) and times every ``render``, so the GPU-busy figure covers the generator."""
    from fomm_live.benchmarks.gpu_pipeline import BusyTimedBackend, run_clip

    backend = StandInDeviceBackend()
    assert BusyTimedBackend(backend, torch.device("cpu")).composes_on_device is True
    row = run_clip(backend, torch.device("cpu"), width=64, height=48, fps=None, frames=4, pipelining=False)
    assert row["frames_out"] > 0
    assert row["timed_calls"].get("render", 0) >= 1, row["timed_calls"]
    assert row["timed_calls"]["detect"] >= row["timed_calls"]["render"]
    assert "generator" in row["stages_ms"]


def _png_with_every_filter(image: np.ndarray) -> bytes:
    """``image`` (H x W x 3 uint8) as a PNG whose row y uses filter y % 5 (none, sub, up, average, Paeth)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    h, w = image.shape[:2]
    rows = image.reshape(h, w * 3).astype(np.int32)
    raw = b""
    for y in range(h):
        x = rows[y]
        up = rows[y - 1] if y else np.zeros_like(x)
        left = np.concatenate([np.zeros(3, np.int32), x[:-3]])
        upleft = np.concatenate([np.zeros(3, np.int32), up[:-3]])
        p = left + up - upleft
        pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        pred = (np.zeros_like(x), left, up, (left + up) // 2, paeth)[y % 5]
        raw += bytes([y % 5]) + ((x - pred) & 255).astype(np.uint8).tobytes()
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def test_the_golden_png_reader_undoes_every_filter_and_reads_the_golden_pngs_as_opencv_does(tmp_path: Path) -> None:
    from fomm_live.benchmarks.golden import read_png

    image = np.random.default_rng(0).integers(0, 256, (10, 7, 3), dtype=np.uint8)
    path = tmp_path / "filters.png"
    path.write_bytes(_png_with_every_filter(image))
    np.testing.assert_array_equal(read_png(path), image)
    cv2 = pytest.importorskip("cv2", reason="OpenCV decodes the golden PNGs for the comparison")
    folder = golden_dir("tiny")
    for name in ("source.png", "driving_0.png"):
        want = cv2.cvtColor(cv2.imread(str(folder / name)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(read_png(folder / name), want, err_msg=name)
