"""The disclosure label's dark box drawn from a table of levels gives the same frame as the float reference."""

import numpy as np

from fomm_live.live.compose import add_label, label_layout
from fomm_live.live.media import cv2


def float_reference_label(frame: np.ndarray, text: str = "AI-generated") -> np.ndarray:
    """The label as it was drawn before the table, at the same place: the box as float32, times 0.4, truncated to
    uint8."""
    cv = cv2()
    out = frame.copy()
    h, w = out.shape[:2]
    at = label_layout(h, w, text)
    box = out[at.y0:h, at.x0:w].astype(np.float32)
    out[at.y0:h, at.x0:w] = (box * 0.4).astype(np.uint8)
    cv.putText(out, text, at.origin, cv.FONT_HERSHEY_SIMPLEX, at.scale, (255, 255, 255), at.thickness, cv.LINE_AA)
    return out


def test_label_darkening_table_equals_the_float_reference_on_every_level_and_odd_sizes():
    rng = np.random.default_rng(3)
    for h, w in [(720, 1280), (257, 391), (480, 640)]:
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        frame[-4:, -64:, 0] = np.arange(256).reshape(4, 64)  # every level inside the box
        got, want = add_label(frame), float_reference_label(frame)
        diff = np.argwhere(got != want)
        assert diff.size == 0, f"{h}x{w}: first mismatch at {diff[0].tolist()}: {got[tuple(diff[0])]} != " \
                               f"{want[tuple(diff[0])]}"


def test_label_leaves_its_input_frame_untouched():
    frame = np.full((360, 640, 3), 200, np.uint8)
    labelled = add_label(frame)
    assert (frame == 200).all()
    assert (labelled[-5:, -5:] < 200).all()
