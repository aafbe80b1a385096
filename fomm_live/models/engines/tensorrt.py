"""TensorRT engines for the First Order Motion Model through torch-tensorrt (CUDA only).

NOT RUN ON A GPU YET: this path is written against the torch-tensorrt API of the pinned release (the ``tensorrt``
extra, torch-tensorrt 2.13) and its cache logic is tested on the CPU with stand-in builders, but no TensorRT engine
has been built or timed by this project so far. ``create_engine`` falls back to CUDA eager, with one warning, on any
failure here, including a missing torch-tensorrt.

What it does:

- Both per-frame graphs of ``models.export`` (keypoint detector, per-frame generator) go through ``torch.export``
  (closed-form 2x2 inverse, checked) and ``torch_tensorrt.dynamo.compile``. The keypoint detector is built in float32
  with TF32 off; the generator in the engine's precision (fp16 by default on CUDA).
- Engines are cached under the user cache folder (``models.paths.cache_root``: ``$FOMM_LIVE_CACHE``, else
  ``~/.cache/fomm-live`` or the platform's equivalent), in ``tensorrt/<key>/<network>.pt2``, the key hashing the
  weights, the architecture, the input size, the GPU name, the TensorRT and torch-tensorrt versions and the
  precision. A cache file that does not load is deleted and rebuilt.
- Checked twice against PyTorch float32 through ``models.engines.base.compare`` (check ``tensorrt``): keypoints
  within ``KP_ATOL``, the prediction within ``MIN_PSNR_DB`` (fp16) or ``FP32_ATOL`` (fp32), the dense motion field
  ``deformation`` (an output of the generator engine, for photo framing) within ``base.deformation_tolerance``
  (fp16's bound for fp32 engines, whose convolutions may use TF32, fp16's mantissa). Once when the engines are
  built or loaded, on fixed inputs (a failure there means no TensorRT: ``create_engine`` starts eager instead); and
  again on the first real inputs each engine gets (the user's source image, the first driving frame). A failure on
  real inputs switches this engine to CUDA eager for the rest of the run, with one warning. Every verdict is kept in
  ``Engine.checks``.

Imports ``models.engines.base`` and ``.eager`` (its fallback); torch-tensorrt itself lazily.

First Order Motion Model: Siarohin et al., NeurIPS 2019; upstream github.com/AliaksandrSiarohin/first-order-model
(MIT licence; the published weights carry that repository's terms).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from fomm_live.models.engines.base import (
    MIN_PSNR_DB,
    CheckResult,
    Engine,
    EngineError,
    Tolerance,
    compare,
    compare_frame,
    deformation_tolerance,
    device_failure,
    exact_float32,
    failed_to_run,
)
from fomm_live.models.engines.eager import EagerEngine, device_guard
from fomm_live.models.export import (
    GENERATOR_OUTPUTS,
    FrameGraph,
    KeypointGraph,
    example_inputs,
    export_programs,
    frame_inputs,
)
from fomm_live.models.generator import OcclusionAwareGenerator, SourceState
from fomm_live.models.keypoint_detector import Keypoints, KPDetector
from fomm_live.models.paths import cache_root

logger = logging.getLogger(__name__)

KP_ATOL = 1e-3  # keypoints in [-1, 1]: 1e-3 is an eighth of a pixel at 256 x 256 (float32 engine, TF32 off)
FP32_ATOL = 2e-3  # float32 generator engine (TensorRT may use TF32 convolutions), prediction in [0, 1]
T = TypeVar("T")


def require_cuda(device: torch.device) -> None:
    """Raise EngineError unless ``device`` is a CUDA device."""
    if device.type != "cuda":
        raise EngineError(f"TensorRT needs a CUDA device, not {device.type}")


def gpu_name(device: torch.device) -> str:
    """The GPU's name, part of the cache key (an engine is built for one GPU model)."""
    return torch.cuda.get_device_name(device)


