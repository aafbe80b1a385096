"""``gpu_report.md``: the JSON of ``benchmarks.gpu_report`` as readable tables. Any part may be missing, skipped or
an error (a run cut short); each part renders what is there and says what is not."""

from __future__ import annotations

import json


def _table(header: list[str], rows: list[list]) -> list[str]:
    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:.2f}".rstrip("0").rstrip(".")
        return str(value).replace("|", "/").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _status(part) -> str | None:
    """A one-line note when ``part`` is not a result (skipped or error), else None."""
    if not isinstance(part, dict):
        return f"_unexpected: {part!r}_"
    if "error" in part:
        return f"**error**: {part['error']}"
    if "skipped" in part and len(part) <= 2:
        return f"_skipped: {part['skipped']}_"
    return None


def _pct(stats: dict | None) -> list:
    """p50, p95, p99 of a ``live.stats.percentiles`` summary (None where absent)."""
    stats = stats or {}
    return [stats.get("p50"), stats.get("p95"), stats.get("p99")]


def _environment(env: dict) -> list[str]:
    gpu = env.get("gpu", {})
    rows = [["GPU", gpu.get("name", gpu.get("skipped"))], ["GPU memory (GB)", gpu.get("memory_gb")],
            ["driver", gpu.get("driver")], ["compute capability", gpu.get("compute_capability")],
            ["torch", env.get("torch")], ["CUDA runtime", env.get("cuda_runtime")], ["cuDNN", gpu.get("cudnn")],
            ["Triton", env.get("triton")], ["ONNX Runtime", env.get("onnxruntime")],
            ["ONNX Runtime providers", ", ".join(env.get("onnxruntime_providers") or []) or None],
            ["OpenCV", env.get("opencv")], ["NumPy", env.get("numpy")], ["Python", env.get("python")],
            ["CPU", env.get("machine", {}).get("cpu")]]
    importable = env.get("packages_importable", {})
    rows.append(["optional packages", ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in importable.items())])
    return _table(["", "value"], rows)


def _golden(golden: dict) -> list[str]:
    lines = [f"Folder `{golden.get('folder')}`, {golden.get('mode')}; overall: "
             f"**{'passed' if golden.get('passed') else 'FAILED'}**", ""]
    rows = []
    for variant, paths in golden.get("variants", {}).items():
        for name, row in paths.items():
            verdict = ("skipped: " + row["skipped"] if "skipped" in row else "error: " + row["error"] if "error" in row
                       else "passed" if row.get("passed") else "FAILED")
            rows.append([variant, name, verdict, row.get("keypoints_max_abs"), row.get("images_max_abs"),
                         row.get("min_psnr_db"), row.get("criterion")])
    return lines + _table(["variant", "path", "verdict", "keypoints max abs", "images max abs", "min PSNR dB",
                           "criterion"], rows)


def _kernels(kernels: dict) -> list[str]:
    rows = [[name, "passed" if r.get("passed") else "FAILED", r.get("max_abs"), r.get("tolerance"),
             r.get("first_mismatch") or r.get("error")] for name, r in kernels.get("rows", {}).items()]
    return _table(["op, shape, dtype", "verdict", "max abs", "tolerance", "detail"], rows)


def _self_checks(checks: dict) -> list[str]:
    rows = []
    for name, row in checks.get("engines", {}).items():
        paths = row.get("paths")
        failed = row.get("failed_paths")
        detail = row.get("detail") or (f"failed: {', '.join(failed)}" if failed else None) or row.get("engine")
        rows.append([name, row.get("verdict"), ", ".join(paths) if paths else None, detail])
    return _table(["engine", "verdict", "paths checked", "detail"], rows)


def _model(model: dict) -> list[str]:
    settings = model.get("settings", {})
    lines = [f"{settings.get('checkpoint')}, {settings.get('image_size')} x {settings.get('image_size')}, "
             f"{settings.get('iterations')} frames per path after {settings.get('warmup')} warm-up, "
             f"{settings.get('order')}. Milliseconds per frame; warm-up apart.", ""]
    rows = []
    for name, r in model.get("paths", {}).items():
        rows.append([name, r["keypoints"]["p50"], r["generator"]["p50"], *_pct(r["frame"]),
                     r["frame"].get("fps_p50"), r.get("speedup_frame_p50"), r.get("min_psnr_db_vs_reference"),
                     ", ".join(f"{t:g}" for t in r.get("warmup_ms", []))])
    lines += _table(["path", "kp p50", "gen p50", "frame p50", "p95", "p99", "fps", "speed-up", "PSNR dB",
                     "warm-up ms"], rows)
    skipped = model.get("skipped", {})
    if skipped:
        lines += _table(["path not timed", "why"], [[k, v] for k, v in skipped.items()])
    return lines


