"""Strong turns on a large photo in photo framing (``benchmarks.large_photo``): the bundled portrait enlarged to an
1800 x 1320 three-quarter photo, framed at 1280 x 720, turned 30 degrees each way, pasted back at the output's
resolution along the warp. Where the nose folds over the far cheek the warp tears; there the face used to show a
dark, jagged seam down the cheek (tear darkness 19.4 grey levels at +30 degrees, 8.8 at -30).
"""

from __future__ import annotations

import pytest

from fomm_live.benchmarks import face_measures as fm
from fomm_live.live.landmarks import LandmarkBackend

DARKNESS_LIMIT = 15.0  # grey levels of black-hat along the tears: the nose's own edge and the far eye's corner


@pytest.fixture(scope="module")
def figures() -> dict[str, list[float]]:
    with LandmarkBackend() as backend:
        return fm.framed_turns(backend, (-30.0, 30.0, 0.0))


def test_a_30_degree_turn_on_a_large_photo_tears_inside_the_face(figures: dict) -> None:
    """Not a measure of quality: the case must tear, or the darkness test below would prove nothing."""
    assert figures["tear_darkness"][0] > 0 and figures["tear_darkness"][1] > 0
    assert figures["tear_darkness"][2] == 0.0  # at rest nothing tears


def test_no_dark_seam_along_the_tears_of_a_30_degree_turn_on_a_large_photo(figures: dict) -> None:
    print(figures)
    assert max(figures["tear_darkness"][:2]) < DARKNESS_LIMIT
