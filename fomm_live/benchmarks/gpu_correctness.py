"""Correctness rows of ``benchmarks.gpu_report``: golden parity per path and the engines' own self-checks (the fused
kernels on odd shapes are ``benchmarks.gpu_kernels``).

Golden parity runs the original's frames (``expected.npz`` of a golden variant folder: config.yaml,
checkpoint.pth.tar, source.png, driving_0..2.png) through each path in relative mode: float32 paths within the
tolerances of ``tests/test_golden.py`` (keypoints 1e-5, images 1e-4), reduced-precision and fused paths within
``models.engines.MIN_PSNR_DB`` of the original's prediction.

Only torch, numpy and the repository are imported at module level; ONNX Runtime, ONNX and torch-tensorrt rows are
reported as skipped, naming the missing package.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fomm_live.benchmarks.golden import GOLDEN_FILES, golden_variants, read_png
from fomm_live.models import Animator, Keypoints, MotionOptions
from fomm_live.models.engines import MIN_PSNR_DB, EagerEngine, Engine, exact_float32, psnr

KP_TOL = 1e-5  # keypoints, jacobians, normalised keypoints (as tests/test_golden.py)
IMAGE_TOL = 1e-4  # prediction, mask, occlusion map (as tests/test_golden.py)
NUM_FRAMES = 3


def missing_package(name: str) -> bool:
    """True when ``name`` cannot be imported here (checked without importing it)."""
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def onnx_unavailable(device: torch.device) -> str | None:
    """Why the ONNX Runtime path cannot run here, or None."""
    for package, why in (("onnxruntime", "runs the graphs"), ("onnxscript", "is needed by the ONNX export"),
                         ("onnx", "is needed to check the exported file")):
        if missing_package(package):
            return f"{package} is not installed ({package} {why})"
    if device.type == "cuda":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "onnxruntime here has no CUDA provider (a CPU-only build); its graphs would run on the CPU"
    return None


def tensorrt_unavailable(device: torch.device) -> str | None:
    """Why the TensorRT path cannot run here, or None."""
    if missing_package("torch_tensorrt"):
        return "torch_tensorrt is not installed (the graph it would get is checked through torch.export instead)"
    if device.type != "cuda":
        return "TensorRT needs a CUDA device"
    return None


def _max_err(got: torch.Tensor | None, want: np.ndarray) -> float:
    if got is None:
        return float("inf")
    got64 = got.detach().float().cpu().numpy().astype(np.float64)
    if got64.shape != want.shape:
        return float("inf")
    return float(np.abs(got64 - want).max())


def _check_frames(animator: Animator, expected: dict, images: dict, *, fp32: bool) -> dict:
    """Relative mode, the first driving frame as neutral; errors per group against the original's arrays."""
    animator.set_source(images["source"])
    animator.calibrate(images["driving"][0])
    kp_err = max(_max_err(animator.kp_source.value, expected["kp_source_value"]),
                 _max_err(animator.kp_source.jacobian, expected["kp_source_jacobian"])
                 if "kp_source_jacobian" in expected else 0.0)
    image_err, qualities = 0.0, []
    for i, frame in enumerate(images["driving"]):
        kp = animator.keypoints(frame)
        out = animator.generate(kp)
        for got, key in ((kp.value, f"kp_driving_{i}_value"), (kp.jacobian, f"kp_driving_{i}_jacobian"),
                         (out["kp_norm_value"], f"kp_norm_relative_{i}_value"),
                         (out.get("kp_norm_jacobian"), f"kp_norm_relative_{i}_jacobian")):
            if key in expected:
                kp_err = max(kp_err, _max_err(got, expected[key]))
        for name in ("prediction", "mask", "occlusion_map"):
            key = f"relative_{i}_{name}"
            if key in expected:
                image_err = max(image_err, _max_err(out.get(name), expected[key]))
        qualities.append(psnr(out["prediction"].float().cpu(), torch.from_numpy(expected[f"relative_{i}_prediction"])))
    row = {"keypoints_max_abs": float(f"{kp_err:.3g}"), "images_max_abs": float(f"{image_err:.3g}"),
           "min_psnr_db": round(min(qualities), 1) if min(qualities) != float("inf") else "inf",
           "engine_checks": engine_checks(animator.engine)}
    if fp32:
        row["criterion"] = f"keypoints <= {KP_TOL:.0e}, images <= {IMAGE_TOL:.0e} (max abs)"
        row["passed"] = kp_err <= KP_TOL and image_err <= IMAGE_TOL
    else:
        row["criterion"] = f"prediction PSNR >= {MIN_PSNR_DB:.0f} dB"
        row["passed"] = min(qualities) >= MIN_PSNR_DB
    return row


