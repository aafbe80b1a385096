"""A headless Chromium with the fomm-live extension loaded, a fake camera fed from a .y4m clip, and a test page on
loopback that opens cameras and reads their frames back through a canvas: shared by tests/test_browser_extension.py
and ``benchmarks/browser.py``.

Chromium is Debian's (``apt-get install chromium``), driven by Playwright (pip) on its executable: no browser
download. Extensions load only in a persistent context and only in the new headless mode (``--headless=new``).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from fomm_live.live.media import cv2
from fomm_live.live.output.browser import EXTENSION_DIR

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

# The test page: window.fl.* is what the harness calls. Frames are read from a <video> playing the camera's stream,
# drawn to a canvas, as a PNG data URL.
TEST_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>fomm-live camera test page</title>
<style>body{font:14px sans-serif;margin:8px;background:#fff} video{width:640px;border:1px solid #888}
pre{font-size:12px;white-space:pre-wrap;word-break:break-all}</style></head>
<body><h3>fomm-live camera test page</h3><video id="v" autoplay muted playsinline></video><pre id="log"></pre>
<script>
"use strict";
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
const video = document.getElementById("v");
window.fl = {
  frames: [],
  async devices() {
    const list = await navigator.mediaDevices.enumerateDevices();
    return list.map((d) => ({label: d.label, kind: d.kind, deviceId: d.deviceId}));
  },
  async open(label) {
    const first = await navigator.mediaDevices.getUserMedia({video: true});  // the permission: labels appear
    first.getTracks().forEach((t) => t.stop());
    const list = await navigator.mediaDevices.enumerateDevices();
    log("devices: " + list.filter((d) => d.kind === "videoinput").map((d) => d.label).join(", "));
    const device = list.find((d) => d.kind === "videoinput" && (label ? d.label === label : d.label !== "fomm-live"));
    if (!device) throw new Error("no camera labelled " + label);
    if (video.srcObject) video.srcObject.getTracks().forEach((t) => t.stop());
    const stream = await navigator.mediaDevices.getUserMedia({video: {deviceId: {exact: device.deviceId}}});
    video.srcObject = stream;
    await video.play();
    const track = stream.getVideoTracks()[0];
    log("opened: " + track.label + " " + JSON.stringify(track.getSettings()));
    return {label: track.label, settings: track.getSettings()};
  },
  grab() {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth; canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    return canvas.toDataURL("image/png");
  },
  stop() { if (video.srcObject) video.srcObject.getTracks().forEach((t) => t.stop()); video.srcObject = null; },
  connect(url) {
    return new Promise((resolve) => {
      const socket = new WebSocket(url);
      socket.onopen = () => { socket.close(); resolve("open"); };
      socket.onerror = () => resolve("refused");
    });
  },
};
window.addEventListener("fomm-live-frame", (e) => window.fl.frames.push(e.detail));
</script></body></html>
"""


def chromium_path() -> str | None:
    """The system Chromium's executable, or None."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or next((p for p in CHROMIUM_PATHS if Path(p).exists()), None)


def missing_reason() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    if chromium_path() is None:
        return "Chromium is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright)"
    return None


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 30) -> Path:
    """RGB frames (even sizes) as a YUV 4:2:0 .y4m clip, the format of Chromium's fake camera file."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(cv2().cvtColor(frame, cv2().COLOR_RGB2YUV_I420).tobytes())  # Y, U, V planes
    return path


