"""Two checkouts of fomm-live side by side in one run: the live loop's pipeline benchmark (``benchmarks.pipeline``)
run alternately from this tree and from a baseline tree, so that a change is measured against what it replaced on
the same machine under the same load.

    python -m fomm_live.benchmarks.ab --baseline DIR [--pairs 3] -- [benchmarks.pipeline arguments]

For example, the tiny golden model and the landmark backend, unpaced, 60 frames a run:

    git archive BASE_COMMIT | tar -x -C /tmp/base
    python -m fomm_live.benchmarks.ab --baseline /tmp/base --pairs 3 -- --backends landmarks fomm \\
        --checkpoint ../shared/golden/tiny/checkpoint.pth.tar --config ../shared/golden/tiny/config.yaml \\
        --modes unpaced --rounds 1 --max-frames 60

Each pair runs both trees, in the order base-new, then new-base, and so on (a machine that warms up or slows down
favours neither), each in a fresh process. Reported per backend, mode and loop: the median over pairs of each tree's
frames per second and stage p50s, the ratio new / base of the fps, and the load average beside every run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]  # the checkout (fomm_live/benchmarks/ is two levels down)


def run_tree(tree: Path, args: list[str]) -> tuple[list[dict], tuple[float, float]]:
    """``benchmarks.pipeline`` from ``tree`` in a fresh process: its table rows, and the 1-minute load average before
    and after."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        before = os.getloadavg()[0]
        # A checkout from before the one-package layout has ``benchmarks`` at its top.
        module = "fomm_live.benchmarks.pipeline" if (tree / "fomm_live").is_dir() else "benchmarks.pipeline"
        subprocess.run([sys.executable, "-m", module, *args, "--json", str(out)], cwd=tree,
                       env={**os.environ, "PYTHONPATH": str(tree)}, check=True, stdout=subprocess.DEVNULL)
        after = os.getloadavg()[0]
        return json.loads(out.read_text(encoding="utf-8"))["table"], (before, after)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="the checkout to compare against")
    parser.add_argument("--pairs", type=int, default=3, help="runs of each tree")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("pipeline_args", nargs=argparse.REMAINDER, help="after --: benchmarks.pipeline's arguments")
    args = parser.parse_args(argv)
    forwarded = [a for a in args.pipeline_args if a != "--"]
    trees = {"base": Path(args.baseline).resolve(), "new": REPO}
    rows: dict[tuple, dict[str, list[dict]]] = {}
    loads: list[dict] = []
    for pair in range(args.pairs):
        for name in (("base", "new") if pair % 2 == 0 else ("new", "base")):
            table, (before, after) = run_tree(trees[name], forwarded)
            loads.append({"pair": pair, "tree": name, "load_before": before, "load_after": after})
            print(f"pair {pair + 1}/{args.pairs}: {name} (load {before:.2f} -> {after:.2f})", file=sys.stderr)
            for row in table:
                rows.setdefault((row["backend"], row["mode"], row["pipelining"]), {}).setdefault(name, []).append(row)
    result = []
    for (backend, mode, pipelining), by_tree in sorted(rows.items(), key=str):
        fps = {name: float(np.median([r["fps"] for r in runs])) for name, runs in by_tree.items()}
        stages = {name: {s: float(np.median([r["stage_p50_ms"][s] for r in runs if s in r["stage_p50_ms"]]))
                         for s in runs[0]["stage_p50_ms"]} for name, runs in by_tree.items()}
        result.append({"backend": backend, "mode": mode, "pipelining": pipelining, "fps": fps,
                       "ratio_new_over_base": round(fps["new"] / fps["base"], 3) if fps.get("base") else None,
                       "stage_p50_ms": stages})
    print(f"{'backend':<10} {'mode':<9} {'pipelined':<9} {'base fps':>9} {'new fps':>8} {'new/base':>9}")
    for row in result:
        print(f"{row['backend']:<10} {row['mode']:<9} {'on' if row['pipelining'] else 'off':<9} "
              f"{row['fps'].get('base', 0):>9.1f} {row['fps'].get('new', 0):>8.1f} "
              f"{row['ratio_new_over_base'] or 0:>9.3f}")
        for name, stages in row["stage_p50_ms"].items():
            print(f"    {name} stage p50s (ms): " + ", ".join(f"{s} {v:.2f}" for s, v in stages.items()))
    if args.json:
        command = "python -m fomm_live.benchmarks.ab "
        Path(args.json).write_text(json.dumps({"rows": result, "loads": loads, "command": command
                                               + " ".join(sys.argv[1:] if argv is None else argv)}, indent=2) + "\n",
                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
