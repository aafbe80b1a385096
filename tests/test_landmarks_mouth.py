"""The wide-open mouth (``benchmarks.mouth_sheet``): its inside is shaded from the lips inward, lighter just inside
the lips than deep in the mouth, on the bundled photo, the drawn portrait and the anime faces. The flat dark fill it
replaces scored 12-20 grey levels (17.9 on the photo): only the anti-aliased rim of the teeth lightened its ring.
"""

from __future__ import annotations

import pytest

from fomm_live.benchmarks import mouth_sheet
from fomm_live.benchmarks.faces import SIZE
from fomm_live.live.landmarks import LandmarkBackend

PHOTO_SHADING = 24.0  # grey levels, rim over core (see ``mouth_sheet.inward_shading``)
DRAWN_SHADING = 21.0


@pytest.fixture(scope="module")
def figures() -> dict[str, dict[str, float]]:
    with LandmarkBackend(size=SIZE) as backend:
        return mouth_sheet.run(backend)[1]


def test_the_photos_wide_mouth_is_shaded_from_the_lips_inward(figures: dict) -> None:
    print(figures["photo"])
    assert figures["photo"]["inward_shading"] >= PHOTO_SHADING


@pytest.mark.parametrize("name", ["drawn", "anime_a", "anime_b", "anime_c"])
def test_a_drawn_wide_mouth_is_shaded_from_the_lips_inward(name: str, figures: dict) -> None:
    print(figures[name])
    assert figures[name]["inward_shading"] >= DRAWN_SHADING
