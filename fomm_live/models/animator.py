"""The Python API: load a model, set a source image, calibrate on a neutral driving frame, animate frames.

    from fomm_live.models import Animator
    animator = Animator.from_checkpoint("vox-cpk.pth.tar", config="vox-256")
    animator.set_source(source_rgb)        # H x W x 3 uint8, any size: resized to the model's 256 x 256
    animator.calibrate(neutral_frame_rgb)  # the driving face at rest (relative motion)
    out = animator.animate(frame_rgb)      # 256 x 256 x 3 uint8

The source is encoded once per ``set_source`` (keypoints and generator encoder features); each frame then runs the
keypoint detector, the dense motion network and the decoder only. Which code runs them (PyTorch eager with the
device's fast path, ONNX Runtime, TensorRT) is the ``engine`` argument; see ``models.engines``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from fomm_live.common.switches import switch
from fomm_live.models.checkpoint import load_into, read_checkpoint
from fomm_live.models.config import DEFAULT_IMAGE_SIZE, DEFAULT_PRESET, build_networks, load_config
from fomm_live.models.engines import ENGINES, Engine, create_engine, default_precision
from fomm_live.models.engines.int8 import int8_instructions, int8_unavailable
from fomm_live.models.generator import OcclusionAwareGenerator, SourceState
from fomm_live.models.keypoint_detector import Keypoints, KPDetector
from fomm_live.models.motion import MotionNormalizer, MotionOptions
from fomm_live.models.strength import Strengths

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
INT8_ENV = "FOMM_LIVE_INT8"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error, not a silent CPU run."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA GPU on this machine")
    return dev


class PrecisionError(RuntimeError):
    """A precision that cannot run on the device (int8 on CUDA); the message is one line naming the choice to make."""


def resolve_precision(precision: str, device: torch.device, *, engine: str = "auto") -> str:
    """``auto`` -> fp16 on CUDA; on the CPU int8 where it runs well (``auto_int8``) and the engine is ``auto``, else
    bf16 where the CPU has native bf16 dot products (AVX512-BF16 / AMX), else fp32 (the measurements behind this are
    in ``models.engines`` and ``models.engines.int8``). An engine asked for by name keeps its own precision under
    ``auto`` (``onnxruntime`` float32, ``eager`` bf16 / fp32).

    Raises:
        PrecisionError: ``int8`` on CUDA (fp16 is the GPU's reduced precision).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "int8" and device.type == "cuda":
        raise PrecisionError("--precision int8 is for the CPU; on a CUDA GPU use fp16 (or auto)")
    if precision == "auto":
        reason = auto_int8(device) if engine == "auto" else f"--engine {engine} was asked for"
        if reason is None:
            logger.info("precision auto: int8 on this CPU (%s), checked against float32 on the first frame",
                        ", ".join(sorted(int8_instructions())) or "int8 dot products")
            return "int8"
        chosen = default_precision(device)
        if device.type == "cpu":
            logger.info("precision auto: %s (not int8: %s)", chosen, reason)
        return chosen
    return precision


def auto_int8(device: torch.device) -> str | None:
    """Why ``auto`` does not pick int8 here (in words), or None when it does: a CPU with int8 dot products (x86-64
    VNNI or AMX; elsewhere not measured yet), an int8 runtime installed, and ``FOMM_LIVE_INT8`` not off."""
    if device.type != "cpu":
        return f"int8 runs on the CPU, not on {device.type}"
    if switch(INT8_ENV) == "0":
        return f"{INT8_ENV}={os.environ[INT8_ENV]}"
    missing = int8_unavailable(device)
    if missing is not None:
        return missing
    if not int8_instructions():
        return "this CPU has no int8 dot products (VNNI / AMX); int8 would be no faster than float32 there"
    return None


def image_to_tensor(image: np.ndarray | torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """H x W x 3 uint8 RGB (or B x 3 x H x W float in [0, 1]) -> B x 3 x size x size float32 in [0, 1].

    The model input is ``float32(image) / 255``, NCHW, no other normalisation. Other sizes are resized with an
    antialiased bilinear filter. On CUDA the uint8 frame goes up through pinned memory without blocking (a quarter of
    the bytes of float32), and the conversion to float and the resize run on the GPU. Frames arrive in RGB: the face
    tracker needs the camera frame in RGB on the CPU anyway, so the colour conversion happens there, once per frame.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {image.dtype} {image.shape}")
        if not image.flags.writeable:  # torch cannot wrap read-only memory
            image = image.copy()
        tensor = torch.from_numpy(np.ascontiguousarray(image))  # H x W x 3 uint8
        if device.type == "cuda":
            tensor = tensor.pin_memory().to(device, non_blocking=True)
        else:
            tensor = tensor.to(device)
        tensor = tensor.permute(2, 0, 1)[None].float() / 255  # 1 x 3 x H x W
    else:
        non_blocking = device.type == "cuda" and image.device.type == "cpu" and image.is_pinned()
        tensor = image.to(device, torch.float32, non_blocking=non_blocking)
        if tensor.ndim == 3:
            tensor = tensor[None]
    if tensor.shape[-2:] != (size, size):
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return tensor  # B x 3 x size x size


def to_levels(tensor: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] (any shape: one frame or a batch) -> uint8 levels, rounded to nearest, on its device."""
    return (tensor.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W (or 3 x H x W) float in [0, 1] -> H x W x 3 uint8, rounded to nearest.

    The conversion to uint8 happens on the tensor's device, so a quarter of the bytes of float32 come down."""
    if tensor.ndim == 4:
        tensor = tensor[0]
    return download_image(to_levels(tensor).permute(1, 2, 0))


def download_image(image: torch.Tensor) -> np.ndarray:
    """An H x W x 3 uint8 tensor -> a numpy array on the host.

    From CUDA: one non-blocking copy into pinned memory (the caching host allocator reuses the buffers), then a wait
    on an event recorded after the copy, so the caller waits for this frame's work on its stream only, not for the
    whole device. The returned array keeps its pinned buffer alive. Not run in the test suite (no GPU there); the CPU
    path is the plain ``numpy()`` view.
    """
    if image.device.type != "cuda":
        return image.cpu().numpy()
    host = torch.empty(image.shape, dtype=image.dtype, pin_memory=True)  # H x W x 3 uint8, pinned
    host.copy_(image, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()
    copied.synchronize()
    return host.numpy()


class Animator:
    """Animates one source image with driving frames, with the source cached and a resettable neutral pose.

    Args:
        kp_detector: A loaded keypoint detector.
        generator: A loaded generator.
        device: Where to run (``auto``, ``cpu``, ``cuda``, ``cuda:1``...).
        precision: ``auto``, ``fp32``, ``fp16``, ``bf16`` or ``int8`` (the CPU only; see ``resolve_precision``);
            reduced precision applies to the generator only (the keypoint softmax at temperature 0.1 is the part
            most sensitive to it, and is ~2% of the compute).
        motion: Relative/absolute motion and scale adaptation.
        image_size: Model input size (256 for every published checkpoint).
        engine: ``auto``, ``eager``, ``tensorrt`` or ``onnxruntime`` (see ``models.engines``); ``auto`` picks the
            fastest one installed that passes its self-check and logs what it picked and why.

    ``kp_detector`` and ``generator`` stay the loaded networks, unchanged (the engine keeps any tuned copy).
    """

    def __init__(self, kp_detector: KPDetector, generator: OcclusionAwareGenerator, *, device: str = "auto",
                 precision: str = "auto", motion: MotionOptions | None = None,
                 image_size: int = DEFAULT_IMAGE_SIZE, engine: str = "auto") -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
        self.device = resolve_device(device)
        self.kp_detector = kp_detector.to(self.device).eval()
        self.generator = generator.to(self.device).eval()
        self.image_size = image_size
        self.engine: Engine = create_engine(self.kp_detector, self.generator, device=self.device,
                                            precision=resolve_precision(precision, self.device, engine=engine),
                                            engine=engine, image_size=image_size)
        self.normalizer = MotionNormalizer(motion)
        self.source: SourceState | None = None
        self.kp_source: Keypoints | None = None
        self._kp_neutral: Keypoints | None = None

    @property
    def precision(self) -> str:
        """The precision the generator runs at now: the engine's, which falls to ``fp32`` when a reduced precision
        fails its first-frame check."""
        return self.engine.precision

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, config: str | os.PathLike | dict = DEFAULT_PRESET, *,
                        device: str = "auto", precision: str = "auto", motion: MotionOptions | None = None,
                        engine: str = "auto") -> Animator:
        """Build the networks of ``config`` (preset name or original YAML) and load ``checkpoint`` strictly."""
        cfg = load_config(config)
        kp_detector, generator = build_networks(cfg)
        load_into(kp_detector, generator, read_checkpoint(checkpoint), source=str(checkpoint),
                  config_name=str(config) if not isinstance(config, dict) else "the config")
        return cls(kp_detector, generator, device=device, precision=precision, motion=motion, engine=engine)

    @property
    def motion(self) -> MotionOptions:
        return self.normalizer.options

    @property
    def calibrated(self) -> bool:
        return self.normalizer.calibrated

    @property
    def strengths(self) -> Strengths:
        """Head and expression strength (``models.strength``), applied from the next frame on."""
        return self.normalizer.strengths

    @strengths.setter
    def strengths(self, strengths: Strengths) -> None:
        self.normalizer.strengths = strengths

    def to_tensor(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        return image_to_tensor(image, self.image_size, self.device)

    @torch.inference_mode()
    def keypoints(self, image: np.ndarray | torch.Tensor) -> Keypoints:
        """Keypoints of an image (always fp32)."""
        return self.engine.keypoints(self.to_tensor(image))

    @torch.inference_mode()
    def set_source(self, image: np.ndarray | torch.Tensor) -> None:
        """Encode the source image once. A calibrated neutral pose is kept, its movement scale recomputed."""
        tensor = self.to_tensor(image)
        self.kp_source = self.engine.keypoints(tensor)
        self.source = self.engine.encode(tensor)
        if self._kp_neutral is not None:
            self.normalizer.calibrate(self._kp_neutral, self.kp_source)

    @torch.inference_mode()
    def calibrate(self, frame: np.ndarray | torch.Tensor | Keypoints) -> None:
        """Take this driving frame (or its keypoints) as the neutral pose; call again at any time to recalibrate."""
        if self.kp_source is None:
            raise RuntimeError("set_source() must be called before calibrate()")
        kp = frame if isinstance(frame, Keypoints) else self.keypoints(frame)
        self._kp_neutral = kp
        self.normalizer.calibrate(kp, self.kp_source)

    def reset_calibration(self) -> None:
        self._kp_neutral = None
        self.normalizer.reset()

    @torch.inference_mode()
    def generate(self, kp_driving: Keypoints, *, with_deformed: bool = False, with_motion: bool = False
                 ) -> dict[str, torch.Tensor]:
        """Run the normalisation and the cached-source generator on driving keypoints; returns the generator's dict
        plus ``kp_norm_value`` / ``kp_norm_jacobian``.

        ``with_motion`` also returns the dense motion field ``deformation`` (and ``occlusion_map``, as always when
        the model estimates one), from the same checked fast path as the frame (fused kernels, compiled decode,
        ONNX Runtime or TensorRT; see ``Engine.decode``).
        """
        if self.source is None or self.kp_source is None:
            raise RuntimeError("set_source() must be called before animating")
        kp_norm = self.normalizer(kp_driving, self.kp_source)
        out = self.engine.decode(self.source, kp_norm, self.kp_source, with_deformed=with_deformed,
                                 with_deformation=with_motion)
        out = {k: v.float().contiguous() for k, v in out.items()}
        out["kp_norm_value"] = kp_norm.value
        if kp_norm.jacobian is not None:
            out["kp_norm_jacobian"] = kp_norm.jacobian
        return out

    @torch.inference_mode()
    def animate_tensor(self, frames: torch.Tensor, *, with_deformed: bool = False) -> dict[str, torch.Tensor]:
        """B x 3 x H x W frames in [0, 1] -> the generator's outputs. In relative mode the first frame seen is
        taken as the neutral pose if none was calibrated, as the original demo does."""
        kp_driving = self.engine.keypoints(self.to_tensor(frames))
        if self.motion.relative and not self.calibrated:
            self.calibrate(Keypoints(*(None if t is None else t[:1] for t in kp_driving)))
        return self.generate(kp_driving, with_deformed=with_deformed)

    def animate(self, frame: np.ndarray) -> np.ndarray:
        """One H x W x 3 uint8 RGB driving frame -> the animated source, image_size^2 x 3 uint8."""
        return tensor_to_image(self.animate_tensor(self.to_tensor(frame))["prediction"])

    def close(self) -> None:
        """Release the engine's resources (sessions, engines); safe to call twice."""
        self.engine.close()

    def animate_frames(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Animate a stream of frames; the first is the neutral pose unless calibrated already."""
        for frame in frames:
            yield self.animate(frame)
