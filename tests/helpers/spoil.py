"""A pytest plugin that spoils one fast path, to show that the tests named for it fail when it falls back.

Used only for that demonstration, never by the normal run (it is loaded only with ``-p helpers.spoil``)::

    PYTHONPATH=.:tests python -m pytest -p helpers.spoil --spoil onnxruntime tests/test_engines.py -k onnxruntime

With ``--spoil PATH`` the fast path PATH gives wrong numbers, so its own first-frame check fails and the engine
hands the rest of the run to its safer path (whose frames still match the original). A test that proves its name
must then fail; a test that only compares frames passes. Run as a script, it does that for every named test, without
and with the spoiled path, and prints the verdicts::

    PYTHONPATH=. python tests/helpers/spoil.py [TESTS_FOLDER]

Spoiled paths (what changes; the product's code is untouched, the classes are patched in the test process):

- ``onnxruntime``: ONNX Runtime's prediction + 0.05 (about 26 dB);
- ``bf16`` / ``fp16``: the generator's prediction under that autocast + 0.1 (20 dB);
- ``tensorrt``: the TensorRT generator's prediction + 0.05 from its first real input on (its build check passes);
- ``kernels``: every fused Triton kernel's outputs + 0.1.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

SPOILS = ("onnxruntime", "bf16", "fp16", "tensorrt", "kernels")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--spoil", choices=SPOILS, help="spoil this fast path (a demonstration; see helpers.spoil)")


def pytest_configure(config: pytest.Config) -> None:
    spoil = config.getoption("--spoil")
    if spoil:
        SPOILERS[spoil]()


def _shift_prediction(out, offset: float):
    return {**out, "prediction": out["prediction"] + offset} if "prediction" in out else out


def spoil_onnxruntime() -> None:
    from fomm_live.models.engines.onnxruntime import OnnxRuntimeEngine

    run = OnnxRuntimeEngine._run

    @functools.wraps(run)
    def spoiled(self, name, feeds):
        return _shift_prediction(run(self, name, feeds), 0.05)

    OnnxRuntimeEngine._run = spoiled


def spoil_reduced(dtype_name: str) -> None:
    import torch

    from fomm_live.models.generator import OcclusionAwareGenerator

    dtype = getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}[dtype_name])
    decode = OcclusionAwareGenerator.decode

    @functools.wraps(decode)
    def spoiled(self, state, kp_driving, kp_source, **kwargs):
        out = decode(self, state, kp_driving, kp_source, **kwargs)
        reduced = any(torch.is_autocast_enabled(d) and torch.get_autocast_dtype(d) == dtype for d in ("cpu", "cuda"))
        return _shift_prediction(out, 0.1) if reduced else out

    OcclusionAwareGenerator.decode = spoiled


def spoil_tensorrt() -> None:
    from fomm_live.models.engines.tensorrt import TensorRTEngine

    run = TensorRTEngine._run

    @functools.wraps(run)
    def spoiled(self, name, inputs):
        module = self.modules.get(name)
        if name == "generator" and module is not None and not getattr(module, "spoiled", False):
            def shifted(*args, inner=module):
                outs = inner(*args)
                return (outs[0] + 0.05, *outs[1:])

            shifted.spoiled = True
            self.modules[name] = shifted
        return run(self, name, inputs)

    TensorRTEngine._run = spoiled


def spoil_kernels() -> None:
    from fomm_live.models.engines.kernel_ops import CheckedOp

    init = CheckedOp.__init__

    @functools.wraps(init)
    def spoiled(self, name, fast, reference, *, engine):
        def shifted(*args):
            got = fast(*args)
            return tuple(g + 0.1 for g in got) if isinstance(got, tuple) else got + 0.1

        init(self, name, shifted, reference, engine=engine)

    CheckedOp.__init__ = spoiled


SPOILERS = {"onnxruntime": spoil_onnxruntime, "bf16": lambda: spoil_reduced("bf16"),
            "fp16": lambda: spoil_reduced("fp16"), "tensorrt": spoil_tensorrt, "kernels": spoil_kernels}

# The tests named for a fast path -> the path to spoil. Node ids relative to the tests folder.
NAMED = {
    "onnxruntime": ["test_engines.py::test_onnxruntime_engine_matches_original",
                    "test_engines.py::test_onnxruntime_engine_is_float32_and_batches",
                    "test_cli.py::test_animate_with_the_onnxruntime_engine_matches_the_original"],
    "bf16": ["test_engines.py::test_cpu_reduced_precision_within_40_db",
             "test_golden.py::test_bf16_generator_stays_close_to_fp32"],
    "fp16": ["test_engines.py::test_cpu_reduced_precision_within_40_db"],
    "tensorrt": ["test_engines.py::test_tensorrt_engine_matches_original",
                 "test_engines.py::test_tensorrt_stand_in_builder_is_cached_rebuilt_and_its_export_round_trip"
                 "_matches_original"],
    "kernels": ["test_kernels.py::test_eager_engine_with_kernels_matches_golden"],
}


def verdict(folder: Path, test: str, spoil: str | None, precision: str | None) -> str:
    """pytest's summary (``2 passed``, ``1 failed, 1 passed``, ``1 skipped``) for one test, spoiled or not."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "helpers.spoil",
               str(folder / test)]
    if precision and "reduced_precision" in test:  # the parametrised test runs both precisions; keep this one
        command += ["-k", precision]
    if spoil:
        command += ["--spoil", spoil]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder.parent, env=env, check=False)
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    return last.strip("= ").split(" in ")[0]


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]).resolve()
    for spoil, tests in NAMED.items():
        for test in tests:
            precision = spoil if spoil in ("bf16", "fp16") else None
            clean, spoiled = verdict(folder, test, None, precision), verdict(folder, test, spoil, precision)
            print(f"{test.split('::')[1]} | clean: {clean} | {spoil} spoiled: {spoiled}", flush=True)


if __name__ == "__main__":
    main()
