"""The loop: the live pipeline that drives a backend from captured frames to the sinks.

Owns: the threads and hand-offs (``pipeline``, ``handoff``, ``stall``, ``shutdown``), the rule for failed frames
(``failures``), the two stages and what each owns (``stages``: tracking, then keypoints, smoothing, calibration,
render and composition), keyframes on a thread of their own and in-betweens for the frames between them
(``keyframes``, with the renderer of ``live.inbetween``), hotkeys (``hotkeys``), the preview's HUD (``overlay``),
motion smoothing (``smoothing``) and when to calibrate (``calibration``).
May import: every other room of ``live`` (capture, framing, output, the backend contract, ``live.stats``); never
``live.cli``.
"""
