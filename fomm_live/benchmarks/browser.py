"""Browser output benchmark (``--output browser``), in one run, on the bundled clip at the output size, for each
picture format the output can send (JPEG quality 85: the changed rectangle, ``jpeg-rect``, the default, or the whole
frame, ``jpeg``; and raw I420):

1. Transport: per 1280x720 frame, the CPU to make the picture (I420 from RGB; JPEG: the BGR copy and the encode,
   OpenCV's defaults, which are 4:2:0 without Huffman optimisation, and with optimisation), the bytes it puts on the
   wire, and the CPU of sending it over a loopback WebSocket to a Python client (thread CPU time).
2. The output in use: a ``BrowserSink`` at 30 fps, fed the clip's frames from a thread, watched by the extension's
   camera in a headless Chromium (``benchmarks.chromium``): fomm-live's CPU per frame received (process CPU time,
   which holds the feeder, the sink's conversion, the picture thread and the viewer's send; and the picture thread
   alone), the watching Chromium's CPU per frame (all its processes), the page's frame rate, and how long after the
   output received a frame the page showed it (epoch ms, read in the page); then the same with one frame repeated
   (the live loop's repeats: sent as the header alone).
   Then the same on the live loop's own frames (landmark backend, photo framing: 60 of them recorded first), where
   only the face's region changes from frame to frame (``jpeg-rect`` sends that rectangle alone); and, on those
   frames, the picture thread's cost of finding the rectangle and of encoding it.
3. Quality: the page's frames (read back through a canvas) against the frames sent, PSNR, each frame held long enough
   to be shown.
4. The live loop (landmark backend, no weights; unpaced: as fast as it goes) with ``--output browser`` watched by the
   page, against the loop with the virtual camera's stand-in (``VirtualCamSink`` on a pyvirtualcam stand-in whose
   ``send`` does nothing: the I420 conversion on the loop's thread and the pacing thread stay) while the page watches
   Chromium's fake camera playing the same clip at the same size (as it would watch a real virtual camera: the
   browser's own work is in both), rounds alternating (each round runs every output, in a rotated order): the loop's
   rate, fomm-live's CPU time per frame (the process's, which a loaded machine's other work does not inflate as much
   as it does the rate) and the watching Chromium's CPU per loop frame.

    python -m fomm_live.benchmarks.browser [--size 1280x720] [--seconds 10] [--rounds 2]
                                           [--formats jpeg-rect,jpeg,i420] [--everywhere] [--copying] [--json PATH]

Goals (issue 28): output <= 5 ms of CPU per frame; loop rate within 5% of the stand-in's; page p50 <= 33 ms after
the output receives a frame; page frames >= 30 dB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from fomm_live.benchmarks.browser_loop import loop_frames, loop_rate, standin_pyvirtualcam
from fomm_live.benchmarks.chromium import (
    browser_cpu_seconds,
    chromium_with_extension,
    decode_data_url,
    missing_reason,
    psnr,
    serve_page,
    write_y4m,
)
from fomm_live.benchmarks.common import bench_clip


def clip_frames(clip: Path, count: int) -> list[np.ndarray]:
    from fomm_live.live.media import cv2

    cap = cv2().VideoCapture(str(clip))
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(frame[..., ::-1]))
    cap.release()
    return frames


def p(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else float("nan")


def transport(frames: list[np.ndarray]) -> dict:
    """I420 vs JPEG: the CPU to make each picture from an RGB frame, its bytes, and the CPU of one loopback WebSocket
    send."""
    from websockets.sync.client import connect
    from websockets.sync.server import serve

    from fomm_live.live.media import cv2
    from fomm_live.live.output.browser import HEADER, JPEG_QUALITY

    height, width = frames[0].shape[:2]

    def i420(frame: np.ndarray) -> bytearray:
        message = bytearray(HEADER.size + width * height * 3 // 2)
        planes = np.frombuffer(message, np.uint8, offset=HEADER.size).reshape(height * 3 // 2, width)
        cv2().cvtColor(frame, cv2().COLOR_RGB2YUV_I420, dst=planes)
        return message

    def jpeg(optimize: int):
        params = [cv2().IMWRITE_JPEG_QUALITY, JPEG_QUALITY, cv2().IMWRITE_JPEG_OPTIMIZE, optimize,
                  cv2().IMWRITE_JPEG_SAMPLING_FACTOR, cv2().IMWRITE_JPEG_SAMPLING_FACTOR_420]
        return lambda frame: cv2().imencode(".jpg", cv2().cvtColor(frame, cv2().COLOR_RGB2BGR), params)[1].tobytes()

    makers = {"i420": i420, "jpeg": jpeg(0), "jpeg optimized": jpeg(1)}
    made: dict[str, list] = {name: [] for name in makers}
    make_ms: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(2):  # alternating, twice
        for name, make in makers.items():
            made[name] = []
            for frame in frames:
                start = time.thread_time()
                made[name].append(make(frame))
                make_ms[name].append((time.thread_time() - start) * 1000)
    sends: dict[str, list[float]] = {"i420": [], "jpeg": []}

    def handler(connection) -> None:
        for name in sends:
            for message in made[name]:
                start = time.thread_time()
                connection.send(message)
                sends[name].append((time.thread_time() - start) * 1000)
        connection.send("done")

    with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        with connect(f"ws://127.0.0.1:{server.socket.getsockname()[1]}", max_size=None, compression=None) as ws:
            while ws.recv(timeout=60) != "done":
                pass
        server.shutdown()
    return {"load": os.getloadavg()[0],
            **{f"{name} make_ms_p50": p(make_ms[name], 50) for name in makers},
            **{f"{name} kB_mean": round(float(np.mean([len(m) for m in made[name]])) / 1e3, 1) for name in makers},
            **{f"{name} send_ms_p50": p(sends[name], 50) for name in sends}}


class Feeder:
    """Sends ``frames`` (cycled) to a sink at ``fps`` from a thread; ``hold`` repeats one frame instead."""

    def __init__(self, sink, frames: list[np.ndarray], fps: float = 30.0) -> None:
        from fomm_live.live.output.sinks import FrameInfo

        self.sink, self.frames, self.hold = sink, frames, None
        self.sent = 0
        self._info = FrameInfo
        self._stop = threading.Event()
        self._period = 1.0 / fps
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        due = time.perf_counter()
        while not self._stop.is_set():
            frame = self.frames[self.sent % len(self.frames)] if self.hold is None else self.hold
            self.sink.send(frame, self._info(self.sent, time.perf_counter()))
            self.sent += 1
            due += self._period
            self._stop.wait(max(0.0, due - time.perf_counter()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def watch(page, sink, feeder, seconds: float) -> dict:
    """``seconds`` of the page watching ``sink``: fomm-live's and Chromium's CPU per frame received, the page's rate
    and delay."""
    page.evaluate("fl.frames = []")
    received0, encoded0, encode_cpu0 = sink.received, sink.encoded, sink.encode_cpu_s
    chromium0 = browser_cpu_seconds()
    cpu0, wall0, load = time.process_time(), time.perf_counter(), os.getloadavg()[0]
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    chromium = browser_cpu_seconds()
    received, encoded = sink.received - received0, sink.encoded - encoded0
    encode_cpu = sink.encode_cpu_s - encode_cpu0
    shown = page.evaluate("fl.frames")
    latency = [f["drawnAt"] - f["receivedAt"] for f in shown if not f.get("repeat")]
    per_frame = 1000 / max(received, 1)
    return {"load": load, "seconds": round(wall, 2), "frames_received": received, "pictures_made": encoded,
            "process_cpu_ms_per_frame": round(cpu * per_frame, 3),
            "picture_thread_cpu_ms_per_frame": round(encode_cpu * per_frame, 3),
            "chromium_cpu_ms_per_frame": None if chromium is None else round((chromium - chromium0) * per_frame, 3),
            "page_fps": round(len(shown) / wall, 2), "latency_ms_p50": p(latency, 50),
            "latency_ms_p95": p(latency, 95)}


def output_in_use(page, port: int, frames: list[np.ndarray], size: tuple[int, int], seconds: float,
                  picture_format: str) -> dict:
    """The sink at 30 fps watched by the page: CPU per frame, page rate and latency, the same with one frame repeated,
    then PSNR of held frames."""
    from fomm_live.live.output.browser import BrowserSink

    sink = BrowserSink(width=size[0], height=size[1], fps=30, port=port, picture_format=picture_format)
    feeder = Feeder(sink, frames)
    try:
        page.evaluate("fl.open('fomm-live')")
        time.sleep(2.0)  # warm-up: the stream settles
        moving = watch(page, sink, feeder, seconds)
        feeder.hold = frames[0]
        time.sleep(0.5)
        repeated = watch(page, sink, feeder, seconds / 2)
        quality = []
        for frame in frames[:: max(1, len(frames) // 5)][:5]:
            feeder.hold = frame
            time.sleep(0.8)  # several frames of it reach the page
            quality.append(round(psnr(decode_data_url(page.evaluate("fl.grab()")), frame), 2))
    finally:
        page.evaluate("fl.stop()")
        feeder.close()
        sink.close()
    return {"format": picture_format, **moving, "repeated_frame": repeated, "psnr_db": quality}


def rect_cost(frames: list[np.ndarray], stills: list) -> dict:
    """On consecutive frames (RGB): the thread CPU to find the changed rectangle (``changed_rect`` on the BGR frames
    the picture thread holds; in the whole frame, and only inside the two frames' ``still_outside`` boxes, as the
    output does when they name the same background) and to encode it, against encoding the whole frame; the
    rectangle's share of the frame."""
    from fomm_live.live.media import cv2
    from fomm_live.live.output.browser import JPEG_QUALITY, encode_jpeg_bgr
    from fomm_live.live.output.changed import Rect, changed_rect

    bgr = [cv2().cvtColor(f, cv2().COLOR_RGB2BGR) for f in frames]
    find, inside, part, whole, shares = [], [], [], [], []
    for _ in range(2):
        for old, new, before, after in zip(bgr, bgr[1:], stills, stills[1:], strict=False):
            if before is not None and after is not None and before[0] == after[0]:
                (x0, y0, x1, y1), (u0, v0, u1, v1) = before[1], after[1]
                within = Rect(min(x0, u0), min(y0, v0), max(x1, u1) - min(x0, u0), max(y1, v1) - min(y0, v0))
                start = time.thread_time()
                limited = changed_rect(new, old, within=within)
                inside.append((time.thread_time() - start) * 1000)
                if limited != changed_rect(new, old):
                    raise AssertionError(f"changed_rect inside {within}: {limited}, in the whole frame another")
            start = time.thread_time()
            rect = changed_rect(new, old)
            found = time.thread_time()
            if rect is not None:
                encode_jpeg_bgr(new[rect.y:rect.y + rect.height, rect.x:rect.x + rect.width], JPEG_QUALITY)
            encoded = time.thread_time()
            encode_jpeg_bgr(new, JPEG_QUALITY)
            find.append((found - start) * 1000)
            part.append((encoded - found) * 1000)
            whole.append((time.thread_time() - encoded) * 1000)
            shares.append(0.0 if rect is None else rect.area / (new.shape[0] * new.shape[1]))
    return {"load": os.getloadavg()[0], "changed_rect_ms_p50": p(find, 50), "changed_rect_ms_p95": p(find, 95),
            "pairs_with_boxes": len(inside) // 2, "changed_rect_in_boxes_ms_p50": p(inside, 50),
            "changed_rect_in_boxes_ms_p95": p(inside, 95),
            "rect_jpeg_ms_p50": p(part, 50), "whole_jpeg_ms_p50": p(whole, 50),
            "rect_share_mean": round(float(np.mean(shares)), 3)}


