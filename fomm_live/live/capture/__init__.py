"""Capture: where the live loop's driving frames come from.

Owns: naming and opening cameras (``cameras``), the frame sources behind one interface and the capture thread that
timestamps their frames (``sources``), and the driving input of file-to-file animation (``driving``).
May import: ``live.media``, ``live.errors``, ``live.stats`` (capture times); OpenCV lazily. Nothing from the loop, the
outputs or the framing rooms (they import this one).
"""
