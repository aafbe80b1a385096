"""`fomm-live doctor`: one OK/WARN/FAIL line per check, non-zero exit on FAIL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import golden_dir

from fomm_live.live.cli import main
from fomm_live.live.doctor import FAIL, OK, WARN, run_checks

LINE = re.compile(r"^(OK|WARN|FAIL)\s+\S.*: .+$")


def test_every_check_reports_one_line(capsys: pytest.CaptureFixture) -> None:
    code = main(["doctor"])
    lines = capsys.readouterr().out.strip().splitlines()
    checks, summary = lines[:-1], lines[-1]
    assert all(LINE.match(line) for line in checks), checks
    names = [line.split(":")[0].split(maxsplit=1)[1] for line in checks]
    for name in ("python", "torch", "mediapipe", "face models", "cameras", "virtual camera", "display", "GPU",
                 "TensorRT", "cache folder"):
        assert name in names, name
    failed = sum(line.startswith("FAIL") for line in checks)
    assert summary.startswith(f"{len(checks)} checks: {failed} failed")
    assert code == (1 if failed else 0)


def test_bundled_face_models_are_found_offline() -> None:
    checks = {c.name: c for c in run_checks()}
    assert checks["face models"].status == OK, checks["face models"].detail
    assert checks["cache folder"].status == OK


def test_good_checkpoint_is_ok_and_a_bad_one_fails(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = golden_dir("tiny")
    good = {c.name: c for c in run_checks(checkpoint=str(folder / "checkpoint.pth.tar"),
                                          config=str(folder / "config.yaml"))}["checkpoint"]
    assert good.status == OK and "loads into" in good.detail
    wrong = {c.name: c for c in run_checks(checkpoint=str(folder / "checkpoint.pth.tar"))}["checkpoint"]
    assert wrong.status == FAIL and "does not fit vox-256" in wrong.detail
    bogus = tmp_path / "x.pth.tar"
    bogus.write_bytes(b"\x00garbage")
    assert main(["doctor", "--checkpoint", str(bogus)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  checkpoint: {bogus} is not a PyTorch checkpoint" in out


def test_missing_virtual_camera_warns_with_the_install_step_and_the_browser_output(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pyvirtualcam finds no loopback device (a stand-in raising what its v4l2loopback backend says then): the check
    warns with pyvirtualcam's own words and adds the install step, which the stand-in's text does not hold, and the
    browser output, which needs no driver."""
    import sys
    import types

    said = "'v4l2loopback' backend: no v4l2 loopback device found at /dev/video[0-99]"

    class NoDeviceCamera:
        """A stand-in for pyvirtualcam.Camera on a machine without v4l2loopback."""

        def __init__(self, *args, **kwargs) -> None:
            raise RuntimeError(said)

    formats = types.SimpleNamespace(RGB="RGB", I420="I420", NV12="NV12")
    monkeypatch.setitem(sys.modules, "pyvirtualcam", types.SimpleNamespace(Camera=NoDeviceCamera, PixelFormat=formats))
    monkeypatch.setattr(sys, "platform", "linux")
    check = {c.name: c for c in run_checks()}["virtual camera"]
    assert check.status == WARN, check
    assert said in check.detail and "sudo modprobe v4l2loopback" in check.detail, check.detail
    assert "modprobe" not in said
    assert "--output browser" in check.detail and "fomm-live extension" in check.detail, check.detail


def test_cameras_check_uses_the_cameras_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    import fomm_live.live.capture.cameras as cameras
    from fomm_live.live.capture.cameras import CameraInfo

    monkeypatch.setattr(cameras, "list_cameras", lambda: [CameraInfo(0, "/dev/video0", "Integrated Camera",
                                                                     1280, 720, 30.0)])
    check = {c.name: c for c in run_checks()}["cameras"]
    assert check.status == OK and check.detail == "0 /dev/video0 Integrated Camera 1280x720@30"
    monkeypatch.setattr(cameras, "list_cameras", lambda: [])
    check = {c.name: c for c in run_checks()}["cameras"]
    assert check.status == WARN and check.detail.startswith("no camera found")


def test_virtual_camera_check_names_device_and_backend_and_lets_it_go(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    closed = []

    class StandInCamera:
        """A stand-in for pyvirtualcam.Camera: no loopback device here."""

        device, backend = "/dev/video10", "v4l2loopback"

        def __init__(self, *args, **kwargs) -> None:
            pass

        def send(self, frame) -> None:
            pass

        def close(self) -> None:
            closed.append(True)

    formats = types.SimpleNamespace(RGB="RGB", I420="I420", NV12="NV12")
    monkeypatch.setitem(sys.modules, "pyvirtualcam", types.SimpleNamespace(Camera=StandInCamera, PixelFormat=formats))
    from fomm_live.live.doctor import check_virtualcam

    check = check_virtualcam()
    assert check.status == OK and check.detail == "available: /dev/video10 (v4l2loopback backend)"
    assert closed == [True], "the device is released as soon as it is named"
