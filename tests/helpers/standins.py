"""Stand-ins shared by the tests of the live loop: frame sources, cameras that fail, backends that fail or are slow,
and the tiny golden FOMM backend they wrap."""

from __future__ import annotations

import time

import numpy as np
from conftest import golden_dir

from fomm_live.live.backends import FommBackend
from fomm_live.models import Animator


def tiny_backend() -> FommBackend:
    """The FOMM backend with the tiny golden model on the CPU."""
    folder = golden_dir("tiny")
    return FommBackend(Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu"))


class ListSource:
    """A FrameSource over frames in memory (a file-like source: lossless, fps 25)."""

    is_file = True
    fps = 25.0
    description = "frames in memory"

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = frames
        self.height, self.width = frames[0].shape[:2]
        self.position = 0
        self.closed = False

    def read(self) -> np.ndarray | None:
        if self.position >= len(self.frames):
            return None
        self.position += 1
        return self.frames[self.position - 1]

    def rewind(self) -> bool:
        self.position = 0
        return True

    def close(self) -> None:
        self.closed = True


class FlakyCamera(ListSource):
    """A live source (paced by itself, 10 ms a frame) that dies after ``fail_at`` frames; reopening gives a working
    one."""

    is_file = False
    description = "flaky camera"

    def __init__(self, frames, fail_at: int | None) -> None:
        super().__init__(frames)
        self.fail_at = fail_at

    def read(self) -> np.ndarray | None:
        if self.fail_at is not None and self.position >= self.fail_at:
            return None
        time.sleep(0.01)  # a camera's own pace: the loop must not read it faster than it delivers
        return super().read()


class WrappedBackend:
    """Wraps an animation backend and passes everything through; a subclass changes what it wants (``render``)."""

    def __init__(self, backend) -> None:
        self.inner = backend
        self.name, self.size = backend.name, backend.size

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def calibrated(self) -> bool:
        return self.inner.calibrated


class FlakyBackend(WrappedBackend):
    """Wraps a backend; ``render`` raises on the calls listed in ``fail_on`` (counted from 1), or on every call."""

    def __init__(self, backend, fail_on: set[int] | None = None, always: bool = False) -> None:
        super().__init__(backend)
        self.fail_on = fail_on or set()
        self.always = always
        self.calls = 0

    def render(self, motion, *, detail=False):
        self.calls += 1
        if self.always or self.calls in self.fail_on:
            raise RuntimeError("simulated failure in the generator")
        return self.inner.render(motion, detail=detail)


class SlowBackend(FommBackend):
    """The FOMM backend with a fixed extra delay per render (a slow model), for the pacing tests."""

    def __init__(self, animator: Animator, delay: float) -> None:
        super().__init__(animator)
        self.delay = delay

    def render(self, motion, *, detail=False):
        time.sleep(self.delay)
        return super().render(motion, detail=detail)
