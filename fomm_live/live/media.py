"""Reading images, writing frame folders and MP4 files, and checking that a video can be read before anything slow
starts (``check_video``; driving videos are read by ``live.capture.driving``).

Images come from anywhere, so decoding is bounded: OpenCV refuses images over ``MAX_IMAGE_PIXELS`` before decoding
them (its ``OPENCV_IO_MAX_IMAGE_PIXELS`` limit), and files over ``MAX_IMAGE_BYTES`` are not read at all.
Outputs are written to a temporary name and renamed when complete, so an interrupted run leaves no half-written file
under the name the user asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np

from fomm_live.live.errors import UserError

logger = logging.getLogger(__name__)

MAX_IMAGE_PIXELS = int(os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"])  # 50 MP unless overridden; set in live/__init__
MAX_IMAGE_BYTES = 200 << 20
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")  # written as video; any other output name is a folder of PNG frames
SYNTHETIC_TAG = "Synthetic video: AI-generated with fomm-live (First Order Motion Model)"


def cv2():
    """OpenCV, imported lazily (``live/__init__`` has set its pixel limit and log level before any import)."""
    import cv2 as _cv2

    return _cv2


def _flush_c_stdio() -> None:
    """Flush the C library's stdio buffers (native code may have written through them)."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C runtime reachable this way (Windows): nothing buffered to lose
        pass


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Silence what native libraries print straight to file descriptors 1 and 2 (mediapipe's TFLite and absl
    start-up chatter) for the duration of the block. Python exceptions still propagate with their messages."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no usable descriptors: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                _flush_c_stdio()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def read_only(image: np.ndarray) -> np.ndarray:
    """A read-only, C-contiguous view of ``image`` (a contiguous copy where it is not), for mediapipe.

    mediapipe's ``process()`` copies a writeable array into its own image frame and references a read-only one: a
    1280 x 720 camera frame's copy was 0.2-0.3 of the face detector's 2.0 ms CPU a call (2-core Xeon), the same
    detections bit for bit. ``process()`` waits until its graph is idle, so the graph is done with the pixels when it
    returns; the caller's array stays writeable.
    """
    view = np.ascontiguousarray(image).view()
    view.flags.writeable = False
    return view


_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"BM": "BMP", b"II*\x00": "TIFF",
          b"MM\x00*": "TIFF"}


def sniff_image(head: bytes) -> str | None:
    """The image format by its magic bytes (None when it is none that fomm-live reads)."""
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def _truncated(kind: str, data: np.ndarray) -> bool:
    """PNG files end with an IEND chunk and JPEG files with an EOI marker; a file cut short has neither (decoders
    would otherwise hand back a half-grey picture). Some cameras append data after the EOI marker, so for JPEG it is
    looked for in the second half of the file (0xFF 0xD9 cannot occur inside entropy-coded data)."""
    if kind == "PNG":
        return b"IEND" not in data[-1024:].tobytes()
    if kind == "JPEG":
        return b"\xff\xd9" not in data[len(data) // 2:].tobytes()
    return False


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 RGB (grayscale, alpha, CMYK and 16-bit inputs converted; EXIF rotation
    applied, as the user sees the photo).

    Raises:
        UserError: missing, empty, not an image, truncated, too large (refused before decoding), or corrupt.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"image not found: {path}")
    if not path.is_file():
        raise UserError(f"{path} is a folder, not an image")
    size = path.stat().st_size
    if size == 0:
        raise UserError(f"{path} is empty, not an image")
    if size > MAX_IMAGE_BYTES:
        raise UserError(f"{path} is {size >> 20} MB, larger than the {MAX_IMAGE_BYTES >> 20} MB image limit")
    data = np.fromfile(path, dtype=np.uint8)
    kind = sniff_image(data[:16].tobytes())
    if kind is None:
        raise UserError(f"{path} is not an image (PNG, JPEG, BMP, TIFF or WebP expected)")
    if _truncated(kind, data):
        raise UserError(f"{path} is a truncated {kind} file (it ends before the image does)")
    cv = cv2()
    try:
        bgr = cv.imdecode(data, cv.IMREAD_COLOR)  # 8-bit BGR, EXIF orientation applied
    except cv.error as err:
        if "MAX_IMAGE" in str(err):
            raise UserError(f"{path} is larger than {MAX_IMAGE_PIXELS // 1_000_000} megapixels; refused before "
                            "decoding (a photo of a face needs far fewer)") from err
        raise UserError(f"{path} could not be decoded as {kind}") from err
    if bgr is None:
        raise UserError(f"{path} could not be decoded: a corrupt or unsupported {kind} file")
    return cv.cvtColor(bgr, cv.COLOR_BGR2RGB)


