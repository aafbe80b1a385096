"""mediapipe is handed the camera frame and the crop without a copy (``live.media.read_only``), and the face mesh's
landmarks are read from its graph's own output (``live.landmarks.facemesh.first_face_bytes``), yet they find exactly
what mediapipe's own ``process()`` finds on a writeable copy: the same face boxes, the same 478 x 3 landmarks in the
video and the image mode, bit for bit, on the bundled demo clip centred on a 1280 x 720 canvas (the live loop's input
in ``benchmarks.framing``).
"""

from __future__ import annotations

import numpy as np
import pytest

from fomm_live.benchmarks.common import bench_clip
from fomm_live.live.face import CropTracker, FaceDetector, crop_square
from fomm_live.live.landmarks.facemesh import FaceMesh, landmark_array, wire_landmarks
from fomm_live.live.media import cv2, read_only

FRAMES = 40


@pytest.fixture(scope="module")
def clip_frames() -> list[np.ndarray]:
    cv = cv2()
    cap = cv.VideoCapture(str(bench_clip((1280, 720))))
    frames = []
    while len(frames) < FRAMES:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv.cvtColor(bgr, cv.COLOR_BGR2RGB))
    cap.release()
    assert len(frames) == FRAMES
    return frames


def test_read_only_is_a_view_that_leaves_the_callers_array_writeable() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    view = read_only(image)
    assert np.shares_memory(view, image)
    assert not view.flags.writeable and view.flags.c_contiguous
    assert image.flags.writeable
    mirrored = image[:, ::-1]  # not contiguous: a contiguous copy
    assert read_only(mirrored).flags.c_contiguous
    np.testing.assert_array_equal(read_only(mirrored), mirrored)


def test_detector_and_face_mesh_find_what_process_finds_on_a_writeable_copy(clip_frames, caplog) -> None:
    import mediapipe as mp

    reference_detector = mp.solutions.face_detection.FaceDetection(min_detection_confidence=0.5, model_selection=0)
    reference_mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True,
                                                     min_detection_confidence=0.5, min_tracking_confidence=0.5)
    reference_still = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                                      min_detection_confidence=0.5, min_tracking_confidence=0.5)
    tracker = CropTracker()
    compared = 0
    with FaceDetector(fallback=False) as detector:  # the short-range model only, as the reference
        mesh = FaceMesh()
        try:
            for i, frame in enumerate(clip_frames):
                faces = detector.detect(frame)
                expected = reference_detector.process(frame.copy()).detections or []
                h, w = frame.shape[:2]
                boxes = [d.location_data.relative_bounding_box for d in expected]
                assert sorted(f.box for f in faces) == sorted((b.xmin * w, b.ymin * h, b.width * w, b.height * h)
                                                              for b in boxes), f"frame {i}"
                if not faces:
                    continue
                crop = crop_square(frame, tracker.update(faces[0], i / 25), 256)
                points = mesh.landmarks(crop, static=False)
                reference = reference_mesh.process(crop.copy()).multi_face_landmarks
                assert points is not None and reference, f"frame {i}"
                expected_points = landmark_array(reference[0])
                mismatch = np.argwhere(points != expected_points)
                assert mismatch.size == 0, f"frame {i}: first mismatching landmark {mismatch[0]}"
                compared += 1
                if i % 8 == 0:  # the image mode too
                    still = mesh.landmarks(crop, static=True)
                    expected_still = reference_still.process(crop.copy()).multi_face_landmarks
                    assert still is not None and expected_still, f"frame {i}"
                    np.testing.assert_array_equal(still, landmark_array(expected_still[0]), err_msg=f"frame {i}")
        finally:
            mesh.close()
            reference_detector.close()
            reference_mesh.close()
            reference_still.close()
    assert "through process()" not in caplog.text, "a direct read fell back: only process() was compared"
    # The short-range model finds no face on a few frames of the clip's turn (32 of 40 frames have one).
    assert compared >= 30, f"only {compared} of {FRAMES} frames had a face to compare"


def test_wire_landmarks_reads_only_the_layout_it_knows() -> None:
    from mediapipe.framework.formats import landmark_pb2

    plain = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in np.random.default_rng(3).normal(size=(7, 3)):
        plain.landmark.add(x=x, y=y, z=z)
    np.testing.assert_array_equal(wire_landmarks(plain.SerializeToString()), landmark_array(plain))
    visible = landmark_pb2.NormalizedLandmarkList()
    visible.landmark.add(x=0.1, y=0.2, z=0.3, visibility=0.5)
    assert wire_landmarks(visible.SerializeToString()) is None
    assert wire_landmarks(b"") is None


class _ProcessOnly:
    """A stand-in for a mediapipe face mesh solution without the internals ``solution_output`` reads: only
    ``process()``, which finds one face of 478 known landmarks."""

    def __init__(self) -> None:
        from mediapipe.framework.formats import landmark_pb2

        self.points = np.random.default_rng(4).random((478, 3)).astype(np.float32)
        self.face = landmark_pb2.NormalizedLandmarkList()
        for x, y, z in self.points:
            self.face.landmark.add(x=x, y=y, z=z)

    def process(self, image: np.ndarray):
        class Result:
            multi_face_landmarks = [self.face]

        return Result()

    def close(self) -> None:
        pass


def test_face_mesh_falls_back_to_process_with_one_warning(caplog) -> None:
    mesh = FaceMesh()
    stand_in = _ProcessOnly()
    mesh._graphs[False] = stand_in  # as if opened: no mediapipe graph is started
    image = np.zeros((32, 32, 3), np.uint8)
    with caplog.at_level("WARNING"):
        for _ in range(2):
            np.testing.assert_array_equal(mesh.landmarks(image, static=False), stand_in.points)
    assert caplog.text.count("read through process()") == 1
    mesh.close()


class _DetectionsOnly:
    """A stand-in for a mediapipe face detection solution without the internals ``solution_output`` reads: only
    ``process()``, which finds one face box."""

    def __init__(self) -> None:
        from mediapipe.framework.formats import detection_pb2

        self.detection = detection_pb2.Detection(score=[0.9])
        box = self.detection.location_data.relative_bounding_box
        box.xmin, box.ymin, box.width, box.height = 0.25, 0.5, 0.25, 0.25

    def process(self, image: np.ndarray):
        class Result:
            detections = [self.detection]

        return Result()

    def close(self) -> None:
        pass


def test_face_detector_falls_back_to_process_with_one_warning(caplog) -> None:
    with FaceDetector(fallback=False) as detector:
        detector._detectors[0].close()
        detector._detectors[0] = _DetectionsOnly()  # in place of the started graph
        image = np.zeros((40, 80, 3), np.uint8)
        with caplog.at_level("WARNING"):
            for _ in range(2):
                assert [face.box for face in detector.detect(image)] == [(20.0, 20.0, 20.0, 10.0)]
    assert caplog.text.count("read through process()") == 1
