"""The ONNX Runtime engine: both per-frame networks exported to ONNX (``models.export``) and run by ONNX Runtime.

Checked twice against PyTorch float32: the export on fixed inputs (``models.export.ONNX_ATOL``; a failure means no
ONNX Runtime: ``create_engine`` starts eager), and the first real keypoints and frame against float32 eager
(``FP32_ATOL`` for the prediction and the dense motion field ``deformation``, which the exported generator always
returns; check ``onnxruntime``; a failure, or a session that fails to run, switches this engine to eager for the rest
of the run, with one warning). ``decode(..., with_deformation=True)`` runs the exported graph too.

Imports ``models.engines.base``, ``.cpu`` and ``.eager`` (its fallback); ``onnxruntime`` itself lazily.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from fomm_live.models.engines.base import (
    FP32_ATOL,
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
from fomm_live.models.engines.cpu import configure_threads
from fomm_live.models.engines.eager import EagerEngine, device_guard
from fomm_live.models.export import frame_inputs
from fomm_live.models.generator import OcclusionAwareGenerator, SourceState
from fomm_live.models.keypoint_detector import Keypoints, KPDetector

logger = logging.getLogger(__name__)


class OnnxRuntimeEngine(Engine):
    """Both per-frame networks exported to ONNX and run by ONNX Runtime (float32); the source is encoded by PyTorch.

    The export is checked against PyTorch (``models.export.ONNX_ATOL``) before the engine is used, and the first real
    keypoints and frame against float32 eager. Frames run one at a time (graphs are traced at batch 1).
    ``with_deformation`` (the motion field) comes from the exported graph; ``with_deformed`` (visualisation) runs
    PyTorch's decode.

    Raises:
        EngineError: onnxruntime or onnx is missing, or the export or its check failed.
    """

    name = "onnxruntime"

    def __init__(self, kp_detector: KPDetector, generator: OcclusionAwareGenerator, *, device: torch.device,
                 image_size: int, threads: int | None = None, reason: str = "") -> None:
        super().__init__(device=device, precision="fp32", reason=reason)
        import tempfile

        from fomm_live.models.export import ExportError, export_onnx_networks, onnx_session

        try:
            import onnxruntime as ort
        except ImportError as err:
            raise EngineError("onnxruntime is not installed (pip install onnxruntime)") from err
        self.kp_detector = kp_detector
        self.generator = generator
        self._fallback: Engine | None = None
        self._checked: set[str] = set()  # "keypoints", "frame": checked on real inputs
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif device.type == "cuda":
            logger.warning("onnxruntime has no CUDA provider here; its graphs run on the CPU")
        threads = configure_threads(threads) if device.type == "cpu" else threads
        with tempfile.TemporaryDirectory(prefix="fomm-live-onnx-") as folder:
            try:
                paths = export_onnx_networks(kp_detector, generator, folder, image_size=image_size)
            except (ExportError, ImportError) as err:
                raise EngineError(f"ONNX export failed: {err}") from err
            self.sessions = {name: onnx_session(path, providers=providers, threads=threads)
                             for name, path in paths.items()}
        self.output_names = {name: [o.name for o in s.get_outputs()] for name, s in self.sessions.items()}
        self.input_names = {name: [i.name for i in s.get_inputs()] for name, s in self.sessions.items()}
        self._state_arrays: tuple[SourceState, dict[str, np.ndarray]] | None = None

    def _run(self, name: str, feeds: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        outs = self.sessions[name].run(None, {k: feeds[k] for k in self.input_names[name]})
        return {k: torch.from_numpy(v).to(self.device) for k, v in zip(self.output_names[name], outs, strict=True)}

    def _checked_run(self, what: str, run, reference) -> dict[str, torch.Tensor] | None:
        """``run()`` (ONNX Runtime), checked against ``reference()`` (PyTorch float32) the first time; None when that
        check fails or ONNX Runtime fails to run: the engine has then switched to eager."""
        if what in self._checked:
            return run()
        tolerance = Tolerance(atol=FP32_ATOL)
        try:
            got = run()
        except Exception as err:  # ONNX Runtime raises its own types; all mean "use eager"
            if device_failure(err) is not None:
                raise
            self._fall_back(failed_to_run("onnxruntime", err, tolerance, detail=what))
            return None
        want = reference()
        if what == "frame":  # the prediction and the motion field (float32 graphs: float32 bounds)
            result = compare_frame("onnxruntime", got, want, tolerance=tolerance,
                                   motion_tolerance=deformation_tolerance("fp32"))
        else:
            result = compare("onnxruntime", got["kp_value"], want["kp_value"], tolerance, image=False,
                             detail="kp_value")
        if not result.ok:
            self._fall_back(result)
            return None
        self._checked.add(what)
        self.record(result, label=f"ONNX Runtime {what}", fallback="eager")
        return got

    def _fall_back(self, result: CheckResult) -> None:
        self.record(result, label="ONNX Runtime", fallback="eager float32")
        self._fallback = EagerEngine(self.kp_detector, self.generator, device=self.device, precision="fp32",
                                     reason=f"fallback: ONNX Runtime failed its first-frame check "
                                            f"({result.detail}, {result.measured()})")
        self._fallback.checks = self.checks  # one record of every check, whichever engine made it
        self.name, self.reason = self._fallback.name, self._fallback.reason
        self.sessions = {}

    def keypoints(self, image: torch.Tensor) -> Keypoints:
        if self._fallback is not None:
            return self._fallback.keypoints(image)

        def run() -> dict[str, torch.Tensor]:
            frames = image.detach().float().cpu().numpy()
            outs = [self._run("kp_detector", {"image": frames[i:i + 1]}) for i in range(frames.shape[0])]
            return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}

        def reference() -> dict[str, torch.Tensor]:
            with exact_float32(self.device):
                kp = self.kp_detector(image)
            return {"kp_value": kp.value}

        with device_guard(self.device, "finding keypoints"):
            got = self._checked_run("keypoints", run, reference)
        if got is None:
            return self._fallback.keypoints(image)
        return Keypoints(got["kp_value"], got.get("kp_jacobian"))

    def encode(self, image: torch.Tensor) -> SourceState:
        with device_guard(self.device, "encoding the source"), exact_float32(self.device):
            return self.generator.encode_source(image)

    def decode(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints, *, with_deformed: bool = False,
               with_deformation: bool = False) -> dict[str, torch.Tensor]:
        if with_deformed:  # visualisation: the exported graph leaves the warped source image out
            with exact_float32(self.device):
                return self.generator.decode(state, kp_driving, kp_source, with_deformed=True,
                                             with_deformation=with_deformation)
        if self._fallback is not None:
            return self._fallback.decode(state, kp_driving, kp_source, with_deformation=with_deformation)

        def run() -> dict[str, torch.Tensor]:
            if self._state_arrays is None or self._state_arrays[0] is not state:
                self._state_arrays = (state, {"features": state.features.float().cpu().numpy(),
                                              "source_small": state.image_small.float().cpu().numpy()})
            arrays = self._state_arrays[1]
            per_frame = []
            for i in range(kp_driving.value.shape[0]):
                named = frame_inputs(arrays["features"], arrays["source_small"], kp_source, kp_driving, i)
                feeds = {k: v if isinstance(v, np.ndarray) else v.float().cpu().numpy() for k, v in named.items()}
                per_frame.append(self._run("generator", feeds))
            return {k: torch.cat([f[k] for f in per_frame]) for k in per_frame[0]}

        def reference() -> dict[str, torch.Tensor]:
            with exact_float32(self.device):
                return self.generator.decode(state, kp_driving, kp_source, with_deformed=False, with_deformation=True)

        with device_guard(self.device, "decoding a frame"):
            got = self._checked_run("frame", run, reference)
        if got is None:
            return self._fallback.decode(state, kp_driving, kp_source, with_deformation=with_deformation)
        if not with_deformation:  # the graph always gives it; returned only when asked for
            got = {k: v for k, v in got.items() if k != "deformation"}
        return got

    def close(self) -> None:
        self.sessions = {}
        if self._fallback is not None:
            self._fallback.close()
