"""The browser output on its own, without a browser: a real server on loopback and a real WebSocket client (Python's
``websockets``) in place of the extension's frame; the Chromium tests are in test_browser_extension.py."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from fomm_live.benchmarks.chromium import psnr
from fomm_live.live.errors import SinkUnavailable, UserError
from fomm_live.live.media import cv2
from fomm_live.live.output.browser import (
    DEFAULT_PORT,
    EXTENSION_DIR,
    EXTENSION_ID,
    EXTENSION_ORIGIN,
    HEADER,
    PROTOCOL,
    RECT_HEADER,
    BrowserSink,
    parse_browser_spec,
)
from fomm_live.live.output.sinks import FrameInfo
from fomm_live.live.wiring import browser_port
from tests.helpers.clips import place, portrait, write_clip

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sink():
    output = BrowserSink(width=320, height=240, fps=30, port=0)
    yield output
    output.close()


def frame_at(i: int = 0) -> np.ndarray:
    return place(portrait(), width=320, height=240, tx=i)


def stream(sink: BrowserSink, origin: str | None):
    return connect(f"ws://127.0.0.1:{sink.port}/stream?protocol={PROTOCOL}", origin=origin, open_timeout=5,
                   max_size=None)


@contextmanager
def viewing_a_still(picture_format: str):
    """A 320x240 output in ``picture_format`` with one viewer (the extension's origin) past its first message, and a
    still picture sent: yields the output, the viewer, the still and the viewer's message of it."""
    output = BrowserSink(width=320, height=240, fps=30, port=0, picture_format=picture_format)
    try:
        with stream(output, EXTENSION_ORIGIN) as ws:
            ws.recv(timeout=5)
            still = frame_at(3)
            output.send(still, FrameInfo(0, 0.0))
            yield output, ws, still, ws.recv(timeout=5)
    finally:
        output.close()


def picture_of(message: bytes, sink: BrowserSink) -> np.ndarray:
    """The RGB picture of a frame message, decoded as a viewer does (I420 planes or a JPEG after the header)."""
    if sink.format == "jpeg-rect":
        assert RECT_HEADER.unpack_from(message)[2:] == (0, 0, 0, *sink.size), "expected a whole frame"
        return cv2().imdecode(np.frombuffer(message[RECT_HEADER.size:], np.uint8), cv2().IMREAD_COLOR)[..., ::-1]
    data = np.frombuffer(message[HEADER.size:], np.uint8)
    if sink.format == "jpeg":
        return cv2().imdecode(data, cv2().IMREAD_COLOR)[..., ::-1]
    width, height = sink.size
    assert data.size == width * height * 3 // 2, f"expected {width * height * 3 // 2} bytes of I420, got {data.size}"
    return cv2().cvtColor(data.reshape(height * 3 // 2, width), cv2().COLOR_YUV2RGB_I420)


def test_extension_id_is_the_one_the_manifest_key_gives() -> None:
    # Chromium's id of an unpacked extension with a key: SHA-256 of the DER public key, 32 hex digits as a-p.
    key = json.loads((EXTENSION_DIR / "manifest.json").read_text())["key"]
    digest = hashlib.sha256(base64.b64decode(key)).hexdigest()[:32]
    assert "".join(chr(ord("a") + int(c, 16)) for c in digest) == EXTENSION_ID


def test_output_spec_parses_default_and_explicit_port_and_rejects_bad_ones() -> None:
    assert parse_browser_spec("browser") == DEFAULT_PORT
    assert parse_browser_spec("browser:9001") == 9001
    assert parse_browser_spec("virtualcam") is None and parse_browser_spec("out.mp4") is None
    with pytest.raises(UserError, match="--output browser:x"):
        browser_port("browser:x")
    with pytest.raises(UserError, match="65535"):
        browser_port("browser:70000")


@pytest.mark.parametrize("picture_format", ["i420", "jpeg"])
def test_extension_origin_gets_the_description_then_the_frame_sent(picture_format: str) -> None:
    sink = BrowserSink(width=320, height=240, fps=30, port=0, picture_format=picture_format)
    try:
        with stream(sink, EXTENSION_ORIGIN) as ws:
            assert json.loads(ws.recv(timeout=5)) == {"width": 320, "height": 240, "fps": 30.0,
                                                      "format": picture_format, "protocol": PROTOCOL}
            sent = frame_at()
            sink.send(sent, FrameInfo(0, 0.0))
            message = ws.recv(timeout=5)
    finally:
        sink.close()
    number, received_ms = HEADER.unpack_from(message)
    got = picture_of(message, sink)
    assert number == 1 and received_ms > 0
    assert psnr(got, sent) >= 30, f"{picture_format} round trip {psnr(got, sent):.1f} dB"


def test_default_format_is_jpeg_rect_and_an_odd_size_for_i420_or_an_unknown_format_is_refused() -> None:
    assert BrowserSink.__init__.__kwdefaults__["picture_format"] == "jpeg-rect"
    with pytest.raises(SinkUnavailable, match="even size: got 321x240.*--output-size"):
        BrowserSink(width=321, height=240, fps=30, port=0, picture_format="i420")
    with pytest.raises(ValueError, match="expected one of jpeg-rect, jpeg, i420, got 'png'"):
        BrowserSink(width=320, height=240, fps=30, port=0, picture_format="png")


@pytest.mark.parametrize("picture_format", ["i420", "jpeg"])
def test_a_repeated_frame_is_the_header_alone_and_a_new_viewer_still_gets_the_picture(picture_format: str) -> None:
    with viewing_a_still(picture_format) as (sink, first, still, full):
        sink.send(still.copy(), FrameInfo(1, 0.0))  # the same picture in another buffer
        repeat = first.recv(timeout=5)
        with stream(sink, EXTENSION_ORIGIN) as second:  # joins after the picture was made
            second.recv(timeout=5)
            sink.send(still.copy(), FrameInfo(2, 0.0))
            joined = second.recv(timeout=5)
            again = first.recv(timeout=5)
        moved = frame_at(20)
        sink.send(moved, FrameInfo(3, 0.0))
        changed = first.recv(timeout=5)
    assert len(full) > HEADER.size and psnr(picture_of(full, sink), still) >= 30
    assert len(repeat) == HEADER.size and HEADER.unpack_from(repeat)[0] == 2
    assert len(again) == HEADER.size and HEADER.unpack_from(again)[0] == 3
    assert len(joined) > HEADER.size and psnr(picture_of(joined, sink), still) >= 30, "the new viewer got no picture"
    assert psnr(picture_of(changed, sink), moved) >= 30 and HEADER.unpack_from(changed)[0] == 4
    assert (sink.encoded, sink.repeats) == (2, 2)


def test_output_page_origin_is_allowed(sink: BrowserSink) -> None:
    with stream(sink, f"http://127.0.0.1:{sink.port}") as ws:
        assert json.loads(ws.recv(timeout=5))["width"] == 320


@pytest.mark.parametrize("origin", ["https://meet.example", "http://127.0.0.1:1", "chrome-extension://abcdefgh",
                                    "null", None])
def test_other_origins_are_refused_at_the_handshake(sink: BrowserSink, origin: str | None) -> None:
    with pytest.raises(InvalidStatus) as refused:
        stream(sink, origin)
    assert refused.value.response.status_code == 403


def test_a_foreign_host_header_is_refused(sink: BrowserSink) -> None:
    # A site that rebinds its own name to 127.0.0.1 sends its own Host.
    request = urllib.request.Request(sink.url, headers={"Host": f"attacker.example:{sink.port}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403
    refused.value.close()


def test_page_is_served_and_may_not_be_framed(sink: BrowserSink) -> None:
    with urllib.request.urlopen(sink.url, timeout=5) as response:
        body = response.read().decode()
        assert response.headers["X-Frame-Options"] == "DENY"
    assert f"new WebSocket(`ws://${{location.host}}/stream?protocol={PROTOCOL}`)" in body  # the page speaks ours


def test_nothing_is_encoded_without_a_viewer_and_a_slow_viewer_gets_the_newest_frame(sink: BrowserSink) -> None:
    for i in range(5):
        sink.send(frame_at(i), FrameInfo(i, 0.0))
    assert sink.encoded == 0 and sink.received == 5
    with stream(sink, EXTENSION_ORIGIN) as ws:
        ws.recv(timeout=5)
        sink.send(frame_at(10), FrameInfo(10, 0.0))
        first = ws.recv(timeout=5)
        for i in range(11, 30):  # sent while the viewer reads nothing
            sink.send(frame_at(i), FrameInfo(i, 0.0))
        numbers = [struct.unpack_from("<I", first)[0]]
        while numbers[-1] < 20:
            numbers.append(struct.unpack_from("<I", ws.recv(timeout=5))[0])
    assert numbers == sorted(set(numbers)), numbers  # in order, none twice
    assert numbers[-1] == 20  # the newest frame, whatever was skipped


def test_wrong_frame_size_is_refused_and_close_twice_is_safe(sink: BrowserSink) -> None:
    with pytest.raises(ValueError, match="expected a 320x240 frame, got 64x48"):
        sink.send(np.zeros((48, 64, 3), np.uint8), FrameInfo(0, 0.0))
    sink.close()
    sink.close()


def test_a_busy_port_says_which_and_how_to_choose_another() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SinkUnavailable, match=f"127.0.0.1:{port}.*--output browser:PORT"):
            BrowserSink(width=32, height=32, fps=30, port=port)


def test_mirror_output_flips_what_the_call_sees() -> None:
    mirrored = BrowserSink(width=320, height=240, fps=30, port=0, mirror=True)
    try:
        with stream(mirrored, EXTENSION_ORIGIN) as ws:
            ws.recv(timeout=5)
            sent = frame_at()
            mirrored.send(sent, FrameInfo(0, 0.0))
            message = ws.recv(timeout=5)
    finally:
        mirrored.close()
    got = picture_of(message, mirrored)
    assert psnr(got, sent[:, ::-1]) >= 30 > psnr(got, sent)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fomm_live", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_extension_command_prints_the_folder_first_then_the_steps() -> None:
    result = run_cli("extension")
    lines = result.stdout.splitlines()
    assert result.returncode == 0
    assert Path(lines[0]) == EXTENSION_DIR and (Path(lines[0]) / "manifest.json").is_file()
    assert any("Load unpacked" in line for line in lines[1:])
    assert any(f"--output browser' (port {DEFAULT_PORT})" in line for line in lines[1:])


def test_run_help_states_the_default_port() -> None:
    assert f"127.0.0.1:{DEFAULT_PORT}" in " ".join(run_cli("run", "--help").stdout.split())


def test_a_bad_port_is_one_line_naming_the_option(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", [place(portrait(), width=160, height=120)] * 3)
    result = run_cli("run", "--camera", str(clip), "--backend", "landmarks", "--no-preview", "--output", "browser:x")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "--output browser:x: the port must be a number from 1 to 65535" in result.stderr, result.stderr


def test_frames_faster_than_the_announced_rate_are_thinned_to_the_newest() -> None:
    # Like the virtual camera, viewers get at most fps pictures a second: at 2 fps, ten frames sent at once become
    # the first and then the newest, not ten pictures.
    sink = BrowserSink(width=320, height=240, fps=2, port=0)
    try:
        with stream(sink, EXTENSION_ORIGIN) as ws:
            ws.recv(timeout=5)
            for i in range(10):
                sink.send(frame_at(i), FrameInfo(i, 0.0))
            numbers = [HEADER.unpack_from(ws.recv(timeout=5))[0]]
            while numbers[-1] < 10:
                numbers.append(HEADER.unpack_from(ws.recv(timeout=5))[0])
    finally:
        sink.close()
    assert numbers[-1] == 10 and sink.received == 10
    assert sink.encoded == len(numbers) < 10, (sink.encoded, numbers)


@pytest.mark.parametrize("picture_format", ["i420", "jpeg"])
def test_a_frame_that_differs_by_one_pixel_between_the_sampled_rows_is_sent_whole(picture_format: str) -> None:
    with viewing_a_still(picture_format) as (sink, ws, still, _):
        touched = still.copy()
        touched[5, 7] = 255 - touched[5, 7]  # row 5: not one of the rows compared first (every 16th)
        sink.send(touched, FrameInfo(1, 0.0))
        message = ws.recv(timeout=5)
    assert len(message) > HEADER.size and (sink.encoded, sink.repeats) == (2, 0)