def engine_checks(engine: Engine) -> list[dict] | str:
    """An engine's own self-check results (``engine.checks``, filled on its first real frame), or a note."""
    checks = getattr(engine, "checks", None)
    if not checks:
        return "no self-check data"
    return [dataclasses.asdict(c) if dataclasses.is_dataclass(c) else {"detail": str(c)} for c in checks]


def _uncached_reference(animator: Animator, expected: dict, images: dict) -> dict:
    """The original's per-frame call, ``generator(source, kp_norm, kp_source)``, on the original's keypoints."""
    dev = animator.device
    source = animator.to_tensor(images["source"])
    err = 0.0
    with torch.inference_mode(), exact_float32(dev):
        kp_source = animator.kp_detector(source)
        for i in range(NUM_FRAMES):
            jac = expected.get(f"kp_norm_relative_{i}_jacobian")
            kp = Keypoints(torch.from_numpy(expected[f"kp_norm_relative_{i}_value"]).to(dev),
                           None if jac is None else torch.from_numpy(jac).to(dev))
            out = animator.generator(source, kp, kp_source)
            for name in ("prediction", "deformed", "mask"):
                err = max(err, _max_err(out[name], expected[f"relative_{i}_{name}"]))
    return {"images_max_abs": float(f"{err:.3g}"), "criterion": f"images <= {IMAGE_TOL:.0e} (max abs)",
            "passed": err <= IMAGE_TOL}


def _torch_export(animator: Animator, expected: dict, images: dict) -> dict:
    """Both per-frame graphs through ``torch.export`` (the graphs TensorRT and ONNX are built from), run as exported
    programs on the original's keypoints."""
    from fomm_live.models.export import GENERATOR_INPUTS, export_programs

    dev = animator.device
    source = animator.to_tensor(images["source"])
    with torch.no_grad(), exact_float32(dev):
        kp_source = animator.kp_detector(source)
        state = animator.generator.encode_source(source)
        programs = export_programs(animator.kp_detector, animator.generator, source=state, kp_source=kp_source)
        kp_graph, frame_graph = programs["kp_detector"].module(), programs["generator"].module()
        kp_err, image_err = 0.0, 0.0
        for i, frame in enumerate(images["driving"]):
            outs = kp_graph(animator.to_tensor(frame))
            kp_err = max(kp_err, _max_err(outs[0], expected[f"kp_driving_{i}_value"]))
            jac = expected.get(f"kp_norm_relative_{i}_jacobian")
            named = {"features": state.features, "source_small": state.image_small,
                     "kp_source_value": kp_source.value, "kp_source_jacobian": kp_source.jacobian,
                     "kp_driving_value": torch.from_numpy(expected[f"kp_norm_relative_{i}_value"]).to(dev),
                     "kp_driving_jacobian": None if jac is None else torch.from_numpy(jac).to(dev)}
            inputs = [named[n] for n in GENERATOR_INPUTS if named[n] is not None]
            prediction = frame_graph(*inputs)[0]
            image_err = max(image_err, _max_err(prediction, expected[f"relative_{i}_prediction"]))
    return {"keypoints_max_abs": float(f"{kp_err:.3g}"), "images_max_abs": float(f"{image_err:.3g}"),
            "criterion": f"keypoints <= {KP_TOL:.0e}, prediction <= {IMAGE_TOL:.0e} (max abs)",
            "passed": kp_err <= KP_TOL and image_err <= IMAGE_TOL}


