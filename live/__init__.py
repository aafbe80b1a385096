"""fomm-live's running program: media input/output, composition, and the command line.

OpenCV, PyAV, mediapipe and pyvirtualcam are imported lazily, where they are used.
"""
