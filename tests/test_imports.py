"""Every module of the program and its benchmarks imports: a name moved or removed elsewhere (a room's move, a
switch declared anew) breaks a module that no other test runs, such as a benchmark script, at import."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts)
                 for p in (ROOT / "fomm_live").rglob("*.py")
                 if p.name not in ("__init__.py", "__main__.py"))


def test_the_list_holds_the_benchmarks_and_the_rooms() -> None:
    assert "fomm_live.benchmarks.int8_animate" in MODULES and "fomm_live.live.output.window" in MODULES
    assert len(MODULES) > 100


@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module: str) -> None:
    importlib.import_module(module)
