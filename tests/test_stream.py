"""A network stream that stalls: with the read timeout it reads as lost, the loop reconnects, and the outputs keep
getting the last frame meanwhile. The stream is an MJPEG-over-HTTP server on the loopback interface."""

from __future__ import annotations

import http.server
import threading
import time

import pytest
from helpers.clips import moving_frames, portrait

import fomm_live.live.capture.sources as capture
from fomm_live.live.capture.sources import OpenCVSource
from fomm_live.live.face import FaceDetector
from fomm_live.live.loop.pipeline import LivePipeline, PipelineOptions, prepare_avatars
from fomm_live.live.media import cv2
from fomm_live.live.options import PacingOptions
from fomm_live.live.output.sinks import RecordingSink


def _jpegs(n: int) -> list[bytes]:
    cv = cv2()
    return [cv.imencode(".jpg", f[..., ::-1])[1].tobytes() for f in moving_frames(n, still=n)]


class MjpegServer:
    """Serves multipart/x-mixed-replace JPEG frames at 25 fps; the first connection stalls after ``stall_after``
    frames (keeps the socket open, sends nothing), later ones stream without end."""

    def __init__(self, stall_after: int) -> None:
        frames = _jpegs(10)
        self.connections = 0
        self.stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                server.connections += 1
                first = server.connections == 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                sent = 0
                try:
                    while not server.stop.is_set():
                        if first and sent >= stall_after:
                            server.stop.wait(0.1)  # stalled: connected, silent
                            continue
                        jpeg = frames[sent % len(frames)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        sent += 1
                        time.sleep(0.04)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> MjpegServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_stalled_stream_is_lost_then_reconnected(monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers.standins import tiny_backend

    if not cv2().videoio_registry.hasBackend(cv2().CAP_FFMPEG):
        pytest.skip("this OpenCV build has no FFmpeg backend, which reads MJPEG over HTTP")
    monkeypatch.setattr(capture, "STREAM_TIMEOUT_MS", 1500)
    with MjpegServer(stall_after=15) as server, FaceDetector() as detector:
        source = OpenCVSource(server.url)  # with FFmpeg present, failing to open the stream is a failure
        backend = tiny_backend()
        sink = RecordingSink(keep_frames=False)
        pipeline = LivePipeline(source, backend, prepare_avatars([("a", portrait())], backend.size, detector), [sink],
                                options=PipelineOptions(pacing=PacingOptions(max_frames=40, fps=25)), detector=detector,
                                reopen=lambda: OpenCVSource(server.url))
        errors: list[BaseException] = []

        def run() -> None:
            try:
                pipeline.run()
            except BaseException as err:  # noqa: BLE001 - handed to the test's thread, raised there
                errors.append(err)

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        # The first connection stays silent until the server stops, so a stall that was waited out instead of timed
        # out never ends: the deadline turns that hang into a failure (it is not a bar on speed).
        runner.join(timeout=120)
        waited_out = runner.is_alive()
        if waited_out:
            server.stop.set()  # end the stall so that the run, and the test, can finish
            runner.join(timeout=30)
    if errors:
        raise errors[0]
    assert not waited_out, "the stall was not detected by the read timeout: the run waited on the silent stream"
    summary = pipeline.stats.summary()
    assert server.connections >= 2, "the loop reconnected after the stall"
    assert summary["frames_in"] == 40
    assert summary["frames_repeated"] > 0, "the outputs kept getting the last frame while the stream was silent"
