"""One ONNX export per set of weights for the whole test session.

The tests of the ONNX Runtime engine (it matches the original, it falls back when its checks fail) each build an
engine from the same tiny golden weights, and each build exports both networks again: about 10 s of a 2-core
machine every time, spent on an export that ``tests/test_export.py`` tests itself. ``export_once`` stands in for
``models.export.export_onnx_networks``: the first call for a set of weights and image size runs the real export (and
its check against PyTorch); later calls get copies of those files, which the engine then loads and runs as its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path


def export_once(real: Callable, folder: Path) -> Callable:
    """A stand-in for ``models.export.export_onnx_networks`` that exports each set of weights into ``folder`` once
    and copies the files to where each caller asks; calls with options beyond the image size go to ``real``."""
    from fomm_live.models.engines.tensorrt import weights_digest

    done: dict[tuple[str, int], dict[str, Path]] = {}

    def export(kp_detector, generator, out_dir, *, image_size: int = 256, **options) -> dict[str, Path]:
        if options:
            return real(kp_detector, generator, out_dir, image_size=image_size, **options)
        key = (weights_digest(kp_detector, generator), image_size)
        if key not in done:
            done[key] = real(kp_detector, generator, folder / f"export-{len(done)}", image_size=image_size)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return {name: Path(shutil.copy(path, out / path.name)) for name, path in done[key].items()}

    return export
