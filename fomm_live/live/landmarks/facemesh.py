"""mediapipe's face mesh, quietly and cheaply: 478 landmarks per image, its native start-up chatter kept off the
terminal, the image handed over without a copy and the landmarks read from the graph's own output.

The model is the one bundled in the mediapipe 0.10.21 wheel, so it runs offline: 468 mesh points and, with
``refine_landmarks``, 10 iris points (478 in all). mediapipe is imported on first use, not at import time.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from fomm_live.live.landmarks.points import ALL_POINTS
from fomm_live.live.media import quiet_native_output, read_only

logger = logging.getLogger(__name__)

# One landmark of a serialised NormalizedLandmarkList as the face mesh writes it: field 1 (a landmark) of 15 bytes
# holding x, y and z (fields 1-3, 32-bit floats, little-endian), no visibility or presence.
_WIRE_LANDMARK = np.dtype([("tag", "u1"), ("size", "u1"), ("x_tag", "u1"), ("x", "<f4"), ("y_tag", "u1"),
                           ("y", "<f4"), ("z_tag", "u1"), ("z", "<f4")])
_WIRE_TAGS = {"tag": 0x0A, "size": 15, "x_tag": 0x0D, "y_tag": 0x15, "z_tag": 0x1D}


def wire_landmarks(raw: bytes) -> np.ndarray | None:
    """A serialised NormalizedLandmarkList as an N x 3 float32 array of (x, y, z), read in a few numpy calls, when
    every landmark has exactly x, y and z (the face mesh's output); else None."""
    if not raw or len(raw) % _WIRE_LANDMARK.itemsize:
        return None
    wire = np.frombuffer(raw, dtype=_WIRE_LANDMARK)
    if not all((wire[name] == value).all() for name, value in _WIRE_TAGS.items()):
        return None
    return np.stack([wire["x"], wire["y"], wire["z"]], axis=1).astype(np.float32)


def landmark_array(landmarks: Any) -> np.ndarray:
    """A mediapipe NormalizedLandmarkList as an N x 3 float32 array of (x, y, z).

    Read from its serialised bytes (``wire_landmarks``) when every landmark has exactly x, y and z (the face mesh's
    output; 0.03 against 0.3 ms for 478 landmarks read one attribute at a time, the tracking thread holding the GIL
    all that time), else attribute by attribute. The same float32 values either way.
    """
    raw = landmarks.SerializeToString()
    count = len(landmarks.landmark)
    if len(raw) == count * _WIRE_LANDMARK.itemsize:
        points = wire_landmarks(raw)
        if points is not None:
            return points
    return np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float32).reshape(count, 3)


def solution_output(solution: Any, image: np.ndarray, stream: str) -> list[bytes] | None:
    """One image through a mediapipe solution's graph, sent as its ``process()`` sends it (an SRGB image packet on
    the solution's simulated 30 fps clock, then a wait until the graph is idle), and the messages the graph wrote on
    the output ``stream``, serialised (None: nothing written).

    ``process()`` builds a new named-tuple class on every call and parses the output into Python messages (which
    ``landmark_array`` serialised again). Read here instead, the face mesh took 0.29-0.31 against 0.64-0.69 ms of the
    tracking thread's CPU a frame in the landmark loop at 1280 x 720, the face detector 0.23-0.30 against 0.44-0.55
    ms, all of it holding the GIL (2-core Xeon, load 5-7). This reads mediapipe 0.10.21's ``SolutionBase``
    internals (``_graph``, ``_graph_outputs``, ``_simulated_timestamp``); callers fall back to ``process()`` on an
    AttributeError or ImportError.

    Args:
        solution: A started ``mediapipe.solutions`` solution with one image input named ``image``.
        image: H x W x 3 uint8 RGB; read-only, so that the packet references it instead of copying it.
        stream: The output stream (``multi_face_landmarks``, ``detections``).
    """
    from mediapipe.python import packet_creator
    from mediapipe.python._framework_bindings import _packet_getter, image_frame

    solution._graph_outputs.clear()
    solution._simulated_timestamp += 33333  # as process() steps it
    packet = packet_creator.create_image(image, image_format=image_frame.ImageFormat.SRGB)
    solution._graph.add_packet_to_input_stream(stream="image", packet=packet.at(solution._simulated_timestamp))
    solution._graph.wait_until_idle()
    found = solution._graph_outputs.get(stream)
    if found is None or found.is_empty():
        return None
    return _packet_getter._get_serialized_proto_list(found)


class SolutionReader:
    """One output stream of mediapipe solutions, read from their graphs (``solution_output``) until mediapipe's
    internals turn out different, then through ``process()``, saying so once.

    Args:
        name: What is read, for the warning (``face mesh``, ``face detector``).
        stream: The output stream (``multi_face_landmarks``, ``detections``).
    """

    def __init__(self, name: str, stream: str) -> None:
        self.name, self.stream = name, stream
        self.direct = True  # False once a direct read failed: ``process()`` from then on

    def read(self, solution: Any, image: np.ndarray) -> list[bytes]:
        """The messages ``solution`` writes on the stream for ``image``, serialised (empty: none)."""
        if self.direct:
            try:
                return solution_output(solution, image, self.stream) or []
            except (AttributeError, ImportError) as err:
                logger.warning("mediapipe's %s is read through process() (its internals differ: %s)", self.name, err)
                self.direct = False
        return [message.SerializeToString() for message in getattr(solution.process(image), self.stream) or []]


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
        self._reader = SolutionReader("face mesh", "multi_face_landmarks")

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
            points = self._run(graph, image)
        else:  # the first run of a graph prints its inference warnings
            with quiet_native_output():
                points = self._run(graph, image)
            self._warm.add(static)
        if points is None:
            return None
        if points.shape != (ALL_POINTS, 3):
            raise RuntimeError(f"mediapipe face mesh returned {points.shape[0]} landmarks, expected {ALL_POINTS}")
        return points

    def _run(self, graph: Any, image: np.ndarray) -> np.ndarray | None:
        """The first face's N x 3 landmarks in ``image`` (None: no face)."""
        faces = self._reader.read(graph, image)
        if not faces:
            return None
        points = wire_landmarks(faces[0])
        if points is None:  # a layout the fast read does not know: parsed as a message
            from mediapipe.framework.formats import landmark_pb2

            points = landmark_array(landmark_pb2.NormalizedLandmarkList.FromString(faces[0]))
        return points

    def close(self) -> None:
        """Release the graphs (safe to call twice; ``landmarks`` would open them again)."""
        graphs, self._graphs = self._graphs, {}
        for graph in graphs.values():
            graph.close()
