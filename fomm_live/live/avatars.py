"""Avatars: the source photos the live loop animates, cropped the way driving frames are cropped.

Each avatar keeps its whole photo and where its crop lies in it, so that photo framing (``live.framing.layout``) can
show the photo around the animated face.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from fomm_live.live.errors import UserError
from fomm_live.live.face import CropBox, FaceDetector, centre_crop_box, crop_square, face_crop_box

logger = logging.getLogger(__name__)


@dataclass
class Avatar:
    """A source photo prepared for animation.

    Attributes:
        name: Shown in the log.
        crop: The square the backend animates (size x size x 3 uint8).
        points: Its face points (None when it has no face).
        photo: The whole photo (None: only the crop is known).
        box: Where ``crop`` lies in ``photo`` (photo pixels).
        face: (centre x, centre y, height) of the animated face's box in the photo; None without a face.
    """

    name: str
    crop: np.ndarray
    points: np.ndarray | None
    photo: np.ndarray | None = None
    box: CropBox | None = None
    face: tuple[float, float, float] | None = None


def prepare_avatars(images: list[tuple[str, np.ndarray]], size: int, detector: FaceDetector | None,
                    crop: str = "face", *, needs_face: bool = False, skippable: Collection[str] = ()) -> list[Avatar]:
    """Crop each source photo the way driving frames are cropped (warning when it holds several faces: the largest
    is animated, the others stay still).

    A photo in which ``detector`` finds no face is said once: without ``needs_face`` it is animated as its centre
    crop (a warning); with it (``Backend.needs_face``) it stops the run naming the photo, or, when its name is in
    ``skippable`` (photos found in a folder), it is left out with a warning, as long as another photo remains.

    Raises:
        UserError: a photo without a face that the backend cannot animate.
    """
    avatars, skipped = [], []
    for name, image in images:
        h, w = image.shape[:2]
        face = None
        if crop == "face":
            faces = detector.detect(image) if detector is not None else []
            if not faces and needs_face:
                if name not in skippable:
                    raise UserError(f"{name}: no face found in the photo; use one with a face seen from the front")
                logger.warning("%s: no face found in the photo; it is left out", name)
                skipped.append(name)
                continue
            if not faces:
                logger.warning("%s: no face found in the photo; animating its centre crop", name)
                box = centre_crop_box(h, w)
            else:
                if len(faces) > 1:
                    logger.warning("%s: %d faces in the source photo; using the largest (the others stay still)",
                                   name, len(faces))
                box = face_crop_box(faces[0])
                face = (*faces[0].centre, float(faces[0].box[3]))
            cropped = crop_square(image, box, size)
            found = detector.detect(cropped) if detector is not None else []
            points = found[0].points if found else None
        else:
            box = centre_crop_box(h, w)
            cropped, points = crop_square(image, box, size), None
        avatars.append(Avatar(name, cropped, points, photo=image, box=box, face=face))
    if not avatars and skipped:
        raise UserError(f"no face found in any of the photos ({', '.join(skipped)})")
    return avatars
