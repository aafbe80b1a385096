"""The ``fomm-live`` command line.

``run`` (the default: the live loop from a camera, file or stream to a virtual camera, preview window and/or MP4)
and ``animate`` (file to file). Without a subcommand, ``run`` is meant: ``fomm-live --source face.png``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from live.errors import UserError
from live.hotkeys import help_text

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger("fomm-live")

PRESET_HELP = "vox-256, vox-adv-256, taichi-256, taichi-adv-256, mgif-256, bair-256, fashion-256, nemo-256"
CHECKPOINT_HELP = ("an original First Order Motion Model checkpoint (vox-cpk.pth.tar, vox-adv-cpk.pth.tar, "
                   "taichi-cpk.pth.tar, ...); see the README for where to get one")


def add_config_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--config``, spelled and explained the same on every command."""
    parser.add_argument("--config", default="vox-256", metavar="YAML_OR_PRESET",
                        help=f"original-format config YAML or a preset name: {PRESET_HELP} (default: vox-256)")


def add_model_options(parser: argparse.ArgumentParser, *, several_sources: bool = False) -> None:
    """Options shared by every subcommand that animates, spelled the same everywhere."""
    group = parser.add_argument_group("model")
    if several_sources:
        group.add_argument("--source", action="append", metavar="IMG_OR_DIR",
                           help="a photo to animate, or a folder of them; repeat for several avatars (hotkeys 1-9, n, "
                                "p switch); default: the bundled portrait")
    else:
        group.add_argument("--source", required=True, metavar="IMG", help="the photo to animate")
    group.add_argument("--checkpoint", metavar="CKPT", help=CHECKPOINT_HELP + " (required with --backend fomm)")
    add_config_option(group)
    group.add_argument("--backend", default="auto", choices=["auto", "fomm", "landmarks"],
                       help="animation backend: fomm (the First Order Motion Model, needs --checkpoint) or landmarks "
                            "(face-mesh warping, no weights, fast on any CPU); auto = fomm when a checkpoint is given, "
                            "else landmarks (default: auto)")
    group.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="auto = CUDA when a GPU is visible, else CPU (default: auto)")
    group.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                       help="generator precision; auto = fp16 on CUDA, bf16 on CPUs with native bf16 (AVX512-BF16, "
                            "AMX), else fp32 (default: auto)")
    group.add_argument("--engine", default="auto", choices=["auto", "eager", "tensorrt", "onnxruntime"],
                       help="what runs the FOMM networks; auto = TensorRT on an NVIDIA GPU when torch-tensorrt is "
                            "installed and passes its self-check, else PyTorch eager (default: auto)")
    motion = group.add_mutually_exclusive_group()
    motion.add_argument("--relative", dest="relative", action="store_true", default=True,
                        help="move the source by the driving motion relative to the neutral pose (default)")
    motion.add_argument("--absolute", dest="relative", action="store_false",
                        help="use the driving keypoints as they are (only for a source and driver of the same person)")
    scale = group.add_mutually_exclusive_group()
    scale.add_argument("--adapt-scale", dest="adapt_scale", action="store_true", default=True,
                       help="scale the motion by the source/driver face size ratio (default)")
    scale.add_argument("--no-adapt-scale", dest="adapt_scale", action="store_false", help="do not scale the motion")
    group.add_argument("--no-label", action="store_true",
                       help="leave out the 'AI-generated' label drawn on every output frame (the log says so)")
    group.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fomm-live",
        description="Animate a photo with the motion of a driving face, using the First Order Motion Model.",
        epilog="Run 'fomm-live COMMAND --help' for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run", help="the live loop (default): camera -> animated photo -> virtual camera / preview / MP4",
        description="Animate the photo with your face, live. The neutral pose is taken automatically once your face "
                    "is still after start; press c in the preview to take it again. Press h for all hotkeys.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=help_text(),
    )
    add_model_options(run, several_sources=True)
    live = run.add_argument_group("live loop")
    live.add_argument("--camera", default="0", metavar="INDEX_OR_PATH_OR_URL",
                      help="camera device index, video file or stream URL (default: 0)")
    live.add_argument("--resolution", type=parse_size, metavar="WxH", help="resolution to ask of the camera")
    live.add_argument("--fps", type=float, metavar="N", help="frame rate to ask of the camera")
    live.add_argument("--output", action="append", metavar="virtualcam|window|PATH.mp4",
                      help="where frames go; repeat for several (default: window when a display exists, plus "
                           "virtualcam when one is installed)")
    live.add_argument("--output-size", type=parse_size, metavar="WxH",
                      help="output frame size (default: the resolution the camera granted)")
    live.add_argument("--no-preview", action="store_true", help="no preview window")
    live.add_argument("--realtime", action="store_true",
                      help="pace a video file at its own fps like a camera (stale frames are dropped and counted)")
    live.add_argument("--loop", action="store_true", help="repeat a video file")
    live.add_argument("--max-frames", type=int, metavar="N", help="stop after N input frames")
    live.add_argument("--stats-json", metavar="PATH",
                      help="write frame counts and per-stage p50/p95/p99 latency (ms) here at exit")
    live.add_argument("--crop", default="face", choices=["face", "none"],
                      help="face: track and crop the face (default); none: use the centre square of the frame")
    live.add_argument("--no-smoothing", action="store_true", help="no smoothing of the crop box and keypoints")
    live.add_argument("--kp-cutoff", type=float, default=1.0, metavar="HZ",
                      help="keypoint smoothing at rest: lower is steadier but laggier (default: 1.0)")
    live.add_argument("--manual-calibration", action="store_true",
                      help="take the neutral pose only when c is pressed (default: automatically once still)")
    animate = sub.add_parser(
        "animate", help="animate a photo with a driving video or frame folder, file to file",
        description="Animate --source with the motion of --driving and write the result to --out. In relative mode "
                    "(the default) the first driving frame is the neutral pose.",
    )
    add_model_options(animate)
    animate.add_argument("--driving", required=True, metavar="VIDEO_OR_FRAME_DIR",
                         help="a video file, or a folder of frames read in name order")
    animate.add_argument("--out", required=True, metavar="OUT.mp4_OR_DIR",
                         help="an .mp4 file, or a folder that receives 00000.png, 00001.png, ...")
    animate.add_argument("--crop", default="none", choices=["none", "face"],
                         help="none: frames are used as given, resized to the model's size, like the original demo "
                              "(default); face: track and crop the face as the live loop does")
    animate.add_argument("--find-best-frame", action="store_true",
                         help="take as the neutral pose the driving frame whose face best matches the photo's pose "
                              "(default: the first frame)")
    demo = sub.add_parser(
        "demo", help="see it work without a webcam: the bundled portrait, driven by the bundled clip",
        description="Run the real live pipeline (the same code as the webcam path) on the bundled portrait driven by "
                    "a bundled driving clip (made once into the user cache folder), write the result to --out, print "
                    "the latency summary, and show the preview when a display exists.",
    )
    add_model_options(demo, several_sources=True)
    demo.add_argument("--out", default="fomm-live-demo.mp4", metavar="PATH.mp4",
                      help="where the result goes (default: fomm-live-demo.mp4)")
    demo.add_argument("--no-preview", action="store_true", help="no preview window")
    demo.add_argument("--stats-json", metavar="PATH", help="write the per-stage latency figures here")
    bench = sub.add_parser(
        "bench", help="measure this machine: the model path by path, and the live loop stage by stage",
        description="Model benchmark: keypoint detector and generator per frame on every available path (device, "
                    "precision, engine), beside the reference path (source re-encoded every frame, fp32, eager, as "
                    "the original runs) measured in the same run. Pipeline benchmark: the real live loop on a "
                    "driving clip for each backend, paced like a camera and unpaced. Without --checkpoint the FOMM "
                    "networks get random weights of --config (speed does not depend on the weights).",
    )
    bench.add_argument("--checkpoint", metavar="CKPT", help=CHECKPOINT_HELP + " (default: random weights)")
    add_config_option(bench)
    bench.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bench.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                       help="FOMM precision in the pipeline benchmark (the model benchmark runs every precision)")
    bench.add_argument("--camera", metavar="PATH", help="driving clip for the pipeline benchmark "
                                                         "(default: the bundled clip on a 640x480 canvas)")
    bench.add_argument("--backend", action="append", choices=["fomm", "landmarks"],
                       help="pipeline backends to run (default: both)")
    bench.add_argument("--quick", action="store_true", help="fewer iterations: under two minutes on a 2-core CPU")
    bench.add_argument("--json", metavar="PATH", help="write every figure here (fields: see the README)")
    bench.add_argument("--plot", metavar="PATH.png", help="latency-per-stage bars and per-frame latency histogram")
    bench.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    export = sub.add_parser(
        "export", help="export the keypoint detector and the per-frame generator to ONNX, checked with ONNX Runtime",
        description="Write kp_detector.onnx and generator.onnx (the generator takes the cached source features "
                    "and keypoints as inputs) into --onnx DIR, then run both with ONNX Runtime and compare every "
                    "output with PyTorch (fp32, within 1e-4).",
    )
    export.add_argument("--checkpoint", required=True, metavar="CKPT", help=CHECKPOINT_HELP)
    add_config_option(export)
    export.add_argument("--onnx", required=True, metavar="DIR", help="output folder (created if needed)")
    export.add_argument("--source", metavar="IMG", help="trace with this photo as the cached source (default: a "
                                                        "fixed pseudo-random image)")
    export.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime check")
    export.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    doctor = sub.add_parser("doctor", help="check this set-up and say what to fix",
                            description="Check Python and packages, the bundled face models, cameras, the virtual "
                                        "camera, the display, the GPU and TensorRT, a checkpoint (with --checkpoint) "
                                        "and the cache folder. Each line says OK, WARN or FAIL; the exit code is "
                                        "non-zero when any check fails.")
    doctor.add_argument("--checkpoint", metavar="CKPT", help="also check that this checkpoint loads")
    doctor.add_argument("--config", metavar="YAML_OR_PRESET", help="the config the checkpoint should match")
    doctor.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    return parser


