"""Live loop benchmark: what the loop costs the model, in one run.

The loop runs as ``run`` runs it by default (face tracking, photo framing at the output size, the disclosure label, a
recording through ``live.output.sinks.Mp4Sink``, the helper threads bounded as ``run`` bounds them), on the bundled
clip on a canvas of the output size, paced at its 25 fps like a camera (``--mode realtime``) or every frame as fast as
it goes (``--mode unpaced``). Beside it, the same calls alone: the keypoint detector (``backend.detect``), the generator
(photo framing's ``render``: the model with its motion field), and the paste-back with the label, on crops of the same
clip with nothing else running. Rounds alternate alone / in the loop, so that a machine that slows down during the
run favours neither. With ``--reference``, the original code's per-frame model call (``benchmarks.model``'s reference
path) is timed in each round too, and the loop's frame rate is given as a multiple of its rate.

    python -m fomm_live.benchmarks.loop [--checkpoint CKPT --config CFG] [--size 1280x720] [--mode realtime|unpaced]
                              [--seconds 10] [--rounds 2] [--iterations 20] [--reference]
                              [--no-inbetweens] [--json PATH]

Reported: stage p50s inside the loop and alone, and their ratio (goal: keypoints and generator within 1.15x); the
loop's work outside the model (``compose`` + ``output`` p50: the paste-back and label, and the hand-over to the
sinks); frames the recording dropped because its encoder fell behind; the loop's frames per second and, with
``--reference``, that rate over the original code's. Beside the output's rate (``achieved_fps``), what moves: the
animated frames (keyframes and in-betweens once the neutral pose is set), their rate and the keyframes' rate
(``animated_fps``, ``keyframe_fps``: ``live.stats``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fomm_live.benchmarks.common import bench_clip, fomm_backend_factory, machine_header

LOOP_STAGES = ("face_tracking", "crop", "face_mesh", "keypoints", "generator", "inbetween", "compose", "output")
# What the call sees move, and the generator's own rate (``live.stats``).
ANIMATION_COUNTS = ("frames_animated", "keyframes", "keyframes_shown", "inbetweens")
ANIMATION_RATES = ("animated_fps", "keyframe_fps")
CROPS = 8  # distinct driving crops, cycled in the isolated calls


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def driving_crops(clip: Path, detector, size: int, count: int = CROPS) -> list[np.ndarray]:
    """The first ``count`` face crops of ``clip``, cut as the tracking stage cuts them."""
    from fomm_live.live.face import CropTracker, centre_crop_box, crop_square
    from fomm_live.live.media import cv2

    cap = cv2().VideoCapture(str(clip))
    tracker = CropTracker(smoothing=False)
    crops = []
    try:
        for i in range(count * 4):
            ok, frame = cap.read()
            if not ok or len(crops) == count:
                break
            rgb = np.ascontiguousarray(frame[..., ::-1])
            faces = detector.detect(rgb)
            box = tracker.update(faces[0] if faces else None, i / 25) or centre_crop_box(*rgb.shape[:2])
            crops.append(crop_square(rgb, box, size))
    finally:
        cap.release()
    return crops


def time_alone(backend, avatars, crops: list[np.ndarray], size: tuple[int, int], *, iterations: int,
               warmup: int = 2) -> dict:
    """p50 ms of the keypoint detector, the generator and the paste-back with the label, called one after the other
    with nothing else running, on a thread of their own as in the loop (PyTorch's OpenMP threads behave differently
    under the main thread: on the loaded 2-core test CPU the model ran up to 20x slower there)."""
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(_time_alone(backend, avatars, crops, size,
                                                                      iterations=iterations, warmup=warmup)))
    worker.start()
    worker.join()
    return result


def _time_alone(backend, avatars, crops: list[np.ndarray], size: tuple[int, int], *, iterations: int,
                warmup: int) -> dict:
    from fomm_live.live.compose import add_label
    from fomm_live.live.framing.compositor import make_compositor

    compositor = make_compositor(framing="photo", avatars=avatars, output_size=size, backend=backend, detail=True)
    compositor.select(0)
    backend.set_source(avatars[0].crop)
    backend.calibrate(backend.detect(crops[0]))
    times: dict[str, list[float]] = {"keypoints": [], "generator": [], "compose": []}
    for i in range(warmup + iterations):
        t0 = time.perf_counter()
        motion = backend.detect(crops[i % len(crops)])
        t1 = time.perf_counter()
        rendered = backend.render(motion, detail=True)
        t2 = time.perf_counter()
        add_label(compositor.paste(rendered))
        t3 = time.perf_counter()
        if i >= warmup:
            for stage, ms in (("keypoints", t1 - t0), ("generator", t2 - t1), ("compose", t3 - t2)):
                times[stage].append(ms * 1000)
    return {stage: round(float(np.percentile(v, 50)), 3) for stage, v in times.items()}


def time_loop(backend, avatars, detector, clip: Path, size: tuple[int, int], *, realtime: bool, seconds: float,
              folder: Path, inbetweens: bool = True) -> dict:
    """One run of the live loop as ``run`` runs it, recording to ``folder``; its stats summary."""
    from fomm_live.live.capture.sources import OpenCVSource
    from fomm_live.live.loop.pipeline import LivePipeline
    from fomm_live.live.options import FrameOptions, PacingOptions, PipelineOptions
    from fomm_live.live.output.sinks import Mp4Sink
    from fomm_live.live.stats import PipelineStats

    source = OpenCVSource(str(clip))
    stats = PipelineStats()
    clock = "capture" if realtime else "frames"
    sink = Mp4Sink(folder / "loop.mp4", fps=source.fps, clock=clock, stats=stats)
    options = PipelineOptions(frame=FrameOptions(framing="photo", size=size), inbetweens=inbetweens,
                              pacing=PacingOptions(realtime=realtime, loop=True, fps=source.fps,
                                                   max_frames=round(seconds * source.fps)))
    pipeline = LivePipeline(source, backend, avatars, [sink], options=options, detector=detector, stats=stats)
    start = time.perf_counter()
    summary = pipeline.run()
    summary["wall_s"] = round(time.perf_counter() - start, 2)
    summary["pipelining"] = pipeline.pipelining
    return summary


def reference_frame_ms(checkpoint: str | None, config: str, device: str, iterations: int) -> float:
    """p50 ms of the original code's per-frame call (keypoints, then the generator re-encoding the source), on a
    thread of its own like the loop's model (see ``time_alone``)."""
    from fomm_live.benchmarks.model import run_model_benchmark

    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(run_model_benchmark(
        config=config, checkpoint=checkpoint, device=device, iterations=iterations, warmup=1, paths=[])))
    worker.start()
    worker.join()
    return result["paths"]["reference"]["frame"]["p50"]


