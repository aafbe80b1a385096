"""FOMM's paste-back with its detail transfer, on the host: ``live.framing.pasteback_torch``'s method in OpenCV, for a
model that runs on the CPU (and a remote model, whose frames and motion fields arrive on the CPU).

The method, and the numbers that justify it, are ``live.framing.pasteback_torch``'s:

    animated = upscale(prediction) + occlusion * warp(photo - upscale(source crop), deformation)

blended into the framed photo through ``live.framing.pasteback``'s mask. The same samplings: bilinear for the
prediction, the mask and the motion field (clamped at the square's border), bicubic for the detail band (zeros past
the region). Two differences, both within the tests' bound against the PyTorch path (``tests/test_pasteback.py``):
OpenCV samples with 5-bit fixed-point weights, and the animated face is rounded to 8 bits before the blend.

Why a second implementation: PyTorch's element-wise work over a 480 x 480 region at 1280 x 720 costs several
milliseconds on a 2-core CPU and degrades badly when other processes want the cores (its worker threads wait
spinning), where OpenCV's takes a fraction of it (``benchmarks/framing.py``); and only the moved part is computed,
the bounding box of the mask's support. On a GPU the PyTorch path runs, on the model's device
(``live.framing.compositor`` chooses).
"""

from __future__ import annotations

import numpy as np

from fomm_live.live.backends import Rendered
from fomm_live.live.framing.pasteback import PasteBack, sample_square, square_to_region
from fomm_live.live.media import cv2


class FieldPasteBack(PasteBack):
    """Pastes the generator's frames into one framed photo on the host, with FOMM's detail transfer.

    Args:
        framed: H x W x 3 uint8, the framed photo.
        reference: n x n x 3 uint8, the avatar's unanimated crop.
        box: The square in output edge coordinates (x0, y0, side).
        detail: Carry the photo's fine detail along the motion field (needs ``deformation`` at ``paste``).
    """

    def __init__(self, *, framed: np.ndarray, reference: np.ndarray, box: tuple[float, float, float],
                 detail: bool = True) -> None:
        cv = cv2()
        super().__init__(framed=framed, reference=np.ascontiguousarray(reference), box=box)
        x0, y0, x1, y1 = self.bounds
        self.detail_band = None
        if detail and x1 > x0 and y1 > y0:
            up = cv.warpAffine(self.reference.astype(np.float32), self.matrix, (x1 - x0, y1 - y0),
                               flags=cv.INTER_LINEAR | cv.WARP_INVERSE_MAP, borderMode=cv.BORDER_REPLICATE)
            self.detail_band = cv.subtract(framed[y0:y1, x0:x1], up, dtype=cv.CV_32F)  # rh x rw x 3 levels

    def _detail(self, deformation: np.ndarray, occlusion: np.ndarray | None,
                sub: tuple[int, int, int, int]) -> np.ndarray:
        """The detail band carried along ``deformation`` (h x w x 2 grid_sample coordinates) to ``sub``, times the
        occlusion map (h x w): h' x w' x 3 levels."""
        cv = cv2()
        bx, by, side = self.box
        x0, y0 = self.bounds[:2]
        # grid_sample coordinates g of the square -> region pixel coordinates (centres at integers); an affine map,
        # so it is applied at the field's resolution before the (bilinear) upsampling.
        where = deformation.astype(np.float32) + np.float32(1)
        where *= np.float32(side / 2)
        where += np.array([bx - x0 - 0.5, by - y0 - 0.5], np.float32)
        matrix = square_to_region(self.box, self.bounds, deformation.shape[0])
        where = sample_square(where, matrix, sub, cv.BORDER_REPLICATE)  # h' x w' x 2
        band = cv.remap(self.detail_band, where, None, cv.INTER_CUBIC, borderMode=cv.BORDER_CONSTANT, borderValue=0)
        if occlusion is not None:
            visible = sample_square(occlusion.astype(np.float32), matrix, sub, cv.BORDER_REPLICATE)  # h' x w'
            # band * visible per channel, as one blend with nothing (blendLinear divides by the weights' sum plus
            # 1e-5: a relative 1e-5 off, far under a level; numpy's broadcast multiply cost 3x as much).
            band = cv.blendLinear(band, np.zeros_like(band), visible, 1.0 - visible)
        return band

    def paste(self, rendered: Rendered) -> np.ndarray:
        """The output frame: H x W x 3 uint8, a new array.

        Args:
            rendered: The generator's frame (a tensor in [0, 1] is rounded to levels as ``models.tensor_to_image``
                rounds) and, for the detail transfer, its motion field (``rendered.field``: the deformation in
                grid_sample coordinates and the occlusion map; no occlusion map: the source is visible everywhere).
        """
        deformation, occlusion = rendered.field.arrays() if rendered.field is not None else (None, None)
        return self._paste(np.ascontiguousarray(rendered.image()), deformation, occlusion)

    def _paste(self, prediction: np.ndarray, deformation: np.ndarray | None, occlusion: np.ndarray | None
               ) -> np.ndarray:
        """``paste`` of n x n x 3 uint8 levels, an h x w x 2 field and an h x w occlusion map."""
        cv = cv2()
        out, sub = self._masked(prediction)
        if sub is None:
            return out
        # The face upscaled in float32: rounding it before the detail is added made two faces a level apart (a
        # remote run's and a local one's) round 3 levels apart instead of 1 after the blend.
        animated = sample_square(prediction.astype(np.float32), self.matrix, sub, cv.BORDER_REPLICATE)
        if self.detail_band is not None and deformation is not None:
            animated = cv.add(animated, self._detail(deformation, occlusion, sub))
        return self._blend(out, sub, cv.add(animated, 0.0, dtype=cv.CV_8U))  # rounded and saturated to levels
