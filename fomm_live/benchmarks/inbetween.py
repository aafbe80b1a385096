"""How well in-betweens predict a clip's own frames: per offset from the keyframe, the PSNR of the in-between and of
holding the keyframe (what the live loop shows without in-betweens).

    python -m fomm_live.benchmarks.inbetween --clip CLIP --every N [--start S] [--frames F] [--json PATH]
        [--sheet PNG [--sheet-by WHAT]]
    python -m fomm_live.benchmarks.inbetween --make-clip CLIP [--portrait IMAGE]   # the demo's scripted clip
    python -m fomm_live.benchmarks.inbetween --sheet-of EVERY_FRAME KEYFRAMED --sheet PNG [--every N]

Every N-th frame k of the clip stands for a perfectly rendered keyframe of itself; the in-between at offset i
predicts frame k + i from frame k with the face's motion from k to k + i (``live.inbetween.Inbetweener``, the clip's
first frame as the avatar and its neutral pose, so the mesh follows the driver's own landmarks). Everything is
measured on the tracked face square (the live loop's crop tracker, 256 px), the square the generator renders.
Frames where the face mesh finds no face are left out (counted in the output). The last line printed is
``inbetween_psnr=... held_psnr=... gain_db=...``: the means over all in-between frames (offsets 1..N-1).
The same split by region (``face_region``, ``outside_face`` in the JSON; the face's per offset too): inside the convex
hull of the true frame's face mesh, and the rest of the square (hair, neck, shoulders, background), which the warp
moves only near the face. ``--sheet PNG`` shows 12 in-betweens beside the true frame and the held keyframe:
``--sheet-by held`` (the default) those where holding does worst, ``eyes`` or ``mouth`` those where the eyes' or the
mouth's opening changed most since the keyframe (blinks, a mouth opening or closing: what a warp shows worst).
``eye_region`` in the JSON: the PSNR around the eyes, over those 12 and over all in-betweens (``inbetween_eyes``).

The in-between stage's time at output resolution: each keyframe square is also placed into a 1280 x 720 frame where
photo framing puts the bundled portrait's square (OUTPUT_PLACEMENT), the rest of the frame the same for every
keyframe (as photo framing's photo around the square), and ``render`` is timed there with OpenCV on one thread, as
in the live loop (``live.threads``) (p50 and p90, ms, wall clock; and the p50 of the CPU time it took, all threads,
which other work on the machine changes less).

``--sheet-of`` writes a contact sheet instead: two runs of ``animate`` (video files or PNG folders) side by side, frame
by frame, e.g. every frame beside ``--keyframe-every N`` (keyframes marked with a green bar).

The jump at a keyframe: the mean absolute difference (levels) between consecutive output frames where a new keyframe
takes over, beside the same between the other consecutive frames (the motion of an ordinary frame step). With
``--latency L`` keyframe k arrives at frame k + L, as from a generator that takes L frame intervals (frames before it
come from the previous keyframe, and "held" is the previous keyframe); ``--crossfade C`` blends the previous keyframe
into the C frames after a new one arrives (``Inbetweener``'s option).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from fomm_live.benchmarks.inbetween_crop import crop_figures, crop_line, tracked_squares
from fomm_live.benchmarks.inbetween_eyes import eye_figures, eye_mask
from fomm_live.live.capture.driving import open_driving
from fomm_live.live.errors import UserError
from fomm_live.live.inbetween import Inbetweener
from fomm_live.live.landmarks.eyes import eye_opening
from fomm_live.live.landmarks.facemesh import FaceMesh
from fomm_live.live.landmarks.mouth import mouth_opening
from fomm_live.live.landmarks.points import EYES
from fomm_live.live.media import cv2
from fomm_live.live.options import CROP_TRACKING, DEFAULT_CROP_TRACKING
from fomm_live.live.threads import bound_helper_threads

SIZE = 256
OUTPUT = (1280, 720)
OUTPUT_PLACEMENT = (322.1, 12.0, 480.0)  # the bundled portrait's square in photo framing at 1280 x 720
SHEET_BY = ("held", "eyes", "mouth")  # what picks a sheet's rows: the worst holding, the most change of eyes or mouth


def psnr(got: np.ndarray, want: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of two uint8 images (peak 255), over the pixels where ``mask`` (H x W bool) is set if given; capped
    at 100 for identical images (or an empty mask)."""
    squared = (got.astype(np.float64) - want.astype(np.float64)) ** 2
    if mask is not None:
        squared = squared[mask]
    mse = float(np.mean(squared)) if squared.size else 0.0
    return 100.0 if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def face_hull(landmarks: np.ndarray, size: int = SIZE) -> np.ndarray:
    """size x size bool: the pixels inside the convex hull of a face mesh (478 x 3, x and y fractions of the
    square)."""
    cv = cv2()
    hull = cv.convexHull(np.round(landmarks[:, :2] * size).astype(np.int32))  # K x 1 x 2 (x, y) pixels
    mask = np.zeros((size, size), np.uint8)
    cv.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def openings(landmarks: np.ndarray) -> tuple[float, float]:
    """(the two eyes' mean opening, the mouth's opening) of a face mesh: each gap over its width."""
    return float(np.mean([eye_opening(landmarks, eye) for eye in EYES])), mouth_opening(landmarks)


