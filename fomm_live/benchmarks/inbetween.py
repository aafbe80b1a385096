"""How well in-betweens predict a clip's own frames: per offset from the keyframe, the PSNR of the in-between and of
holding the keyframe (what the live loop shows without in-betweens).

    python -m fomm_live.benchmarks.inbetween --clip CLIP --every N [--json PATH] [--sheet PNG]
    python -m fomm_live.benchmarks.inbetween --make-clip CLIP [--portrait IMAGE]   # the demo's scripted clip

Every N-th frame k of the clip stands for a perfectly rendered keyframe of itself; the in-between at offset i
predicts frame k + i from frame k with the face's motion from k to k + i (``live.inbetween.Inbetweener``, the clip's
first frame as the avatar and its neutral pose, so the mesh follows the driver's own landmarks). Everything is
measured on the tracked face square (the live loop's crop tracker, 256 px), the square the generator renders.
Frames where the face mesh finds no face are left out (counted in the output). The last line printed is
``inbetween_psnr=... held_psnr=... gain_db=...``: the means over all in-between frames (offsets 1..N-1).

The jump at a keyframe: the mean absolute difference (levels) between the last in-between before a keyframe and
that keyframe, beside the mean difference between consecutive in-betweens (the motion of an ordinary frame step).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
from pathlib import Path

import numpy as np

from fomm_live.live.capture.driving import open_driving
from fomm_live.live.errors import UserError
from fomm_live.live.face import CropTracker, FaceDetector, crop_square
from fomm_live.live.inbetween import Inbetweener
from fomm_live.live.landmarks.facemesh import FaceMesh
from fomm_live.live.media import cv2

SIZE = 256


def psnr(got: np.ndarray, want: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (peak 255); capped at 100 for identical images."""
    mse = float(np.mean((got.astype(np.float64) - want.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def tracked_squares(clip: str | Path, *, size: int = SIZE) -> tuple[list[np.ndarray], float]:
    """The clip's face squares as the live loop crops them (crop tracker, One Euro smoothing) and its frame rate."""
    source = open_driving(clip)
    detector = FaceDetector()
    tracker = CropTracker(smoothing=True)
    squares: list[np.ndarray] = []
    box = None
    try:
        index = 0
        while (frame := source.read()) is not None:
            faces = detector.detect(frame)
            box = tracker.update(faces[0] if faces else None, index / source.fps) or box
            if box is None:
                raise UserError(f"{clip}: no face in frame {index}; the benchmark needs one from the first frame")
            squares.append(crop_square(frame, box, size))
            index += 1
        fps = source.fps
    finally:
        source.close()
        detector.close()
    return squares, fps


def measure(squares: list[np.ndarray], landmarks: list[np.ndarray | None], every: int,
            *, sheet_rows: int = 0) -> tuple[dict, list[np.ndarray]]:
    """Per-offset PSNRs and the keyframe jumps (see the module docstring); with ``sheet_rows``, also that many sheet
    rows (true frame, in-between, held keyframe side by side): the in-betweens where holding does worst (the most
    motion), in the clip's order."""
    first = next((i for i, p in enumerate(landmarks) if p is not None), None)
    if first is None:
        raise UserError("the face mesh found no face in any frame of the clip")
    renderer = Inbetweener(size=SIZE)
    renderer.set_source(squares[first], points=landmarks[first])
    renderer.calibrate(landmarks[first])
    per_offset: dict[int, dict[str, list[float]]] = {i: {"inbetween": [], "held": []} for i in range(1, every)}
    steps, jumps, held_jumps = [], [], []
    sheet: list[tuple[float, int, np.ndarray]] = []  # (held PSNR, frame, row): the worst held kept
    skipped = 0
    for k in range(first, len(squares), every):
        if landmarks[k] is None:
            skipped += min(every, len(squares) - k)
            continue
        renderer.keyframe(squares[k], landmarks[k], (0.0, 0.0, float(SIZE)))
        previous = squares[k]
        for i in range(1, every):
            t = k + i
            if t >= len(squares):
                break
            if landmarks[t] is None:
                skipped += 1
                continue
            predicted = renderer.render(landmarks[t])
            per_offset[i]["inbetween"].append(psnr(predicted, squares[t]))
            per_offset[i]["held"].append(psnr(squares[k], squares[t]))
            steps.append(mean_abs(predicted, previous))
            previous = predicted
            if sheet_rows:
                sheet.append((per_offset[i]["held"][-1], t, np.hstack([squares[t], predicted, squares[k]])))
                sheet = sorted(sheet, key=lambda row: row[0])[:sheet_rows]
        if k + every < len(squares) and every > 1:
            jumps.append(mean_abs(previous, squares[k + every]))
            held_jumps.append(mean_abs(squares[k], squares[k + every]))
    offsets = {i: {"inbetween_psnr": float(np.mean(v["inbetween"])), "held_psnr": float(np.mean(v["held"])),
                   "frames": len(v["inbetween"])} for i, v in per_offset.items() if v["inbetween"]}
    every_in = [x for v in per_offset.values() for x in v["inbetween"]]
    every_held = [x for v in per_offset.values() for x in v["held"]]
    result = {
        "every": every, "frames": len(squares), "skipped_no_face": skipped, "offsets": offsets,
        "inbetween_psnr": float(np.mean(every_in)) if every_in else float("nan"),
        "held_psnr": float(np.mean(every_held)) if every_held else float("nan"),
        "keyframe_jump": float(np.mean(jumps)) if jumps else float("nan"),
        "held_keyframe_jump": float(np.mean(held_jumps)) if held_jumps else float("nan"),
        "inbetween_step": float(np.mean(steps)) if steps else float("nan"),
    }
    result["gain_db"] = result["inbetween_psnr"] - result["held_psnr"]
    return result, [row for _, _, row in sorted(sheet, key=lambda row: row[1])]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", help="a driving clip with one face (video file or folder of frames)")
    parser.add_argument("--every", type=int, default=5, help="a keyframe every N frames (default 5; N >= 2)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--sheet", help="write a PNG of the first in-betweens: true frame | in-between | held")
    parser.add_argument("--make-clip", help="write the demo's scripted driving clip (from --portrait) here and stop")
    parser.add_argument("--portrait", help="the photo --make-clip animates (default: the bundled portrait)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.make_clip:
            from fomm_live.live.democlip import make_demo_clip
            from fomm_live.live.paths import DEFAULT_PORTRAIT

            print(make_demo_clip(Path(args.make_clip), portrait=Path(args.portrait or DEFAULT_PORTRAIT)))
            return
        if not args.clip:
            parser.error("--clip is required (or --make-clip to write a test clip)")
        if args.every < 2:
            parser.error(f"--every: expected 2 or more (1 has no in-betweens), got {args.every}")
        squares, fps = tracked_squares(args.clip)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    mesh = FaceMesh()
    try:
        landmarks = [mesh.landmarks(square, static=True) for square in squares]
    finally:
        mesh.close()
    try:
        result, sheet = measure(squares, landmarks, args.every, sheet_rows=12 if args.sheet else 0)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    result.update(clip=str(args.clip), fps=fps, cpu=platform.processor() or platform.machine(),
                  cores=os.cpu_count(), load_average=os.getloadavg()[0])
    print(f"{args.clip}: {result['frames']} frames at {fps:g} fps, a keyframe every {args.every}, "
          f"{result['skipped_no_face']} without a face left out")
    print(f"{'offset':>6} {'frames':>6} {'inbetween dB':>12} {'held dB':>8} {'gain dB':>8}")
    for i, row in result["offsets"].items():
        print(f"{i:>6} {row['frames']:>6} {row['inbetween_psnr']:>12.2f} {row['held_psnr']:>8.2f} "
              f"{row['inbetween_psnr'] - row['held_psnr']:>8.2f}")
    print(f"keyframe jump {result['keyframe_jump']:.2f} levels (holding: {result['held_keyframe_jump']:.2f}), "
          f"step between in-betweens {result['inbetween_step']:.2f}")
    if args.sheet and sheet:
        cv = cv2()
        cv.imwrite(args.sheet, cv.cvtColor(np.vstack(sheet), cv.COLOR_RGB2BGR))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"inbetween_psnr={result['inbetween_psnr']:.2f} held_psnr={result['held_psnr']:.2f} "
          f"gain_db={result['gain_db']:.2f}")


if __name__ == "__main__":
    main()
