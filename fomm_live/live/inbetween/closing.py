"""An eye shut after the keyframe: the lid painted over what the warp leaves of the keyframe's open eye.

A warp of the keyframe cannot close an eye: the mesh's upper lid moved down onto the lower one squeezes the keyframe's
open eye into a slit (the face mesh reads a shut eye as about a fifth of the open gap), the iris and the white still
showing between the lids where the true frame has the lid down (carphone frames 41-43, Pexels 202 and 248 on
``benchmarks.inbetween``'s sheets). So where the driver's eye is shut now and was open at the keyframe's camera frame,
the landmark backend's lid (``live.landmarks.lids.paint_lid``: its skin taken through the warp from the keyframe's own
skin, its lash line in the keyframe's lash colour) is painted down over that slit, at the eye the warp moved. Each
eye's closure is the landmark backend's (the driver's opening against the calibrated neutral's, times the expression
strength; the two eyes drawn together in a blink, a wink left a wink: ``lids.couple``); an eye open now, or already
half closed at the keyframe, is today's warp, exactly.

Why only a shut eye, over the warp's slit, measured (``benchmarks.inbetween --every 5``, the eye region's PSNR,
RESULTS 2026-12-07): the landmark backend's own way, the upper lid held where the keyframe has it and the lid painted
down by the openness since the keyframe, lost 2.2 dB around the eyes on single_face's 12 blink frames (up to 5 dB on
its half-closed ones: the painted lid lighter than the true one, the keyframe's crease band replaced by a blur) and
0.6 dB over all of Pexels' in-betweens (lids painted over eyes already shut at the keyframe, which the face mesh read
as less than shut); painting over the slit at every partial closure lost too (-2.6 dB on single's frame 28, half
closed). Over the slit of a shut eye only, no clip's mean fell.

Convention: landmarks in square pixels (478 x 3) as ``live.inbetween.renderer``'s; a region is the square's part of
an output frame, its pixels ``square * scale + shift`` (``region_shift``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fomm_live.live.landmarks import lids
from fomm_live.live.landmarks.eyes import curve, lid_frame, to_eye
from fomm_live.live.landmarks.points import EYES

# An eye whose lid amount (``lids.lid_amount`` of its closure) was at most this at the keyframe counts as open there:
# a keyframe more closed than this shows its own lid, which the warp keeps (Pexels frames 51, 67 and 462: shut in the
# keyframe too, read by the face mesh as less than shut; a lid painted over their slit cost 2.2-2.5 dB around the eyes).
KEY_OPEN = 0.5
# The painted lid's band above the warped upper lid (eye widths) that it covers too: the keyframe's upper lashes,
# squeezed down onto the slit, are hidden under it (a shut eye shows its lashes at the lid's lower edge only).
# (Covering the whole band the warp stretched as well, the keyframe's opening less the slit's: a proper closed lid on a
# made blink, but -3.3 dB around the eyes on single_face's real blink, frames 26-27, where the squeezed lashes look
# like the true shut eye's, +1.3 dB on carphone's frame 42; half of it: -2.7 and +0.5; a quarter: -1.7 and +0.4.)
BAND = 0.08


@dataclass
class KeyLids:
    """What a keyframe's in-betweens need to paint its eyes shut (``key_lids``). The lids themselves are built on
    the first in-between that paints one (``lids_from``): 1.9 ms a keyframe at a 480 px square (2-core Xeon), for
    the few keyframes whose eyes shut before the next."""

    amounts: list[float]  # per eye, the lid amount at the keyframe (``lids.lid_amount`` of the coupled closure)
    moved: np.ndarray  # 478 x 3 float64, the keyframe's moved landmarks (P_k), square pixels
    shift: np.ndarray  # square pixels times ``scale`` plus this: the keyframe region's pixels (``region_shift``)
    scale: float
    built: list[lids.Lid | None] | None = None  # per eye (EYES order); None: too small or outside the square

    def lids_from(self, region: np.ndarray) -> list[lids.Lid | None]:
        """The keyframe's lids, built from its region (h x w x 3 uint8) on the first call: a photo's lid always (a
        keyframe is the generator's rendering, and ``lids.is_drawn`` read carphone's blurred, upscaled face as drawn,
        its flat patch then covering the eye up to the brow)."""
        if self.built is None:
            points = _in_region(self.moved, self.shift, self.scale)
            self.built = [lids.build_lid(region, points, eye, drawn_face=False) for eye in EYES]
        return self.built


def region_shift(origin: tuple[float, float], scale: float, at: tuple[int, int]) -> np.ndarray:
    """The shift that takes square pixels times ``scale`` to the pixels of a region whose first pixel is output pixel
    ``at`` (column, row), for a placement at ``origin`` (x0, y0)."""
    return np.array([origin[0] - at[0] - 0.5 + 0.5 * scale, origin[1] - at[1] - 0.5 + 0.5 * scale])


def _amounts(closures: list[float]) -> list[float]:
    """Both eyes' lid amounts for the driver's closures (coupled, as the landmark backend's)."""
    return [lids.lid_amount(c) for c in lids.couple(closures)]


def _in_region(moved: np.ndarray, shift: np.ndarray, scale: float) -> np.ndarray:
    """Landmarks in square pixels -> the region's pixels (z scaled with x and y)."""
    points = moved * scale
    points[:, :2] += shift
    return points


def key_lids(moved: np.ndarray, closures: list[float], *, shift: np.ndarray, scale: float) -> KeyLids:
    """A keyframe's lids (built when first painted).

    Args:
        moved: 478 x 3 float64, the keyframe's moved landmarks (P_k), square pixels.
        closures: The driver's eye closures at the keyframe's camera frame (``lids.driver_closures``).
        shift, scale: Square pixels to the keyframe region's pixels (``region_shift``).
    """
    return KeyLids(amounts=_amounts(closures), moved=moved, shift=shift, scale=scale)


def closing(key: KeyLids, closures: list[float]) -> list[float]:
    """Per eye, how far the lid is painted down over the warp's slit: 1 for an eye shut now (lid amount 1) that was
    open at the keyframe (lid amount at most KEY_OPEN), else 0 (today's warp)."""
    return [1.0 if now >= 1.0 and before <= KEY_OPEN else 0.0
            for before, now in zip(key.amounts, _amounts(closures), strict=True)]


def paint_lids(region: np.ndarray, source_map: np.ndarray, image: np.ndarray, moved: np.ndarray, key: KeyLids,
               amounts: list[float], *, own: np.ndarray) -> None:
    """Paint the shut eyes' lids over the warped region (in place): each lid from the warped upper lid (and BAND
    above it) down to the warped lower lid, where its lash line is drawn.

    Args:
        region: h x w x 3 uint8, the in-between's region, warped.
        source_map: h x w x 2 float32: per region pixel the position in ``image`` it shows (the warp's map).
        image: The keyframe's region (or the cross-fade's blend of it) that the warp sampled.
        moved: 478 x 3 float64, the mesh now, square pixels.
        key: The keyframe's lids; amounts: ``closing``'s.
        own: The keyframe's own region (its lids are built from it), the same pixels as ``region``'s.
    """
    points = _in_region(moved, key.shift, key.scale)
    ends = np.array([[-0.5, 0.0]]), np.array([[0.5, 0.0]])  # the corners, in the eye's frame
    for lid, amount in zip(key.lids_from(own), amounts, strict=True):
        if lid is None or amount <= 0.0:
            continue
        corners, upper, lower = lid.eye
        frame = lid_frame(points, corners, lid.sign)
        top = curve(np.concatenate([ends[0], to_eye(points[list(upper)], frame), ends[1]]), lid.u)
        bottom = curve(np.concatenate([ends[0], to_eye(points[list(lower)], frame), ends[1]]), lid.u)
        lids.paint_lid(region, source_map, image, points,
                       replace(lid, upper=top, lower=bottom, band=np.full_like(lid.u, BAND)), amount)
