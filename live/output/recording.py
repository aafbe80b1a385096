"""Recordings of the live loop that survive any stop, timed by when their frames were captured.

While recording, ``NAME.mp4`` is a fragmented MP4 (an empty ``moov`` up front, then a ``moof`` + ``mdat`` fragment
per second of video, flushed to the OS as each closes): after ``kill -9``, a power cut or a crash in a native library,
everything up to the last closed fragment plays in a standard player. A clean stop remuxes it (packets copied, no
re-encoding) into an ordinary MP4 with its index up front, under the same name.

Each frame's presentation time is its capture time (``FrameInfo.captured_at``, relative to the first frame), not its
position in the output: when the model renders fewer frames than the camera gives, each rendered frame is held until
the next one, and the recording lasts as long as the input did. A lossless file input (every frame processed, read
faster than real time) is timed by frame number instead (``clock="frames"``), its own timeline.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from live.errors import UserError
from live.media import SYNTHETIC_TAG, check_writable

logger = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 1000)  # milliseconds: capture times are not on any frame grid
KEYFRAME_SECONDS = 1.0  # a keyframe (and so a fragment) at least this often: at most ~1 s lost to a kill
FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"


class FragmentedRecording:
    """H.264 video into ``path``, fragmented while recording and made an ordinary MP4 by ``close()``.

    Args:
        path: The output file (an existing one is replaced).
        fps: The input's nominal frame rate: the duration of the last frame, and the frame clock's rate.
        clock: ``capture`` (times from ``write``'s ``t``) or ``frames`` (``index / fps``).
        metadata: Extra container tags; a ``comment`` saying the video is synthetic is always added.
    """

    def __init__(self, path: str | os.PathLike, *, fps: float, clock: str = "capture",
                 metadata: dict[str, str] | None = None) -> None:
        import av

        if clock not in ("capture", "frames"):
            raise ValueError(f"clock must be 'capture' or 'frames', got {clock!r}")
        self._av = av
        self.path = Path(path)
        check_writable(self.path.parent)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.clock = clock
        self.metadata = {"comment": SYNTHETIC_TAG, **(metadata or {})}
        if self.path.is_dir() or (self.path.exists() and not os.access(self.path, os.W_OK)):
            raise UserError(f"cannot write {self.path}: {'a folder' if self.path.is_dir() else 'not writable'}")
        self.container = None  # opened at the first frame: a run that ends before one leaves an older file alone
        self.stream = None
        self.count = 0
        self.held = 0  # frames not written because their time did not advance (a repeat of the last)
        self._origin: float | None = None
        self._last_seconds = 0.0
        self._end: float | None = None
        self._last_pts = -1
        self._last_key_pts: int | None = None
        self.closed = False

    def _open_stream(self, frame: np.ndarray) -> None:
        try:
            # flush_packets: each closed fragment goes to the OS at once, not when FFmpeg's 32 KB buffer fills.
            self.container = self._av.open(str(self.path), mode="w", format="mp4",
                                           options={"movflags": FRAGMENTED, "flush_packets": "1"})
        except (OSError, self._av.error.FFmpegError) as err:
            raise UserError(f"cannot write {self.path}: {err}") from err
        self.container.metadata.update(self.metadata)
        h, w = frame.shape[:2]
        stream = self.container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height = w - w % 2, h - h % 2  # yuv420p needs even sizes
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = TIME_BASE
        stream.time_base = TIME_BASE
        stream.codec_context.gop_size = max(1, round(self.fps * KEYFRAME_SECONDS))
        # zerolatency: no lookahead and no B-frames, so each frame leaves the encoder at once; with x264's default
        # 40-frame lookahead, 1.6 s of video at 25 fps would sit in the encoder and die with a killed process.
        stream.options = {"crf": "18", "tune": "zerolatency", "forced-idr": "1"}
        self.stream = stream

    def write(self, frame: np.ndarray, *, t: float, index: int) -> None:
        """Add a frame captured at ``t`` seconds (any origin) that was input frame ``index`` (input frames are
        counted from 0 whether or not they were rendered; the first one written starts the recording at its place).

        A frame whose time does not advance past the last one (a repeat sent while the camera was silent) is not
        written: the last frame is held until the next real one instead, which plays the same.
        """
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 uint8 frame, got {frame.dtype} {frame.shape}")
        seconds = index / self.fps if self.clock == "frames" else t
        if self._origin is None:
            # Input frames before this one (dropped before the model could take them) were captured from
            # index / fps earlier: the recording starts there, with this frame shown from 0.
            self._origin = seconds - index / self.fps
            logger.info("recording %s", self.path)
        pts = 0 if self.count == 0 else round((seconds - self._origin) / TIME_BASE)
        if pts <= self._last_pts:
            self.held += 1
            return
        if self.stream is None:
            self._open_stream(frame)
        frame = frame[: self.stream.height, : self.stream.width]
        video_frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = pts
        video_frame.time_base = TIME_BASE
        if self._last_key_pts is None or (pts - self._last_key_pts) * TIME_BASE >= KEYFRAME_SECONDS:
            # a slow model gives fewer frames than the GOP counts: a keyframe by time keeps fragments ~1 s long
            video_frame.pict_type = self._av.video.frame.PictureType.I
            self._last_key_pts = pts
        self._mux(self.stream.encode(video_frame))
        self._last_pts = pts
        self._last_seconds = seconds
        self.count += 1

    def hold_until(self, t: float) -> None:
        """The last frame stays on screen until ``t`` (capture clock): the camera was silent, the run went on."""
        if self.clock == "capture":
            self._end = t

    def _mux(self, packets) -> None:
        for packet in packets:
            if packet.is_keyframe:
                self._last_key_pts = max(self._last_key_pts or 0, packet.pts or 0)
            self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, close the fragmented file, and remux it into an ordinary MP4 in place; an empty
        recording is removed. A failed remux leaves the fragmented file, which plays."""
        if self.closed:
            return
        self.closed = True
        if self.container is None:  # not a frame came
            return
        self._mux(self.stream.encode())
        self.container.close()
        partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        try:
            last = 1.0 / self.fps
            if self._end is not None:
                last = max(last, self._end - self._last_seconds)
            remux(self.path, partial, duration=last, metadata=self.metadata)
            partial.replace(self.path)
        except (OSError, self._av.error.FFmpegError) as err:
            logger.warning("%s stays a fragmented MP4 (it plays; some editors want an ordinary one): %s",
                           self.path, err)
        finally:
            partial.unlink(missing_ok=True)

    def __enter__(self) -> FragmentedRecording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remux(src: Path, dst: Path, *, duration: float, metadata: dict[str, str]) -> None:
    """Copy the video packets of ``src`` into an ordinary MP4 ``dst`` with its index up front (``faststart``); the
    last frame lasts ``duration`` seconds."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        out.metadata.update(metadata)
        v_in = inp.streams.video[0]
        v_out = out.add_stream_from_template(v_in)
        last = None
        for packet in inp.demux(v_in):
            if packet.dts is None:
                continue
            if last is not None:
                out.mux(last)
            packet.stream = v_out
            last = packet
        if last is not None:
            last.duration = max(1, round(duration / v_in.time_base))
            out.mux(last)


def mp4_boxes(path: str | os.PathLike) -> list[str]:
    """The top-level box types of an MP4 file in order (``ftyp``, ``moov``, ``moof``, ``mdat``, ...)."""
    boxes = []
    with open(path, "rb") as f:
        while True:
            header = f.read(8)
            if len(header) < 8:
                return boxes
            size = int.from_bytes(header[:4], "big")
            boxes.append(header[4:8].decode("latin-1"))
            if size == 1:
                size = int.from_bytes(f.read(8), "big") - 8
            elif size == 0:
                return boxes
            f.seek(size - 8, os.SEEK_CUR)
