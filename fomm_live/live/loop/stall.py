"""The stall rule: when the output thread sends the last frame again, and what it says while doing so.

A live output (a virtual camera in a meeting) should show a still picture rather than freeze when the camera is lost
or goes silent. A slow model is not a stall: its frames come out at its own rate, and repeating frames in between
would only add copies and a wrong "waiting for the camera" note. The rule tells the two apart with three
measurements: whether the capture is still delivering frames (``frames_in`` grows), whether a captured frame is still
in the stages (in flight: the model is working on it), and the rate at which processed frames come out (an output gap
is only suspicious when it is several times the measured processing interval).
"""

from __future__ import annotations

from dataclasses import dataclass

SILENT_FRAMES = 3  # input frame intervals without a new frame before a camera counts as silent
MIN_SILENCE_S = 0.25  # below this a gap is normal USB/driver jitter, even at 60 fps
INTERVAL_SMOOTHING = 0.2  # weight of the newest output interval in the running processing interval
CAMERA_LOST = "camera lost: reconnecting"
CAMERA_SILENT = "waiting for the camera"


@dataclass
class StallDecision:
    """Repeat the last frame now, with this status line."""

    status: str


class StallRule:
    """Decides when the output repeats its last frame.

    Args:
        fps: The output rate: repeats are sent at this rate.
        live: Whether the input is live (a camera, a stream or a paced file); a file read losslessly never stalls.

    Call ``input_seen(now)`` whenever the capture has delivered a new frame, ``output_sent(now)`` for each processed
    frame sent, and ``decide(now, camera_lost=..., in_flight=...)`` while no processed frame is waiting.
    """

    def __init__(self, *, fps: float, live: bool) -> None:
        self.fps = fps
        self.live = live
        self.last_input_at: float | None = None
        self.last_output_at: float | None = None
        self.last_sent_at = 0.0  # real or repeated
        self.interval: float | None = None  # running interval between processed output frames, seconds

    def input_seen(self, now: float) -> None:
        self.last_input_at = now

    def output_sent(self, now: float) -> None:
        if self.last_output_at is not None:
            gap = now - self.last_output_at
            self.interval = gap if self.interval is None else (
                INTERVAL_SMOOTHING * gap + (1 - INTERVAL_SMOOTHING) * self.interval)
        self.last_output_at = now
        self.last_sent_at = now

    def silence_limit(self) -> float:
        """How long without a new input frame (and without output) counts as a silent camera, seconds."""
        limit = max(MIN_SILENCE_S, SILENT_FRAMES / self.fps)
        if self.interval is not None:
            limit = max(limit, SILENT_FRAMES * self.interval)  # frames still in flight in a slow model come first
        return limit

    def decide(self, now: float, *, camera_lost: bool, in_flight: bool = False) -> StallDecision | None:
        """Whether to send the last frame again now (at most once per output frame interval).

        Args:
            now: ``perf_counter`` seconds.
            camera_lost: The capture is reconnecting a lost camera (repeat whatever else holds).
            in_flight: A captured frame is still being processed (a slow model, not a silent camera).
        """
        if self.last_output_at is None or now - self.last_sent_at < 1.0 / self.fps:
            return None
        if camera_lost:
            return StallDecision(CAMERA_LOST)
        if not self.live or in_flight:
            return None
        limit = self.silence_limit()
        input_silent = self.last_input_at is None or now - self.last_input_at > max(MIN_SILENCE_S,
                                                                                     SILENT_FRAMES / self.fps)
        output_silent = now - self.last_output_at > limit
        return StallDecision(CAMERA_SILENT) if input_silent and output_silent else None

    def repeated(self, now: float) -> None:
        self.last_sent_at = now
