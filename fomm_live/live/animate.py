"""File-to-file animation (``fomm-live animate``) as the live pipeline over a lossless file source and a writer sink.

What differs from the live loop is only options: the output is the model's square (no padding), the neutral pose is
the first driving frame (or the best one, found by a pre-scan before the run), and with ``crop="none"`` the frames are
used as given, resized whole to the model's square like the original demo, with nothing smoothed. Driving frames
already at the model's size pass through unchanged, so the output equals the original's within rounding.
"""

from __future__ import annotations

import logging

import numpy as np

from fomm_live.live.backends import Backend
from fomm_live.live.capture.driving import open_driving, resize_to_square
from fomm_live.live.errors import UserError
from fomm_live.live.face import CropTracker, FaceDetector, centre_crop_box, crop_square
from fomm_live.live.loop.calibration import BestFrameSelector
from fomm_live.live.loop.pipeline import Avatar, prepare_avatars
from fomm_live.live.media import read_image
from fomm_live.live.options import (
    AnimateOptions,
    CalibrationOptions,
    FrameOptions,
    PacingOptions,
    PipelineOptions,
    TrackingOptions,
)

logger = logging.getLogger(__name__)


def animate_pipeline_options(job: AnimateOptions, *, size: int, fps: float) -> PipelineOptions:
    """The live loop's options that make it behave as file-to-file animation.

    Args:
        job: The animate options.
        size: The model's square side (the output size).
        fps: The driving input's frame rate.
    """
    default_size = (1280, 720) if job.framing == "photo" else (size, size)
    return PipelineOptions(tracking=TrackingOptions(crop=job.crop, smoothing=job.crop == "face" and job.smoothing,
                                                    crop_tracking=job.crop_tracking),
                           calibration=CalibrationOptions(auto=False, first=True),
                           frame=FrameOptions(framing=job.framing, size=job.output_size or default_size,
                                              detail=job.detail, label=job.label),
                           pacing=PacingOptions(fps=fps), head_strength=job.head_strength,
                           expression_strength=job.expression_strength)


def driving_size(job: AnimateOptions, size: int) -> int | None:
    """The square the driving frames are resized to whole: the model's with ``crop="none"``, else None (frames as
    read, for the live loop's tracking and crop)."""
    return size if job.crop == "none" else None


def prepare_photo(job: AnimateOptions, *, size: int, detector: FaceDetector | None,
                  needs_face: bool = False) -> list[Avatar]:
    """The photo as the one avatar: its face crop with ``crop="face"``, else the whole photo at the model's square
    (``needs_face``: the backend's, see ``live.avatars.prepare_avatars``)."""
    image = read_image(job.source)
    if job.crop == "none" and job.framing == "face":  # photo framing animates the photo's centre square
        image = resize_to_square(image, size)
    return prepare_avatars([(str(job.source), image)], size, detector, crop=job.crop, needs_face=needs_face)


def find_best_frame(job: AnimateOptions, avatar: Avatar, detector: FaceDetector, *,
                    size: int) -> tuple[int, np.ndarray]:
    """Pre-scan the driving input for the frame whose face best matches the photo's pose.

    Args:
        job: The animate options (driving input, crop mode, smoothing).
        avatar: The prepared photo.
        detector: Finds the faces.
        size: The model's square side.

    Returns:
        The frame's index and its crop, as the pipeline will crop it.

    Raises:
        UserError: no face in the photo, or none in the driving input.
    """
    points = avatar.points
    if points is None:
        faces = detector.detect(avatar.crop)
        if not faces:
            raise UserError(f"--find-best-frame needs a face in {job.source}; none was found")
        points = faces[0].points
    selector = BestFrameSelector(points)
    tracker = CropTracker(smoothing=job.smoothing, tracking=job.crop_tracking)
    source = open_driving(job.driving, size=driving_size(job, size))
    best_index, best = -1, None
    try:
        index = 0
        while (frame := source.read()) is not None:
            faces = detector.detect(frame)
            face = faces[0] if faces else None
            box = tracker.update(face, index / source.fps) if job.crop == "face" else None
            if selector.update(face):
                best_index, best = index, crop_square(frame, box or centre_crop_box(*frame.shape[:2]), size)
            index += 1
    finally:
        source.close()
    if best is None:
        raise UserError(f"--find-best-frame found no face in {job.driving}")
    logger.info("neutral pose: driving frame %d (closest to the photo's pose)", best_index)
    return best_index, best


def calibrate_on(backend: Backend, frame: np.ndarray) -> None:
    """Take ``frame`` as the neutral pose before the run; if the backend sees no face in it, the first driving frame
    with one is taken instead."""
    motion = backend.detect(frame)
    if motion is None:
        logger.warning("the backend sees no face in the chosen neutral frame; the first frame with one is used")
        return
    backend.calibrate(motion)
