"""``fomm-live animate``: a photo animated by a driving video or frame folder, file to file, through the live
pipeline (``live.animate`` holds the options that make it behave like the original demo)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fomm_live.live.cli.common import (
    add_crop_tracking_option,
    add_framing_options,
    add_model_options,
    add_remote_options,
    add_strength_options,
    model_options,
    remote_options,
)
from fomm_live.live.cli.outputs import add_renamed_option, check_animate_output
from fomm_live.live.errors import UserError
from fomm_live.live.options import AnimateOptions

if TYPE_CHECKING:
    import numpy as np

    from fomm_live.live.output.sinks import FrameInfo

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    animate = sub.add_parser(
        "animate", help="animate a photo with a driving video or frame folder, file to file",
        description="Animate --source with the motion of --driving and write the result to --output. In relative mode "
                    "(the default) the first driving frame is the neutral pose.",
    )
    add_model_options(animate)
    add_remote_options(animate)
    animate.add_argument("--driving", required=True, metavar="VIDEO_OR_FRAME_DIR",
                         help="a video file, or a folder of frames read in name order")
    animate.add_argument("--output", required=True, metavar="PATH.mp4|DIR",
                         help="a video file (.mp4, or .mov / .mkv written whole at the end), or a folder (a name "
                              "without a suffix) that receives 00000.png, 00001.png, ...")
    add_renamed_option(animate, "--out", new="--output", example="fomm-live animate ... --output result.mp4")
    animate.add_argument("--crop", default=AnimateOptions.crop, choices=["none", "face"],
                         help="none: frames are used as given, resized to the model's size, like the original demo "
                              "(default); face: track and crop the face as the live loop does")
    animate.add_argument("--no-smoothing", action="store_true",
                         help="with --crop face, no smoothing of the crop box and keypoints (--crop none smooths "
                              "nothing)")
    add_crop_tracking_option(animate)
    animate.add_argument("--find-best-frame", action="store_true",
                         help="take as the neutral pose the driving frame whose face best matches the photo's pose "
                              "(default: the first frame)")
    add_framing_options(animate, framing=AnimateOptions.framing,
                        output_size="default: 1280x720 with --framing photo, else the model's square")
    add_strength_options(animate)
    animate.add_argument("--keyframe-every", type=keyframe_interval, default=None, metavar="N",
                         help="run the generator on frames 0, N, 2N, ... only and make the frames between them "
                              "in-betweens: the last keyframe moved by the face mesh's motion since it, as the live "
                              "loop does when the model is slower than the camera (1: every frame, the default)")


def keyframe_interval(text: str) -> int:
    """``--keyframe-every``'s value: a whole number of frames, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of frames, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more frames, got {value}")
    return value


class ProgressBar:
    """A sink that advances a progress bar (shown only on a terminal)."""

    name = "progress"

    def __init__(self, total: int | None) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="frame", disable=not sys.stderr.isatty(), desc="animating")

    def send(self, frame: np.ndarray, info: FrameInfo) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def animate_options(args: argparse.Namespace) -> AnimateOptions:
    check_animate_output(args.output)
    return AnimateOptions(source=args.source, driving=args.driving, out=args.output, crop=args.crop,
                          find_best_frame=args.find_best_frame, smoothing=not args.no_smoothing,
                          crop_tracking=args.crop_tracking,
                          label=not args.no_label, framing=args.framing, output_size=args.output_size,
                          detail=args.detail, head_strength=args.head_strength,
                          expression_strength=args.expression_strength)


def execute(args: argparse.Namespace) -> int:
    from fomm_live.live.animate import (
        animate_pipeline_options,
        calibrate_on,
        driving_size,
        find_best_frame,
        prepare_photo,
    )
    from fomm_live.live.capture.driving import check_driving, open_driving
    from fomm_live.live.face import FaceDetector
    from fomm_live.live.inbetween import KeyframeEvery
    from fomm_live.live.loop.pipeline import LivePipeline
    from fomm_live.live.media import copy_audio
    from fomm_live.live.output.sinks import FileSink
    from fomm_live.live.wiring import close_backend, make_backend

    job = animate_options(args)
    check_driving(job.driving)  # before the model loads: a bad input fails in one line, at once
    with contextlib.ExitStack() as cleanup:
        backend = make_backend(model_options(args), tracking=True, remote=remote_options(args), lossless=True)
        cleanup.callback(close_backend, backend)
        if args.keyframe_every is not None:
            if backend.name == "landmarks" and args.keyframe_every > 1:
                raise UserError("--keyframe-every is for the fomm backend (the landmark backend renders every frame)")
            backend = KeyframeEvery(backend, every=args.keyframe_every)
            cleanup.callback(backend.close)  # its face mesh, and the inner backend again (safe twice)
        size = backend.size
        detector = cleanup.enter_context(FaceDetector()) if job.crop == "face" or job.find_best_frame else None
        avatars = prepare_photo(job, size=size, detector=detector, needs_face=backend.needs_face)
        if isinstance(backend, KeyframeEvery):
            backend.check_source(avatars[0].crop)
        neutral = find_best_frame(job, avatars[0], detector, size=size)[1] if job.find_best_frame else None
        driving = cleanup.enter_context(contextlib.closing(open_driving(job.driving, size=driving_size(job, size))))
        if not job.label:
            logger.warning("the 'AI-generated' label is removed from the output (--no-label)")
        # Opened last, so that bad input leaves nothing behind.
        writer = cleanup.enter_context(contextlib.closing(FileSink(job.out, fps=driving.fps)))
        progress = cleanup.enter_context(contextlib.closing(ProgressBar(driving.count)))
        pipeline = LivePipeline(driving, backend, avatars, [writer, progress], detector=detector,
                                options=animate_pipeline_options(job, size=size, fps=driving.fps))
        if neutral is not None:
            calibrate_on(backend, neutral)  # else the pipeline takes the first driving frame with a face
        start = time.perf_counter()
        summary = pipeline.run()
        elapsed = time.perf_counter() - start
    if writer not in pipeline.sinks:  # the pipeline drops a sink that fails and goes on; here that is fatal
        raise UserError(f"writing {job.out} failed (see the error above); the output is incomplete")
    if writer.is_video and Path(job.driving).is_file() and copy_audio(job.out, job.driving):
        logger.info("copied the driving video's audio")
    count = summary["frames_out"]
    print(f"animated {count} frames in {elapsed:.1f} s ({1000 * elapsed / max(count, 1):.0f} ms per frame) -> "
          f"{job.out}")
    return 0