def browser_cpu_seconds() -> float | None:
    """CPU time (user + system, seconds) of every Chromium process below this one (the browser, its GPU, network and
    renderer processes: the watching page's whole cost), read from /proc; None where there is no /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    names: dict[int, str] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # a process that ended meanwhile
            continue
        name_end = text.rindex(")")
        fields = text[name_end + 2:].split()  # from field 3 (state) on
        pid = int(text[:text.index(" ")])
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        names[pid] = text[text.index("(") + 1:name_end]
    below, stack = set(), [os.getpid()]
    while stack:
        parent = stack.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in below:
                below.add(pid)
                stack.append(pid)
    return sum(times[pid] for pid in below if "chrom" in names[pid].lower())


def decode_data_url(url: str) -> np.ndarray:
    """A PNG data URL (the test page's grab) as H x W x 3 RGB."""
    data = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2().imdecode(data, cv2().IMREAD_COLOR)[..., ::-1]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@contextlib.contextmanager
def serve_page(body: bytes = TEST_PAGE, *, headers: dict[str, str] | None = None) -> Iterator[str]:
    """Serves ``body`` (with ``headers``, e.g. a Content-Security-Policy) at http://127.0.0.1:PORT/ while the block
    runs; yields that address."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def chromium_with_extension(profile: Path, *, camera_clip: Path | None, port: int,
                            public: tuple[str, ...] = (), playwright: object | None = None,
                            deny_camera: bool = False, extension: Path = EXTENSION_DIR) -> Iterator[object]:
    """A persistent Playwright context of the system Chromium, headless, with the extension loaded (its port set to
    ``port``) and a fake camera playing ``camera_clip`` (None: the machine's own cameras, if any); the extension's
    service worker has started when it is yielded. ``public``: HOST:PORT addresses Chromium is to treat as public
    websites (its Local Network Access rules then apply to their pages' requests to 127.0.0.1, as to a real call's
    site). ``playwright``: a started sync Playwright to launch it with (one thread runs one); None starts one.
    ``deny_camera``: the user refuses every camera prompt (else accepts it). ``extension``: the unpacked extension's
    folder (a test's altered copy; the package's by default)."""
    extension = str(extension)
    args = ["--headless=new", f"--disable-extensions-except={extension}", f"--load-extension={extension}",
            "--use-fake-ui-for-media-stream" + ("=deny" if deny_camera else ""), "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
            "--autoplay-policy=no-user-gesture-required"]
    if camera_clip is not None:
        args += ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera_clip}"]
    if public:
        args.append("--ip-address-space-overrides=" + ",".join(f"{address}=public" for address in public))
    with contextlib.ExitStack() as stack:
        if playwright is None:
            from playwright.sync_api import sync_playwright

            playwright = stack.enter_context(sync_playwright())
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=chromium_path(), headless=False, args=args,
            ignore_default_args=["--disable-extensions", "--headless"], viewport={"width": 900, "height": 700})
        stack.callback(context.close)
        workers = context.service_workers or [context.wait_for_event("serviceworker", timeout=30_000)]
        workers[0].evaluate(f"chrome.storage.local.set({{port: {int(port)}}})")
        yield context


def screenshot_output_page(path: Path, *, seconds: float = 8.0) -> Path:
    """A picture of the browser output's page (the README's): ``fomm-live run --output browser`` on the demo clip
    (landmark backend, no preview) in a subprocess, its page at http://127.0.0.1:PORT/ opened in Chromium, shot after
    ``seconds``."""
    import socket
    import subprocess
    import sys
    import tempfile
    import time

    from fomm_live.live.democlip import demo_clip_path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clip = demo_clip_path()
    run = subprocess.Popen([sys.executable, "-m", "fomm_live", "run", "--camera", str(clip), "--backend", "landmarks",
                            "--output", f"browser:{port}", "--output-size", "960x540", "--no-preview", "--realtime",
                            "--loop"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in run.stdout:
            if f"http://127.0.0.1:{port}/" in line:
                break
        with tempfile.TemporaryDirectory() as folder:
            camera = write_y4m(Path(folder) / "camera.y4m", [np.full((240, 320, 3), 128, np.uint8)])
            with chromium_with_extension(Path(folder) / "profile", camera_clip=camera, port=port) as context:
                page = context.new_page()
                page.set_viewport_size({"width": 1000, "height": 640})
                page.goto(f"http://127.0.0.1:{port}/")
                time.sleep(seconds)
                page.screenshot(path=str(path))
    finally:
        run.terminate()
        run.communicate(timeout=30)
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="A picture of the browser output's page (for the README).")
    parser.add_argument("--screenshot", default="fomm_live/benchmarks/browser-page.png", metavar="PNG")
    print(screenshot_output_page(Path(parser.parse_args().screenshot)))