def _region_figures(per_frame: dict[str, list[float]], share: list[float]) -> dict | None:
    if not share:
        return None
    inbetween, held = float(np.mean(per_frame["inbetween"])), float(np.mean(per_frame["held"]))
    return {"inbetween_psnr": inbetween, "held_psnr": held, "gain_db": inbetween - held,
            "share_of_square": float(np.mean(share))}


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def measure(squares: list[np.ndarray], landmarks: list[np.ndarray | None], every: int, *, latency: int = 0,
            crossfade: int = 0, sheet_rows: int = 0, sheet_by: str = "held",
            number_from: int = 0) -> tuple[dict, list[np.ndarray]]:
    """Per-offset PSNRs and the keyframe jumps (see the module docstring).

    Args:
        squares: The clip's face squares.
        landmarks: Their face meshes (None: no face).
        every: A keyframe every this many frames.
        latency: Keyframe k is available from frame k + latency on (the generator's delay); until then the frames
            are made from the previous keyframe, and "held" shows the previous keyframe.
        crossfade: The renderer's cross-fade after a new keyframe (``Inbetweener``).
        sheet_rows: Also return that many sheet rows (true frame, in-between, held keyframe side by side): the
            in-betweens where holding does worst (the most motion), in the clip's order.
        sheet_by: What picks the sheet's rows (``SHEET_BY``): ``held``, the worst holding; ``eyes`` or ``mouth``, the
            largest change of the eyes' or the mouth's opening since the keyframe (blinks, a mouth opening or
            closing).
        number_from: The clip's frame number of ``squares[0]`` (the sheet's labels).
    """
    if sheet_by not in SHEET_BY:
        raise ValueError(f"sheet_by: expected one of {', '.join(SHEET_BY)}, got {sheet_by!r}")
    first = next((i for i, p in enumerate(landmarks) if p is not None), None)
    if first is None:
        raise UserError("the face mesh found no face in any frame of the clip")
    renderer, at_output = Inbetweener(size=SIZE, crossfade=crossfade), Inbetweener(size=SIZE, crossfade=crossfade)
    for r in (renderer, at_output):
        r.set_source(squares[first], points=landmarks[first])
        r.calibrate(landmarks[first])
    cv = cv2()
    x0, y0, side = OUTPUT_PLACEMENT
    s = side / SIZE
    to_output = np.array([[s, 0.0, x0 + 0.5 * s - 0.5], [0.0, s, y0 + 0.5 * s - 0.5]])
    keys = [k for k in range(first, len(squares), every) if landmarks[k] is not None]
    rows = slice(int(np.floor(y0)), int(np.ceil(y0 + side)))  # the square's region of the output frame
    cols = slice(int(np.floor(x0)), int(np.ceil(x0 + side)))
    around: np.ndarray | None = None  # the first keyframe's frame: the same photo around every keyframe's square
    bound_helper_threads(1)
    stage_ms: list[float] = []
    stage_cpu_ms: list[float] = []  # CPU time of all the process's threads: what the stage costs without other load
    per_offset: dict[int, dict[str, list[float]]] = {}
    steps, jumps, held_jumps = [], [], []
    sheet: list[tuple[float, int, np.ndarray]] = []  # (rank, frame, row): the lowest ranks kept
    regions: dict[str, dict[str, list[float]]] = {"face": {"inbetween": [], "held": []},
                                                  "outside": {"inbetween": [], "held": []}}
    face_share: list[float] = []
    eye_rows: list[tuple[float, int, float, float]] = []  # (eyes' opening change, frame, in-between dB, held dB)
    skipped, key, previous = 0, None, None
    for t in range(first, len(squares)):
        available = [k for k in keys if k + latency <= t]
        if not available:
            continue
        switched = available[-1] != key
        if switched:
            held_before = None if key is None else squares[key]
            key = available[-1]
            renderer.keyframe(squares[key], landmarks[key], (0.0, 0.0, float(SIZE)))
            big = cv.warpAffine(squares[key], to_output, OUTPUT, flags=cv.INTER_LINEAR,
                                borderMode=cv.BORDER_REPLICATE)
            if around is None:
                around = big
            else:
                framed = around.copy()
                framed[rows, cols] = big[rows, cols]
                big = framed
            at_output.keyframe(big, landmarks[key], OUTPUT_PLACEMENT)
        if landmarks[t] is None:
            skipped, previous = skipped + 1, None
            continue
        predicted = renderer.render(landmarks[t])
        offset = t - key
        if offset > 0:  # an in-between (offset 0 is the keyframe itself)
            start, cpu = time.perf_counter(), time.process_time()
            at_output.render(landmarks[t])
            stage_ms.append((time.perf_counter() - start) * 1000)
            stage_cpu_ms.append((time.process_time() - cpu) * 1000)
            row = per_offset.setdefault(offset, {"inbetween": [], "held": [], "face_inbetween": [], "face_held": []})
            row["inbetween"].append(psnr(predicted, squares[t]))
            row["held"].append(psnr(squares[key], squares[t]))
            face = face_hull(landmarks[t])
            face_share.append(float(face.mean()))
            for name, mask in (("face", face), ("outside", ~face)):
                regions[name]["inbetween"].append(psnr(predicted, squares[t], mask))
                regions[name]["held"].append(psnr(squares[key], squares[t], mask))
            row["face_inbetween"].append(regions["face"]["inbetween"][-1])
            row["face_held"].append(regions["face"]["held"][-1])
            eyes = eye_mask(landmarks[t], SIZE)
            eye_rows.append((abs(openings(landmarks[t])[0] - openings(landmarks[key])[0]), number_from + t,
                             psnr(predicted, squares[t], eyes), psnr(squares[key], squares[t], eyes)))
            if sheet_rows:
                tiles = [squares[t].copy(), predicted.copy(), squares[key].copy()]
                labels = (f"frame {number_from + t}, +{offset}", f"{row['inbetween'][-1]:.1f} dB",
                          f"held {row['held'][-1]:.1f} dB")
                for tile, text in zip(tiles, labels, strict=True):
                    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 0), 1)):  # outlined: readable on white
                        cv.putText(tile, text, (4, 14), cv.FONT_HERSHEY_SIMPLEX, 0.42, colour, thickness, cv.LINE_AA)
                if sheet_by == "held":
                    rank = row["held"][-1]
                else:  # the largest change first
                    part = SHEET_BY.index(sheet_by) - 1
                    rank = -abs(openings(landmarks[t])[part] - openings(landmarks[key])[part])
                sheet.append((rank, t, np.hstack(tiles)))
                sheet = sorted(sheet, key=lambda item: item[0])[:sheet_rows]
        if previous is not None:
            if switched:
                jumps.append(mean_abs(predicted, previous))
                if held_before is not None:
                    held_jumps.append(mean_abs(squares[key], held_before))
            else:
                steps.append(mean_abs(predicted, previous))
        previous = predicted
    offsets = {i: {"inbetween_psnr": float(np.mean(v["inbetween"])), "held_psnr": float(np.mean(v["held"])),
                   "face_inbetween_psnr": float(np.mean(v["face_inbetween"])),
                   "face_held_psnr": float(np.mean(v["face_held"])),
                   "frames": len(v["inbetween"])} for i, v in sorted(per_offset.items())}
    every_in = [x for v in per_offset.values() for x in v["inbetween"]]
    every_held = [x for v in per_offset.values() for x in v["held"]]
    result = {
        "every": every, "latency": latency, "crossfade": crossfade, "frames": len(squares),
        "skipped_no_face": skipped, "offsets": offsets,
        "inbetween_psnr": float(np.mean(every_in)) if every_in else float("nan"),
        "held_psnr": float(np.mean(every_held)) if every_held else float("nan"),
        "keyframe_jump": float(np.mean(jumps)) if jumps else float("nan"),
        "held_keyframe_jump": float(np.mean(held_jumps)) if held_jumps else float("nan"),
        "inbetween_step": float(np.mean(steps)) if steps else float("nan"),
        "face_region": _region_figures(regions["face"], face_share),
        "outside_face": _region_figures(regions["outside"], face_share),
        "eye_region": eye_figures(eye_rows),
        "stage_ms_1280x720": {"p50": float(np.percentile(stage_ms, 50)), "p90": float(np.percentile(stage_ms, 90)),
                              "cpu_p50": float(np.percentile(stage_cpu_ms, 50)), "count": len(stage_ms)}
        if stage_ms else None,
    }
    result["gain_db"] = result["inbetween_psnr"] - result["held_psnr"]
    return result, [row for _, _, row in sorted(sheet, key=lambda item: item[1])]


