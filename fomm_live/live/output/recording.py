"""Recordings of the live loop that survive any stop, timed by when their frames were captured.

While recording, ``NAME.mp4`` is a fragmented MP4 (an empty ``moov`` up front, then a ``moof`` + ``mdat`` fragment
per second of video, flushed to the OS as each closes): after ``kill -9``, a power cut or a crash in a native library,
everything up to the last closed fragment plays in a standard player. A clean stop remuxes it (packets copied, no
re-encoding) into an ordinary MP4 with its index up front, under the same name.

Each frame's presentation time is its capture time (``FrameInfo.captured_at``, relative to the first frame), not its
position in the output: when the model renders fewer frames than the camera gives, each rendered frame is held until
the next one, and the recording lasts as long as the input did. A lossless file input (every frame processed, read
faster than real time) is timed by frame number instead (``clock="frames"``), its own timeline.

The live loop encodes on a thread of its own (``QueuedRecording``), with a real-time x264 setting (``LIVE_X264``), so
that neither the model nor the virtual camera waits on the encoder; ``animate`` writes every frame in its own loop with
x264's default preset (``FILE_X264``: slower, smaller files).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from fomm_live.live.errors import UserError
from fomm_live.live.media import SYNTHETIC_TAG, check_writable, cv2
from fomm_live.live.stats import PipelineStats
from fomm_live.live.threads import MODEL_TURNS, ModelTurns

logger = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 1000)  # milliseconds: capture times are not on any frame grid
KEYFRAME_SECONDS = 1.0  # a keyframe (and so a fragment) at least this often: at most ~1 s lost to a kill
FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"
# x264 settings. zerolatency: no lookahead and no B-frames, so each frame leaves the encoder at once; with x264's
# default 40-frame lookahead, 1.6 s of video at 25 fps would sit in the encoder and die with a killed process.
FILE_X264 = {"crf": "18", "tune": "zerolatency", "forced-idr": "1"}
# superfast, one thread: 3.8 ms a 1280 x 720 frame against 14.2 ms for x264's default preset, files 1.5x as large
# (the bundled clip, 2-core AVX-512 CPU); one thread leaves the other cores to the model.
LIVE_X264 = {**FILE_X264, "preset": "superfast", "threads": "1"}
# The longest a queued frame waits for the model's break (``QueuedRecording``'s ``turns``): a model that does not
# run (no face in view, frozen, a landmark frame long done) holds the encoder up no longer than this.
BREAK_WAIT_S = 0.2
QUEUE_FRAMES = 12  # frames a QueuedRecording holds: about half a second at 25 fps, 33 MB at 1280 x 720

# Recordings from their first frame to the end of ``close()``: what an exit at once (a further Ctrl-C) would leave
# unfinalised. ``live.cli.interrupts`` asks here before it exits; its signal handler runs on the main thread, which
# may hold the lock at that moment, hence a reentrant one.
_unfinished: set[FragmentedRecording] = set()
_unfinished_lock = threading.RLock()


def unfinished_recordings() -> list[Path]:
    """The files of the recordings that have frames and are not finalised yet (oldest first)."""
    with _unfinished_lock:
        return sorted(r.path for r in _unfinished)


def abandon_unfinished() -> list[Path]:
    """Before the process exits at once: remove each unfinished recording's half-made ordinary copy, so that what
    stays under its name is the fragmented MP4 written so far, which plays. Returns their files."""
    with _unfinished_lock:
        left = sorted(_unfinished, key=lambda r: r.path)
    for recording in left:
        recording.partial.unlink(missing_ok=True)
    return [r.path for r in left]


class FragmentedRecording:
    """H.264 video into ``path``, fragmented while recording and made an ordinary MP4 by ``close()``.

    Args:
        path: The output file (an existing one is replaced).
        fps: The input's nominal frame rate: the duration of the last frame, and the frame clock's rate.
        clock: ``capture`` (times from ``write``'s ``t``) or ``frames`` (``index / fps``).
        metadata: Extra container tags; a ``comment`` saying the video is synthetic is always added.
        x264: The encoder's options (``FILE_X264`` or ``LIVE_X264``).
    """

    def __init__(self, path: str | os.PathLike, *, fps: float, clock: str = "capture",
                 metadata: dict[str, str] | None = None, x264: dict[str, str] | None = None) -> None:
        import av

        if clock not in ("capture", "frames"):
            raise ValueError(f"clock must be 'capture' or 'frames', got {clock!r}")
        self._av = av
        self.path = Path(path)
        check_writable(self.path.parent)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.clock = clock
        self.metadata = {"comment": SYNTHETIC_TAG, **(metadata or {})}
        self.x264 = dict(x264 or FILE_X264)
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
        # The ordinary MP4 that close() remuxes into, then renames over the fragmented file.
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")

    def _open_stream(self, frame: np.ndarray) -> None:
        try:
            # flush_packets: each closed fragment goes to the OS at once, not when FFmpeg's 32 KB buffer fills.
            self.container = self._av.open(str(self.path), mode="w", format="mp4",
                                           options={"movflags": FRAGMENTED, "flush_packets": "1"})
        except (OSError, self._av.error.FFmpegError) as err:
            raise UserError(f"cannot write {self.path}: {err}") from err
        with _unfinished_lock:
            _unfinished.add(self)
        logger.info("recording %s", self.path)
        self.container.metadata.update(self.metadata)
        h, w = frame.shape[:2]
        stream = self.container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height = w - w % 2, h - h % 2  # yuv420p needs even sizes
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = TIME_BASE
        stream.time_base = TIME_BASE
        stream.codec_context.gop_size = max(1, round(self.fps * KEYFRAME_SECONDS))
        options = dict(self.x264)
        if "threads" in options:
            stream.codec_context.thread_count = int(options.pop("threads"))
        stream.options = options
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
        pts = 0 if self.count == 0 else round((seconds - self._origin) / TIME_BASE)
        if pts <= self._last_pts:
            self.held += 1
            return
        if self.stream is None:
            self._open_stream(frame)
        frame = frame[: self.stream.height, : self.stream.width]
        # OpenCV's conversion (BT.601, limited range, as FFmpeg's) costs 0.5 ms at 1280 x 720, 1.6 ms less than
        # FFmpeg's own inside the encoder.
        yuv = cv2().cvtColor(np.ascontiguousarray(frame), cv2().COLOR_RGB2YUV_I420)  # (H * 3 / 2) x W
        video_frame = self._av.VideoFrame.from_ndarray(yuv, format="yuv420p")
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
        try:
            self._mux(self.stream.encode())
            self.container.close()
            self._finalise()
        finally:
            with _unfinished_lock:
                _unfinished.discard(self)

    def _finalise(self) -> None:
        """Remux the closed fragmented file into an ordinary MP4 under the same name (it stays fragmented if that
        fails)."""
        partial = self.partial
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


class QueuedRecording:
    """A ``FragmentedRecording`` written by a thread of its own, fed through a bounded queue: ``write`` copies the
    frame and returns, so the caller (the live loop's output) never waits on the encoder.

    While the encoder keeps up every frame is written, in order. When it falls behind and the queue is full, a live
    recording drops the new frame (the previous one is held in its place, as for a frame the model skipped), counts
    it (``dropped``, and ``on_drop``) and says so once in the log; a lossless one waits for room instead (a file read
    faster than real time: every frame belongs in the output, and nothing else has to keep a pace). The crash-safety
    is the fragmented file's: what the encoder has written plays after a kill; frames still queued are lost with the
    process, at most ``capacity``.

    Args:
        recording: Where frames go; closed by ``close``.
        capacity: Frames the queue holds.
        lossless: Wait for room instead of dropping.
        on_drop: Called once per dropped frame (from the caller's thread).
        turns: The model's turns (``live.threads.MODEL_TURNS``): with nothing else queued, a frame waits for the end
            of the model's next call (at most ``BREAK_WAIT_S``) before it is encoded, so that the encoder runs beside
            the next paste-back instead of the next keypoint detector. None: encoded at once.
    """

    def __init__(self, recording: FragmentedRecording, *, capacity: int = QUEUE_FRAMES, lossless: bool = False,
                 on_drop: Callable[[], None] | None = None, turns: ModelTurns | None = None) -> None:
        self.recording = recording
        self.turns = turns
        self.lossless = lossless
        self.on_drop = on_drop
        self.dropped = 0
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, capacity))
        self._closed = False
        self._thread = threading.Thread(target=self._encode, name="recording", daemon=True)
        self._thread.start()

    @property
    def path(self) -> Path:
        return self.recording.path

    def write(self, frame: np.ndarray, *, t: float, index: int) -> None:
        """``FragmentedRecording.write`` on the encoder's thread (``frame`` is copied first). Raises the encoder's
        error, if it failed, so that the caller can close this output."""
        if self.error is not None:
            raise RuntimeError(f"the recording {self.path} failed: {self.error}") from self.error
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 uint8 frame, got {frame.dtype} {frame.shape}")
        item = (frame.copy(), t, index)
        if self.lossless:
            self._queue.put(item)
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            # The frame shown before it stays on in its place, at the end of the recording too.
            self.recording.hold_until(t + 1 / self.recording.fps)
            self.dropped += 1
            if self.dropped == 1:
                logger.warning("the encoder of %s cannot keep up: frames are left out of the recording (counted in "
                               "the stats as frames_dropped_by_recording)", self.path)
            if self.on_drop is not None:
                self.on_drop()

    def hold_until(self, t: float) -> None:
        """``FragmentedRecording.hold_until`` (it only sets how long the last frame lasts, read at ``close``)."""
        self.recording.hold_until(t)

    def _encode(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # drain: a lossless writer must not wait on a full queue after a failure
            if self.turns is not None and self._queue.empty():  # behind: no waiting, catch up
                self.turns.wait_for_break(BREAK_WAIT_S)
            frame, t, index = item
            try:
                self.recording.write(frame, t=t, index=index)
            except Exception as err:  # noqa: BLE001 - raised in the caller's thread by the next write
                logger.debug("the recording %s failed with:", self.path, exc_info=err)
                self.error = err

    def close(self) -> None:
        """Encode what is queued, then close the recording (``FragmentedRecording.close``); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        if self.dropped:
            logger.info("%s: %d frames were left out because the encoder fell behind", self.path, self.dropped)
        self.recording.close()

    def __enter__(self) -> QueuedRecording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def live_recording(path: str | os.PathLike, *, fps: float, clock: str = "capture",
                   stats: PipelineStats | None = None) -> QueuedRecording:
    """A recording of the live loop: ``LIVE_X264`` on its own thread; frames dropped when the encoder falls behind
    (counted in ``stats`` as ``recording_dropped``), except with the ``frames`` clock (a file read losslessly), which
    keeps every frame.

    Args:
        path: The output file.
        fps: The input's frame rate.
        clock: ``capture`` or ``frames`` (``FragmentedRecording``).
        stats: Where dropped frames are counted.
    """
    recording = FragmentedRecording(path, fps=fps, clock=clock, x264=LIVE_X264,
                                    metadata={"title": "fomm-live recording"})
    return QueuedRecording(recording, lossless=clock == "frames", turns=MODEL_TURNS,
                           on_drop=None if stats is None else lambda: stats.count("recording_dropped"))


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
