"""Avatars: the source photos the live loop animates, cropped the way driving frames are cropped."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from live.face import FaceDetector, centre_crop_box, crop_source_image, crop_square

logger = logging.getLogger(__name__)


@dataclass
class Avatar:
    """A source photo prepared for animation: its face crop and its face points (None when it has no face)."""

    name: str
    crop: np.ndarray
    points: np.ndarray | None


def prepare_avatars(images: list[tuple[str, np.ndarray]], size: int, detector: FaceDetector | None,
                    crop: str = "face") -> list[Avatar]:
    """Crop each source photo the way driving frames are cropped (warning when it holds no face or several)."""
    avatars = []
    for name, image in images:
        if crop == "face":
            cropped, warning = crop_source_image(image, size, detector)
            if warning:
                logger.warning("%s: %s", name, warning)
            faces = detector.detect(cropped) if detector is not None else []
            points = faces[0].points if faces else None
        else:
            h, w = image.shape[:2]
            cropped, points = crop_square(image, centre_crop_box(h, w), size), None
        avatars.append(Avatar(name, cropped, points))
    return avatars