def check_video(path: str | os.PathLike, *, what: str = "video") -> None:
    """Fail in one line, before anything slow (a model load, an int8 calibration) happens, when ``path`` is not a
    video whose first frame can be read: missing, a folder, empty, or not a video (a text file named .mp4). FFmpeg's
    own complaint ("moov atom not found") is kept off the terminal; the error names the file instead.

    Args:
        path: The video file.
        what: What the file is for, in the message (``driving video``, ``camera or video``).

    Raises:
        UserError: one line naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    if not path.is_file():
        raise UserError(f"{path} is a folder, not a video")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty, not a video")
    cv = cv2()
    with quiet_native_output():  # FFmpeg prints straight to the terminal's descriptor 2 from native code
        capture = cv.VideoCapture(str(path))
        try:
            readable = capture.isOpened() and capture.read()[0]
        finally:
            capture.release()
    if not readable:
        raise UserError(f"{path} is not a video that can be read (not a video file, or damaged)")


MIN_FREE_BYTES = 200 << 20  # a few minutes of 640x480 H.264 at CRF 18, with room to finalise the file


def check_writable(folder: Path) -> None:
    """Refuse up front an output folder that is missing, not writable, or on a nearly full disk."""
    import shutil

    folder = Path(folder) if str(folder) else Path(".")
    if not folder.is_dir():
        raise UserError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise UserError(f"output folder is not writable: {folder}")
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise UserError(f"only {free >> 20} MB free on the disk of {folder}; free some space (at least "
                        f"{MIN_FREE_BYTES >> 20} MB) or write elsewhere")


class FrameWriter(Protocol):
    """Where animated frames go; ``close()`` finalises the output and is safe to call twice."""

    def write(self, frame: np.ndarray) -> None: ...

    def close(self) -> None: ...


def _check_frame(frame: np.ndarray) -> None:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 frame, got {frame.dtype} {frame.shape}")


class FrameDirWriter:
    """Writes ``00000.png``, ``00001.png``, ... into a folder (created if missing)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        check_writable(self.directory.parent if not self.directory.exists() else self.directory)
        self.directory.mkdir(exist_ok=True)
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        _check_frame(frame)
        cv = cv2()
        final = self.directory / f"{self.count:05d}.png"
        partial = final.with_name(f".{final.name}.partial.png")
        if not cv.imwrite(str(partial), cv.cvtColor(frame, cv.COLOR_RGB2BGR)):
            raise UserError(f"could not write {final}")
        partial.replace(final)
        self.count += 1

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameDirWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Mp4Writer:
    """H.264 MP4 through PyAV, tagged as synthetic; written as ``NAME.partial.mp4`` and renamed on ``close()``.

    Args:
        path: Output file.
        fps: Frame rate.
        metadata: Extra container tags; a ``comment`` saying the video is synthetic is always added.
    """

    def __init__(self, path: str | os.PathLike, *, fps: float, metadata: dict[str, str] | None = None) -> None:
        import av

        self.path = Path(path)
        check_writable(self.path.parent)
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self._av = av
        self.fps = Fraction(fps).limit_denominator(1001)
        try:
            self.container = av.open(str(self.partial), mode="w", format="mp4")
        except (OSError, av.error.FFmpegError) as err:
            raise UserError(f"cannot write {self.path}: {err}") from err
        self.container.metadata.update({"comment": SYNTHETIC_TAG, **(metadata or {})})
        self.stream = None
        self.count = 0
        self.closed = False

    def write(self, frame: np.ndarray) -> None:
        _check_frame(frame)
        if self.stream is None:
            h, w = frame.shape[:2]
            self.stream = self.container.add_stream("libx264", rate=self.fps)
            self.stream.width, self.stream.height = w - w % 2, h - h % 2  # yuv420p needs even sizes
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": "18"}
        frame = frame[: self.stream.height, : self.stream.width]
        video_frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self.stream.encode(video_frame):
            self.container.mux(packet)
        self.count += 1

    def close(self) -> None:
        """Flush the encoder and publish the file under its final name; an empty recording is discarded."""
        if self.closed:
            return
        self.closed = True
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
        if self.count:
            self.partial.replace(self.path)
        else:
            self.partial.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_writer(path: str | os.PathLike, *, fps: float) -> FrameWriter:
    """``*.mp4`` (or another video suffix) -> Mp4Writer; anything else is a folder of PNG frames."""
    path = Path(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return Mp4Writer(path, fps=fps)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} exists and is not a folder; give a .mp4 name or a folder for PNG frames")
    return FrameDirWriter(path)


