"""Time the landmark backend: ``detect`` (mediapipe face mesh on a driving crop) and ``render`` (motion transfer,
piecewise-affine warp, mouth interior) at each output size.

    python -m fomm_live.benchmarks.landmarks [--iterations 200] [--sizes 256 512] [--crop 256]

The driving frames are the demo clip's script (head turn, nod, blink, mouth opening) rendered from the bundled
portrait, so ``render`` runs through every path, the mouth painting included. Warm-up calls are not timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from fomm_live.benchmarks.common import timings
from fomm_live.live.democlip import SCRIPT, portrait_crop, script_landmarks
from fomm_live.live.landmarks import LandmarkBackend
from fomm_live.live.media import cv2, read_image
from fomm_live.live.paths import DEFAULT_PORTRAIT
from fomm_live.live.stats import percentiles


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200, help="timed calls per row (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="render sizes (default 256 512)")
    parser.add_argument("--crop", type=int, default=256, help="side of the driving crops detect sees (default 256)")
    args = parser.parse_args(argv)

    portrait = read_image(DEFAULT_PORTRAIT)
    rows: list[tuple[str, np.ndarray]] = []
    with LandmarkBackend(size=args.crop) as maker:
        crop = portrait_crop(portrait, maker.detect(portrait), args.crop)
        maker.set_source(crop)
        neutral = maker.detect(crop)
        maker.calibrate(neutral)
        clip_seconds = SCRIPT["end"][1]
        count = max(25, min(args.iterations, 125))
        motions = [script_landmarks(neutral, clip_seconds * i / count) for i in range(count)]
        frames = [maker.render(m).frame for m in motions]  # driving crops: the script rendered from the portrait
        driving = [maker.detect(f) for f in frames]
        if any(d is None for d in driving):
            raise SystemExit("the face mesh lost the face on a driving frame; the benchmark needs all of them")
        eye_width = float(np.linalg.norm(neutral[33, :2] - neutral[133, :2]))
        aside = [d.copy() for d in driving]
        for d in aside:
            d[468:478, 0] += 0.15 * eye_width  # both irises: the gaze turned by 0.15 of an eye's width
        rows.append((f"detect {args.crop} px crop", timings(lambda i: maker.detect(frames[i % count]),
                                                            iterations=args.iterations, warmup=args.warmup)))
    with LandmarkBackend(size=args.crop, tracking=True) as tracker:
        rows.append((f"detect {args.crop} px, tracking", timings(lambda i: tracker.detect(frames[i % count]),
                                                                 iterations=args.iterations, warmup=args.warmup)))
    for size in args.sizes:
        with LandmarkBackend(size=size) as backend:
            start = time.perf_counter()
            backend.set_source(crop)
            rows.append((f"set_source {size} px (once)", np.array([time.perf_counter() - start])))
            backend.calibrate(neutral)
            rows.append((f"render {size} px", timings(lambda i, b=backend: b.render(driving[i % count]),
                                                      iterations=args.iterations, warmup=args.warmup)))
            # The script's frames, each with the irises moved aside: every eye painted by the gaze.
            rows.append((f"render {size} px, gaze aside", timings(lambda i, b=backend: b.render(aside[i % count]),
                                                                  iterations=args.iterations, warmup=args.warmup)))

    print(f"landmark backend: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OpenCV {cv2().__version__} ({cv2().getNumThreads()} threads)")
    print(f"{'what':<30} {'p50 ms':>8} {'p95 ms':>8} {'calls':>6}")
    for name, seconds in rows:
        figures = percentiles(seconds * 1e3)
        print(f"{name:<30} {figures['p50']:8.2f} {figures['p95']:8.2f} {figures['count']:6d}")


if __name__ == "__main__":
    main()
