"""mediapipe's face mesh, quietly: 478 landmarks per image, its native start-up chatter kept off the terminal.

The model is the one bundled in the mediapipe 0.10.21 wheel, so it runs offline: 468 mesh points and, with
``refine_landmarks``, 10 iris points (478 in all). mediapipe is imported on first use, not at import time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fomm_live.live.landmarks.points import ALL_POINTS
from fomm_live.live.media import quiet_native_output, read_only

# One landmark of a serialised NormalizedLandmarkList as the face mesh writes it: field 1 (a landmark) of 15 bytes
# holding x, y and z (fields 1-3, 32-bit floats, little-endian), no visibility or presence.
_WIRE_LANDMARK = np.dtype([("tag", "u1"), ("size", "u1"), ("x_tag", "u1"), ("x", "<f4"), ("y_tag", "u1"),
                           ("y", "<f4"), ("z_tag", "u1"), ("z", "<f4")])
_WIRE_TAGS = {"tag": 0x0A, "size": 15, "x_tag": 0x0D, "y_tag": 0x15, "z_tag": 0x1D}


def landmark_array(landmarks: Any) -> np.ndarray:
    """A mediapipe NormalizedLandmarkList as an N x 3 float32 array of (x, y, z).

    Read from its serialised bytes in a few numpy calls when every landmark has exactly x, y and z (the face mesh's
    output; 0.03 against 0.3 ms for 478 landmarks read one attribute at a time, the tracking thread holding the GIL
    all that time), else attribute by attribute. The same float32 values either way.
    """
    raw = landmarks.SerializeToString()
    count = len(landmarks.landmark)
    if len(raw) == count * _WIRE_LANDMARK.itemsize:
        wire = np.frombuffer(raw, dtype=_WIRE_LANDMARK, count=count)
        if all((wire[name] == value).all() for name, value in _WIRE_TAGS.items()):
            return np.stack([wire["x"], wire["y"], wire["z"]], axis=1).astype(np.float32)
    return np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float32).reshape(count, 3)


class FaceMesh:
    """One face, 478 x 3 float32 normalised landmarks per RGB image (see ``live.landmarks`` for the convention).

    Two graphs are kept, opened on first use: the image mode (face detection on every image) and the video mode
    (landmarks seed the next image's region). ``close()`` releases them and is safe to call twice.

    Args:
        min_detection_confidence: mediapipe's face detection threshold.
    """

    def __init__(self, *, min_detection_confidence: float = 0.5) -> None:
        self.min_detection_confidence = min_detection_confidence
        self._graphs: dict[bool, Any] = {}  # static_image_mode -> mediapipe FaceMesh, created on first use
        self._warm: set[bool] = set()  # graphs that have run once

    def graph(self, static: bool) -> Any:
        """The mediapipe graph of this mode (``static``: image mode), started and warmed up on first use.

        Args:
            static: True for the image mode, False for the video (tracking) mode.
        """
        graph = self._graphs.get(static)
        if graph is None:
            with quiet_native_output():  # mediapipe's start-up chatter on the native stdout/stderr
                import mediapipe as mp

                graph = mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1,
                                                        refine_landmarks=True,
                                                        min_detection_confidence=self.min_detection_confidence,
                                                        min_tracking_confidence=0.5)
                # Its calculators start asynchronously and print their start-up lines then: a blank frame inside
                # this block waits for them (no face, so no tracking state is left behind).
                graph.process(np.zeros((64, 64, 3), np.uint8))
            self._graphs[static] = graph
            self._warm.discard(static)
        return graph

    def landmarks(self, image: np.ndarray, *, static: bool) -> np.ndarray | None:
        """The face's 478 x 3 float32 normalised landmarks, or None when there is no face.

        Args:
            image: H x W x 3 uint8 RGB (not checked here).
            static: Image mode (True) or video mode (False).
        """
        graph = self.graph(static)
        image = read_only(image)  # handed to mediapipe without a copy
        if static in self._warm:
            result = graph.process(image)
        else:  # the first run of a graph prints its inference warnings
            with quiet_native_output():
                result = graph.process(image)
            self._warm.add(static)
        faces = result.multi_face_landmarks
        if not faces:
            return None
        points = landmark_array(faces[0])  # 478 x 3
        if points.shape != (ALL_POINTS, 3):
            raise RuntimeError(f"mediapipe face mesh returned {points.shape[0]} landmarks, expected {ALL_POINTS}")
        return points

    def close(self) -> None:
        """Release the graphs (safe to call twice; ``landmarks`` would open them again)."""
        graphs, self._graphs = self._graphs, {}
        for graph in graphs.values():
            graph.close()
