"""What an install puts where: the wheel adds one top-level package (so another project's ``models`` or ``common``
stays whole), the installed command is ``python -m fomm_live``, and ``make demo`` installs the program without the
test extra.

The wheel is built from a copy of the checkout (setup.py, pyproject.toml, README.md, fomm_live/), with the build
tools already installed (``--no-build-isolation``) and nothing downloaded (``--no-deps``, ``--no-index``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

BUILD_FILES = ("setup.py", "pyproject.toml", "README.md")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fomm-live's wheel, built once for this module from a copy of the checkout (no build/ or egg-info left here)."""
    setuptools = pytest.importorskip("setuptools", reason="building the wheel needs setuptools (the test extra)")
    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    assert (major, minor) >= (70, 1), (f"setuptools {setuptools.__version__} cannot build a wheel by itself; "
                                       "pip install -e '.[test]' brings 70.1 or later")
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_FILES:
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "fomm_live", source / "fomm_live", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                             "--no-index", "--wheel-dir", str(out), str(source)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("fomm_live-*.whl")
    return built


def test_the_wheel_adds_only_fomm_live_and_its_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/", 1)[0] for name in names}
    (metadata,) = top - {"fomm_live"}
    assert re.fullmatch(r"fomm_live-[\w.]+\.dist-info", metadata), sorted(top)
    for package in ("models", "common", "kernels", "live", "benchmarks"):  # inside fomm_live, nowhere else
        assert any(name.startswith(f"fomm_live/{package}/") for name in names), package
    photos = [name for name in names if re.fullmatch(r"fomm_live/live/assets/[^/]+\.(jpg|png)", name)]
    assert photos, "the bundled photos are in the wheel"


def entry_point(wheel: Path) -> tuple[str, str]:
    """The module and function of the ``fomm-live`` command the wheel installs."""
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = archive.read(path).decode()
    match = re.search(r"^fomm-live\s*=\s*([\w.]+):(\w+)\s*$", text, re.MULTILINE)
    assert match, text
    return match.group(1), match.group(2)


def test_python_m_fomm_live_help_equals_the_installed_commands_help(wheel: Path, tmp_path: Path) -> None:
    """``python -m fomm_live --help`` prints exactly what the ``fomm-live`` command prints. The command is run as the
    script pip writes for the wheel's entry point (a file named fomm-live calling that function)."""
    module, function = entry_point(wheel)
    script = tmp_path / "fomm-live"
    script.write_text(f"import sys\nfrom {module} import {function}\n\nif __name__ == '__main__':\n"
                      f"    sys.exit({function}())\n", encoding="utf-8")
    env = {**os.environ, "COLUMNS": "100", "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *command], capture_output=True, text=True, env=env, timeout=120)

    for args in (["--help"], ["run", "--help"]):
        command, as_module = run(str(script), *args), run("-m", "fomm_live", *args)
        assert command.returncode == as_module.returncode == 0, command.stderr + as_module.stderr
        assert command.stdout.startswith("usage: fomm-live "), command.stdout[:80]
        assert as_module.stdout == command.stdout, f"{args}: python -m fomm_live and fomm-live differ"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_installs_the_program_alone_and_test_adds_the_extra(tmp_path: Path) -> None:
    """``make -n`` (what make would run) in a copy of the Makefile: demo installs ``-e .`` only; test on the same
    environment afterwards installs the test extra and does not make a second environment."""
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    (tmp_path / "setup.py").write_text("# stand-in: make only compares its time with the stamps'\n")

    def dry_run(target: str) -> str:
        result = subprocess.run(["make", "-n", target], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    demo = dry_run("demo")
    installs = [line for line in demo.splitlines() if "pip install" in line]
    assert len(installs) == 1 and installs[0].rstrip().endswith("-e ."), demo
    assert "[test]" not in demo and "-m venv .venv" in demo

    stamp = tmp_path / ".venv" / "bin" / ".installed"  # as after `make demo`
    stamp.parent.mkdir(parents=True)
    stamp.touch()
    test = dry_run("test")
    installs = [line for line in test.splitlines() if "pip install" in line]
    assert len(installs) == 1 and installs[0].rstrip().endswith("-e '.[test]'"), test
    assert "-m venv" not in test, "make test after make demo keeps the one environment"
    assert "pytest" in test
