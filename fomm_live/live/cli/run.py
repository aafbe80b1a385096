"""``fomm-live run``: the live loop from a camera, file or stream to the virtual camera, preview window and/or MP4."""

from __future__ import annotations

import argparse
import contextlib
import logging
from dataclasses import replace

from fomm_live.live.cli.common import (
    add_crop_tracking_option,
    add_framing_options,
    add_model_options,
    add_remote_options,
    add_strength_options,
    model_options,
    parse_size,
    remote_options,
)
from fomm_live.live.cli.outputs import add_renamed_option, check_live_output
from fomm_live.live.loop.hotkeys import help_text
from fomm_live.live.options import (
    LIVE_FRAMING,
    CalibrationOptions,
    CameraOptions,
    FrameOptions,
    ModelOptions,
    OutputOptions,
    PacingOptions,
    PipelineOptions,
    RemoteOptions,
    TrackingOptions,
)
from fomm_live.live.output.browser import DEFAULT_PORT

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run", help="the live loop (default): camera -> animated photo -> virtual camera / preview / MP4",
        description="Animate the photo with your face, live. The neutral pose is taken automatically once your face "
                    "is still after start; press c in the preview to take it again. Press h for all hotkeys.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=help_text(),
    )
    add_model_options(run, several_sources=True)
    add_remote_options(run)
    live = run.add_argument_group("live loop")
    live.add_argument("--camera", default=CameraOptions.camera, metavar="INDEX_OR_PATH_OR_URL",
                      help="camera index, device path (/dev/video0, /dev/v4l/by-id/...), video file or stream URL; "
                           f"'fomm-live cameras' lists the cameras (default: {CameraOptions.camera})")
    live.add_argument("--resolution", type=parse_size, metavar="WxH", help="resolution to ask of the camera")
    live.add_argument("--fps", type=float, metavar="N", help="frame rate to ask of the camera")
    live.add_argument("--output", action="append", metavar="virtualcam|window|browser[:PORT]|PATH.mp4",
                      help="where frames go; repeat for several (default: window when a display exists, plus "
                           "virtualcam when one is installed). browser: for browser calls with no driver, serves "
                           f"the frames to the fomm-live extension on 127.0.0.1:{DEFAULT_PORT} (or :PORT), with a "
                           "page showing them at that address ('fomm-live extension' says how to load it)")
    add_renamed_option(live, "--out", new="--output", example="fomm-live run ... --output recording.mp4")
    live.add_argument("--output-size", type=parse_size, metavar="WxH",
                      help="output frame size (default: the resolution the camera granted)")
    live.add_argument("--no-preview", action="store_true", help="no preview window")
    live.add_argument("--mirror", action="store_true",
                      help="flip the camera image left to right before tracking, as the m key does")
    live.add_argument("--mirror-output", action="store_true",
                      help="flip what the virtual camera and the browser output send (what the call sees); the preview "
                           "and recordings stay")
    live.add_argument("--realtime", action="store_true",
                      help="pace a video file at its own fps like a camera (stale frames are dropped and counted)")
    live.add_argument("--loop", action="store_true", help="repeat a video file")
    live.add_argument("--max-frames", type=int, metavar="N", help="stop after N input frames")
    live.add_argument("--stats-json", metavar="PATH",
                      help="write frame counts and per-stage p50/p95/p99 latency (ms) here at exit")
    live.add_argument("--crop", default=TrackingOptions.crop, choices=["face", "none"],
                      help="face: track and crop the face (default); none: use the centre square of the frame")
    live.add_argument("--no-smoothing", action="store_true", help="no smoothing of the crop box and keypoints")
    add_crop_tracking_option(live)
    live.add_argument("--kp-cutoff", type=float, default=TrackingOptions.kp_min_cutoff, metavar="HZ",
                      help="keypoint smoothing at rest: lower is steadier but laggier "
                           f"(default: {TrackingOptions.kp_min_cutoff})")
    live.add_argument("--manual-calibration", action="store_true",
                      help="take the neutral pose only when c is pressed (default: automatically once still)")
    add_inbetween_option(live)
    add_framing_options(run, framing=LIVE_FRAMING, output_size=None)
    add_strength_options(run)


def add_inbetween_option(group: argparse._ActionsContainer) -> None:
    """``--no-inbetweens`` (``run``, ``demo``)."""
    group.add_argument("--no-inbetweens", action="store_true",
                       help="FOMM: show only the generator's own frames, each camera frame waiting for it (default: "
                            "the generator renders keyframes as fast as it can and every camera frame in between is "
                            "the newest keyframe moved by your face's motion, so the output keeps the camera's rate)")