def golden_rows(device: torch.device) -> list[tuple[str, str, Callable[[Animator], Engine] | str]]:
    """(row, precision kind, engine factory or skip reason) for every path golden parity covers on ``device``."""
    cuda = device.type == "cuda"

    def eager(precision: str, kernels: bool) -> Callable[[Animator], Engine]:
        return lambda a: EagerEngine(a.kp_detector, a.generator, device=device, precision=precision,
                                     use_kernels=kernels, reason="report")

    triton = None if not missing_package("triton") else "triton is not installed"
    cuda_only = "CUDA only (the tests check this path's numerics on the CPU)"
    rows: list = [("fp32", "fp32", eager("fp32", False)),
                  ("fp32-kernels", "fp32", (triton or eager("fp32", True)) if cuda else cuda_only),
                  ("fp16", "reduced", eager("fp16", False) if cuda else cuda_only),
                  ("fp16-kernels", "reduced", (triton or eager("fp16", True)) if cuda else cuda_only),
                  ("bf16", "reduced", eager("bf16", False))]
    onnx_reason = onnx_unavailable(device)
    if onnx_reason is None:
        from fomm_live.models.engines import OnnxRuntimeEngine

        rows.append(("onnxruntime-fp32", "fp32",
                     lambda a: OnnxRuntimeEngine(a.kp_detector, a.generator, device=device, image_size=a.image_size)))
    else:
        rows.append(("onnxruntime-fp32", "fp32", onnx_reason))
    trt_reason = tensorrt_unavailable(device)
    if trt_reason is None:
        from fomm_live.models.engines.tensorrt import TensorRTEngine

        rows.append(("tensorrt-fp16", "reduced",
                     lambda a: TensorRTEngine(a.kp_detector, a.generator, device=device, precision="fp16",
                                              image_size=a.image_size)))
    else:
        rows.append(("tensorrt-fp16", "reduced", trt_reason))
    return rows


def golden_parity(folder: Path | None, device: torch.device, *, time_left: Callable[[], float]) -> dict:
    """Every path on every golden variant in ``folder``; see the module docstring."""
    if folder is None:
        return {"skipped": "no --golden folder given (a golden variant: config.yaml, checkpoint.pth.tar, source and "
                           "driving PNGs, expected.npz)"}
    variants = golden_variants(folder)
    if not variants:
        return {"error": f"{folder} is not a golden variant folder and holds none ({', '.join(GOLDEN_FILES)})"}
    result: dict = {"folder": str(folder), "mode": "relative, first driving frame as neutral", "variants": {}}
    for variant in variants:
        expected = dict(np.load(variant / "expected.npz"))
        images = {"source": read_png(variant / "source.png"),
                  "driving": [read_png(variant / f"driving_{i}.png") for i in range(NUM_FRAMES)]}
        animator = Animator.from_checkpoint(variant / "checkpoint.pth.tar", variant / "config.yaml",
                                            device=str(device), precision="fp32", engine="eager",
                                            motion=MotionOptions(relative=True, adapt_scale=True))
        default_engine = animator.engine
        rows: dict = {}
        for name, kind, factory in golden_rows(device):
            if isinstance(factory, str):
                rows[name] = {"skipped": factory}
                continue
            if time_left() <= 0:
                rows[name] = {"skipped": "time budget spent"}
                continue
            try:
                animator.engine = factory(animator)  # constructed directly: an engine that cannot start raises
                rows[name] = _check_frames(animator, expected, images, fp32=kind == "fp32")
            except Exception as err:  # noqa: BLE001 - one failing path is a row, not the end of the report
                rows[name] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
            finally:
                if animator.engine is not default_engine:
                    animator.engine.close()
                animator.engine = default_engine
                animator.reset_calibration()
        for name, check in (("reference-uncached-fp32", _uncached_reference), ("torch-export-fp32", _torch_export)):
            try:
                rows[name] = check(animator, expected, images)
            except Exception as err:  # noqa: BLE001 - as above
                rows[name] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
        result["variants"][variant.name] = rows
    ran = [row for rows in result["variants"].values() for row in rows.values() if "passed" in row]
    result["passed"] = bool(ran) and all(row["passed"] for row in ran)
    return result


# --- the engines' own self-checks -----------------------------------------------------------------------------------

COMPILED = ("eager-fp16-compile", "eager-fp16-cudagraphs")