def run_loop_benchmark(*, checkpoint: str | None, config: str, device: str, precision: str, size: tuple[int, int],
                       realtime: bool, seconds: float, rounds: int, iterations: int, reference: bool,
                       inbetweens: bool = True,
                       say: Callable[[str], None] = lambda text: None) -> dict:
    """Alone and in the loop, ``rounds`` times, alternating; see the module docstring."""
    from fomm_live.live.face import FaceDetector
    from fomm_live.live.loop.pipeline import prepare_avatars
    from fomm_live.live.threads import bound_helper_threads
    from fomm_live.live.wiring import load_sources

    bound_helper_threads()  # as ``run`` does, for the calls alone too
    clip = bench_clip(size)
    backend = fomm_backend_factory(checkpoint, config, device, precision)()
    rows: list[dict] = []
    with FaceDetector() as detector, tempfile.TemporaryDirectory() as folder:
        avatars = prepare_avatars(load_sources(None), backend.size, detector)
        crops = driving_crops(clip, detector, backend.size)
        for r in range(rounds):
            order = ["alone", "loop"]
            for where in (order if r % 2 == 0 else order[::-1]):
                say(f"round {r + 1}/{rounds}: {where}")
                load = os.getloadavg()[0]
                if where == "alone":
                    rows.append({"round": r, "where": "alone", "load": load, "stages_p50_ms": time_alone(
                        backend, avatars, crops, size, iterations=iterations)})
                    continue
                summary = time_loop(backend, avatars, detector, clip, size, realtime=realtime, seconds=seconds,
                                    inbetweens=inbetweens,
                                    folder=Path(folder))
                rows.append({"round": r, "where": where, "load": load, "achieved_fps": summary["achieved_fps"],
                             "frames_out": summary["frames_out"], "pipelining": summary["pipelining"],
                             "recording_dropped": summary["frames_dropped_by_recording"],
                             **{key: summary[key] for key in (*ANIMATION_COUNTS, *ANIMATION_RATES)},
                             "stages_p50_ms": {s: summary["stages_ms"][s].get("p50") for s in LOOP_STAGES}})
            if reference:
                say(f"round {r + 1}/{rounds}: the original code's model call")
                rows.append({"round": r, "where": "reference", "load": os.getloadavg()[0],
                             "frame_p50_ms": reference_frame_ms(checkpoint, config, device, max(4, iterations // 4))})
    return {"rows": rows, "summary": summarise(rows)}


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.median(values)), 3) if values else None


def summarise(rows: list[dict]) -> dict:
    """Medians over rounds: the in-loop / alone ratios, the work outside the model, the frame rate."""
    alone = [r for r in rows if r["where"] == "alone"]
    out: dict = {"alone_p50_ms": {s: _median([r["stages_p50_ms"][s] for r in alone])
                                  for s in ("keypoints", "generator", "compose")}}
    for where in sorted({r["where"] for r in rows if r["where"].startswith("loop")}):
        loop = [r for r in rows if r["where"] == where]
        figures: dict = {"loop_p50_ms": {s: _median([r["stages_p50_ms"][s] for r in loop]) for s in LOOP_STAGES},
                         "achieved_fps": _median([r["achieved_fps"] for r in loop]),
                         "recording_dropped": sum(r["recording_dropped"] for r in loop),
                         **{key: _median([r[key] for r in loop]) for key in ANIMATION_RATES},
                         **{key: sum(r[key] for r in loop) for key in ANIMATION_COUNTS}}
        for stage in ("keypoints", "generator"):
            inside, by_itself = figures["loop_p50_ms"][stage], out["alone_p50_ms"][stage]
            figures[f"{stage}_loop_over_alone"] = round(inside / by_itself, 3) if inside and by_itself else None
        compose, output = figures["loop_p50_ms"]["compose"], figures["loop_p50_ms"]["output"]
        outside = compose + output if None not in (compose, output) else None
        figures["outside_model_p50_ms"] = None if outside is None else round(outside, 3)
        reference = _median([r["frame_p50_ms"] for r in rows if r["where"] == "reference"])
        if reference is not None and figures["achieved_fps"]:
            figures["reference_frame_p50_ms"] = reference
            figures["fps_over_reference_rate"] = round(figures["achieved_fps"] * reference / 1000, 3)
        out[where] = figures
    return out


def format_report(result: dict) -> str:
    lines = [f"{'round':<6} {'where':<12} {'load':>5} " + " ".join(f"{s:>13}" for s in LOOP_STAGES)
             + "   fps (output; animated, keyframes)"]
    for row in result["rows"]:
        if row["where"] == "reference":
            lines.append(f"{row['round'] + 1:<6} {'original':<12} {row['load']:>5.2f} frame {row['frame_p50_ms']:.1f}")
            continue
        stages = " ".join(f"{row['stages_p50_ms'].get(s) or 0:>13.2f}" for s in LOOP_STAGES)
        fps = f"{row['achieved_fps']:.2f}" if row.get("achieved_fps") else ""
        if row.get("animated_fps"):
            fps += f" (animated {row['animated_fps']:.2f}, keyframes {row.get('keyframe_fps') or 0:.2f})"
        lines.append(f"{row['round'] + 1:<6} {row['where']:<12} {row['load']:>5.2f} {stages}   {fps}")
    lines += [json.dumps({key: value}) for key, value in result["summary"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="FOMM checkpoint (default: random weights of --config)")
    parser.add_argument("--config", default="vox-256", help="preset name or config YAML of the FOMM model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--size", type=parse_size, default=(1280, 720), help="input and output size (default: "
                        "1280x720, run's photo framing at a 720p camera)")
    parser.add_argument("--mode", choices=["realtime", "unpaced"], default="realtime")
    parser.add_argument("--seconds", type=float, default=10.0, help="input seconds per loop run (default: 10)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20, help="calls per stage alone, per round")
    parser.add_argument("--reference", action="store_true", help="time the original code's model call too")
    parser.add_argument("--no-inbetweens", action="store_true",
                        help="the loop without keyframes and in-betweens (realtime mode has them by default, as run)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    result = run_loop_benchmark(checkpoint=args.checkpoint, config=args.config, device=args.device,
                                precision=args.precision, size=args.size, realtime=args.mode == "realtime",
                                seconds=args.seconds, rounds=args.rounds, iterations=args.iterations,
                                reference=args.reference, inbetweens=not args.no_inbetweens,
                                say=lambda text: print(text, file=sys.stderr, flush=True))
    result["machine"] = machine_header(args.device)
    result["weights"] = args.checkpoint or f"random weights of {args.config}"
    result["command"] = "python -m fomm_live.benchmarks.loop " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(format_report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