STANDIN = "virtualcam stand-in"
EVERYWHERE = "browser jpeg-rect searching everywhere"
COPYING = "virtualcam stand-in copying each frame, as pyvirtualcam does into the device"


def run_browser_benchmark(*, size: tuple[int, int], seconds: float, rounds: int, formats: tuple[str, ...] = ("jpeg",),
                          everywhere: bool = False, copying: bool = False, say=print) -> dict:
    from fomm_live.live.face import FaceDetector
    from fomm_live.live.landmarks import LandmarkBackend
    from fomm_live.live.loop.pipeline import prepare_avatars
    from fomm_live.live.output.browser import BrowserSink
    from fomm_live.live.output.sinks import VirtualCamSink
    from fomm_live.live.threads import bound_helper_threads
    from fomm_live.live.wiring import load_sources

    reason = missing_reason()
    if reason:
        raise SystemExit(f"the browser benchmark needs Chromium and Playwright: {reason}")
    clip = bench_clip(size)
    frames = clip_frames(clip, 60)
    say("transport: JPEG vs I420")
    result: dict = {"size": list(size), "cpu_count": os.cpu_count(), "transport": transport(frames[:30])}
    sys.modules["pyvirtualcam"] = standin_pyvirtualcam()
    bound_helper_threads(cores_busy=False)  # as ``run`` does for the landmark backend of the loop rows
    with tempfile.TemporaryDirectory() as folder:
        # The page's real camera plays the clip at the output size: in the stand-in's rounds it watches that (as it
        # would watch a real virtual camera), in the browser output's rounds the fomm-live camera.
        camera = write_y4m(Path(folder) / "camera.y4m", frames[:30])
        port = BrowserSink(width=16, height=16, fps=30, port=0)
        free = port.port
        port.close()
        with serve_page() as url, chromium_with_extension(Path(folder) / "profile", camera_clip=camera,
                                                          port=free) as context:
            page = context.new_page()
            page.goto(url)
            result["output"] = []
            for picture_format in formats:
                say(f"the output in use ({picture_format}), watched by the page")
                result["output"].append(output_in_use(page, free, frames, size, seconds, picture_format))
            backend = LandmarkBackend(relative=True, tracking=True)
            rows = []
            with FaceDetector() as detector:
                avatars = prepare_avatars(load_sources(None), backend.size, detector)
                looped, stills = loop_frames(clip, size, 60, backend, avatars, detector)
                say("the live loop's frames: the changed rectangle's cost")
                result["rect_cost"] = rect_cost(looped, stills)
                result["output_loop_frames"] = []
                for picture_format in formats:
                    say(f"the output in use ({picture_format}) on the live loop's frames, watched by the page")
                    result["output_loop_frames"].append(output_in_use(page, free, looped, size, seconds,
                                                                      picture_format))

                def browser(picture_format: str, search_everywhere: bool = False):
                    return lambda fps: BrowserSink(width=size[0], height=size[1], fps=fps, port=free,
                                                   picture_format=picture_format, search_everywhere=search_everywhere)

                def virtual_camera(copying: bool = False):
                    def make(fps: float) -> VirtualCamSink:
                        sys.modules["pyvirtualcam"].Camera.copying = copying
                        return VirtualCamSink(width=size[0], height=size[1], fps=fps)
                    return make

                sinks = {STANDIN: virtual_camera(),
                         **{f"browser {f}": browser(f) for f in formats}}
                if everywhere and "jpeg-rect" in formats:  # the changed rectangle looked for in the whole frame
                    sinks[EVERYWHERE] = browser("jpeg-rect", search_everywhere=True)
                if copying:
                    sinks[COPYING] = virtual_camera(copying=True)
                names = list(sinks)
                for r in range(rounds):
                    shift = r % len(names)
                    for name in (names[shift:] + names[:shift])[:: -1 if r % 2 else 1]:
                        say(f"round {r + 1}/{rounds}: live loop to {name}")
                        page.evaluate("fl.open(null)" if name in (STANDIN, COPYING) else "fl.open('fomm-live')")
                        rows.append({"round": r, "output": name, **loop_rate(clip, size, sinks[name], seconds,
                                                                              backend, avatars, detector)})
                        page.evaluate("fl.stop()")
            backend.close()
    result["loop"] = rows

    def mean(name: str, key: str) -> float:
        return float(np.mean([r[key] for r in rows if r["output"] == name]))

    for name in sinks:
        if name == STANDIN:
            continue
        result[f"{name}: loop_rate_ratio"] = round(mean(name, "achieved_fps") / mean(STANDIN, "achieved_fps"), 4)
        # Per round too: the rounds' rates drift with the machine's load, each round's pair less so.
        result[f"{name}: loop_rate_ratio_by_round"] = [
            round(next(r["achieved_fps"] for r in rows if r["round"] == i and r["output"] == name)
                  / next(r["achieved_fps"] for r in rows if r["round"] == i and r["output"] == STANDIN), 4)
            for i in range(rounds)]
        result[f"{name}: loop_cpu_ms_per_frame_extra"] = round(
            mean(name, "process_cpu_ms_per_frame") - mean(STANDIN, "process_cpu_ms_per_frame"), 2)
        if rows[0]["chromium_cpu_ms_per_frame"] is not None:
            result[f"{name}: chromium_cpu_ms_per_frame_extra"] = round(
                mean(name, "chromium_cpu_ms_per_frame") - mean(STANDIN, "chromium_cpu_ms_per_frame"), 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1280x720", help="output size WxH (default 1280x720)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=2, help="live-loop rounds per output, alternating")
    parser.add_argument("--formats", default="jpeg-rect,jpeg,i420",
                        help="the output's picture formats to compare, in order (default jpeg-rect,jpeg,i420)")
    parser.add_argument("--everywhere", action="store_true",
                        help="add jpeg-rect looking for what changed in the whole frame, ignoring the frames' "
                             "still_outside boxes (before they were used), to the live loop's rounds")
    parser.add_argument("--copying", action="store_true",
                        help="add a second virtual camera stand-in that copies each frame (already I420) as "
                             "pyvirtualcam does into its device; the goal's ratio stays against the first")
    parser.add_argument("--json", metavar="PATH", help="write the figures here")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    result = run_browser_benchmark(size=size, seconds=args.seconds, rounds=args.rounds, formats=formats,
                                   everywhere=args.everywhere, copying=args.copying,
                                   say=lambda text: print(text, file=sys.stderr))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