def parse_size(text: str) -> tuple[int, int]:
    """``640x480`` -> (640, 480)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    if w < 16 or h < 16 or w > 8192 or h > 8192:
        raise argparse.ArgumentTypeError(f"{text} is out of range (16 to 8192 pixels a side)")
    return w, h


def resolve_backend(args: argparse.Namespace) -> str:
    """``auto`` -> fomm with a checkpoint, else landmarks (saying how to get the FOMM backend)."""
    backend = args.backend
    if backend == "auto":
        backend = "fomm" if args.checkpoint else "landmarks"
        if backend == "landmarks":
            logger.info("no --checkpoint: animating with the landmark backend (no weights needed); for the First "
                        "Order Motion Model pass --checkpoint vox-cpk.pth.tar (see the README)")
    if backend == "fomm" and args.checkpoint is None:
        raise UserError("--checkpoint is required: the fomm backend needs " + CHECKPOINT_HELP)
    return backend


def make_backend(args: argparse.Namespace, *, tracking: bool) -> object:
    """The animation backend the shared options ask for.

    Args:
        tracking: The driving frames are a continuous stream (the landmark backend then tracks the face mesh from
            frame to frame instead of detecting it afresh: faster and steadier).
    """
    from live.backends import FommBackend

    if resolve_backend(args) == "fomm":
        return FommBackend(load_animator(args))
    from live.landmarks import LandmarkBackend

    return LandmarkBackend(relative=args.relative, tracking=tracking)


def load_animator(args: argparse.Namespace):
    """Build the Animator the shared options describe (imports torch only when needed)."""
    from models import Animator, CheckpointError, ConfigError, MotionOptions

    try:
        animator = Animator.from_checkpoint(args.checkpoint, args.config, device=args.device,
                                            precision=args.precision, engine=args.engine,
                                            motion=MotionOptions(relative=args.relative, adapt_scale=args.adapt_scale))
    except (CheckpointError, ConfigError) as err:
        raise UserError(str(err)) from err
    except RuntimeError as err:  # e.g. --device cuda without a GPU
        raise UserError(str(err)) from err
    logger.info("model: %s (%s), device %s, precision %s, %s motion%s", args.checkpoint, args.config,
                animator.device, animator.precision, "relative" if args.relative else "absolute",
                ", adapted scale" if args.relative and args.adapt_scale else "")
    return animator


def _driving_crops(driving, detector, size: int, crop: str):
    """(frame or face crop, face or None) for each driving frame, tracked and cropped as the live loop does."""
    from live.face import CropTracker, centre_crop_box, crop_square

    tracker = CropTracker()
    for index, frame in enumerate(driving.frames):
        faces = detector.detect(frame) if detector is not None else []
        face = faces[0] if faces else None
        if crop == "face":
            box = tracker.update(face, index / driving.fps)
            frame = crop_square(frame, box or centre_crop_box(*frame.shape[:2]), size)
        yield frame, face


def cmd_animate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from live.calibration import BestFrameSelector
    from live.compose import add_label
    from live.face import FaceDetector, centre_crop_box, crop_source_image, crop_square
    from live.media import copy_audio, open_driving, open_writer, read_image

    source = read_image(args.source)
    driving = open_driving(args.driving)
    backend = make_backend(args, tracking=True)
    need_faces = args.crop == "face" or args.find_best_frame
    detector = FaceDetector() if need_faces else None
    try:
        if args.crop == "face":
            source, warning = crop_source_image(source, backend.size, detector)
            if warning:
                logger.warning("%s: %s", args.source, warning)
        backend.set_source(source)
        # Shown until a first driving face is seen (landmark backend): the photo at the output size.
        placeholder = crop_square(source, centre_crop_box(*source.shape[:2]), backend.size)
        neutral = None
        if args.find_best_frame:
            source_faces = detector.detect(source)
            if not source_faces:
                raise UserError(f"--find-best-frame needs a face in {args.source}; none was found")
            selector = BestFrameSelector(source_faces[0].points)
            best_index, neutral = -1, None
            for index, (frame, face) in enumerate(_driving_crops(driving, detector, backend.size, args.crop)):
                if selector.update(face):
                    best_index, neutral = index, frame
            if neutral is None:
                raise UserError(f"--find-best-frame found no face in {args.driving}")
            logger.info("neutral pose: driving frame %d (closest to the photo's pose)", best_index)
            driving = open_driving(args.driving)  # second pass
        if args.no_label:
            logger.warning("the 'AI-generated' label is removed from the output (--no-label)")
        out_path = Path(args.out)
        writer = open_writer(out_path, fps=driving.fps)
        start = time.perf_counter()
        count = 0
        last = None
        try:
            if neutral is not None:
                motion = backend.detect(neutral)
                if motion is not None:
                    backend.calibrate(motion)
            frames = tqdm(_driving_crops(driving, detector, backend.size, args.crop), total=driving.count,
                          unit="frame", disable=not sys.stderr.isatty(), desc="animating")
            for frame, _face in frames:
                motion = backend.detect(frame)
                if motion is not None:
                    if not backend.calibrated:  # without --find-best-frame the first driving frame is the neutral
                        backend.calibrate(motion)
                    last = backend.render(motion)
                result = last if last is not None else placeholder
                writer.write(result if args.no_label else add_label(result))
                count += 1
        finally:
            writer.close()
    finally:
        if detector is not None:
            detector.close()
        _close_backend(backend)
    if count == 0:
        raise UserError(f"{args.driving} holds no frames; nothing was written")
    elapsed = time.perf_counter() - start
    if out_path.suffix.lower() in (".mp4", ".mov", ".mkv") and Path(args.driving).is_file():
        if copy_audio(out_path, args.driving):
            logger.info("copied the driving video's audio")
    print(f"animated {count} frames in {elapsed:.1f} s ({1000 * elapsed / count:.0f} ms per frame) -> {out_path}")
    return 0


def _close_backend(backend: object) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        close()


def load_sources(specs: list[str] | None) -> list[tuple[str, np.ndarray]]:
    """Read every --source (files, or the images of folders in name order); the bundled portrait by default."""
    from live.media import IMAGE_SUFFIXES, read_image
    from live.paths import DEFAULT_PORTRAIT

    paths: list[Path] = []
    for spec in specs or [str(DEFAULT_PORTRAIT)]:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"{path} holds no image files")
            paths.extend(found)
        else:
            paths.append(path)
    if len(paths) > 9:
        logger.info("%d avatars: hotkeys 1-9 reach the first nine, n/p all of them", len(paths))
    return [(p.name, read_image(p)) for p in paths]


def open_outputs(args: argparse.Namespace, *, width: int, height: int, fps: float) -> tuple[list, object | None]:
    """The sinks the options ask for, and the preview window (or None). Unavailable outputs are reported; the run
    goes on with the others, and fails with one line only when nothing is left."""
    from live.sinks import Mp4Sink, SinkUnavailable, VirtualCamSink, WindowSink, display_available

    sinks, window, problems = [], None, []
    wanted = args.output or ["virtualcam"]
    want_window = not args.no_preview and (display_available() or "window" in wanted)
    for spec in wanted:
        if spec == "window":
            continue
        try:
            if spec == "virtualcam":
                sinks.append(VirtualCamSink(width=width, height=height, fps=fps))
            elif spec.lower().endswith((".mp4", ".mov", ".mkv")):
                sinks.append(Mp4Sink(spec, fps=fps))
            else:
                raise UserError(f"unknown --output {spec!r}: use virtualcam, window or a PATH.mp4")
        except SinkUnavailable as err:
            problems.append(str(err))
            logger.warning("%s", err)
    if want_window:
        try:
            window = WindowSink()
        except SinkUnavailable as err:
            problems.append(str(err))
            logger.warning("%s", err)
    if not sinks and window is None:
        raise UserError("nothing to show or send frames to: " + "; ".join(problems)
                        + "; add --output PATH.mp4 to record instead")
    return sinks, window


def cmd_run(args: argparse.Namespace) -> int:
    from live.capture import OpenCVSource, parse_camera
    from live.face import FaceDetector
    from live.pipeline import LivePipeline, PipelineOptions, prepare_avatars

    images = load_sources(args.source)
    source = OpenCVSource(args.camera, resolution=args.resolution, fps=args.fps)
    detector = backend = None
    sinks, window = [], None
    try:
        backend = make_backend(args, tracking=True)
        if args.no_label:
            logger.warning("the 'AI-generated' label is removed from the output (--no-label)")
        detector = FaceDetector() if args.crop == "face" else None
        avatars = prepare_avatars(images, backend.size, detector, crop=args.crop)
        width, height = args.output_size or (source.width, source.height)
        fps = source.fps
        sinks, window = open_outputs(args, width=width, height=height, fps=fps)
        logger.info("input: %s; output %dx%d to %s", source.description, width, height,
                    ", ".join([s.name for s in sinks] + (["preview window"] if window else [])))
        if window is not None:
            print(help_text())
        spec = parse_camera(args.camera)
        reopen = (lambda: OpenCVSource(spec, resolution=args.resolution, fps=args.fps)) if not source.is_file else None
        options = PipelineOptions(output_size=(width, height), crop=args.crop, smoothing=not args.no_smoothing,
                                  kp_min_cutoff=args.kp_cutoff, auto_calibrate=not args.manual_calibration,
                                  label=not args.no_label, realtime=args.realtime, loop=args.loop,
                                  max_frames=args.max_frames, fps=fps)
        pipeline = LivePipeline(source, backend, avatars, sinks, options=options, detector=detector, window=window,
                                reopen=reopen)
        try:
            summary = pipeline.run()
        finally:
            if args.stats_json:
                pipeline.stats.write_json(args.stats_json, extra={"backend": backend.name, "input": source.description,
                                                                   "output_size": [width, height]})
    finally:
        source.close()
        for sink in sinks:
            sink.close()
        if window is not None:
            window.close()
        if detector is not None:
            detector.close()
        if backend is not None:
            _close_backend(backend)
    e2e = summary["end_to_end_ms"]
    print(f"{summary['frames_in']} frames in, {summary['frames_out']} out, {summary['frames_dropped']} dropped; "
          f"end to end p50 {e2e.get('p50', float('nan')):.1f} ms, p95 {e2e.get('p95', float('nan')):.1f} ms")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from live.doctor import FAIL, run_checks

    checks = run_checks(checkpoint=args.checkpoint, config=args.config)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if c.status == FAIL]
    print(f"{len(checks)} checks: {len(failed)} failed, {sum(c.status == 'WARN' for c in checks)} warnings")
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from live.democlip import demo_clip_path

    clip = demo_clip_path()
    run_args = build_parser().parse_args(["run"])  # every live-loop option at its default
    for key, value in vars(args).items():
        setattr(run_args, key, value)
    run_args.camera = str(clip)
    run_args.output = [args.out]
    run_args.realtime = True  # paced like a camera, so the latency figures mean what they would live
    print(f"demo: the bundled portrait driven by {clip.name} -> {args.out}")
    code = cmd_run(run_args)
    print(f"wrote {args.out}")
    return code


def cmd_bench(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from benchmarks.suite import format_report, plot_report, run_bench, write_json
    from models import CheckpointError, ConfigError

    for noisy in ("onnxscript", "onnx_ir", "torch.onnx", "live.pipeline", "live.landmarks"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # per-pass and per-run chatter would drown the bar
    bar = tqdm(total=1, unit="step", disable=not sys.stderr.isatty(), desc="bench")

    def progress(text: str, done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.set_description(text)
        bar.refresh()

    try:
        result = run_bench(checkpoint=args.checkpoint, config=args.config, device=args.device,
                           precision=args.precision, camera=args.camera, quick=args.quick,
                           backends=tuple(args.backend or ("fomm", "landmarks")), progress=progress)
    except (CheckpointError, ConfigError) as err:
        raise UserError(str(err)) from err
    finally:
        bar.close()
    result["command"] = "fomm-live bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else sys.argv[1:])
    print(format_report(result))
    if args.json:
        write_json(result, args.json)
        print(f"figures: {args.json}")
    if args.plot:
        plot_report(result, args.plot)
        print(f"plot: {args.plot}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from live.media import read_image
    from models import Animator, CheckpointError, ConfigError
    from models.export import ExportError, export_onnx

    try:
        animator = Animator.from_checkpoint(args.checkpoint, args.config, device="cpu", precision="fp32",
                                            engine="eager")
    except (CheckpointError, ConfigError) as err:
        raise UserError(str(err)) from err
    if args.source:
        animator.set_source(read_image(args.source))
    for noisy in ("onnxscript", "onnx_ir", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # the exporter logs every optimisation pass
    try:
        paths = export_onnx(animator, args.onnx, verify=not args.no_verify)
    except ImportError as err:
        raise UserError(f"ONNX export needs the onnx, onnxscript and onnxruntime packages ({err.name} is missing): "
                        "pip install -e '.[test]'") from err
    except ExportError as err:
        raise UserError(f"export failed: {err}") from err
    for name, path in paths.items():
        print(f"{name}: {path}")
    print("checked with ONNX Runtime against PyTorch" if not args.no_verify else "not checked (--no-verify)")
    return 0


COMMANDS = {"run": cmd_run, "animate": cmd_animate, "demo": cmd_demo, "bench": cmd_bench, "export": cmd_export,
            "doctor": cmd_doctor}


_interrupts = 0


def _on_interrupt(signum: int, frame: object) -> None:
    """First Ctrl-C or SIGTERM: stop cleanly (``finally`` blocks finalise recordings). A second one: exit at once."""
    global _interrupts
    _interrupts += 1
    if _interrupts > 1:
        print("fomm-live: interrupted again: exiting now; a recording being written may be cut short",
              file=sys.stderr, flush=True)
        os._exit(130)
        return  # only reached where os._exit is replaced (tests)
    raise KeyboardInterrupt


def install_interrupt_handlers() -> dict:
    """Route Ctrl-C and SIGTERM through ``_on_interrupt``; returns the handlers it replaced."""
    global _interrupts
    _interrupts = 0
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}


def check_conflicts(args: argparse.Namespace) -> None:
    """Options that contradict each other end the command with one line before anything starts."""
    backend = getattr(args, "backend", None)
    if backend == "landmarks" and getattr(args, "checkpoint", None):
        raise UserError("--checkpoint is for the fomm backend; drop it, or use --backend fomm (or auto)")
    outputs = getattr(args, "output", None) or []
    if getattr(args, "no_preview", False) and "window" in outputs:
        raise UserError("--no-preview and --output window contradict each other; keep one")
    if getattr(args, "device", None) == "cpu" and getattr(args, "precision", None) == "fp16":
        raise UserError("--precision fp16 is for CUDA; on the CPU use bf16 or fp32")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")  # `fomm-live --source face.png` means `fomm-live run --source face.png`
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="fomm-live: %(message)s")
    previous = install_interrupt_handlers()
    try:
        check_conflicts(args)
        return COMMANDS[args.command](args)
    except UserError as err:
        if debug:
            raise
        print(f"fomm-live: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fomm-live: interrupted", file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
