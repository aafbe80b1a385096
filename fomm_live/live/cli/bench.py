"""``fomm-live bench``: the model path by path, and the live loop stage by stage. The only command that imports
``benchmarks``, and only when it runs."""

from __future__ import annotations

import argparse
import logging
import sys

from fomm_live.live.cli.common import PRECISIONS, add_config_option, add_debug_option
from fomm_live.live.cli.outputs import add_renamed_option
from fomm_live.live.errors import UserError
from fomm_live.live.options import CHECKPOINT_HELP


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    bench.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="FOMM precision in the pipeline benchmark (the model benchmark runs every precision)")
    bench.add_argument("--camera", metavar="PATH", help="driving clip for the pipeline benchmark "
                                                         "(default: the bundled clip on a 640x480 canvas)")
    bench.add_argument("--backend", action="append", choices=["fomm", "landmarks"],
                       help="pipeline backends to run (default: both)")
    bench.add_argument("--quick", action="store_true", help="fewer iterations: under two minutes on a 2-core CPU")
    bench.add_argument("--stats-json", metavar="PATH", help="write every figure here (fields: see the README)")
    add_renamed_option(bench, "--json", new="--stats-json", example="fomm-live bench --stats-json bench.json")
    bench.add_argument("--plot", metavar="PATH.png", help="latency-per-stage bars and per-frame latency histogram")
    add_debug_option(bench)


def execute(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fomm_live.benchmarks.suite import format_report, plot_report, run_bench, write_json
    from fomm_live.models import CheckpointError, ConfigError

    noisy_loggers = ("onnxscript", "onnx_ir", "torch.onnx", "fomm_live.live.loop.pipeline",
                     "fomm_live.live.loop.stages", "fomm_live.live.avatars", "fomm_live.live.landmarks")
    for noisy in noisy_loggers:
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
    if args.stats_json:
        write_json(result, args.stats_json)
        print(f"figures: {args.stats_json}")
    if args.plot:
        plot_report(result, args.plot)
        print(f"plot: {args.plot}")
    return 0
