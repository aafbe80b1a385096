"""fomm-live's running program: everything between a camera frame and the outputs, and the command line.

A map of the rooms (data flows down the list; a room imports only rooms above it, and ``cli`` imports them all):

    live/capture/    cameras, frame sources and the capture thread; the driving input of ``animate``
    live/face.py     face detection, the crop box and the crop           (avatars.py: the source photos, cropped)
    live/backends.py the backend contract (``Backend``, ``Rendered``) and the FOMM backend
    live/landmarks/  the no-weights landmark backend                     live/remote/  the FOMM on a server
    live/inbetween/  in-between frames: the newest keyframe moved by the face mesh's motion since its camera frame
    live/framing/    photo framing and the one compositor interface that pastes every render (``paste(rendered)``)
    live/output/     sinks: virtual camera, preview window, crash-proof MP4 recordings, the browser output
    live/loop/       the live pipeline: its threads, two stages, hotkeys, smoothing, calibration, HUD
    live/wiring.py   the running parts built from the runtime options (``options.py``); animate.py: file to file
    live/cli/        the command line: parses arguments, prints, one module per command

Beside them: ``media`` (image and video files), ``compose`` (fit, label, HUD text), ``stats``, ``filters`` (One Euro),
``errors``, ``paths``, ``democlip`` and ``doctor``. The environment switches are declared in ``common.switches``.

What it may import: ``models``, ``kernels`` and ``common`` (never the other way); ``benchmarks`` only from the CLI's
``bench`` command. OpenCV, PyAV, mediapipe and pyvirtualcam are imported lazily, where they are used.
"""

import os as _os

# OpenCV reads these once, at its first import, and mediapipe imports OpenCV too: set them before anything can.
# The pixel limit makes the image decoders refuse decompression bombs before decoding them (see live.media).
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(50_000_000))
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