def execute(args: argparse.Namespace) -> int:
    for value in args.output or ():
        check_live_output(value)
    camera = CameraOptions(camera=args.camera, resolution=args.resolution, fps=args.fps)
    outputs = OutputOptions(outputs=tuple(args.output or ()), preview=not args.no_preview, size=args.output_size,
                            stats_json=args.stats_json, mirror_output=args.mirror_output)
    loop = PipelineOptions(tracking=TrackingOptions(crop=args.crop, mirror=args.mirror, smoothing=not args.no_smoothing,
                                                    crop_tracking=args.crop_tracking, kp_min_cutoff=args.kp_cutoff),
                           calibration=CalibrationOptions(auto=not args.manual_calibration),
                           frame=FrameOptions(label=not args.no_label, framing=args.framing, detail=args.detail),
                           pacing=PacingOptions(realtime=args.realtime, loop=args.loop, max_frames=args.max_frames),
                           head_strength=args.head_strength, expression_strength=args.expression_strength,
                           inbetweens=not args.no_inbetweens)
    return run_live(args.source, model=model_options(args), camera=camera, outputs=outputs, loop=loop,
                    remote=remote_options(args))


def run_live(sources: list[str] | None, *, model: ModelOptions, camera: CameraOptions, outputs: OutputOptions,
             loop: PipelineOptions, remote: RemoteOptions | None = None) -> int:
    """Open the input, the backend and the outputs, run the live loop until the input ends or the user stops it,
    and print the summary.

    Args:
        sources: The photos (files or folders); None: the bundled portrait.
        model: What animates.
        camera: Where frames come from.
        outputs: Where they go.
        loop: The live loop's options (the output size and frame rate are filled in from the input).
        remote: The FOMM of a ``fomm-live serve`` server instead of a local model (None: local).
    """
    from fomm_live.live.capture.cameras import check_camera, parse_camera_spec
    from fomm_live.live.capture.sources import OpenCVSource
    from fomm_live.live.face import FaceDetector
    from fomm_live.live.loop.pipeline import LivePipeline, prepare_avatars
    from fomm_live.live.stats import PipelineStats
    from fomm_live.live.threads import bound_helper_threads, unpin_networks_for_inbetweens
    from fomm_live.live.wiring import close_backend, load_sources, make_backend, open_outputs

    # The camera's existence is checked before the model loads (a TensorRT build can take minutes) and the camera is
    # opened only after, so that it is not held, light on, while nothing reads it.
    spec = parse_camera_spec(camera.camera)
    check_camera(spec)
    in_folders: set[str] = set()
    images = load_sources(sources, in_folders=in_folders)
    with contextlib.ExitStack() as cleanup:
        # A remote server is sent every frame of a file read losslessly (none dropped), as a local model would be.
        lossless = spec.kind == "file" and not loop.pacing.realtime
        # In-betweens ahead (a local model on a live or paced input): OpenVINO's threads unpinned (live.threads).
        unpin_networks_for_inbetweens(inbetweens=loop.inbetweens and not lossless and remote is None)
        backend = make_backend(model, tracking=True, remote=remote, lossless=lossless)
        cleanup.callback(close_backend, backend)
        if not loop.frame.label:
            logger.warning("the 'AI-generated' label is removed from the output (--no-label)")
        detector = cleanup.enter_context(FaceDetector()) if loop.tracking.crop == "face" else None
        avatars = prepare_avatars(images, backend.size, detector, crop=loop.tracking.crop,
                                  needs_face=backend.needs_face, skippable=in_folders)
        source = OpenCVSource(camera.camera, resolution=camera.resolution, fps=camera.fps)
        cleanup.callback(source.close)  # safe twice: the pipeline closes what it reads when it ends
        width, height = outputs.size or (source.width, source.height)
        clock = "frames" if source.is_file and not loop.pacing.realtime else "capture"
        stats = PipelineStats()
        sinks, window = open_outputs(outputs, width=width, height=height, fps=source.fps, clock=clock, stats=stats)
        for output in [*sinks, window]:
            if output is not None:
                cleanup.callback(output.close)
        logger.info("input: %s; output %dx%d to %s", source.description, width, height,
                    ", ".join([s.name for s in sinks] + (["preview window"] if window else [])))
        if window is not None:
            print(help_text())
        # A lost camera is opened again by the same name (device path or index), without probing the others.
        reopen = None if source.is_file else (lambda: OpenCVSource(camera.camera, resolution=camera.resolution,
                                                                  fps=camera.fps))
        bound_helper_threads(cores_busy=backend.uses_all_cores)
        pipeline = LivePipeline(source, backend, avatars, sinks, detector=detector, window=window, reopen=reopen,
                                options=replace(loop, frame=replace(loop.frame, size=(width, height)),
                                                pacing=replace(loop.pacing, fps=source.fps)), stats=stats)
        try:
            summary = pipeline.run()
        finally:
            if pipeline.stuck:  # a thread still uses the model or the detector: leave them to the process's exit
                cleanup.pop_all()
            if outputs.stats_json:
                pipeline.stats.write_json(outputs.stats_json, extra={
                    "backend": backend.name, "input": source.description, "output_size": [width, height]})
    e2e = summary["end_to_end_ms"]
    print(f"{summary['frames_in']} frames in, {summary['frames_out']} out, {summary['frames_dropped']} dropped; "
          f"end to end p50 {e2e.get('p50', float('nan')):.1f} ms, p95 {e2e.get('p95', float('nan')):.1f} ms")
    return 0