# Audio codecs that common players accept inside MP4; others (PCM from .mov/.avi, ...) are re-encoded to AAC.
_MP4_AUDIO = frozenset({"aac", "mp3", "alac", "opus", "ac3", "eac3", "flac"})


def copy_audio(video: str | os.PathLike, audio_from: str | os.PathLike) -> bool:
    """Mux the first audio track of ``audio_from`` into the MP4 ``video`` (in place, through a temporary file).

    The audio is copied as it is when MP4 can hold its codec, else re-encoded to AAC. Returns False (and leaves the
    video alone) when ``audio_from`` has no audio track or is not a media file.
    """
    import av

    video, audio_from = Path(video), Path(audio_from)
    try:
        with av.open(str(audio_from)) as probe:
            if not probe.streams.audio:
                return False
            codec = probe.streams.audio[0].codec_context.name
    except (av.error.FFmpegError, OSError):
        return False
    partial = video.with_name(f".{video.stem}.audio.partial{video.suffix}")
    try:
        copy = codec in _MP4_AUDIO
        try:
            _mux_audio(av, video, audio_from, partial, copy=copy)
        except (av.error.FFmpegError, ValueError):
            if not copy:
                raise
            copy = False
            _mux_audio(av, video, audio_from, partial, copy=False)
        if not copy:
            logger.info("the driving audio (%s) was re-encoded to AAC for MP4", codec)
        partial.replace(video)
    finally:
        partial.unlink(missing_ok=True)
    return True


def _mux_audio(av, video: Path, audio_from: Path, out: Path, *, copy: bool) -> None:
    with av.open(str(video)) as vin, av.open(str(audio_from)) as ain, av.open(str(out), "w", format="mp4") as dst:
        dst.metadata.update(vin.metadata)
        v_in, a_in = vin.streams.video[0], ain.streams.audio[0]
        v_out = dst.add_stream_from_template(v_in)
        if copy:
            a_out = dst.add_stream_from_template(a_in)
        else:
            a_out = dst.add_stream("aac", rate=a_in.rate or 48000)
        for packet in vin.demux(v_in):
            if packet.dts is not None:
                packet.stream = v_out
                dst.mux(packet)
        video_end = float(v_in.duration * v_in.time_base) if v_in.duration else None
        for packet in ain.demux(a_in):
            if packet.dts is None:
                continue
            if video_end is not None and packet.pts is not None and float(packet.pts * a_in.time_base) > video_end:
                break  # the recording is as long as its video
            if copy:
                packet.stream = a_out
                dst.mux(packet)
            else:
                for frame in packet.decode():
                    frame.pts = None
                    dst.mux(a_out.encode(frame))
        if not copy:
            dst.mux(a_out.encode(None))