def engine_candidates(device: torch.device, networks: tuple, *, image_size: int = 256,
                      cuda_paths: bool | None = None) -> dict[str, Callable[[], Engine] | str]:
    """Engine name -> a factory, or the reason it does not run here.

    Args:
        device: Where the engines run.
        networks: Keypoint detector and generator, on ``device``.
        image_size: Their input size (the ONNX and TensorRT graphs are traced at it).
        cuda_paths: Offer the CUDA engines (fp16, fp16 with the fused kernels); None: when ``device`` is CUDA. The
            tests set it on the CPU, where the kernels run in Triton's interpreter and fp16 in PyTorch's CPU ops.
    """
    kp_detector, generator = networks
    cuda = device.type == "cuda" if cuda_paths is None else cuda_paths

    def eager(precision: str, kernels: bool | None = None) -> Callable[[], Engine]:
        return lambda: EagerEngine(kp_detector, generator, device=device, precision=precision, use_kernels=kernels,
                                   reason="report")

    candidates: dict[str, Callable[[], Engine] | str] = {"eager-fp32": eager("fp32", False)}
    if cuda:
        candidates["eager-fp16"] = eager("fp16", False)
        candidates["eager-fp16-kernels"] = ("triton is not installed" if missing_package("triton")
                                            else eager("fp16", True))
    else:
        candidates["eager-bf16"] = eager("bf16")
    onnx_reason, trt_reason = onnx_unavailable(device), tensorrt_unavailable(device)
    if onnx_reason is None:
        from fomm_live.models.engines import OnnxRuntimeEngine

        candidates["onnxruntime-fp32"] = lambda: OnnxRuntimeEngine(kp_detector, generator, device=device,
                                                                   image_size=image_size)
    else:
        candidates["onnxruntime-fp32"] = onnx_reason
    if trt_reason is None:
        from fomm_live.models.engines.tensorrt import TensorRTEngine

        candidates["tensorrt-fp16"] = lambda: TensorRTEngine(kp_detector, generator, device=device, precision="fp16",
                                                             image_size=image_size)
    else:
        candidates["tensorrt-fp16"] = trt_reason
    for name in COMPILED:
        candidates[name] = ("pending: the model section compiles it and records its check" if cuda
                            else "compiled paths are checked on CUDA only here")
    return candidates


def check_verdict(checks: list[dict] | str) -> dict:
    """A row from an engine's checks: ``passed`` when every check passed, ``failed`` when one did (that path fell
    back), ``nothing checked`` when the engine ran no fast path (float32 eager is the reference itself)."""
    if isinstance(checks, str):
        return {"verdict": "nothing checked", "detail": checks}
    ok = all(c.get("ok", False) for c in checks)
    return {"verdict": "passed" if ok else "failed", "paths": sorted({str(c.get("path")) for c in checks}),
            "failed_paths": sorted({str(c.get("path")) for c in checks if not c.get("ok", False)}), "checks": checks}


def self_checks(device: torch.device, networks: tuple, *, image_size: int = 256, cuda_paths: bool | None = None,
                only: tuple[str, ...] | None = None) -> dict:
    """Start each engine this device offers, run one real frame (which fills the engine's ``checks`` with
    ``models.engines.CheckResult`` rows, paths as ``models.engines.CHECK_PATHS``), and report its verdict. Compiled
    paths are added by the model section, which compiles them.

    Args:
        device: Where the engines run.
        networks: Keypoint detector and generator, on ``device``.
        image_size: Their input size.
        cuda_paths: As ``engine_candidates``.
        only: Run just these engines (the others are left out); None: all.
    """
    candidates = engine_candidates(device, networks, image_size=image_size, cuda_paths=cuda_paths)
    gen = torch.Generator().manual_seed(5)
    source, frame = (torch.rand(1, 3, image_size, image_size, generator=gen).to(device) for _ in range(2))
    rows: dict = {}
    for name, factory in candidates.items():
        if only is not None and name not in only:
            continue
        if isinstance(factory, str):
            rows[name] = {"verdict": "skipped", "detail": factory}
            continue
        engine = None
        try:
            engine = factory()
            with torch.inference_mode():
                state, kp_source = engine.encode(source), engine.keypoints(source)
                engine.decode(state, engine.keypoints(frame), kp_source)
            rows[name] = {**check_verdict(engine_checks(engine)),
                          "engine": f"{engine.name} {engine.precision}"}  # precision after any fallback
        except Exception as err:  # noqa: BLE001 - an engine that cannot start is a failed row
            rows[name] = {"verdict": "error", "detail": f"{type(err).__name__}: {str(err)[:300]}"}
        finally:
            if engine is not None:
                engine.close()
    return {"networks": f"{image_size} x {image_size}, random weights", "engines": rows}
