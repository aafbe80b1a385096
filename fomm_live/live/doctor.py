"""``fomm-live doctor``: checks a set-up and says what to fix, one line per check: OK, WARN or FAIL."""

from __future__ import annotations

import importlib
import logging
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

OK, WARN, FAIL = "OK", "WARN", "FAIL"

PACKAGES = [("torch", "torch"), ("numpy", "numpy"), ("opencv", "cv2"), ("mediapipe", "mediapipe"),
            ("pyvirtualcam", "pyvirtualcam"), ("PyAV", "av"), ("PyYAML", "yaml")]


@dataclass
class Check:
    status: str
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.detail}"


def _safe(name: str, fn: Callable[[], Check]) -> Check:
    """Run one check; an unexpected error is that check's FAIL, never the end of the report."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - the doctor reports every failure as a line
        return Check(FAIL, name, f"{type(err).__name__}: {str(err).strip().splitlines()[0][:160] if str(err) else ''}")


def check_python() -> Check:
    version = platform.python_version()
    ok = sys.version_info >= (3, 11)
    return Check(OK if ok else FAIL, "python", version + ("" if ok else " (fomm-live needs Python 3.11 or newer)"))


def check_package(label: str, module: str) -> Check:
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        return Check(FAIL, label, f"not importable ({err}); reinstall with: pip install -e .")
    return Check(OK, label, getattr(mod, "__version__", "installed"))


def check_face_models() -> Check:
    """The face detection and face mesh models ship inside the mediapipe wheel; nothing may be downloaded."""
    import mediapipe

    root = Path(mediapipe.__file__).parent / "modules"
    needed = [root / "face_detection" / "face_detection_short_range.tflite",
              root / "face_landmark" / "face_landmark_with_attention.tflite"]
    missing = [str(p.relative_to(root)) for p in needed if not p.is_file()]
    if missing:
        return Check(FAIL, "face models", f"missing from the mediapipe wheel: {', '.join(missing)} "
                                          "(install mediapipe==0.10.21, the last release that bundles them)")
    from fomm_live.live.face import FaceDetector
    from fomm_live.live.media import read_image
    from fomm_live.live.paths import DEFAULT_PORTRAIT

    with FaceDetector() as detector:
        faces = detector.detect(read_image(DEFAULT_PORTRAIT))
    if len(faces) != 1:
        return Check(FAIL, "face models", f"the bundled portrait should hold one face, the detector found {len(faces)}")
    return Check(OK, "face models", "bundled with mediapipe; a face found in the bundled portrait")


def check_cameras() -> Check:
    """The same listing as ``fomm-live cameras``."""
    from fomm_live.live.capture.cameras import list_cameras

    found = list_cameras()
    if not found:
        return Check(WARN, "cameras", "no camera found; a video file works with --camera PATH")
    return Check(OK, "cameras", "; ".join(" ".join(c.line().split()) for c in found))


def check_virtualcam() -> Check:
    """Opens the virtual camera only for as long as it takes to name it, then lets it go for the real run."""
    from fomm_live.live.output.sinks import SinkUnavailable, VirtualCamSink

    try:
        sink = VirtualCamSink(width=320, height=240, fps=30)
    except SinkUnavailable as err:
        return Check(WARN, "virtual camera", f"{err}; for calls in a browser, no driver is needed: run --output "
                                             "browser with the fomm-live extension ('fomm-live extension' shows how)")
    try:
        return Check(OK, "virtual camera", f"available: {sink.camera.device} ({sink.backend} backend)")
    finally:
        sink.close()


def check_display() -> Check:
    from fomm_live.live.output.window import display_available

    if display_available():
        return Check(OK, "display", "available for the preview window")
    return Check(WARN, "display", "none (no preview window; use --no-preview, or record with --output PATH.mp4)")


def check_gpu() -> Check:
    import torch

    if not torch.cuda.is_available():
        return Check(WARN, "GPU", f"no CUDA GPU visible to PyTorch {torch.__version__}; the CPU path is used")
    return Check(OK, "GPU", f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})")


def check_tensorrt() -> Check:
    try:
        import torch_tensorrt
    except ImportError:
        return Check(WARN, "TensorRT", "torch-tensorrt not installed (on an NVIDIA GPU: pip install -e '.[tensorrt]')")
    return Check(OK, "TensorRT", f"torch-tensorrt {torch_tensorrt.__version__}")


def check_int8() -> Check:
    """Whether ``--precision int8`` runs here, with which runtime, and whether ``auto`` picks it (and if not, why)."""
    import torch

    from fomm_live.models.animator import auto_int8
    from fomm_live.models.engines.int8 import int8_instructions, int8_unavailable, pick_runtime

    cpu = torch.device("cpu")
    missing = int8_unavailable(cpu)
    if missing is not None:
        return Check(WARN, "int8", f"not available: {missing}")
    chosen = pick_runtime()
    why_not = auto_int8(cpu)
    flags = ", ".join(sorted(int8_instructions())) or "none"
    auto = "--precision auto uses it" if why_not is None else f"--precision auto does not use it ({why_not})"
    return Check(OK, "int8", f"available: {chosen.name} ({chosen.version()}); CPU int8 dot products: {flags}; {auto}")


def check_checkpoint(path: str, config: str | None) -> Check:
    """The checkpoint loads safely and strictly into ``config`` (default vox-256), naming the preset it matches."""
    from fomm_live.models import CheckpointError, ConfigError, build_networks, load_config, read_checkpoint
    from fomm_live.models.checkpoint import load_into, matching_presets

    try:
        states = read_checkpoint(path)
        presets = matching_presets(states)
        name = config or "vox-256"
        load_into(*build_networks(load_config(name)), states, source=path, config_name=name)
    except (CheckpointError, ConfigError) as err:
        return Check(FAIL, "checkpoint", str(err))
    matched = f"; it matches preset {' / '.join(presets)}" if presets else ""
    return Check(OK, "checkpoint", f"{path} loads into {name}{matched}")


def check_cache_dir() -> Check:
    from fomm_live.live.paths import cache_dir

    folder = cache_dir()
    probe = folder / ".doctor-write-test"
    probe.write_bytes(b"ok")
    probe.unlink()
    return Check(OK, "cache folder", f"{folder} is writable")


def run_checks(*, checkpoint: str | None = None, config: str | None = None) -> list[Check]:
    checks = [_safe("python", check_python)]
    checks += [_safe(label, lambda label=label, module=module: check_package(label, module))
               for label, module in PACKAGES]
    checks += [_safe(name, fn) for name, fn in (("face models", check_face_models), ("cameras", check_cameras),
                                                ("virtual camera", check_virtualcam), ("display", check_display),
                                                ("GPU", check_gpu), ("TensorRT", check_tensorrt), ("int8", check_int8),
                                                ("cache folder", check_cache_dir))]
    if checkpoint:
        checks.append(_safe("checkpoint", lambda: check_checkpoint(checkpoint, config)))
    return checks
