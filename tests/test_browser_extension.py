"""The extension in a real headless Chromium (Debian's, driven by Playwright): a test page served on loopback lists
the cameras, opens "fomm-live" and reads its frames back through a canvas; Chromium's fake camera, fed from a .y4m
this test writes, stands in for the user's real camera. The output is a real ``BrowserSink`` fed by a thread at
30 fps (a stand-in for the live loop), except in the last test, where a real ``fomm-live run`` on a clip feeds it.

Screenshots of the test page are written to the test's tmp folder (``--basetemp`` to keep them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fomm_live.benchmarks.chromium import (
    chromium_with_extension,
    decode_data_url,
    psnr,
    serve_page,
    write_y4m,
)
from fomm_live.live.output.browser import EXTENSION_ID
from tests.helpers.browser import CAMERA_RGB, SIZE, Feeder, free_port, grab, require_chromium, wait_for
from tests.helpers.clips import moving_frames, place, portrait, write_clip

REPO = Path(__file__).resolve().parents[1]
CARD_RGB = (29, 35, 48)  # the card's background (#1d2330 in inject.js)
DEVICE_ID = "f0bb11fe" * 8  # the fomm-live camera's deviceId (inject.js)


@pytest.fixture(scope="module", autouse=True)
def chromium_installed() -> None:
    require_chromium()


def is_card(frame: np.ndarray) -> bool:
    corner = frame[:10, :10].reshape(-1, 3).astype(int)
    return bool(np.abs(corner - CARD_RGB).max() <= 8)


def shows(sent: np.ndarray) -> Callable[[np.ndarray], bool]:
    return lambda frame: frame.shape == sent.shape and psnr(frame, sent) >= 30


def test_camera_is_listed_and_shows_the_frames_sent_at_the_output_size(browser, page) -> None:
    _, _, port = browser
    sent = place(portrait(), width=SIZE[0], height=SIZE[1])
    feeder = Feeder(port, sent)
    try:
        # The page is a public website to Chromium: its own requests to 127.0.0.1 are blocked (Local Network
        # Access), and the camera below works all the same, through the extension's frame.
        fetch = f"fetch('{feeder.sink.url}', {{mode: 'no-cors'}}).then(() => 'fetched', () => 'blocked')"
        assert page.evaluate(fetch) == "blocked"
        opened = page.evaluate("fl.open('fomm-live')")
        got = wait_for(page, shows(sent), "the frames sent")
        assert feeder.sink.viewers == 1
        page.evaluate("fl.stop()")  # the call hangs up: the extension's frame closes its connection
        deadline = time.monotonic() + 10
        while feeder.sink.viewers and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert feeder.sink.viewers == 0, "the connection outlived the stopped track"
    finally:
        feeder.close()
    devices = page.evaluate("fl.devices()")
    ours = [d for d in devices if d["label"] == "fomm-live"]
    assert len(ours) == 1 and ours[0]["kind"] == "videoinput"
    assert opened["label"] == "fomm-live"
    assert (opened["settings"]["width"], opened["settings"]["height"], opened["settings"]["frameRate"]) == (*SIZE, 30)
    assert psnr(got, sent) >= 30


def test_real_camera_still_opens_with_its_own_frames(browser, page) -> None:
    opened = page.evaluate("fl.open(null)")  # the first camera that is not fomm-live
    assert opened["label"].endswith("camera.y4m")
    got = wait_for(page, lambda f: np.abs(f.reshape(-1, 3).mean(0) - CAMERA_RGB).max() < 6, "the fake camera's colour")
    assert got.shape[:2] == (240, 320)


def test_page_of_another_origin_cannot_connect(browser, page) -> None:
    _, _, port = browser
    feeder = Feeder(port, place(portrait(), width=SIZE[0], height=SIZE[1]))
    try:
        said = page.evaluate(f"fl.connect('ws://127.0.0.1:{port}/stream')")
    finally:
        feeder.close()
    assert said == "refused"


def test_card_while_not_running_then_stream_then_held_then_card_then_picked_up_again(browser, page, tmp_path) -> None:
    _, _, port = browser
    page.evaluate("fl.open('fomm-live')")  # fomm-live is not running: the call does not fail
    wait_for(page, is_card, "the 'not running' card")
    page.screenshot(path=str(tmp_path / "card.png"))

    first = place(portrait(), width=SIZE[0], height=SIZE[1])
    feeder = Feeder(port, first)
    wait_for(page, shows(first), "the stream once fomm-live starts")
    feeder.close()  # stopped mid-call: the last frame is held, then the card returns
    assert psnr(grab(page), first) >= 30, "the last frame was not held after the stop"
    wait_for(page, is_card, "the card after the stop")

    second = place(portrait(), width=SIZE[0], height=SIZE[1], angle=10, tx=40)
    feeder = Feeder(port, second)
    try:
        wait_for(page, shows(second), "the stream of fomm-live started again")
    finally:
        feeder.close()
    page.screenshot(path=str(tmp_path / "picked-up.png"))


@pytest.mark.parametrize("picture_format", ["jpeg", "i420"])
def test_the_outputs_own_page_shows_the_frames_sent(browser, tmp_path, picture_format: str) -> None:
    context, _, port = browser
    sent = place(portrait(), width=SIZE[0], height=SIZE[1], angle=-8, tx=-30)
    feeder = Feeder(port, sent, picture_format)
    tab = context.new_page()
    try:
        tab.goto(feeder.sink.url)
        deadline = time.monotonic() + 15
        while True:
            shown = decode_data_url(tab.evaluate("document.getElementById('view').toDataURL('image/png')"))
            if (shown.shape == sent.shape and psnr(shown, sent) >= 30) or time.monotonic() > deadline:
                break
            tab.wait_for_timeout(100)
        tab.wait_for_function("document.getElementById('status').textContent.includes('shown')", timeout=10_000)
        status = tab.text_content("#status")
        tab.screenshot(path=str(tmp_path / f"output-page-{picture_format}.png"))
    finally:
        tab.close()
        feeder.close()
    assert shown.shape == sent.shape, f"the page's canvas is {shown.shape}, the frames sent {sent.shape}"
    assert psnr(shown, sent) >= 30, f"{psnr(shown, sent):.1f} dB"
    assert f"{SIZE[0]}x{SIZE[1]}" in status and "ms from the output to this page" in status, status


def test_real_run_on_a_clip_reaches_the_camera(browser, page, tmp_path) -> None:
    _, _, port = browser
    clip = write_clip(tmp_path / "driving.mp4", moving_frames(40))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.Popen([sys.executable, "-m", "fomm_live", "run", "--camera", str(clip), "--backend", "landmarks",
                            "--output", f"browser:{port}", "--no-preview", "--realtime", "--loop"],
                           cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        said = []
        for line in run.stdout:  # the address line, before the loop starts
            said.append(line)
            if f"http://127.0.0.1:{port}/" in line:
                break
        assert any(f"http://127.0.0.1:{port}/" in line for line in said), "".join(said)
        page.evaluate("fl.open('fomm-live')")
        got = wait_for(page, lambda f: f.shape[:2] == (480, 640) and not is_card(f), "the run's frames", timeout=60)
        page.screenshot(path=str(tmp_path / "run.png"))
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate()
    assert got.std() > 20  # a picture, not a flat colour


def test_a_fresh_iframes_clean_copy_of_media_devices_still_lists_the_camera(browser, page) -> None:
    # Pages take an unwrapped getUserMedia from a new same-origin iframe; the extension runs in every frame at once.
    said = page.evaluate("""(async () => {
        const frame = document.createElement("iframe");
        document.body.appendChild(frame);
        const list = await frame.contentWindow.navigator.mediaDevices.enumerateDevices();
        return list.filter((d) => d.kind === "videoinput").map((d) => d.label);
    })()""")
    assert "fomm-live" in said


def test_without_a_real_camera_any_camera_asked_for_is_fomm_lives(playwright, tmp_path) -> None:
    """A Chromium of its own, with no fake camera: on this machine (no webcam) the page sees no real camera, and a
    plain getUserMedia({video: true}) gets fomm-live's instead of failing."""
    port = free_port()
    sent = place(portrait(), width=SIZE[0], height=SIZE[1])
    with serve_page() as url, chromium_with_extension(tmp_path / "profile", camera_clip=None, port=port,
                                                      playwright=playwright) as context:
        tab = context.new_page()
        tab.goto(url)
        cameras = [d["label"] for d in tab.evaluate("fl.devices()") if d["kind"] == "videoinput"]
        if cameras != ["fomm-live"]:
            pytest.skip(f"this machine has cameras of its own ({cameras})")
        feeder = Feeder(port, sent)
        try:
            label = tab.evaluate("""(async () => {
                const stream = await navigator.mediaDevices.getUserMedia({video: true});
                document.getElementById("v").srcObject = stream;
                await document.getElementById("v").play();
                return stream.getVideoTracks()[0].label;
            })()""")
            wait_for(tab, shows(sent), "the frames sent, by a plain getUserMedia")
        finally:
            tab.evaluate("fl.stop()")
            feeder.close()
    assert label == "fomm-live"


