"""Driving clips with a real face and known motion, made by moving the bundled public-domain portrait."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fomm_live.live.media import Mp4Writer, cv2, read_image
from fomm_live.live.paths import DEFAULT_PORTRAIT


def portrait() -> np.ndarray:
    return read_image(DEFAULT_PORTRAIT)


def place(image: np.ndarray, *, width: int = 640, height: int = 480, angle: float = 0.0, scale: float = 0.8,
          tx: float = 0.0, ty: float = 0.0) -> np.ndarray:
    """The portrait rotated by ``angle`` degrees and scaled about its centre, then centred in a width x height frame
    and shifted by (tx, ty) pixels."""
    cv = cv2()
    h, w = image.shape[:2]
    matrix = cv.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[0, 2] += (width - w) / 2 + tx
    matrix[1, 2] += (height - h) / 2 + ty
    return cv.warpAffine(image, matrix, (width, height), flags=cv.INTER_LINEAR, borderMode=cv.BORDER_REPLICATE)


def moving_frames(n: int = 60, *, still: int = 20, blank: tuple[int, int] | None = None,
                  sway_until: int | None = None) -> list[np.ndarray]:
    """``still`` steady frames, then a head sway (rotation +-8 degrees, translation +-30 px) until ``sway_until``
    (then still again, back at the start pose); frames in ``blank`` (start, stop) are empty grey (no face)."""
    image = portrait()
    frames = []
    for i in range(n):
        phase = max(0, i - still) / 25.0
        if sway_until is not None and i >= sway_until:
            phase = 0.0
        frame = place(image, angle=8 * np.sin(2 * np.pi * phase / 2), tx=30 * np.sin(np.pi * phase))
        if blank and blank[0] <= i < blank[1]:
            frame = np.full_like(frame, 90)
        frames.append(frame)
    return frames


def still_noisy_frames(n: int = 50, *, sigma: float = 4.0, seed: int = 0) -> list[np.ndarray]:
    """The same portrait every frame with camera-like sensor noise (gaussian, ``sigma`` levels)."""
    rng = np.random.default_rng(seed)
    base = place(portrait()).astype(np.float32)
    return [np.clip(base + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8) for _ in range(n)]


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    with Mp4Writer(path, fps=fps) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def write_clip_with_audio(path: Path, frames: list[np.ndarray], *, codec: str = "aac", fps: int = 25,
                          rate: int = 44100) -> Path:
    """A clip with a 440 Hz tone as long as its frames, audio in ``codec`` (``pcm_s16le`` needs a .mov path)."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        audio = out.add_stream(codec, rate=rate)
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        t = np.arange(int(rate * len(frames) / fps)) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)[None]
        samples = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        samples.rate = rate
        for stream, item in ((audio, samples), (audio, None), (video, None)):
            for packet in stream.encode(item):
                out.mux(packet)
    return path