def contact_sheet(every_frame: str, keyframed: str, *, every: int, first: int = 0, limit: int = 15) -> np.ndarray:
    """Two runs of ``animate`` side by side, one row per frame (``limit`` rows from frame ``first``): every frame on
    the left,
    ``--keyframe-every N`` on the right, a green bar under the keyframes' rows and the difference's mean printed."""
    cv = cv2()
    rows = []
    left, right = open_driving(every_frame), open_driving(keyframed)
    try:
        for index in range(first + limit):
            a, b = left.read(), right.read()
            if a is None or b is None:
                break
            if index < first:
                continue
            row = np.hstack([a, np.full((a.shape[0], 8, 3), 255, np.uint8), b])
            bar = np.full((6, row.shape[1], 3), (0, 200, 0) if index % every == 0 else (40, 40, 40), np.uint8)
            text = f"{index}: {'keyframe' if index % every == 0 else 'in-between'}, {mean_abs(a, b):.1f} levels"
            row = np.vstack([row, bar])
            cv.putText(row, text, (6, 18), cv.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv.LINE_AA)
            rows.append(row)
    finally:
        left.close()
        right.close()
    if not rows:
        raise UserError(f"no frames to compare in {every_frame} and {keyframed}")
    return np.vstack(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", help="a driving clip with one face (video file or folder of frames)")
    parser.add_argument("--every", type=int, default=5, help="a keyframe every N frames (default 5; N >= 2)")
    parser.add_argument("--latency", type=int, default=0,
                        help="frames between a keyframe's camera frame and its arrival (the generator's delay; "
                             "default 0: a keyframe is shown at its own frame)")
    parser.add_argument("--crossfade", type=int, default=0,
                        help="renders after a new keyframe that blend in the previous one (default 0)")
    parser.add_argument("--start", type=int, default=0,
                        help="the clip's first frame used (default 0): keyframes are --start, --start + N, ...")
    parser.add_argument("--frames", type=int, help="use at most this many frames from --start (default: to the end)")
    parser.add_argument("--crop-tracking", choices=CROP_TRACKING, default=DEFAULT_CROP_TRACKING,
                        help=f"how the crop box follows the face (default {DEFAULT_CROP_TRACKING}, the live loop's)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--sheet", help="write a PNG of 12 in-betweens (picked by --sheet-by), in the clip's order: "
                                        "true frame | in-between | held, each labelled (frame, offset, dB)")
    parser.add_argument("--make-clip", help="write the demo's scripted driving clip (from --portrait) here and stop")
    parser.add_argument("--portrait", help="the photo --make-clip animates (default: the bundled portrait)")
    parser.add_argument("--sheet-by", choices=SHEET_BY, default="held",
                        help="--sheet's rows: where holding does worst (held, the default), or where the eyes' "
                             "(eyes: blinks) or the mouth's opening (mouth) changed most since the keyframe")
    parser.add_argument("--sheet-of", nargs=2, metavar=("EVERY_FRAME", "KEYFRAMED"),
                        help="write --sheet from two animate outputs (every frame, --keyframe-every N) and stop")
    parser.add_argument("--first", type=int, default=0, help="--sheet-of: the first frame shown (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.sheet_of:
            if not args.sheet:
                parser.error("--sheet-of needs --sheet PNG")
            sheet = contact_sheet(*args.sheet_of, every=args.every, first=args.first)
            cv2().imwrite(args.sheet, cv2().cvtColor(sheet, cv2().COLOR_RGB2BGR))
            print(args.sheet)
            return
        if args.make_clip:
            from fomm_live.live.democlip import make_demo_clip
            from fomm_live.live.paths import DEFAULT_PORTRAIT

            print(make_demo_clip(Path(args.make_clip), portrait=Path(args.portrait or DEFAULT_PORTRAIT)))
            return
        if not args.clip:
            parser.error("--clip is required (or --make-clip to write a test clip)")
        if args.every < 2:
            parser.error(f"--every: expected 2 or more (1 has no in-betweens), got {args.every}")
        if args.start < 0 or (args.frames is not None and args.frames < 1):
            parser.error(f"--start: expected 0 or more, --frames 1 or more, got {args.start} and {args.frames}")
        squares, fps, track = tracked_squares(args.clip, size=SIZE, start=args.start, limit=args.frames,
                                              tracking=args.crop_tracking)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    mesh = FaceMesh()
    try:
        landmarks = [mesh.landmarks(square, static=True) for square in squares]
    finally:
        mesh.close()
    try:
        result, sheet = measure(squares, landmarks, args.every, latency=args.latency, crossfade=args.crossfade,
                                sheet_rows=12 if args.sheet else 0, sheet_by=args.sheet_by, number_from=args.start)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    result.update(crop_tracking=args.crop_tracking, crop=crop_figures(track, landmarks, SIZE))
    result.update(clip=str(args.clip), start=args.start, fps=fps, cpu=platform.processor() or platform.machine(),
                  cores=os.cpu_count(), load_average=os.getloadavg()[0])
    print(f"{args.clip}: {result['frames']} frames from frame {args.start} at {fps:g} fps, a keyframe every "
          f"{args.every} arriving {args.latency} frames late, cross-fade {args.crossfade}, "
          f"{result['skipped_no_face']} without a face left out")
    print(f"{'offset':>6} {'frames':>6} {'inbetween dB':>12} {'held dB':>8} {'gain dB':>8} {'face gain dB':>12}")
    for i, row in result["offsets"].items():
        print(f"{i:>6} {row['frames']:>6} {row['inbetween_psnr']:>12.2f} {row['held_psnr']:>8.2f} "
              f"{row['inbetween_psnr'] - row['held_psnr']:>8.2f} "
              f"{row['face_inbetween_psnr'] - row['face_held_psnr']:>12.2f}")
    if result["stage_ms_1280x720"]:
        print(f"in-between stage at 1280x720 (square {OUTPUT_PLACEMENT[2]:g} px): p50 "
              f"{result['stage_ms_1280x720']['p50']:.2f} ms, p90 {result['stage_ms_1280x720']['p90']:.2f} ms "
              f"(CPU time p50 {result['stage_ms_1280x720']['cpu_p50']:.2f} ms), load average "
              f"{result['load_average']:.2f}")
    if result["face_region"]:
        face, rest = result["face_region"], result["outside_face"]
        print(f"inside the face mesh's hull ({face['share_of_square']:.0%} of the square): in-between "
              f"{face['inbetween_psnr']:.2f} dB, held {face['held_psnr']:.2f} dB, gain {face['gain_db']:.2f} dB; "
              f"outside it: {rest['inbetween_psnr']:.2f}, {rest['held_psnr']:.2f}, gain {rest['gain_db']:.2f} dB")
    if result["eye_region"]:
        picked, every_one = result["eye_region"]["most_change"], result["eye_region"]["all"]
        print(f"eye region, the {picked['count']} in-betweens whose eyes changed most (--sheet-by eyes): in-between "
              f"{picked['inbetween_psnr']:.2f} dB, held {picked['held_psnr']:.2f}, gain {picked['gain_db']:.2f} dB; "
              f"all in-betweens: gain {every_one['gain_db']:.2f} dB")
    print(crop_line(result["crop"], args.crop_tracking))
    print(f"step at a new keyframe {result['keyframe_jump']:.2f} levels (holding: {result['held_keyframe_jump']:.2f}),"
          f" step between other frames {result['inbetween_step']:.2f} (mean absolute difference)")
    if args.sheet and sheet:
        cv = cv2()
        cv.imwrite(args.sheet, cv.cvtColor(np.vstack(sheet), cv.COLOR_RGB2BGR))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"inbetween_psnr={result['inbetween_psnr']:.2f} held_psnr={result['held_psnr']:.2f} "
          f"gain_db={result['gain_db']:.2f}")


if __name__ == "__main__":
    main()
