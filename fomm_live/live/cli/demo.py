"""``fomm-live demo``: the live pipeline on the bundled portrait driven by the bundled clip, no webcam needed."""

from __future__ import annotations

import argparse

from fomm_live.live.cli.common import (
    add_crop_tracking_option,
    add_framing_options,
    add_model_options,
    add_strength_options,
    model_options,
)
from fomm_live.live.cli.outputs import LIVE_OUTPUTS, add_renamed_option, check_live_output
from fomm_live.live.cli.run import add_inbetween_option, run_live
from fomm_live.live.options import LIVE_FRAMING, CameraOptions, OutputOptions

DEMO_OUTPUT = "fomm-live-demo.mp4"


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo", help="see it work without a webcam: the bundled portrait (or --source), driven by the bundled clip",
        description="Run the real live pipeline (the same code as the webcam path) on the bundled portrait (or the "
                    "photos of --source) driven by a bundled driving clip (made once into the user cache folder), "
                    "write the result to --output, print the latency summary, and show the preview when a display "
                    "exists.",
    )
    add_model_options(demo, several_sources=True)
    demo.add_argument("--output", action="append", metavar="virtualcam|window|PATH.mp4",
                      help=f"where frames go, as for run; repeat for several (default: {DEMO_OUTPUT})")
    add_renamed_option(demo, "--out", new="--output", example="fomm-live demo --output demo.mp4")
    demo.add_argument("--no-preview", action="store_true", help="no preview window")
    demo.add_argument("--stats-json", metavar="PATH", help="write the per-stage latency figures here")
    add_inbetween_option(demo)
    add_crop_tracking_option(demo)
    add_framing_options(demo, framing=LIVE_FRAMING, output_size="default: 1280x720")
    add_strength_options(demo)


def execute(args: argparse.Namespace) -> int:
    from fomm_live.live.democlip import demo_clip_path
    from fomm_live.live.options import FrameOptions, PacingOptions, PipelineOptions, TrackingOptions

    wanted = tuple(args.output or (DEMO_OUTPUT,))
    for value in wanted:
        check_live_output(value)
    clip = demo_clip_path()
    photos = ", ".join(args.source) if args.source else "the bundled portrait"
    print(f"demo: {photos} driven by {clip.name} -> {', '.join(wanted)}")
    outputs = OutputOptions(outputs=wanted, preview=not args.no_preview, stats_json=args.stats_json,
                            size=args.output_size or (1280, 720))
    # Paced like a camera, so the latency figures mean what they would live; every other live-loop option at its
    # default.
    loop = PipelineOptions(tracking=TrackingOptions(crop_tracking=args.crop_tracking),
                           frame=FrameOptions(label=not args.no_label, framing=args.framing, detail=args.detail),
                           pacing=PacingOptions(realtime=True), head_strength=args.head_strength,
                           expression_strength=args.expression_strength, inbetweens=not args.no_inbetweens)
    code = run_live(args.source, model=model_options(args), camera=CameraOptions(camera=str(clip)), outputs=outputs,
                    loop=loop)
    for value in wanted:
        if value not in LIVE_OUTPUTS:
            print(f"wrote {value}")
    return code
