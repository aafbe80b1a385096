"""Which path ran: a test named for a fast path asserts that path ran, not just that the frames came out right.

Every fast path checks itself on its first real input and, when it fails that check, hands the rest of the run to a
safer path (ONNX Runtime, TensorRT and int8 -> eager; bf16 / fp16 -> float32; a fused kernel -> its PyTorch op;
compile -> eager). The safer path still gives the original's numbers, so a parity test alone passes whether or not
the path it is named for ran. ``assert_fast_path_ran`` fails on any such fallback: the engine's name and precision
after the frames are the asked-for ones, the named path's check ran and passed, and no check failed.
"""

from __future__ import annotations

import pytest

import fomm_live.models.animator as animator_module
from fomm_live.models.engines import Engine


def describe_checks(engine: Engine) -> str:
    """The engine's check verdicts in one line, for failure messages."""
    if not engine.checks:
        return "no checks ran"
    return "; ".join(f"{c.path} {'passed' if c.ok else 'FAILED'} ({c.measured()}, needs {c.tolerance}"
                     f"{', ' + c.detail if c.detail else ''})" for c in engine.checks)


def assert_fast_path_ran(engine: Engine, *, name: str, precision: str, paths: tuple[str, ...] = ()) -> None:
    """The frames came from ``name`` at ``precision``, and nothing fell back.

    Args:
        engine: The engine after it ran the frames (``animator.engine``; its fields stay readable after ``close``).
        name: The engine that must have run: ``eager``, ``onnxruntime``, ``tensorrt``, ``int8``.
        precision: The precision it must still run at (a failed bf16 / fp16 check leaves ``fp32``).
        paths: Checks that must have run and passed (``bf16``, ``onnxruntime``, ``kernel:deform_features``, ...).
    """
    failed = [c for c in engine.checks if not c.ok]
    assert not failed, f"a fast path fell back: {describe_checks(engine)}"
    ran = f"{engine.name} {engine.precision}"
    why = engine.reason or "no reason given"
    assert (engine.name, engine.precision) == (name, precision), (
        f"asked for {name} {precision}, but {ran} ran ({why}; {describe_checks(engine)})")
    for path in paths:
        assert any(c.path == path and c.ok for c in engine.checks), (
            f"the {path} check did not run on {ran}: {describe_checks(engine)}")


def record_engines(monkeypatch: pytest.MonkeyPatch) -> list[Engine]:
    """Every engine an ``Animator`` makes from now on (in this process), for tests that run a whole command."""
    made: list[Engine] = []
    original = animator_module.create_engine

    def recording(*args, **kwargs) -> Engine:
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(animator_module, "create_engine", recording)
    return made
