"""The keypoint detector beside the int8 generator: float32 still, compiled by the int8 runtime where it can.

The int8 engine keeps the keypoint detector in float32: its keypoints steer every pixel of the frame, and quantising
it has not been measured safe. Run by PyTorch eager it was the live loop's second cost at vox-256 size once the
generator was int8 (34.7 of a 117 ms frame, 2-core AVX512 CPU); the same float32 graph compiled by OpenVINO's CPU
plugin takes about half as long (benchmarks/RESULTS.md). So where the int8 runtime runs float graphs too
(``Int8Runtime.float_keypoints``: OpenVINO), the detector runs as that runtime's float32 graph:

- Built once per checkpoint (the photo plays no part): the ONNX export, converted by the runtime and kept under
  ``$FOMM_LIVE_CACHE/int8/kp-<key>/``, the key hashing the weights, the architecture, the runtime and its version, so
  a later start only compiles it (from the runtime's own compiled cache).
- Checked on its first input against PyTorch eager float32: keypoints and jacobians within ``FP32_ATOL`` (both sides
  are float32; they differ by reordered arithmetic only, 8e-7 measured at vox-256 size).
- A build, load or run that fails, or a failed check, means PyTorch eager for the rest of the run, with one warning.

Imports ``models.engines.base``, ``.int8_calibration``, ``.int8_runtimes`` and ``models.export``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from fomm_live.models.engines.base import FP32_ATOL, CheckResult, Tolerance, compare, device_failure, failed_to_run
from fomm_live.models.engines.int8_calibration import CacheWriter, cache_folder, folder_key
from fomm_live.models.engines.int8_runtimes import Int8Runtime, RunGraph
from fomm_live.models.keypoint_detector import Keypoints, KPDetector

logger = logging.getLogger(__name__)

PATH = "int8:keypoints"  # the check's name in ``Engine.checks``


def keypoint_cache_key(*, weights: str, architecture: str, runtime: str, runtime_version: str) -> str:
    """Folder name (after ``kp-``) of one checkpoint's compiled keypoint detector."""
    return folder_key({"weights": weights, "architecture": architecture, "runtime": runtime,
                       "runtime_version": runtime_version})


