"""A short driving clip made from a still portrait, for trying fomm-live without a webcam or a video of one's own.

The clip is made by the ``landmarks`` backend itself: the portrait's face mesh is found once, and each frame is the
portrait warped to an edited copy of it. The edits follow a fixed script (``SCRIPT``): a pause, a head turn to both
sides, a nod, a blink, a mouth opening and closing, a pause. A head turn or nod rotates the 3-D landmarks about a
point behind the face (the neck); a blink lowers the upper eyelids onto the lower ones; a mouth opening drops the
jaw and the lower lip. Every step is arithmetic on fixed inputs, so the same portrait gives the same frames on one
machine (the MP4 bytes are left to the encoder).

Convention: the landmark edits work on mediapipe's normalised units (see ``live.landmarks``): x right, y down, z away
from the camera, all in units of the square frame's side; angles are in degrees, positive yaw turns the face
towards the image's right (the subject's left), positive pitch lowers the chin (the face looks down).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from fomm_live.live.compose import add_label
from fomm_live.live.errors import UserError
from fomm_live.live.landmarks import (
    INNER_LOWER_LIP,
    INNER_UPPER_LIP,
    LEFT_EYE_CORNERS,
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    MESH_POINTS,
    OUTER_LOWER_LIP,
    OUTER_UPPER_LIP,
    RIGHT_EYE_CORNERS,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    STABLE,
    LandmarkBackend,
)
from fomm_live.live.media import Mp4Writer, cv2, read_image
from fomm_live.live.paths import DEFAULT_PORTRAIT, cache_dir

logger = logging.getLogger(__name__)

# Bump when the script, the edits or the backend change what the frames look like: the cached clip is remade.
DEMO_CLIP_VERSION = "5"

# (start, end) in seconds of each move; the clip lasts until the last end (5 s: 125 frames at 25 fps).
SCRIPT = {
    "turn": (0.4, 1.8),
    "nod": (1.8, 2.8),
    "blink": (2.9, 3.25),
    "mouth": (3.4, 4.6),
    "end": (4.6, 5.0),
}
TURN_DEGREES = 20.0  # peak yaw each way
NOD_DEGREES = 10.0  # peak pitch
FACE_CROP = 2.2  # crop side over the face mesh's height
CHIN = 152
NOSE_TIP = 1


def _bump(t: float, start: float, end: float) -> float:
    """0 outside [start, end], rising smoothly to 1 at the middle and back (sin^2)."""
    if not start < t < end:
        return 0.0
    return math.sin(math.pi * (t - start) / (end - start)) ** 2


def _swing(t: float, start: float, end: float) -> float:
    """One full sine period over [start, end] (0 -> 1 -> -1 -> 0), eased in and out; 0 outside."""
    if not start < t < end:
        return 0.0
    u = (t - start) / (end - start)
    return math.sin(2 * math.pi * u) * math.sin(math.pi * u) ** 0.5


def rotate_head(points: np.ndarray, *, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """The landmarks of the head rotated about its neck: a point behind the stable points' centre by half the
    face's width.

    Args:
        points: 478 x 3 normalised landmarks.
        yaw, pitch, roll: Degrees (see the module's Convention).
    """
    points = np.asarray(points, dtype=np.float64)
    stable = points[list(STABLE)]
    width = np.ptp(stable[:, 0])
    pivot = stable.mean(0) + np.array([0.0, 0.15 * width, 0.5 * width])
    y, p, r = np.radians([yaw, pitch, roll])
    rot_y = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    rot_x = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rot_z = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    rot = rot_z @ rot_y @ rot_x
    return ((points - pivot) @ rot.T + pivot).astype(np.float32)


def close_eyes(points: np.ndarray, amount: float) -> np.ndarray:
    """The landmarks with both eyes closed by ``amount`` (0 open as they are, 1 shut).

    The upper lid's contour moves down onto the lower lid; the skin above it, up to about half an eye's width,
    follows part of the way.

    Args:
        points: 478 x 3 normalised landmarks.
        amount: 0..1.
    """
    out = np.asarray(points, dtype=np.float64).copy()
    mesh = out[:MESH_POINTS]
    for corners, upper, lower in ((RIGHT_EYE_CORNERS, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER),
                                  (LEFT_EYE_CORNERS, LEFT_EYE_UPPER, LEFT_EYE_LOWER)):
        up, lo = list(upper), list(lower)
        drop = (out[lo, 1] - out[up, 1]) * 0.9  # the closed lid rests just above the lower one
        width = abs(out[corners[0], 0] - out[corners[1], 0])
        # The skin above the upper lid: points within half an eye's width above it follow, less with distance.
        lid_x, lid_y = out[up, 0], out[up, 1]
        order = np.argsort(lid_x)
        lid_at = np.interp(mesh[:, 0], lid_x[order], lid_y[order])  # the lid's height under each point
        drop_at = np.interp(mesh[:, 0], lid_x[order], drop[order])
        inside = (mesh[:, 0] > lid_x.min() - 0.15 * width) & (mesh[:, 0] < lid_x.max() + 0.15 * width)
        above = (lid_at - mesh[:, 1]) / (0.5 * width)  # 0 at the lid, 1 half an eye's width above it
        follow = np.where(inside & (above > 0.02), 0.5 * np.clip(1 - above, 0, 1), 0.0)
        mesh[:, 1] += amount * follow * drop_at
        out[up, 1] += amount * drop
    return out.astype(np.float32)


def open_mouth(points: np.ndarray, amount: float) -> np.ndarray:
    """The landmarks with the jaw dropped by ``amount`` (0 as they are, 1 wide open: the chin lowered by 0.4 times the
    nose-to-chin distance).

    Everything below the line between the lips moves down, the chin most, the jaw's sides less (they are nearer
    the hinge); the cheeks beside the mouth stretch over a band below the mouth corners.

    Args:
        points: 478 x 3 normalised landmarks.
        amount: 0..1.
    """
    out = np.asarray(points, dtype=np.float64).copy()
    mesh = out[:MESH_POINTS]
    corners = out[[INNER_UPPER_LIP[0], INNER_UPPER_LIP[-1]]]
    corner_y = corners[:, 1].mean()
    chin_y, nose_y = out[CHIN, 1], out[NOSE_TIP, 1]
    hinge_y = out[[234, 454], 1].mean()  # the face oval's sides at ear level
    # The line between the lips, under each point: halfway between the inner lips, the mouth corners beyond.
    upper, lower = out[list(INNER_UPPER_LIP)], out[list(INNER_LOWER_LIP)]
    order = np.argsort(upper[:, 0])
    midline = np.interp(mesh[:, 0], upper[order, 0], (upper[order, 1] + lower[order, 1]) / 2)
    within = (mesh[:, 0] > corners[:, 0].min()) & (mesh[:, 0] < corners[:, 0].max())
    band = 0.15 * (chin_y - corner_y)
    below = np.where(within, (mesh[:, 1] > midline).astype(np.float64),
                     np.clip((mesh[:, 1] - corner_y) / band, 0, 1))
    below[list(INNER_LOWER_LIP[1:-1] + OUTER_LOWER_LIP[1:-1])] = 1.0  # the lips go by name, not by height
    below[list(INNER_UPPER_LIP[1:-1] + OUTER_UPPER_LIP[1:-1])] = 0.0
    below[[INNER_UPPER_LIP[0], INNER_UPPER_LIP[-1], OUTER_UPPER_LIP[0], OUTER_UPPER_LIP[-1]]] = 0.4
    reach = 0.6 + 0.4 * np.clip((mesh[:, 1] - hinge_y) / (chin_y - hinge_y), 0, 1)  # more at the chin
    mesh[:, 1] += amount * 0.4 * (chin_y - nose_y) * below * reach
    return out.astype(np.float32)


def script_landmarks(neutral: np.ndarray, t: float) -> np.ndarray:
    """The driving landmarks at time ``t`` (seconds) of the script, from the neutral ones.

    Args:
        neutral: 478 x 3 normalised landmarks of the portrait.
        t: Seconds from the start.
    """
    points = neutral
    blink = _bump(t, *SCRIPT["blink"])
    if blink:
        points = close_eyes(points, min(1.0, 1.25 * blink))  # shut for a moment at the middle
    mouth = _bump(t, *SCRIPT["mouth"])
    if mouth:
        points = open_mouth(points, mouth)
    yaw = TURN_DEGREES * _swing(t, *SCRIPT["turn"])
    pitch = NOD_DEGREES * _swing(t, *SCRIPT["nod"])
    if yaw or pitch:
        points = rotate_head(points, yaw=yaw, pitch=pitch)
    return np.asarray(points, dtype=np.float32)


def portrait_crop(image: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    """A square ``size x size`` crop around the face, FACE_CROP times the face mesh's height, edges replicated
    where the crop leaves the photo.

    Args:
        image: H x W x 3 uint8 RGB portrait.
        points: Its 478 x 3 normalised landmarks.
        size: Side of the crop.
    """
    h, w = image.shape[:2]
    xy = points[:MESH_POINTS, :2] * np.array([w, h])  # photo pixels
    top, bottom = xy.min(0), xy.max(0)
    side = FACE_CROP * (bottom[1] - top[1])
    cx, cy = (top + bottom) / 2 - np.array([0.0, 0.05 * side])  # a little above the centre: room for hair
    scale = size / side
    matrix = np.array([[scale, 0.0, size / 2 - scale * cx], [0.0, scale, size / 2 - scale * cy]])
    cv = cv2()
    return cv.warpAffine(image, matrix, (size, size), flags=cv.INTER_AREA if scale < 1 else cv.INTER_CUBIC,
                         borderMode=cv.BORDER_REPLICATE)


def make_demo_clip(path: Path, *, portrait: Path = DEFAULT_PORTRAIT, fps: int = 25, size: int = 384) -> Path:
    """Write the scripted driving clip as an MP4 (labelled "AI-generated", tagged synthetic).

    Args:
        path: Output ``.mp4`` file.
        portrait: A photo with one face.
        fps: Frame rate; the clip lasts as long whatever the rate (5 s).
        size: Side of the square frames.

    Returns:
        ``path``.
    """
    if fps <= 0:
        raise ValueError(f"fps: expected a positive frame rate, got {fps}")
    path = Path(path)
    image = read_image(portrait)
    with LandmarkBackend(size=size) as backend:
        found = backend.detect(image)
        if found is None:
            raise UserError(f"no face found in {portrait}")
        crop = portrait_crop(image, found, size)
        backend.set_source(crop)
        neutral = backend.detect(crop)
        if neutral is None:
            raise RuntimeError(f"the face in {portrait} was lost after cropping")
        backend.calibrate(neutral)
        count = round(SCRIPT["end"][1] * fps)
        with Mp4Writer(path, fps=fps, metadata={"title": "fomm-live demo driving clip"}) as writer:
            for i in range(count):
                writer.write(add_label(backend.render(script_landmarks(neutral, i / fps)).frame))
    logger.info("demo clip: %d frames at %d fps, %d x %d, written to %s", count, fps, size, size, path)
    return path


def demo_clip_path() -> Path:
    """The demo clip in the user cache (made on first use, and again when DEMO_CLIP_VERSION changes)."""
    final = cache_dir() / f"demo-clip-v{DEMO_CLIP_VERSION}.mp4"
    if not final.is_file():
        logger.info("making the demo driving clip (once): %s", final)
        partial = final.with_name(f"demo-clip-{os.getpid()}.tmp.mp4")  # per process: two first uses don't collide
        try:
            make_demo_clip(partial)
            partial.replace(final)
        finally:
            partial.unlink(missing_ok=True)
    return final
