"""The wide-open mouth (``benchmarks.mouth_sheet``): its inside is shaded from the lips inward, lighter just inside
the lips than deep in the mouth, on the bundled photo, the drawn portrait and the anime faces. The flat dark fill it
replaces scored 12-20 grey levels (17.9 on the photo): only the anti-aliased rim of the teeth lightened its ring. And
the lower lip keeps its thickness over the lower teeth (``mouth_sheet.lower_lip_thickness``), which are a row of
crowns on the photo (``mouth_sheet.lower_teeth``).
"""

from __future__ import annotations

import pytest

from fomm_live.benchmarks import mouth_sheet
from fomm_live.benchmarks.faces import SIZE, sources
from fomm_live.live.landmarks import LandmarkBackend

PHOTO_SHADING = 24.0  # grey levels, rim over core (see ``mouth_sheet.inward_shading``)
DRAWN_SHADING = 21.0


@pytest.fixture(scope="module")
def figures() -> dict[str, dict[str, float]]:
    with LandmarkBackend(size=SIZE) as backend:
        return mouth_sheet.run(backend, sources(backend))[1]


def test_the_photos_wide_mouth_is_shaded_from_the_lips_inward(figures: dict) -> None:
    print(figures["photo"])
    assert figures["photo"]["inward_shading"] >= PHOTO_SHADING


@pytest.mark.parametrize("name", ["drawn", "anime_a", "anime_b", "anime_c"])
def test_a_drawn_wide_mouth_is_shaded_from_the_lips_inward(name: str, figures: dict) -> None:
    print(figures[name])
    assert figures[name]["inward_shading"] >= DRAWN_SHADING


LOWER_LIP_KEPT = 0.85  # of the moved lower lip's thickness, as the face mesh reads it back from the frame


@pytest.mark.parametrize("name", ["photo", "drawn", "anime_a", "anime_b", "anime_c"])
def test_a_wide_mouths_lower_lip_keeps_its_thickness(name: str, figures: dict) -> None:
    """Today's pale lower teeth right above the lip read as lip: the photo's lower lip came back at 0.69 of its
    thickness, anime_b's at 0.74."""
    print(figures[name])
    assert figures[name]["lower_lip"] >= LOWER_LIP_KEPT


def test_the_photos_wide_mouth_shows_a_row_of_lower_teeth_not_a_pale_line(figures: dict) -> None:
    """The photo shows no lower teeth of its own: a wide open mouth gets a row of crowns above the lower lip,
    separated by dark gaps and at least 2 pixels high at 256 px. The uniform pale band that stood for them made one
    blob a pixel high (``mouth_sheet.lower_teeth``: 1 crown, height 1.0)."""
    print(figures["photo"])
    assert figures["photo"]["lower_teeth"] >= 3
    assert figures["photo"]["lower_teeth_height"] >= 2.0