def test_a_page_whose_csp_forbids_frames_and_connections_still_gets_the_camera(browser, tmp_path) -> None:
    # A strict Content-Security-Policy, as calls' sites send: no frames, no connections, no images, no workers.
    context, _, port = browser
    csp = ("default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-src 'none'; "
           "connect-src 'none'; img-src 'none'; worker-src 'none'; media-src 'self' blob: mediastream:")
    sent = place(portrait(), width=SIZE[0], height=SIZE[1], angle=-6)
    feeder = Feeder(port, sent)
    with serve_page(headers={"Content-Security-Policy": csp}) as url:
        tab = context.new_page()
        try:
            tab.goto(url)
            assert tab.evaluate(f"fl.connect('ws://127.0.0.1:{port}/stream')") == "refused"  # the page itself may not
            tab.evaluate("fl.open('fomm-live')")
            wait_for(tab, shows(sent), "the frames sent, under the page's CSP")
            tab.screenshot(path=str(tmp_path / "strict-csp.png"))
        finally:
            tab.evaluate("fl.stop()")
            tab.close()
            feeder.close()


def test_a_site_that_embeds_the_extensions_frame_itself_gets_no_stream(browser, page) -> None:
    # frame.html is web-accessible (bridge.js must embed it in every page), so any site can embed it too; it
    # connects only with a one-time ticket from the extension's service worker, which web pages cannot message.
    _, _, port = browser
    feeder = Feeder(port, place(portrait(), width=SIZE[0], height=SIZE[1]))
    try:
        answers = page.evaluate("""(async (extensionId) => {
            const answers = [];
            for (const hash of ["", "#forged-ticket"]) {
                const frame = document.createElement("iframe");
                frame.src = `chrome-extension://${extensionId}/frame.html${hash}`;
                await new Promise((resolve) => { frame.onload = resolve; document.body.appendChild(frame); });
                const channel = new MessageChannel();
                const answer = new Promise((resolve) => {
                    channel.port1.onmessage = (e) => resolve(e.data);
                    setTimeout(() => resolve("no answer"), 5000);
                });
                frame.contentWindow.postMessage({fommLive: "port"}, "*", [channel.port2]);
                answers.push(await answer);
            }
            return answers;
        })""", EXTENSION_ID)
        assert feeder.sink.viewers == 0
    finally:
        feeder.close()
    assert answers == [{"refused": True}, {"refused": True}]


