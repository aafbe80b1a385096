"""``animate --precision int8`` against float32 and the original's per-frame call: frames, speed, time to first frame.

Three measurements, on vox-256-size networks with seeded random weights (``benchmarks.model.randomize_``, saved as an
original-format checkpoint in a temporary folder) and driving frames made from the bundled portrait (shifted, turned
and scaled, so that the keypoints move):

1. The real command, as a user runs it: ``fomm-live animate --source S --driving DIR --output OUTDIR --checkpoint C
   --config vox-256 --crop none --device cpu --precision int8 --no-label``, then the same with ``--precision fp32``;
   the PSNR of every int8 frame against the fp32 frame of the same index (PNG levels). The int8 command runs twice on
   an empty cache folder: cold (calibration) then warm (cached); wall time of each command is reported.
2. Per frame, in one process, round-robin: the original's per-frame call (keypoints of the driving frame, then the
   generator re-encoding the photo: ``generator(source, kp_driving, kp_source)``, float32 eager, as
   ``benchmarks.model``'s ``reference``), and ``Animator.animate`` at int8, fp32 and bf16 (keypoints, motion
   normalisation, generator, conversion to uint8).
3. Time to the first animated frame in one process: ``Animator`` built from the checkpoint, ``set_source``, the first
   ``animate``; cold (empty int8 cache) and warm (the cache filled by the cold start).

    python -m fomm_live.benchmarks.int8_animate [--frames N] [--iterations N] [--json PATH]
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI python -m fomm_live.benchmarks.int8_animate  # no native bf16 in oneDNN
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fomm_live.benchmarks.model import machine_info, randomize_
from fomm_live.models import Animator, build_networks, load_config
from fomm_live.models.engines import psnr

CACHE_ENV = "FOMM_LIVE_CACHE"  # the cache folder switch (common.switches)

PORTRAIT = Path(__file__).resolve().parent.parent / "live" / "assets" / "astronaut.jpg"


def _driving_frames(count: int) -> list[np.ndarray]:
    """The portrait moved a little more each frame (shift, turn, scale), 256 x 256 RGB."""
    import cv2

    image = cv2.cvtColor(cv2.imread(str(PORTRAIT)), cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(count):
        t = i / max(1, count - 1)
        matrix = cv2.getRotationMatrix2D((128, 128), 12 * np.sin(6.28 * t), 1 + 0.08 * np.cos(6.28 * t))
        matrix[:, 2] += (10 * np.sin(3.14 * t), 6 * np.cos(3.14 * t))
        frames.append(cv2.warpAffine(image, matrix, (256, 256), borderMode=cv2.BORDER_REFLECT))
    return frames


def _cli(*args: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fomm_live", *args], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _read(folder: Path) -> list[np.ndarray]:
    import cv2

    return [cv2.imread(str(p))[:, :, ::-1] for p in sorted(folder.glob("*.png"))]


def run(*, frames: int = 8, iterations: int = 8, seed: int = 0, say=print) -> dict:
    import cv2

    result: dict = {"machine": machine_info(torch.device("cpu"))}
    with tempfile.TemporaryDirectory(prefix="fomm-live-int8-animate-") as tmp:
        tmp = Path(tmp)
        kp_detector, generator = build_networks(load_config("vox-256"))
        randomize_(kp_detector, generator, seed=seed)
        checkpoint = tmp / "random-vox-256.pth.tar"
        torch.save({"generator": generator.state_dict(), "kp_detector": kp_detector.state_dict()}, checkpoint)
        driving = tmp / "driving"
        driving.mkdir()
        clip = _driving_frames(frames)
        for i, frame in enumerate(clip):
            cv2.imwrite(str(driving / f"{i:05d}.png"), frame[:, :, ::-1])
        source = tmp / "source.png"
        cv2.imwrite(str(source), cv2.imread(str(PORTRAIT)))
        env = {**os.environ, CACHE_ENV: str(tmp / "cache")}
        common = ["animate", "--source", str(source), "--driving", str(driving), "--checkpoint", str(checkpoint),
                  "--config", "vox-256", "--crop", "none", "--device", "cpu", "--no-label"]
        load = {"before": os.getloadavg()}
        say("animate --precision int8 (cold), int8 (warm), fp32 ...")
        wall = {"int8_cold_s": _cli(*common, "--output", str(tmp / "int8"), "--precision", "int8", env=env),
                "int8_warm_s": _cli(*common, "--output", str(tmp / "int8b"), "--precision", "int8", env=env),
                "fp32_s": _cli(*common, "--output", str(tmp / "fp32"), "--precision", "fp32", env=env)}
        got, want = _read(tmp / "int8"), _read(tmp / "fp32")
        quality = [psnr(torch.from_numpy(g.copy()).float() / 255, torch.from_numpy(w.copy()).float() / 255)
                   for g, w in zip(got, want, strict=True)]
        result["command"] = {"wall": {k: round(v, 1) for k, v in wall.items()}, "frames": len(got),
                             "min_psnr_db_int8_vs_fp32": round(min(quality), 2),
                             "mean_psnr_db_int8_vs_fp32": round(float(np.mean(quality)), 2)}
        say(str(result["command"]))

        os.environ[CACHE_ENV] = str(tmp / "cache-first")
        first = {}
        with torch.inference_mode():
            for label in ("cold", "warm"):
                start = time.perf_counter()
                animator = Animator.from_checkpoint(checkpoint, "vox-256", device="cpu", precision="int8")
                animator.set_source(cv2.imread(str(PORTRAIT))[:, :, ::-1].copy())
                animator.animate(clip[0])
                first[f"{label}_s"] = round(time.perf_counter() - start, 2)
                first[f"{label}_engine"] = animator.engine.name
            result["first_frame"] = first
            say(str(first))

            animators = {"int8": animator}
            for precision in ("fp32", "bf16"):
                animators[precision] = Animator.from_checkpoint(checkpoint, "vox-256", device="cpu",
                                                                precision=precision)
                animators[precision].set_source(cv2.imread(str(PORTRAIT))[:, :, ::-1].copy())
            photo = animators["fp32"].to_tensor(cv2.imread(str(PORTRAIT))[:, :, ::-1].copy())
            kp_photo = kp_detector.eval()(photo)
            generator.eval()

            def reference(frame: np.ndarray) -> None:
                generator(photo, kp_detector(animators["fp32"].to_tensor(frame)), kp_photo)

            calls = {"reference": reference, **{f"animate-{p}": a.animate for p, a in animators.items()}}
            for call in calls.values():
                call(clip[0])
            times: dict[str, list[float]] = {name: [] for name in calls}
            for i in range(iterations):
                for name, call in calls.items():
                    t0 = time.perf_counter()
                    call(clip[i % len(clip)])
                    times[name].append((time.perf_counter() - t0) * 1000)
        load["after"] = os.getloadavg()
        ref = float(np.median(times["reference"]))
        result["per_frame"] = {name: {"p50_ms": round(float(np.median(t)), 1),
                                      "speedup_vs_reference": round(ref / float(np.median(t)), 2)}
                               for name, t in times.items()}
        result["per_frame"]["animate-int8"]["engine_now"] = animators["int8"].engine.name
    result["settings"] = {"frames": frames, "iterations": iterations, "weights": f"random vox-256 (seed {seed})",
                          "load_average": load, "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                          "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8, help="driving frames for the command (default: 8)")
    parser.add_argument("--iterations", type=int, default=8, help="timed frames per path (default: 8)")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)
    result = run(frames=args.frames, iterations=args.iterations,
                 say=lambda line: print(line, file=sys.stderr, flush=True))
    result["settings"]["command"] = "python -m fomm_live.benchmarks.int8_animate " + " ".join(
        argv if argv is not None else sys.argv[1:])
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
