"""The environment switches: declared once (``common.switches``), parsed by one function, documented in the README
exactly as declared, and no ``FOMM_LIVE_*`` name used anywhere that is not declared."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from fomm_live.common.switches import SWITCHES, switch

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| `(FOMM_LIVE_[A-Z0-9_]+)` \| (.*?) \| (.*?) \| (.*) \|$")


def readme_rows() -> dict[str, tuple[tuple[str, ...], str | None, str]]:
    """The README's switch table: name -> (values, default, effect)."""
    rows = {}
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            name, values, default, effect = match.groups()
            rows[name] = (tuple(v.strip().strip("`") for v in values.split(",")),
                          None if default == "-" else default.strip("`"), effect)
    return rows


def test_the_readme_table_lists_every_switch_as_declared() -> None:
    rows = readme_rows()
    assert set(rows) == set(SWITCHES), f"README only: {set(rows) - set(SWITCHES)}; undocumented: " \
                                       f"{set(SWITCHES) - set(rows)}"
    for name, spec in SWITCHES.items():
        assert rows[name] == (spec.values, spec.default, spec.meaning), name


def test_every_switch_named_in_the_code_is_declared() -> None:
    used: dict[str, str] = {}
    for package in ("common", "kernels", "models", "live", "benchmarks"):
        for path in (ROOT / package).rglob("*.py"):
            for name in re.findall(r"FOMM_LIVE_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8")):
                used.setdefault(name, path.relative_to(ROOT).as_posix())
    undeclared = {name: where for name, where in used.items() if name not in SWITCHES}
    assert not undeclared, f"switches used but not declared in common/switches.py: {undeclared}"


@pytest.mark.parametrize(("name", "raw", "want"), [
    ("FOMM_LIVE_KERNELS", None, "auto"), ("FOMM_LIVE_KERNELS", " On ", "1"), ("FOMM_LIVE_KERNELS", "no", "0"),
    ("FOMM_LIVE_FAST", "auto", "1"), ("FOMM_LIVE_FAST", "false", "0"), ("FOMM_LIVE_FAST", "", "1"),
    ("FOMM_LIVE_COMPILE", "CudaGraphs", "cudagraphs"), ("FOMM_LIVE_COMPILE", "yes", "1"),
    ("FOMM_LIVE_COMPILE", None, "0"), ("FOMM_LIVE_PIPELINING", "AUTO", "auto"),
    ("FOMM_LIVE_DEVICE_COMPOSE", "off", "0"), ("FOMM_LIVE_THREADS", "3", "3"), ("FOMM_LIVE_THREADS", None, None),
    ("FOMM_LIVE_CACHE", "/tmp/x", "/tmp/x"), ("FOMM_LIVE_CACHE", None, None),
    ("FOMM_LIVE_THREADS", "0", None),
])
def test_switch_normalises_what_it_reads(monkeypatch: pytest.MonkeyPatch, name: str, raw: str | None,
                                         want: str | None) -> None:
    if raw is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, raw)
    assert switch(name) == want


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("FOMM_LIVE_PIPELINING", "sometimes", "FOMM_LIVE_PIPELINING='sometimes' is not 0, 1 or auto; using auto"),
    ("FOMM_LIVE_THREADS", "two", "FOMM_LIVE_THREADS='two' is not a number; using the default"),
    ("FOMM_LIVE_COMPILE", "fast", "FOMM_LIVE_COMPILE='fast' is not 0, 1 or cudagraphs; using 0"),
])
def test_a_value_not_declared_is_warned_about_and_the_default_used(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, name: str, raw: str, message: str) -> None:
    monkeypatch.setenv(name, raw)
    with caplog.at_level(logging.WARNING, logger="fomm_live.common.switches"):
        assert switch(name) == SWITCHES[name].default
    assert message in caplog.text


def test_an_undeclared_name_is_refused() -> None:
    with pytest.raises(KeyError):
        switch("FOMM_LIVE_NOT_A_SWITCH")