def _rows(part: dict) -> dict:
    """The rows of a section keyed by rows (batch sizes, clips): everything but its ``settings``."""
    return {k: v for k, v in part.items() if k != "settings" and isinstance(v, dict)}


def _batch(batch: dict) -> list[str]:
    settings = batch.get("settings", {})
    lines = [f"{settings.get('engine')}; step: {settings.get('step')}; {settings.get('warmup_steps')} warm-up + "
             f"{settings.get('steps')} steps per size.", ""]
    rows = []
    for size, r in _rows(batch).items():
        if "step_ms" in r:
            rows.append([size, *_pct(r["step_ms"]), r.get("frames_per_second"), r.get("gpu_memory_mb")])
        else:
            rows.append([size, r.get("error") or r.get("skipped"), None, None, None, None])
    return lines + _table(["streams", "step p50 ms", "p95", "p99", "frames/s", "GPU memory MB"], rows)


def _pipeline(pipe: dict) -> list[str]:
    settings = pipe.get("settings", {})
    lines = [f"Backend {settings.get('backend')}; composes on the device: {settings.get('composes_on_device')}; "
             f"crop {settings.get('crop')}; sink {settings.get('sink')}.", ""]
    if settings.get("gpu_busy_method"):
        lines += [f"GPU busy: {settings['gpu_busy_method']}.", ""]
    rows = []
    for clip, runs in _rows(pipe).items():
        for label, r in runs.items():
            if not isinstance(r, dict) or "end_to_end_ms" not in r:
                note = (r.get("error") or r.get("skipped")) if isinstance(r, dict) else r
                rows.append([clip, label, note] + [None] * 9)
                continue
            stages = r.get("stages_ms", {})
            rows.append([clip, label, r.get("frames_out"), r.get("frames_dropped"), r.get("achieved_fps"),
                         *_pct(r["end_to_end_ms"]), "/".join(str(v) for v in _pct(stages.get("keypoints"))),
                         "/".join(str(v) for v in _pct(stages.get("generator"))),
                         "/".join(str(v) for v in _pct(stages.get("compose"))), r.get("gpu_busy_fraction")])
    return lines + _table(["clip", "run", "frames out", "dropped", "fps", "e2e p50 ms", "p95", "p99",
                           "keypoints p50/95/99", "generator p50/95/99", "compose p50/95/99", "GPU busy"], rows)


def render(report: dict) -> str:
    env = report.get("environment", {})
    gpu = env.get("gpu", {}) if isinstance(env, dict) else {}
    lines = ["# fomm-live GPU report", "",
             f"- GPU: {gpu.get('name') or gpu.get('skipped') or 'unknown'}",
             f"- date: {env.get('date') if isinstance(env, dict) else None}",
             f"- torch: {env.get('torch') if isinstance(env, dict) else None}",
             f"- command: `{report.get('command')}`",
             f"- settings: {json.dumps(report.get('settings', {}))}", ""]
    parts = [("Environment", env, _environment)]
    correctness = report.get("correctness", {})
    parts += [("Correctness: golden parity", correctness.get("golden"), _golden),
              ("Correctness: kernels on odd shapes", correctness.get("kernels"), _kernels),
              ("Correctness: engine self-checks", correctness.get("self_checks"), _self_checks),
              ("Model benchmark (vox-256)", report.get("model"), _model),
              ("Batch sweep", report.get("batch"), _batch),
              ("Live pipeline (crop none, synthetic clips)", report.get("pipeline"), _pipeline)]
    for title, part, draw in parts:
        lines += [f"## {title}", ""]
        note = _status(part if part is not None else {"skipped": "not reached"})
        if note:
            lines += [note, ""]
            continue
        try:
            lines += draw(part)
        except Exception as err:  # noqa: BLE001 - the JSON has it all; one part that does not render is noted
            lines += [f"_could not render this part ({type(err).__name__}: {err}); see gpu_report.json_", ""]
        settings = part.get("settings")
        seconds = part.get("seconds", settings.get("seconds") if isinstance(settings, dict) else None)
        if seconds is not None:
            lines += [f"_{seconds} s_", ""]
    return "\n".join(lines) + "\n"