def weights_digest(*modules: nn.Module) -> str:
    """SHA-256 of the modules' state dicts (names, dtypes, shapes and bytes): the checkpoint's identity, whichever
    file format it came in."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def architecture_digest(kp_detector: KPDetector, generator: OcclusionAwareGenerator, image_size: int) -> str:
    """SHA-256 of what the config decides and of what the graphs return: the layer structure, the constants baked
    into the graphs and the generator's outputs (an engine cached before the motion field became an output is built
    again, not loaded and then failed for a missing output)."""
    facts = {"kp": str(kp_detector), "generator": str(generator), "image_size": image_size,
             "temperature": kp_detector.temperature, "kp_scale": kp_detector.scale_factor,
             "num_jacobian_maps": kp_detector.num_jacobian_maps, "generator_outputs": list(GENERATOR_OUTPUTS)}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def cache_key(*, weights: str, architecture: str, gpu: str, tensorrt_version: str, torch_tensorrt_version: str,
              precision: str) -> str:
    """Folder name of one set of cached engines: any change of input gives another folder."""
    fields = {"weights": weights, "architecture": architecture, "gpu": gpu, "tensorrt": tensorrt_version,
              "torch_tensorrt": torch_tensorrt_version, "precision": precision}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def load_or_build(path: Path, build: Callable[[Path], None], load: Callable[[Path], T]) -> T:
    """Load ``path``; when it is missing or does not load (truncated, corrupt, another version), build it again.

    ``build`` writes a file at the path it is given; it goes to a temporary name first and is renamed into place, so
    an interrupted build never leaves a half-written cache file behind.
    """
    if path.exists():
        try:
            return load(path)
        except Exception as err:  # any failure to deserialise means the same thing: rebuild
            logger.warning("cached engine %s does not load (%s: %s); rebuilding it", path, type(err).__name__,
                           str(err).strip().splitlines()[0][:120] if str(err).strip() else "")
            path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")  # same suffix: savers may pick the format from it
    try:
        build(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return load(path)


def _compile_settings(torch_tensorrt, precision: str) -> dict:
    """Compile options for the installed torch-tensorrt, read from its ``dynamo.compile`` signature.

    Releases differ in how reduced precision is asked for: older ones take ``enabled_precisions``; newer ones build
    strongly typed networks and reduce precision by rule-based autocast (``enable_autocast`` with
    ``autocast_low_precision_type``, or ``low_precision_type`` in the first releases that had it, some alongside
    ``use_explicit_typing``). Options the release does not know are left out.

    Raises:
        EngineError: the release offers no way to ask for ``precision``.
    """
    params = inspect.signature(torch_tensorrt.dynamo.compile).parameters
    settings: dict = {"min_block_size": 1, "truncate_double": True}
    if precision == "fp32":
        settings["disable_tf32"] = True
    else:
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        type_option = next((n for n in ("autocast_low_precision_type", "low_precision_type") if n in params), None)
        if "enable_autocast" in params and type_option:
            settings.update({"enable_autocast": True, type_option: dtype, "use_explicit_typing": True})
        elif "enabled_precisions" in params:
            settings["enabled_precisions"] = {dtype}
        else:
            raise EngineError(f"this torch-tensorrt ({getattr(torch_tensorrt, '__version__', '?')}) offers no "
                              f"option for {precision} engines")
    return {k: v for k, v in settings.items() if k in params}


class TensorRTEngine(Engine):
    """Keypoint detector and per-frame generator as TensorRT engines (see the module docstring; not run on a GPU yet).

    Raises:
        EngineError: torch-tensorrt missing, no CUDA device, a build failure, or a failed self-check.
    """

    name = "tensorrt"

    def __init__(self, kp_detector: KPDetector, generator: OcclusionAwareGenerator, *, device: torch.device,
                 precision: str, image_size: int, reason: str = "") -> None:
        super().__init__(device=device, precision=precision, reason=reason)
        require_cuda(device)
        try:
            import tensorrt
            import torch_tensorrt
        except ImportError as err:
            raise EngineError(f"torch-tensorrt is not installed ({err}); pip install '.[tensorrt]'") from err
        self.kp_detector = kp_detector
        self.generator = generator
        self._fallback: Engine | None = None
        self._checked: set[str] = set()  # engines already checked on real inputs
        self.graphs = {"kp_detector": KeypointGraph(kp_detector).eval(),
                       "generator": FrameGraph(generator, has_jacobian=kp_detector.jacobian is not None).eval()}
        kp_in, gen_in = example_inputs(kp_detector, generator, image_size=image_size)
        self.inputs = {"kp_detector": kp_in, "generator": gen_in}
        key = cache_key(weights=weights_digest(kp_detector, generator),
                        architecture=architecture_digest(kp_detector, generator, image_size),
                        gpu=gpu_name(device), tensorrt_version=tensorrt.__version__,
                        torch_tensorrt_version=torch_tensorrt.__version__, precision=precision)
        folder = cache_root() / "tensorrt" / key
        try:
            programs: dict[str, torch.export.ExportedProgram] = {}

            def build(name: str) -> Callable[[Path], None]:
                def _build(path: Path) -> None:
                    if not programs:
                        programs.update(export_programs(kp_detector, generator, image_size=image_size))
                    args = list(self.inputs[name])
                    settings = _compile_settings(torch_tensorrt, "fp32" if name == "kp_detector" else precision)
                    logger.info("building the TensorRT %s engine (%s); this takes a while once", name,
                                "fp32" if name == "kp_detector" else precision)
                    module = torch_tensorrt.dynamo.compile(programs[name], arg_inputs=args, **settings)
                    # The keyword for example inputs is ``arg_inputs`` in newer releases, ``inputs`` in older ones.
                    keyword = "arg_inputs" if "arg_inputs" in inspect.signature(torch_tensorrt.save).parameters \
                        else "inputs"
                    torch_tensorrt.save(module, str(path), output_format="exported_program", **{keyword: args})
                return _build

            def load(path: Path) -> nn.Module:
                # torch-tensorrt's loader registers its engine op first where its C++ runtime is absent.
                loaded = getattr(torch_tensorrt, "load", torch.export.load)(str(path))
                return loaded.module() if isinstance(loaded, torch.export.ExportedProgram) else loaded

            # .pt2: the suffix torch.export.save expects for the exported-program format.
            self.modules = {name: load_or_build(folder / f"{name}.pt2", build(name), load) for name in self.graphs}
        except EngineError:
            raise
        except Exception as err:  # torch-tensorrt raises many types; all mean "no TensorRT here"
            raise EngineError(f"TensorRT build failed: {type(err).__name__}: "
                              f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}") from err
        try:
            self.self_check()
        except EngineError as err:
            err.checks = list(self.checks)  # create_engine hands the verdicts to the engine it falls back to
            raise
        except Exception as err:  # the engines failed to run at all: same outcome as a failed check
            raise EngineError(f"TensorRT engines failed to run: {type(err).__name__}: {str(err)[:200]}") from err
        logger.info("TensorRT engines ready (cache %s)", folder)

    def self_check(self) -> None:
        """Compare both engines with PyTorch float32 on the fixed example inputs; raise EngineError beyond tolerance."""
        with torch.no_grad():
            for name in self.graphs:
                result, _ = self._compare(name, self.inputs[name], detail=f"{name}, fixed inputs at build")
                self.checks.append(result)
                if not result.ok:
                    raise EngineError(self._problem(name, result))

    def _tolerance(self, name: str) -> Tolerance:
        if name == "kp_detector":
            return Tolerance(atol=KP_ATOL)
        return Tolerance(atol=FP32_ATOL) if self.precision == "fp32" else Tolerance(min_psnr_db=MIN_PSNR_DB)

    def _motion_tolerance(self) -> Tolerance:
        """The bar for the generator engine's motion field: fp16's for fp32 engines (TF32 has fp16's mantissa)."""
        return deformation_tolerance("fp16" if self.precision == "fp32" else self.precision)

    def _problem(self, name: str, result: CheckResult) -> str:
        """A failed check in words."""
        if result.max_abs is None:
            return f"TensorRT {name}: {result.detail}"
        if name == "kp_detector":
            return f"TensorRT keypoints differ from PyTorch by {result.max_abs:.2e} > {KP_ATOL:.0e}"
        if result.psnr_db is None:  # not the image: the motion field
            return (f"TensorRT motion field (deformation) differs from PyTorch by {result.max_abs:.2e} grid units "
                    f"(needs {result.tolerance})")
        if self.precision == "fp32":
            return f"TensorRT prediction differs from PyTorch by {result.max_abs:.2e} > {FP32_ATOL:.0e}"
        return (f"TensorRT {self.precision} prediction is {result.psnr_db:.1f} dB from PyTorch float32 "
                f"(< {MIN_PSNR_DB:.0f} dB)")

    def _compare(self, name: str, inputs: tuple[torch.Tensor, ...], *, detail: str
                 ) -> tuple[CheckResult, tuple[torch.Tensor, ...]]:
        """Run engine ``name`` and its PyTorch float32 graph on ``inputs``: the verdict, and the engine's outputs."""
        tolerance = self._tolerance(name)
        with exact_float32(self.device):
            want = self.graphs[name](*inputs)
        got = self.modules[name](*inputs)
        got = tuple(got) if isinstance(got, tuple | list) else (got,)
        if len(got) != len(want):
            return CheckResult("tensorrt", False, None, None, tolerance.describe(),
                               f"{detail}: {len(got)} outputs, PyTorch {len(want)}"), got
        if name == "kp_detector":  # every output (values, jacobians) within KP_ATOL
            results = [compare("tensorrt", g.float(), w.float(), tolerance, image=False, detail=detail)
                       for g, w in zip(got, want, strict=True)]
            return max(results, key=lambda r: (not r.ok, r.max_abs)), got
        names = self.graphs[name].output_names
        result = compare_frame("tensorrt", {n: g.float() for n, g in zip(names, got, strict=True)},
                               {n: w.float() for n, w in zip(names, want, strict=True)}, tolerance=tolerance,
                               motion_tolerance=self._motion_tolerance())
        result.detail = f"{detail}: {result.detail}"
        return result, got

    def _run(self, name: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
        """Engine ``name`` on ``inputs``; its first call is checked against PyTorch on these (real) inputs. None when
        that check fails: the engine has then switched to CUDA eager, and the caller uses it."""
        if name not in self._checked:  # the checked run's outputs are this call's: the engine runs once
            detail = f"{name}, first real input"
            try:
                result, got = self._compare(name, inputs, detail=detail)
            except Exception as err:  # the engine failed to run at all: same outcome as a failed check
                if device_failure(err) is not None:
                    raise
                result, got = failed_to_run("tensorrt", err, self._tolerance(name), detail=detail), ()
            self.checks.append(result)
            if not result.ok:
                self._fall_back(f"{self._problem(name, result)}, on the first real input")
                return None
            self._checked.add(name)
            logger.info("TensorRT %s checked against PyTorch on its first real input: %s", name, result.measured())
            return got
        got = self.modules[name](*inputs)
        return tuple(got) if isinstance(got, tuple | list) else (got,)

    def _fall_back(self, problem: str) -> None:
        logger.warning("%s; using CUDA eager from now on", problem)
        self._fallback = EagerEngine(self.kp_detector, self.generator, device=self.device, precision=self.precision,
                                     reason=f"fallback: {problem}")
        self._fallback.checks = self.checks  # one record of every check, whichever engine made it
        self.name, self.reason = self._fallback.name, self._fallback.reason
        self.modules = {}

    def keypoints(self, image: torch.Tensor) -> Keypoints:
        if self._fallback is not None:
            return self._fallback.keypoints(image)
        outs = []
        for i in range(image.shape[0]):
            with device_guard(self.device, "finding keypoints"):
                out = self._run("kp_detector", (image[i:i + 1].float().contiguous(),))
            if out is None:
                return self._fallback.keypoints(image)
            outs.append(out)
        value = torch.cat([o[0] for o in outs]).float()
        jacobian = torch.cat([o[1] for o in outs]).float() if len(outs[0]) > 1 else None
        return Keypoints(value, jacobian)

    def encode(self, image: torch.Tensor) -> SourceState:
        # Once per source, PyTorch float32 (an eager fallback decodes from this state as well).
        with exact_float32(self.device):
            return self.generator.encode_source(image)

    def decode(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints, *, with_deformed: bool = False,
               with_deformation: bool = False) -> dict[str, torch.Tensor]:
        if with_deformed:  # visualisation: the engine leaves the warped source image out
            with exact_float32(self.device):
                return self.generator.decode(state, kp_driving, kp_source, with_deformed=True,
                                             with_deformation=with_deformation)
        if self._fallback is not None:
            return self._fallback.decode(state, kp_driving, kp_source, with_deformation=with_deformation)
        graph = self.graphs["generator"]
        frames = []
        for i in range(kp_driving.value.shape[0]):
            named = frame_inputs(state.features, state.image_small, kp_source, kp_driving, i)
            with device_guard(self.device, "decoding a frame"):
                outs = self._run("generator", tuple(named[n].float().contiguous() for n in graph.input_names))
            if outs is None:
                return self._fallback.decode(state, kp_driving, kp_source, with_deformation=with_deformation)
            frames.append(dict(zip(graph.output_names, outs, strict=True)))
        # The engine always gives the motion field (photo framing's); returned only when asked for.
        return {k: torch.cat([f[k] for f in frames]).float() for k in frames[0]
                if with_deformation or k != "deformation"}

    def close(self) -> None:
        self.modules = {}
        if self._fallback is not None:
            self._fallback.close()


def clear_cache() -> None:
    """Delete every cached TensorRT engine."""
    shutil.rmtree(cache_root() / "tensorrt", ignore_errors=True)
