"""The server's image decoder: the clients' PNG and JPEG payloads decoded in worker processes, each image bounded in
time, off the replica's event loop.

A payload passes ``protocol.image_dimensions`` (the size the decoder will decode, read the way it reads it) inside
the worker, and the worker's OpenCV refuses any image over ``MAX_SIDE`` a side on its own as well
(``OPENCV_IO_MAX_IMAGE_*``). A decode that runs over ``DECODE_TIMEOUT_S`` (a crafted image that is slow to decode)
is abandoned: its worker is killed and replaced, and only the stream that sent it hears of it. The other streams'
images go to the other workers meanwhile, so one slow image never stalls them; a worker process can be killed where
a thread could not.

Wire between the replica and a worker (its stdin and stdout): request = 4-byte length, big-endian, + the payload;
reply = 1 byte status, then (0: decoded) height and width as two 4-byte big-endian numbers + the RGB pixels, or
(1: refused) a 4-byte length + the one-line reason, UTF-8.

Run as ``python -m fomm_live.live.remote.decoding``: the worker's loop. Imported by ``live.remote.server``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fomm_live.live.remote.protocol import MAX_MESSAGE_BYTES, MAX_SIDE, ProtocolError

logger = logging.getLogger(__name__)

DECODE_TIMEOUT_S = 0.5  # a 1024 x 1024 PNG or JPEG crop decodes in 10 to 40 ms on a loaded 2-core Xeon; 12x margin
DECODE_WORKERS = 2  # one slow image occupies one worker while the other serves the honest streams
UNDECODABLE = "the image payload could not be decoded"
WORKER_START_S = 60.0  # a worker's start (Python, numpy, OpenCV), ~0.3 s; much more on a loaded machine
READY = b"R"  # the worker's first byte: its imports are done
WORKER_COMMAND = [sys.executable, "-m", "fomm_live.live.remote.decoding"]


class DecodeTimeout(ProtocolError):
    """An image that took longer than ``DECODE_TIMEOUT_S`` to decode: its stream is closed."""


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError("the decoder worker's pipe closed")
    return data


def _worker_main() -> None:
    """The worker process: decode requests from stdin until it closes."""
    from fomm_live.live.remote.protocol import decode_image

    stdin = sys.stdin.buffer
    stdout = os.fdopen(os.dup(1), "wb")  # the replies' own descriptor: whatever prints goes to stderr instead
    os.dup2(2, 1)
    import cv2  # noqa: F401 - imported before the ready byte, so that no image's bound counts the import

    stdout.write(READY)
    stdout.flush()
    while True:
        try:
            (length,) = struct.unpack(">I", _read_exactly(stdin, 4))
            data = _read_exactly(stdin, length)
        except EOFError:
            return
        try:
            image = decode_image(data)
        except ProtocolError as err:
            reason = str(err).encode()
            stdout.write(b"\x01" + struct.pack(">I", len(reason)) + reason)
        except Exception:  # noqa: BLE001 - OpenCV's own messages carry its internals and paths: never sent on
            stdout.write(b"\x01" + struct.pack(">I", len(UNDECODABLE)) + UNDECODABLE.encode())
        else:
            stdout.write(b"\x00" + struct.pack(">II", *image.shape[:2]) + image.tobytes())
        stdout.flush()


class _Worker:
    """One decoder process and the pipe calls made from a thread of the pool."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[3])  # the folder holding the fomm_live package
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
                   OPENCV_IO_MAX_IMAGE_WIDTH=str(MAX_SIDE), OPENCV_IO_MAX_IMAGE_HEIGHT=str(MAX_SIDE),
                   OPENCV_IO_MAX_IMAGE_PIXELS=str(MAX_SIDE * MAX_SIDE), OPENCV_FOR_THREADS_NUM="1",
                   OMP_NUM_THREADS="1", OPENCV_LOG_LEVEL="OFF")
        self.proc = subprocess.Popen(WORKER_COMMAND, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

        self.started = False

    def wait_started(self) -> None:
        """Blocks until the worker has imported what it decodes with (its ready byte), once."""
        if not self.started:
            assert self.proc.stdout is not None
            if _read_exactly(self.proc.stdout, 1) != READY:
                raise EOFError("the decoder worker did not start")
            self.started = True

    def call(self, data: bytes) -> np.ndarray:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        self.proc.stdin.flush()
        status = _read_exactly(self.proc.stdout, 1)
        if status == b"\x00":
            height, width = struct.unpack(">II", _read_exactly(self.proc.stdout, 8))
            if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
                raise ProtocolError(UNDECODABLE)
            pixels = _read_exactly(self.proc.stdout, height * width * 3)
            return np.frombuffer(pixels, np.uint8).reshape(height, width, 3)  # H x W x 3 RGB
        (length,) = struct.unpack(">I", _read_exactly(self.proc.stdout, 4))
        raise ProtocolError(_read_exactly(self.proc.stdout, min(length, 1000)).decode(errors="replace"))

    def kill(self) -> None:
        self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            logger.warning("a decoder worker did not exit after SIGKILL")
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


class DecoderPool:
    """Worker processes that decode images, each bounded in time; ``decode`` is a coroutine for the event loop.

    Args:
        workers: Worker processes (each decodes one image at a time).
        timeout_s: The bound on one image's decode; over it the worker is killed and the image refused.
    """

    def __init__(self, *, workers: int = DECODE_WORKERS, timeout_s: float = DECODE_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fomm-decode")
        self.workers = [_Worker() for _ in range(workers)]
        self.idle: asyncio.Queue[_Worker] | None = None
        self.timeouts = 0

    async def decode(self, data: bytes) -> np.ndarray:
        """PNG or JPEG bytes -> H x W x 3 uint8 RGB, or ``ProtocolError`` (``DecodeTimeout`` when it ran over)."""
        if len(data) > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"an image of {len(data)} bytes is over the {MAX_MESSAGE_BYTES} byte limit")
        if self.idle is None:  # made on the loop that uses it
            self.idle = asyncio.Queue()
            for worker in self.workers:
                self.idle.put_nowait(worker)
        worker = await self.idle.get()
        loop = asyncio.get_running_loop()
        try:  # the bound is on the decode, not on the worker's start
            await asyncio.wait_for(loop.run_in_executor(self.threads, worker.wait_started), WORKER_START_S)
        except (TimeoutError, EOFError, OSError):
            self.idle.put_nowait(self._replace(worker))
            raise ProtocolError("the image decoder could not start: try again") from None
        except asyncio.CancelledError:
            self.idle.put_nowait(self._replace(worker))
            raise
        call = loop.run_in_executor(self.threads, worker.call, data)
        call.add_done_callback(lambda done: done.cancelled() or done.exception())  # read, also when abandoned
        try:
            return await asyncio.wait_for(asyncio.shield(call), self.timeout_s)
        except TimeoutError:
            self.timeouts += 1
            worker = self._replace(worker)
            raise DecodeTimeout(f"the image took over {self.timeout_s:g} s to decode: refused") from None
        except ProtocolError:  # the worker refused the image: it goes on serving
            raise
        except (EOFError, OSError, ValueError):  # the worker died (out of memory...): a new one takes its place
            worker = self._replace(worker)
            raise ProtocolError(UNDECODABLE) from None
        except asyncio.CancelledError:  # its stream went away mid-decode: the worker's reply would be left unread
            worker = self._replace(worker)
            raise
        finally:
            self.idle.put_nowait(worker)

    def _replace(self, worker: _Worker) -> _Worker:
        """Kill a worker (its pending read ends with EOFError) and start another in its place."""
        worker.kill()
        fresh = _Worker()
        self.workers = [fresh if w is worker else w for w in self.workers]
        return fresh

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.threads.shutdown(wait=False, cancel_futures=True)


if __name__ == "__main__":
    _worker_main()
