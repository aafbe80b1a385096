"""The crop tracker's side of ``benchmarks.inbetween``: the clip's face squares as the live loop crops them, and what
the crop box did (``crop_figures``).

What the crop box does to the square: its own motion moves everything in the square (hair, clothes, background) in a
way the face's motion does not predict, and with relative motion it is subtracted from the head's motion that drives
the avatar. The figures: the box's motion per frame (centre, px of the frame, p50 / p95 / max, and the share of frames
where it moved at all), how far the face's centre gets from the square's centre (max, share of the side), the frames
where the face's box is not wholly inside the square (must be none), and the face's landmarks' mean displacement in the
square from the first frame's (the calibrated neutral pose's), in square pixels: a proxy for how much the avatar moves;
beside it the same landmarks' displacement in the camera frame (scaled to square pixels at the neutral frame's box),
how far the head really moved, and the ratio of the two (``head_motion_kept``: 1 when the box holds still, less when
the box's motion cancels part of the head's, which the avatar then does not show).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fomm_live.live.capture.driving import open_driving
from fomm_live.live.errors import UserError
from fomm_live.live.face import CropBox, CropTracker, Face, FaceDetector, crop_square
from fomm_live.live.options import DEFAULT_CROP_TRACKING


@dataclass
class Track:
    """What the crop tracker did on each frame: its box and the detected face (None: none found, the box held)."""

    boxes: list[CropBox] = field(default_factory=list)
    faces: list[Face | None] = field(default_factory=list)


def tracked_squares(clip: str | Path, *, size: int, start: int = 0, limit: int | None = None,
                    tracking: str = DEFAULT_CROP_TRACKING) -> tuple[list[np.ndarray], float, Track]:
    """The clip's face squares as the live loop crops them (``CropTracker`` with smoothing), its frame rate, and the
    tracker's boxes.

    Args:
        clip: A video file or a folder of frames.
        size: The squares' side.
        start: The first frame used (the frames before it are read and left out; the tracker starts there).
        limit: At most this many frames from ``start`` (None: to the end).
        tracking: The crop tracker's mode (``live.face.CROP_TRACKING``; default: the live loop's).
    """
    source = open_driving(clip)
    detector = FaceDetector()
    tracker = CropTracker(smoothing=True, tracking=tracking)
    squares: list[np.ndarray] = []
    track = Track()
    box = None
    try:
        for skipped in range(start):
            if source.read() is None:
                raise UserError(f"{clip}: --start {start} is past the clip's end ({skipped} frames)")
        index = 0
        while (limit is None or index < limit) and (frame := source.read()) is not None:
            faces = detector.detect(frame)
            box = tracker.update(faces[0] if faces else None, index / source.fps) or box
            if box is None:
                raise UserError(f"{clip}: no face in frame {start + index}; the benchmark needs one from the first "
                                f"frame it uses (--start)")
            squares.append(crop_square(frame, box, size))
            track.boxes.append(box)
            track.faces.append(faces[0] if faces else None)
            index += 1
        fps = source.fps
    finally:
        source.close()
        detector.close()
    return squares, fps, track


def crop_figures(track: Track, landmarks: list[np.ndarray | None], size: int) -> dict:
    """The crop box's motion, the face's place in the square, and the landmarks' motion in it (module docstring)."""
    boxes = np.array([[b.cx, b.cy, b.side] for b in track.boxes])  # T x 3
    steps = np.hypot(*np.diff(boxes[:, :2], axis=0).T) if len(boxes) > 1 else np.zeros(1)  # T-1 px
    side_steps = np.abs(np.diff(boxes[:, 2])) if len(boxes) > 1 else np.zeros(1)
    off_centre, outside = [], 0
    for box, face in zip(track.boxes, track.faces, strict=True):
        if face is None:
            continue
        cx, cy = face.centre
        off_centre.append(max(abs(cx - box.cx), abs(cy - box.cy)) / box.side)
        x0, y0, w, h = face.box
        half = box.side / 2
        if x0 < box.cx - half or y0 < box.cy - half or x0 + w > box.cx + half or y0 + h > box.cy + half:
            outside += 1
    first = next((i for i, p in enumerate(landmarks) if p is not None), None)
    moved, in_frame = [], []
    if first is not None:
        neutral, neutral_box = landmarks[first][:, :2], boxes[first]
        to_square = size / neutral_box[2]  # camera pixels -> square pixels at the neutral frame's box

        def in_camera(points: np.ndarray, box: np.ndarray) -> np.ndarray:
            return box[:2] - box[2] / 2 + points * box[2]  # 478 x 2 camera pixels

        for p, box in zip(landmarks, boxes, strict=True):
            if p is not None:
                moved.append(float(np.mean(np.hypot(*((p[:, :2] - neutral) * size).T))))
                shift = (in_camera(p[:, :2], box) - in_camera(neutral, neutral_box)) * to_square
                in_frame.append(float(np.mean(np.hypot(*shift.T))))
    return {
        "box_step_px": {"p50": float(np.percentile(steps, 50)), "p95": float(np.percentile(steps, 95)),
                        "max": float(steps.max()), "moving_share": float(np.mean(steps > 1e-9))},
        "box_side_step_px": {"p50": float(np.percentile(side_steps, 50)), "p95": float(np.percentile(side_steps, 95))},
        "face_off_centre": {"max": float(max(off_centre, default=0.0)),
                            "p95": float(np.percentile(off_centre, 95)) if off_centre else 0.0},
        "face_outside_square_frames": outside,
        "landmarks_from_neutral_px": {"mean": float(np.mean(moved)) if moved else 0.0,
                                      "p95": float(np.percentile(moved, 95)) if moved else 0.0,
                                      "max": float(max(moved, default=0.0))},
        "head_in_camera_px": {"mean": float(np.mean(in_frame)) if in_frame else 0.0},
        "head_motion_kept": float(np.mean(moved) / np.mean(in_frame)) if in_frame and np.mean(in_frame) > 0 else 1.0,
    }


def crop_line(figures: dict, tracking: str) -> str:
    """One printed line of ``crop_figures``."""
    step, off, moved = figures["box_step_px"], figures["face_off_centre"], figures["landmarks_from_neutral_px"]
    return (f"crop tracking {tracking}: box step p50 {step['p50']:.2f} px, p95 {step['p95']:.2f}, max {step['max']:.2f}"
            f" (moving {step['moving_share']:.0%} of frames); face off centre max {off['max']:.1%} of the side; "
            f"face box outside the square in {figures['face_outside_square_frames']} frames; landmarks from neutral "
            f"mean {moved['mean']:.2f} px (p95 {moved['p95']:.2f}), in the camera frame "
            f"{figures['head_in_camera_px']['mean']:.2f} (kept {figures['head_motion_kept']:.0%})")
