"""Runtime options of the commands, as dataclasses built once from the command line.

The command line (``live.cli``) turns its arguments into these; everything below it (backend and output wiring, the
pipeline, file-to-file animation) takes them and never sees argparse. Each default is written here once; the command
line reads its defaults from these classes. The live loop's options (``PipelineOptions``) are grouped by concern:
tracking, calibration, the output frame and pacing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CHECKPOINT_HELP = ("an original First Order Motion Model checkpoint (vox-cpk.pth.tar, vox-adv-cpk.pth.tar, "
                   "taichi-cpk.pth.tar, ...); see the README for where to get one")

CROP_TRACKING = ("follow", "steady")  # how the crop box follows the face (``live.face.CropTracker``'s ``tracking``)
# follow: a One Euro filter follows every head motion with a lag; steady: the box holds while the face stays near its
# centre and glides to re-centre when it nears the edge (in-betweens +0.22 to +1.43 dB over holding on three real
# clips, the avatar no longer slides back after a head moves and stays: benchmarks/RESULTS.md, 2026-12-07 04:55-05:11
# UTC). Not the default yet: with it the landmark backend's --head-strength 0 left 30% of a drawn head's yaw range in
# the avatar instead of 23% (tests/test_strength_landmarks.py, whose bound is 25%): the motion smoother's per-coordinate
# cutoffs bend a fast-moving mesh, and more of the head's motion now reaches it (same RESULTS section).
DEFAULT_CROP_TRACKING = "follow"


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
        crop_tracking: With ``crop="face"``, how the crop box follows the face (``CROP_TRACKING``).
        label: Draw the "AI-generated" label on every frame.
        framing: ``face`` (the model's square) or ``photo`` (the photo framed, the face pasted back).
        output_size: (width, height); None: the model's square (``face``) or 1280 x 720 (``photo``).
        detail: With photo framing, the photo's fine detail carried along the motion (``live.framing.pasteback``).
        head_strength: How much of the driver's head motion the face copies, 0 to 2.
        expression_strength: How much of the driver's expression the face copies, 0 to 2.
    """

    source: str
    driving: str
    out: str
    crop: str = "none"
    find_best_frame: bool = False
    smoothing: bool = True
    crop_tracking: str = DEFAULT_CROP_TRACKING
    label: bool = True
    framing: str = "face"
    output_size: tuple[int, int] | None = None
    detail: bool = True
    head_strength: float = 1.0
    expression_strength: float = 1.0


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


@dataclass(frozen=True)
class TrackingOptions:
    """How the live loop follows the face.

    Attributes:
        crop: ``face`` (track and crop the face) or ``none`` (the centre square of the whole frame).
        mirror: Mirror the camera image before processing (hotkey m toggles it).
        smoothing: Smooth the crop box and the motion (keypoints or landmarks).
        crop_tracking: How the crop box follows the face (``CROP_TRACKING``): ``steady`` holds it while the face
            stays near its centre; ``follow`` moves it with every head motion.
        kp_min_cutoff: The motion's smoothing at rest, Hz (``--kp-cutoff``): lower is steadier but laggier.
        kp_beta: How fast that cutoff opens with speed.
    """

    crop: str = "face"
    mirror: bool = False
    smoothing: bool = True
    crop_tracking: str = DEFAULT_CROP_TRACKING
    kp_min_cutoff: float = 1.0
    kp_beta: float = 2.0


@dataclass(frozen=True)
class CalibrationOptions:
    """When the neutral pose is taken.

    Attributes:
        auto: Once the face has been still for ``steady_seconds`` (else only when c is pressed).
        steady_seconds: How long the face must be still.
        first: Take the first frame with motion when no neutral pose is set (file-to-file animation).
        best_frame: Start in best-frame mode (the neutral is the frame that best matches the photo's pose).
    """

    auto: bool = True
    steady_seconds: float = 0.5
    first: bool = False
    best_frame: bool = False


@dataclass(frozen=True)
class FrameOptions:
    """What an output frame is.

    Attributes:
        framing: ``face`` (the model's square fitted to the output) or ``photo`` (the source photo framed for the
            output, the animated face pasted back: ``live.framing.compositor``). The commands that run live
            (``run``, ``demo``) default to ``LIVE_FRAMING``.
        size: (width, height) of output frames; None: the input's.
        detail: With photo framing, carry the photo's fine detail along the backend's motion.
        label: Draw the "AI-generated" label on every output frame.
    """

    framing: str = "face"
    size: tuple[int, int] | None = None
    detail: bool = True
    label: bool = True


LIVE_FRAMING = "photo"  # what ``run`` and ``demo`` show by default: the whole photo, as a call expects


@dataclass(frozen=True)
class PacingOptions:
    """How input frames are read and output frames announced.

    Attributes:
        realtime: Pace a file input at its fps like a camera (else every frame, as fast as it goes).
        loop: Repeat a file input.
        max_frames: Stop after this many input frames.
        fps: Output frame rate announced to sinks; None: the input's.
    """

    realtime: bool = False
    loop: bool = False
    max_frames: int | None = None
    fps: float | None = None


@dataclass(frozen=True)
class PipelineOptions:
    """The live loop's options, one group per concern.

    Attributes:
        tracking: Following the face.
        calibration: Taking the neutral pose.
        frame: What an output frame is.
        pacing: Reading the input, announcing the output.
        pipelining: Track frame N+1 while the model works on frame N (two threads); None:
            ``live.loop.pipeline.pipelining_default`` (``FOMM_LIVE_PIPELINING``, else on unless the backend's model
            keeps every CPU core busy).
        show_help: Show the help overlay in the preview from the start.
        scripted_keys: Input frame index -> hotkeys applied just before that frame is processed (tests, demos).
        head_strength: How much of the head's motion the face copies at the start, 0 to 2 (hotkeys and sliders
            change it while running).
        expression_strength: The same for the expression.
        inbetweens: With a backend that allows them (``Backend.inbetweens``: FOMM) and a live or paced input, the
            generator renders keyframes as fast as it can and every camera frame it cannot render in time gets an
            in-between (``live.loop.keyframes``); False: every frame waits for the generator, as before.
    """

    tracking: TrackingOptions = field(default_factory=TrackingOptions)
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    frame: FrameOptions = field(default_factory=FrameOptions)
    pacing: PacingOptions = field(default_factory=PacingOptions)
    pipelining: bool | None = None
    show_help: bool = False
    scripted_keys: dict[int, list[str]] = field(default_factory=dict)
    head_strength: float = 1.0
    expression_strength: float = 1.0
    inbetweens: bool = True
