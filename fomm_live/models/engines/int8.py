"""The int8 engine: the per-frame generator in 8-bit integers on the CPU, calibrated on the user's photo, checked.

What runs: the keypoint detector in float32, compiled by the runtime where it runs float graphs too (OpenVINO; else
PyTorch eager; ``models.engines.int8_keypoints``); the source encoded once in float32; the per-frame generator
(dense motion, warp, bottleneck, decoder) as an int8 graph of one of the runtimes of ``models.engines.int8_runtimes``
(OpenVINO + NNCF by default, the fastest measured), its convolutions in int8 and its dense motion network in
float32.

Calibration: at the first ``encode`` of a photo, the generator is quantised with that photo's encoding and a spread
of driving poses around its keypoints (``int8_calibration.calibration_poses``), with a progress bar, and cached under
``$FOMM_LIVE_CACHE/int8/`` keyed by the checkpoint, the photo and the runtime's version; the next start with the same
photo loads the cached graph.

Checks (safe by construction, as every fast path): the first frame against float32 eager (the prediction at least
``INT8_MIN_PSNR_DB``, the motion field ``deformation`` within ``INT8_DEFORMATION_ATOL``), and again any frame whose
pose reaches beyond what the calibration covered (``int8_calibration.Reach``: keypoint shift or jacobian turn beyond
the widest calibration pose). A pose that passes widens the covered reach to ``RECHECK_GROWTH`` times its own, so a
head that keeps turning further costs a check every 10% of extra reach, not every frame. A failure, or a runtime that
fails to build or run, means eager at the fallback precision (bf16 where the CPU has native bf16, else float32) for
the rest of the run, with one warning naming the measured error (check ``int8``).

Imports ``models.engines.base``, ``.cpu``, ``.eager`` (its fallback), ``.int8_calibration``, ``.int8_keypoints``,
``.int8_runtimes`` and ``models.export``.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fomm_live.common.switches import switch
from fomm_live.models.engines.base import (
    CheckResult,
    Engine,
    EngineError,
    Tolerance,
    compare_frame,
    device_failure,
    failed_to_run,
)
from fomm_live.models.engines.cpu import configure_threads, default_precision
from fomm_live.models.engines.eager import EagerEngine
from fomm_live.models.engines.int8_calibration import (
    DEFAULT_POSES,
    CacheWriter,
    Reach,
    cache_folder,
    cache_key,
    calibration_poses,
    photo_digest,
    pose_reach,
    read_cached,
)
from fomm_live.models.engines.int8_keypoints import RuntimeKeypoints
from fomm_live.models.engines.int8_runtimes import RUNTIMES, Int8Runtime, RunGraph, runtime
from fomm_live.models.export import FrameGraph, example_inputs, frame_inputs
from fomm_live.models.generator import OcclusionAwareGenerator, SourceState
from fomm_live.models.keypoint_detector import Keypoints, KPDetector

logger = logging.getLogger(__name__)

RUNTIME_ENV = "FOMM_LIVE_INT8_RUNTIME"
# The int8 prediction must come within 35 dB PSNR of float32 eager (an RMS error of 1.8% of the range, 4.5 of 255
# levels; the reduced-float paths get 40 dB). Measured (benchmarks/int8.py, 8 held-out poses, benchmarks/RESULTS.md):
# golden tiny 46.0 dB with OpenVINO, 49.8 dB with ONNX Runtime, 51.0 dB with PT2E; vox-256-size random weights
# 77-83 dB (their picture is nearly flat).
INT8_MIN_PSNR_DB = 35.0
# The motion field: the dense motion network stays float32 in the int8 graph, so its field differs from PyTorch's by
# reordered float32 arithmetic only: 4.8e-7 with OpenVINO and ONNX Runtime (golden tiny and vox-256 size). The bound
# is 1e-3 grid units (1/30 of a pixel of vox-256's 64 x 64 field): far above that, far below the bf16 bound (2e-2) or
# a field with x and y swapped (2.0). PT2E + inductor measured 9.4e-4 (vox-256) and 5.3e-3 (golden tiny): it fails
# there, which is one reason it is not the default.
INT8_DEFORMATION_ATOL = 1e-3
RECHECK_GROWTH = 1.1
LOADED_GRAPHS = 4  # int8 graphs kept loaded (one per photo): switching between a few avatars reloads nothing


INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "asimddp", "i8mm")  # x86-64 VNNI / AMX; arm64 dot products


def int8_instructions() -> frozenset[str]:
    """The int8 dot-product instruction sets of this CPU (``amx_int8``, ``avx512_vnni``, ``avx_vnni``, ``asimddp``,
    ``i8mm``), from /proc/cpuinfo (Linux x86-64 ``flags``, arm64 ``Features``); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split()) & frozenset(INT8_FLAGS)
    return frozenset()


