"""fomm-live's running program: capture, face tracking, calibration, the live pipeline, sinks, hotkeys, the CLI.

What this room is for: everything between a camera frame and the outputs, and the command line (``live/cli/``). What
it may import: ``models`` and ``kernels`` (never the other way); ``benchmarks`` only from the CLI's ``bench``
command. OpenCV, PyAV, mediapipe and pyvirtualcam are imported lazily, where they are used.
"""

import os as _os

# OpenCV reads these once, at its first import, and mediapipe imports OpenCV too: set them before anything can.
# The pixel limit makes the image decoders refuse decompression bombs before decoding them (see live.media).
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(50_000_000))
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