class RuntimeKeypoints:
    """The keypoint detector as the int8 runtime's float32 graph, checked, or PyTorch eager where that cannot be.

    Args:
        kp_detector: The loaded keypoint detector (float32): the export's source, the check's reference and the
            fallback.
        runtime: The int8 engine's runtime.
        image_size: The model input size the graph is exported at; other sizes run in PyTorch.
        threads: CPU threads for the runtime.
        cache_dir: Where compiled detectors are kept (default: ``int8`` in the user cache folder).
        digests: Returns ``(weights, architecture)`` digests of the checkpoint (the cache key's parts; computed once
            by the engine and shared with its calibration cache).
        record: The engine's ``record`` (keeps the check's verdict and logs it).
    """

    def __init__(self, kp_detector: KPDetector, runtime: Int8Runtime, *, image_size: int, threads: int | None,
                 cache_dir: Path | None, digests: Callable[[], tuple[str, str]],
                 record: Callable[..., bool]) -> None:
        self.kp_detector = kp_detector
        self.runtime = runtime
        self.image_size = image_size
        self.threads = threads
        self.cache_dir = cache_dir
        self._digests = digests
        self._record = record
        self._graph: RunGraph | None = None
        self.state = "eager" if not runtime.float_keypoints else "unbuilt"  # unbuilt -> unchecked -> checked | eager
        self.cache_hit: bool | None = None

    @property
    def label(self) -> str:
        return f"keypoint detector ({self.runtime.name} float32)"

    def __call__(self, image: torch.Tensor) -> Keypoints:
        """B x C x H x W float32 in [0, 1] on the CPU -> keypoints (float32)."""
        if self.state == "unbuilt":
            self._build_or_load()
        if self.state == "eager" or tuple(image.shape[-2:]) != (self.image_size, self.image_size):
            return self.kp_detector(image)
        try:
            got = self._run(image)
        except Exception as err:  # the runtime raises its own types; all mean "PyTorch runs it"
            if device_failure(err) is not None:
                raise
            self._give_up(failed_to_run(PATH, err, Tolerance(atol=FP32_ATOL), detail="run"))
            return self.kp_detector(image)
        if self.state == "unchecked":
            want = self.kp_detector(image)
            if not self._check(got, want):
                return want
        return got

    def close(self) -> None:
        """Let the compiled graph go (PyTorch runs any later call); safe to call twice."""
        self._graph = None
        self.state = "eager"

    def _run(self, image: torch.Tensor) -> Keypoints:
        values, jacobians = [], []
        for one in image.float().cpu().numpy():  # the graph takes one image (batch 1)
            out = self._graph({"image": one[None]})
            values.append(torch.from_numpy(out["kp_value"]))
            if "kp_jacobian" in out:
                jacobians.append(torch.from_numpy(out["kp_jacobian"]))
        return Keypoints(torch.cat(values), torch.cat(jacobians) if jacobians else None)

    def _check(self, got: Keypoints, want: Keypoints) -> bool:
        tolerance = Tolerance(atol=FP32_ATOL)
        result = compare(PATH, got.value, want.value, tolerance, image=False, detail="first input: keypoints")
        if result.ok and want.jacobian is not None:
            if got.jacobian is None:
                result = CheckResult(PATH, False, None, None, tolerance.describe(), "first input: no jacobians")
            else:
                jacobian = compare(PATH, got.jacobian, want.jacobian, tolerance, image=False,
                                   detail="first input: jacobians")
                if jacobian.ok:
                    result.max_abs = max(result.max_abs, jacobian.max_abs)
                    result.detail = "first input: keypoints and jacobians"
                else:
                    result = jacobian
        if not result.ok:
            self._give_up(result)
            return False
        self._record(result, label=self.label, fallback="PyTorch eager")
        self.state = "checked"
        return True

    def _give_up(self, result: CheckResult) -> None:
        self._record(result, label=self.label, fallback="PyTorch eager")
        self.state, self._graph = "eager", None

    def _build_or_load(self) -> None:
        try:
            weights, architecture = self._digests()
            key = keypoint_cache_key(weights=weights, architecture=architecture, runtime=self.runtime.name,
                                     runtime_version=self.runtime.version())
            folder = (self.cache_dir or cache_folder()) / f"kp-{key}"
            self.cache_hit = (folder / "kp_detector.json").exists()
            self._graph = self._load(folder) if self.cache_hit else None
            if self._graph is None:
                self._build(folder)
                self._graph = self.runtime.load_keypoints(folder, threads=self.threads)
            self.state = "unchecked"
        except Exception as err:  # export, conversion and compile raise many types; all mean "PyTorch runs it"
            if device_failure(err) is not None:
                raise
            self._give_up(failed_to_run(PATH, err, Tolerance(atol=FP32_ATOL), detail="build"))

    def _load(self, folder: Path) -> RunGraph | None:
        try:
            return self.runtime.load_keypoints(folder, threads=self.threads)
        except Exception as err:  # a folder written by another build, or damaged: convert again
            logger.warning("cached %s %s does not load (%s); converting again", self.label, folder, type(err).__name__)
            self.cache_hit = False
            return None

    def _build(self, folder: Path) -> None:
        from fomm_live.models.export import export_onnx_keypoints

        logger.info("%s: converting once for this checkpoint", self.label)
        writer = CacheWriter(folder)
        try:
            with tempfile.TemporaryDirectory(prefix="fomm-live-kp-") as tmp:
                path = export_onnx_keypoints(self.kp_detector, Path(tmp) / "kp_detector.onnx",
                                             image_size=self.image_size)
                self.runtime.build_keypoints(writer.folder, onnx_path=path)
            (writer.folder / "kp_detector.json").write_text(
                json.dumps({"runtime": self.runtime.name, "runtime_version": self.runtime.version(),
                            "image_size": self.image_size}, indent=1) + "\n", encoding="utf-8")
            writer.rename()
        finally:
            if writer.folder.exists():
                writer.discard()