def int8_unavailable(device: torch.device, runtime_name: str | None = None) -> str | None:
    """Why int8 cannot run here (in words), or None when it can: CPU only, and a runtime installed."""
    if device.type != "cpu":
        return f"int8 runs on the CPU; on {device.type} use fp16"
    names = [runtime_name] if runtime_name else list(RUNTIMES)
    reasons = []
    for name in names:
        reason = runtime(name).missing()
        if reason is None:
            return None
        reasons.append(reason)
    return "; ".join(reasons)


def pick_runtime(requested: str | None = None) -> Int8Runtime:
    """The runtime asked for (argument, else ``FOMM_LIVE_INT8_RUNTIME``), else the first installed of ``RUNTIMES``.

    Raises:
        EngineError: none is installed (or the one asked for is not).
    """
    name = requested or switch(RUNTIME_ENV)
    reason = int8_unavailable(torch.device("cpu"), name)
    if reason is not None:
        raise EngineError(reason)
    for candidate in [name] if name else RUNTIMES:
        chosen = runtime(candidate)
        if chosen.missing() is None:
            return chosen
    raise EngineError("no int8 runtime is installed")  # not reached: int8_unavailable said one is


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="pose", desc=desc, disable=not sys.stderr.isatty(), leave=False)


class Int8Engine(Engine):
    """The per-frame generator in int8 (see the module docstring).

    Args:
        kp_detector: The loaded keypoint detector (float32, as loaded).
        generator: The loaded generator (float32): the int8 graph's source and the reference of every check.
        device: Must be the CPU.
        image_size: Model input size.
        runtime_name: ``openvino``, ``onnxruntime`` or ``torch`` (default: ``FOMM_LIVE_INT8_RUNTIME``, else the
            first installed, fastest first).
        fallback_precision: What runs after a failed check (default: bf16 with native bf16, else fp32).
        poses: Calibration poses.
        threads: CPU threads (default: one per physical core).
        cache_dir: Where calibrations are kept (default: ``int8`` in the user cache folder).

    Raises:
        EngineError: not the CPU, or no int8 runtime is installed.
    """

    name = "int8"

    def __init__(self, kp_detector: KPDetector, generator: OcclusionAwareGenerator, *, device: torch.device,
                 image_size: int = 256, runtime_name: str | None = None, fallback_precision: str | None = None,
                 poses: int = DEFAULT_POSES, threads: int | None = None, cache_dir: Path | None = None,
                 reason: str = "") -> None:
        super().__init__(device=device, precision="int8", reason=reason)
        if device.type != "cpu":
            raise EngineError(f"int8 runs on the CPU; on {device.type} use fp16")
        self.runtime = pick_runtime(runtime_name)
        self.kp_detector = kp_detector
        self.generator = generator
        self.image_size = image_size
        self.poses = poses
        self.threads = configure_threads(threads)
        self.cache_dir = cache_dir
        self.fallback_precision = fallback_precision or default_precision(device)
        self._fallback: Engine | None = None
        self._fallback_state: tuple[SourceState, SourceState] | None = None
        self._digest_pair: tuple[str, str] | None = None
        self._loaded: dict[str, tuple[RunGraph, Reach]] = {}  # cache key -> loaded graph, the last few photos
        self._graph: tuple[SourceState, RunGraph, Keypoints] | None = None  # (state, int8 graph, kp_source)
        self._arrays: dict[str, np.ndarray] = {}
        self.covered: Reach | None = None  # what the calibration (and the passing re-checks) covered
        self.checked = False
        self.cache_hit: bool | None = None  # the last encode found its calibration in the cache
        self.calibration_s: float | None = None  # seconds the last encode spent calibrating or loading
        self.keypoint_path = RuntimeKeypoints(kp_detector, self.runtime, image_size=image_size, threads=self.threads,
                                              cache_dir=cache_dir, digests=self._digests, record=self.record)

    @property
    def runtime_label(self) -> str:
        return f"{self.runtime.name} ({self.runtime.version()})"

    def keypoints(self, image: torch.Tensor) -> Keypoints:
        return self.keypoint_path(image)

    def encode(self, image: torch.Tensor) -> SourceState:
        state = self.generator.encode_source(image)
        if self._fallback is not None:
            return state
        kp_source = self.kp_detector(image[:1])
        start = time.perf_counter()
        try:
            graph = self._calibrated(image[:1], state, kp_source)
        except Exception as err:  # a runtime's build or load raises many types; all mean "the fallback runs"
            if device_failure(err) is not None:
                raise
            self._fall_back(failed_to_run("int8", err, self._tolerance(), detail=f"{self.runtime.name} calibration"))
            return state
        self.calibration_s = time.perf_counter() - start
        self._graph = (state, graph, kp_source)
        self.checked = False  # each photo's calibration is checked on its own first frame
        self._arrays = {"features": state.features[:1].float().numpy(),
                        "source_small": state.image_small[:1].float().numpy()}
        return state

    # --- calibration and its cache ------------------------------------------------------------------------------

    def _digests(self) -> tuple[str, str]:
        """The checkpoint's weights and architecture digests (cache key parts), computed once."""
        from fomm_live.models.engines.tensorrt import architecture_digest, weights_digest

        if self._digest_pair is None:
            self._digest_pair = (weights_digest(self.kp_detector, self.generator),
                                 architecture_digest(self.kp_detector, self.generator, self.image_size))
        return self._digest_pair

    def _calibrated(self, image: torch.Tensor, state: SourceState, kp_source: Keypoints) -> RunGraph:
        weights, architecture = self._digests()
        key = cache_key(weights=weights, architecture=architecture, photo=photo_digest(image),
                        runtime=self.runtime.name, runtime_version=self.runtime.version(), poses=self.poses)
        if key in self._loaded:  # a photo used before in this run (avatars switched back): no reload
            graph, self.covered = self._loaded[key]
            self.cache_hit = True
            return graph
        folder = (self.cache_dir or cache_folder()) / key
        graph = self._load_or_build(folder, state, kp_source)
        if len(self._loaded) >= LOADED_GRAPHS:
            self._loaded.pop(next(iter(self._loaded)))
        self._loaded[key] = (graph, self.covered)
        return graph

    def _load_or_build(self, folder: Path, state: SourceState, kp_source: Keypoints) -> RunGraph:
        covered = read_cached(folder)
        if covered is not None:
            try:
                graph = self.runtime.load(folder, threads=self.threads)
                self.covered, self.cache_hit = covered, True
                logger.info("int8 (%s): calibration loaded from the cache %s", self.runtime_label, folder)
                return graph
            except Exception as err:  # a cache written by another build, or damaged: calibrate again
                logger.warning("cached int8 calibration %s does not load (%s: %s); calibrating again", folder,
                               type(err).__name__, str(err).splitlines()[0][:120] if str(err) else "")
        self.cache_hit = False
        logger.info("int8 (%s): calibrating on this photo and %d driving poses (once per checkpoint and photo)",
                    self.runtime_label, self.poses)
        writer = CacheWriter(folder)
        try:
            covered = self._build(writer.folder, state, kp_source)
            graph = self.runtime.load(writer.folder, threads=self.threads)
            writer.commit(covered, {"runtime": self.runtime.name, "runtime_version": self.runtime.version(),
                                    "poses": self.poses})
        finally:
            if writer.folder.exists():
                writer.discard()
        self.covered = covered
        return graph

    def _build(self, folder: Path, state: SourceState, kp_source: Keypoints) -> Reach:
        """Quantise the generator on this photo's poses into ``folder``; returns the reach they cover."""
        poses = calibration_poses(kp_source, self.poses)
        features = state.features[:1].float().cpu().numpy()
        small = state.image_small[:1].float().cpu().numpy()
        covered = Reach(0.0, 0.0)
        samples = []
        for pose in poses:
            named = frame_inputs(features, small, kp_source, pose, 0)
            samples.append({k: v if isinstance(v, np.ndarray) else v.float().cpu().numpy() for k, v in named.items()})
            covered = covered.widest(pose_reach(pose, kp_source))
        graph = FrameGraph(self.generator, has_jacobian=kp_source.jacobian is not None).eval()
        _, example = example_inputs(self.kp_detector, self.generator, image_size=self.image_size, source=state,
                                    kp_source=kp_source)
        bar = _progress(len(samples), f"int8 calibration ({self.runtime.name})")
        try:
            counted = _Counted(samples, bar)
            if self.runtime.needs_onnx:
                from fomm_live.models.export import export_onnx_networks

                with tempfile.TemporaryDirectory(prefix="fomm-live-int8-") as tmp:
                    paths = export_onnx_networks(self.kp_detector, self.generator, tmp, image_size=self.image_size,
                                                 source=state, kp_source=kp_source, verify=False)
                    self.runtime.build(folder, onnx_path=paths["generator"], graph=graph, example=example,
                                       samples=counted, threads=self.threads)
            else:
                self.runtime.build(folder, onnx_path=None, graph=graph, example=example, samples=counted,
                                   threads=self.threads)
        finally:
            bar.close()
        return covered

    # --- frames, checks and the fallback -------------------------------------------------------------------------

    def _tolerance(self) -> Tolerance:
        return Tolerance(min_psnr_db=INT8_MIN_PSNR_DB)

    def _fall_back(self, result: CheckResult) -> None:
        self.record(result, label=f"int8 generator ({self.runtime.name})",
                    fallback=f"eager {self.fallback_precision}")
        self._fallback = EagerEngine(self.kp_detector, self.generator, device=self.device,
                                     precision=self.fallback_precision, threads=self.threads,
                                     reason=f"fallback: int8 failed its check ({result.detail}, {result.measured()})")
        self._fallback.checks = self.checks  # one record of every check, whichever engine made it
        self.name, self.reason, self.precision = "eager", self._fallback.reason, self._fallback.precision
        self._graph = None

    def _fallback_decode(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints,
                         with_deformation: bool) -> dict[str, torch.Tensor]:
        if self._fallback_state is None or self._fallback_state[0] is not state:
            self._fallback_state = (state, self._fallback.encode(state.image))  # at the fallback's precision
        out = self._fallback.decode(self._fallback_state[1], kp_driving, kp_source, with_deformation=with_deformation)
        self.precision = self._fallback.precision  # bf16 may itself have fallen to float32
        return out

    def _run_frame(self, kp_driving: Keypoints, kp_source: Keypoints, i: int) -> dict[str, torch.Tensor]:
        named = frame_inputs(self._arrays["features"], self._arrays["source_small"], kp_source, kp_driving, i)
        feeds = {k: v if isinstance(v, np.ndarray) else np.ascontiguousarray(v.float().numpy())
                 for k, v in named.items()}
        return {k: torch.from_numpy(np.asarray(v)) for k, v in self._graph[1](feeds).items()}

    def decode(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints, *, with_deformed: bool = False,
               with_deformation: bool = False) -> dict[str, torch.Tensor]:
        if with_deformed:  # visualisation: the graph leaves the warped source image out; float32 eager gives it
            return self.generator.decode(state, kp_driving, kp_source, with_deformed=True,
                                         with_deformation=with_deformation)
        if self._fallback is None and (self._graph is None or self._graph[0] is not state):
            self.encode(state.image)  # a state this engine did not encode (or a fallback before): calibrate for it
            if self._graph is not None:
                self._graph = (state, *self._graph[1:])
        if self._fallback is not None:
            return self._fallback_decode(state, kp_driving, kp_source, with_deformation)
        frames = []
        for i in range(kp_driving.value.shape[0]):
            one = Keypoints(*(None if t is None else t[i:i + 1] for t in kp_driving))
            src = Keypoints(*(None if t is None else t[min(i, t.shape[0] - 1):][:1] for t in kp_source))
            try:
                out = self._run_frame(one, src, 0)
            except Exception as err:  # the runtime raises its own types; all mean "the fallback runs"
                if device_failure(err) is not None:
                    raise
                self._fall_back(failed_to_run("int8", err, self._tolerance(), detail=self.runtime.name))
                return self._fallback_decode(state, kp_driving, kp_source, with_deformation)
            reach = pose_reach(one, src)
            if not self.checked or reach.beyond(self.covered):
                if not self._check(state, one, src, out, reach):
                    return self._fallback_decode(state, kp_driving, kp_source, with_deformation)
            frames.append(out)
        out = {k: torch.cat([f[k] for f in frames]) for k in frames[0]}
        if not with_deformation:  # the graph always gives it; returned only when asked for
            out = {k: v for k, v in out.items() if k != "deformation"}
        return out

    def _check(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints, out: dict[str, torch.Tensor],
               reach: Reach) -> bool:
        """This frame against float32 eager; widens the covered reach when it passes, falls back when not."""
        first = not self.checked
        single = SourceState(state.image[:1], state.image_small[:1], state.features[:1])
        want = self.generator.decode(single, kp_driving, kp_source, with_deformed=False, with_deformation=True)
        result = compare_frame("int8", out, want, tolerance=self._tolerance(),
                               motion_tolerance=Tolerance(atol=INT8_DEFORMATION_ATOL))
        where = "first frame" if first else f"pose beyond the calibration ({reach.describe()})"
        result.detail = f"{where}; {result.detail}"
        if not result.ok:
            self._fall_back(result)
            return False
        self.checked = True
        if first:
            self.record(result, label=f"int8 generator ({self.runtime.name})", fallback="eager")
        else:
            self.checks.append(result)
            logger.info("int8 re-checked on a %s: %s", where, result.measured())
        if reach.beyond(self.covered):
            self.covered = self.covered.widest(reach.scaled(RECHECK_GROWTH))
        return True

    def close(self) -> None:
        self._graph = None
        self.keypoint_path.close()
        if self._fallback is not None:
            self._fallback.close()


class _Counted(list):
    """The calibration samples, ticking a progress bar each time a runtime takes one."""

    def __init__(self, samples: list[dict[str, np.ndarray]], bar) -> None:
        super().__init__(samples)
        self.bar = bar

    def __iter__(self):
        for sample in super().__iter__():
            self.bar.update(1)
            yield sample
