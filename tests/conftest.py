"""Shared test fixtures: the golden data in ../shared beside the checkout, and small helpers.

Without ../shared the tests that need it skip with the reason, except on CI (``CI=true``), where the run fails at once:
a CI run that silently skipped every golden test would prove nothing.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

from fomm_live.benchmarks.golden import read_png

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GOLDEN = SHARED / "golden" / "fomm"
GOLDEN_VARIANTS = ("tiny", "tiny_single_jacobian", "tiny_zero_order")
REFERENCE_TSV = SHARED / "reference" / "fomm-vox256-state-dict.tsv"


ON_CI = os.environ.get("CI", "").strip().lower() in ("true", "1")

# ``--precision auto`` picks int8 on CPUs with VNNI / AMX when an int8 runtime is installed, and int8 calibrates on
# each new photo (an ONNX export and a quantisation, about half a minute on a 2-core CPU). Tests that run ``auto`` are
# about the rest of the program, so the suite runs ``auto`` without int8; tests/test_int8.py tests int8 and auto's
# choice of it explicitly. Subprocesses (the CLI tests) inherit this.
os.environ["FOMM_LIVE_INT8"] = "0"


def pytest_configure(config: pytest.Config) -> None:
    if ON_CI and not GOLDEN.is_dir():
        raise pytest.UsageError(f"CI=true but the golden data is missing: {GOLDEN} does not exist. Put the shared "
                                "folder (golden/, reference/) beside the repository before running the tests on CI.")


def require(path: Path) -> Path:
    """Skip (with the reason) when a file from ../shared is not beside this checkout; on CI, fail instead."""
    if not path.exists():
        reason = f"{path} is missing: the golden data lives in ../shared beside the repository"
        if ON_CI:
            pytest.fail(f"{reason} (CI=true: a missing golden file fails the run)", pytrace=False)
        pytest.skip(reason)
    return path


@functools.lru_cache(maxsize=32)
def read_rgb(path: Path) -> np.ndarray:
    """A golden PNG as H x W x 3 uint8 RGB (read-only, cached), decoded without OpenCV (``benchmarks.golden``, as
    the GPU report reads it) so that model tests need only torch and numpy."""
    image = read_png(path)
    image.flags.writeable = False
    return image


def golden_dir(variant: str) -> Path:
    return require(GOLDEN / variant)


@pytest.fixture(scope="session")
def _onnx_export_once(tmp_path_factory: pytest.TempPathFactory):
    from helpers.exports import export_once

    import fomm_live.models.export
    return export_once(fomm_live.models.export.export_onnx_networks, tmp_path_factory.mktemp("onnx-exports"))


@pytest.fixture
def onnx_export_once(_onnx_export_once, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime engines built in this test reuse the session's export of the same weights (``helpers.exports``)."""
    import fomm_live.models.export
    monkeypatch.setattr(fomm_live.models.export, "export_onnx_networks", _onnx_export_once)


# -- the browser tests' Chromium (tests/test_browser_*.py; the rest of their harness is in helpers/browser.py) ------
@pytest.fixture(scope="module")
def playwright():
    """One Playwright for the module (the sync API runs one per thread); skips (fails on CI) without Chromium."""
    from helpers.browser import require_chromium

    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as started:
        yield started


@pytest.fixture(scope="module")
def browser(tmp_path_factory, playwright):
    """(context, test page address, extension port): one Chromium for the module, the extension loaded, its fake
    camera a still of ``CAMERA_RGB``."""
    from helpers.browser import CAMERA_RGB, free_port

    from fomm_live.benchmarks.chromium import chromium_with_extension, serve_page, write_y4m

    folder = tmp_path_factory.mktemp("chromium")
    clip = write_y4m(folder / "camera.y4m", [np.full((240, 320, 3), CAMERA_RGB, np.uint8)] * 3)
    port = free_port()
    # The test page counts as a public website (as a call's site would), so that Chromium's Local Network Access
    # rules apply to it; the extension's frame reaches 127.0.0.1 all the same.
    with serve_page() as url, chromium_with_extension(folder / "profile", camera_clip=clip, port=port,
                                                      public=(url.split("/")[2],), playwright=playwright) as context:
        yield context, url, port


@pytest.fixture
def page(browser, tmp_path):
    context, url, _ = browser
    tab = context.new_page()
    tab.goto(url)
    yield tab
    tab.screenshot(path=str(tmp_path / "test-page.png"))
    tab.evaluate("fl.stop()")
    tab.close()
