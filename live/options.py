"""Runtime options of the commands, as dataclasses built once from the command line.

The command line (``live.cli``) turns its arguments into these; everything below it (backend and output wiring, the
pipeline, file-to-file animation) takes them and never sees argparse. The live loop's own options are
``live.pipeline.PipelineOptions``.
"""

from __future__ import annotations

from dataclasses import dataclass

CHECKPOINT_HELP = ("an original First Order Motion Model checkpoint (vox-cpk.pth.tar, vox-adv-cpk.pth.tar, "
                   "taichi-cpk.pth.tar, ...); see the README for where to get one")


@dataclass(frozen=True)
class ModelOptions:
    """What animates, and how.

    Attributes:
        checkpoint: An original FOMM checkpoint; None: no weights (the landmark backend).
        config: Original-format config YAML or a preset name.
        backend: ``fomm``, ``landmarks`` or ``auto`` (fomm when a checkpoint is given, else landmarks).
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: ``auto``, ``fp32``, ``fp16``, ``bf16`` or ``int8``.
        engine: ``auto``, ``eager``, ``tensorrt`` or ``onnxruntime``.
        relative: Move the source by the motion relative to the neutral pose (else absolute keypoints).
        adapt_scale: Scale the motion by the source/driver face size ratio.
    """

    checkpoint: str | None = None
    config: str = "vox-256"
    backend: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    engine: str = "auto"
    relative: bool = True
    adapt_scale: bool = True


@dataclass(frozen=True)
class CameraOptions:
    """Where the live loop's frames come from.

    Attributes:
        camera: Device index, device path (``/dev/video0``, ``/dev/v4l/by-id/...``), video file or stream URL.
        resolution: (width, height) asked of a camera; None: its default.
        fps: Frame rate asked of a camera; None: its default.
    """

    camera: str = "0"
    resolution: tuple[int, int] | None = None
    fps: float | None = None


@dataclass(frozen=True)
class OutputOptions:
    """Where the live loop's frames go.

    Attributes:
        outputs: ``virtualcam``, ``window`` or ``PATH.mp4`` each; empty: the virtual camera (and the window when a
            display exists).
        preview: Open the preview window when a display exists (or when ``window`` is asked for).
        size: (width, height) of output frames; None: the camera's granted resolution.
        stats_json: Write frame counts and per-stage latency here at exit.
        mirror_output: Flip what the virtual camera shows (the call) left to right; the preview and recordings are
            left as they are.
    """

    outputs: tuple[str, ...] = ()
    preview: bool = True
    size: tuple[int, int] | None = None
    stats_json: str | None = None
    mirror_output: bool = False


@dataclass(frozen=True)
class AnimateOptions:
    """File-to-file animation (``fomm-live animate``).

    Attributes:
        source: The photo to animate.
        driving: A video file, or a folder of frames read in name order.
        out: An .mp4 file, or a folder that receives 00000.png, 00001.png, ...
        crop: ``none``: frames used as given, resized to the model's square, like the original demo; ``face``: track
            and crop the face as the live loop does.
        find_best_frame: Take as the neutral pose the driving frame closest to the photo's pose (else the first).
        smoothing: Smooth the crop box and the keypoints (only with ``crop="face"``: there is nothing to track
            otherwise, and the original demo does not smooth).
        label: Draw the "AI-generated" label on every frame.
        framing: ``face`` (the model's square) or ``photo`` (the photo framed, the face pasted back).
        output_size: (width, height); None: the model's square (``face``) or 1280 x 720 (``photo``).
        detail: With photo framing, the photo's fine detail carried along the motion (``live.pasteback``).
    """

    source: str
    driving: str
    out: str
    crop: str = "none"
    find_best_frame: bool = False
    smoothing: bool = True
    label: bool = True
    framing: str = "face"
    output_size: tuple[int, int] | None = None
    detail: bool = True


@dataclass(frozen=True)
class RemoteOptions:
    """The FOMM on a ``fomm-live serve`` server instead of this machine (``--remote``).

    Attributes:
        url: The server, ``http://HOST:PORT`` (``ws://`` accepted).
        token_file: A file whose first line is the server's token; None: no token (a loopback server).
        codec: ``jpeg`` (quality 90, compact) or ``png`` (lossless, for parity) for the crops and faces on the wire.
    """

    url: str
    token_file: str | None = None
    codec: str = "jpeg"