def test_a_page_refused_the_camera_cannot_open_the_stream_even_by_forging_the_request(playwright, tmp_path) -> None:
    """A Chromium of its own in which the user refuses the camera: getUserMedia of the fomm-live camera fails as for
    any camera, and a page script that posts what inject.js posts is refused by bridge.js, which checks the
    permission out of the page's reach."""
    port = free_port()
    feeder = Feeder(port, place(portrait(), width=SIZE[0], height=SIZE[1]))
    clip = write_y4m(tmp_path / "camera.y4m", [np.full((240, 320, 3), CAMERA_RGB, np.uint8)] * 3)
    try:
        with serve_page() as url, chromium_with_extension(tmp_path / "profile", camera_clip=clip, port=port,
                                                          playwright=playwright, deny_camera=True) as context:
            tab = context.new_page()
            tab.goto(url)
            # The camera's fixed id (inject.js): before the permission, the device list shows no ids.
            opened = tab.evaluate("(id) => navigator.mediaDevices.getUserMedia({video: {deviceId: {exact: id}}})"
                                  ".then(() => 'opened', (e) => e.name)", DEVICE_ID)
            state = tab.evaluate("navigator.permissions.query({name: 'camera'}).then((p) => p.state)")
            answer = tab.evaluate("""new Promise((resolve) => {
                const channel = new MessageChannel();
                channel.port1.onmessage = (e) => resolve(e.data);
                setTimeout(() => resolve("no answer"), 5000);
                window.postMessage({fommLive: "open", id: "forged"}, "*", [channel.port2]);
            })""")
            tab.wait_for_timeout(1000)  # time for a connection that should not come
            viewers = feeder.sink.viewers
    finally:
        feeder.close()
    assert opened == "NotAllowedError"
    assert state != "granted"
    assert answer == {"refused": "permission"}
    assert viewers == 0


def test_options_page_sets_the_port_the_camera_connects_to(browser) -> None:
    context, _, port = browser
    worker = context.service_workers[0]
    tab = context.new_page()
    try:
        tab.goto(f"chrome-extension://{EXTENSION_ID}/options.html")
        tab.wait_for_function("document.getElementById('port').value !== ''")
        assert tab.input_value("#port") == str(port)  # what the harness set
        tab.fill("#port", "70000")
        tab.click("#save")
        assert tab.text_content("#said") == "1 to 65535"
        assert worker.evaluate("chrome.storage.local.get('port').then((s) => s.port)") == port
        tab.fill("#port", "47999")
        tab.click("#save")
        tab.wait_for_function("document.getElementById('said').textContent.startsWith('saved')")
        assert worker.evaluate("chrome.storage.local.get('port').then((s) => s.port)") == 47999
    finally:
        worker.evaluate(f"chrome.storage.local.set({{port: {port}}})")
        tab.close()
