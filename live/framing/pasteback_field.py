"""FOMM's paste-back with its detail transfer, on the host: ``live.framing.pasteback_torch``'s method in OpenCV, for a
model that runs on the CPU (and a remote model, whose frames and motion fields arrive on the CPU).

The method, and the numbers that justify it, are ``live.framing.pasteback_torch``'s:

    animated = upscale(prediction) + occlusion * warp(photo - upscale(source crop), deformation)

blended into the framed photo through ``live.framing.pasteback``'s mask. The same samplings: bilinear for the
prediction, the mask and the motion field (clamped at the square's border), bicubic for the detail band (zeros past the
region). Two differences, both within the tests' bound against the PyTorch path (``tests/test_pasteback.py``):
OpenCV samples with 5-bit fixed-point weights, and the animated face is rounded to 8 bits before the blend.

Why a second implementation: PyTorch's element-wise work over a 480 x 480 region at 1280 x 720 costs several
milliseconds on a 2-core CPU and degrades badly when other processes want the cores (its worker threads wait
spinning), where OpenCV's takes a fraction of it (``benchmarks/framing.py``); and only the moved part is computed,
the bounding box of the mask's support. On CUDA the PyTorch path runs, on the model's device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from live.framing.pasteback import PasteBack, sample_square, square_to_region
from live.media import cv2


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

    def paste(self, prediction: np.ndarray, deformation: np.ndarray | None = None,
              occlusion: np.ndarray | None = None) -> np.ndarray:
        """The output frame: H x W x 3 uint8, a new array.

        Args:
            prediction: n x n x 3 uint8, the generator's frame in levels.
            deformation: h x w x 2 float, the dense motion field (grid_sample coordinates), for the detail transfer.
            occlusion: h x w float in [0, 1], the occlusion map; None: the source is visible everywhere.
        """
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

    def paste_parts(self, parts: dict[str, Any]) -> np.ndarray:
        """``paste`` of a backend's ``render_parts`` (PyTorch tensors on the CPU: ``prediction`` 1 x 3 x n x n in
        [0, 1] or uint8 levels, ``deformation`` 1 x h x w x 2, ``occlusion_map`` 1 x 1 x h x w)."""
        from models import to_levels  # torch: only a FOMM backend's frames come here

        prediction = parts["prediction"][0]
        if prediction.dtype.is_floating_point:  # rounded as ``models.tensor_to_image`` rounds
            prediction = to_levels(prediction)
        levels = prediction.cpu().permute(1, 2, 0).numpy()  # n x n x 3 uint8
        deformation, occlusion = parts.get("deformation"), parts.get("occlusion_map")
        return self.paste(np.ascontiguousarray(levels),
                          None if deformation is None else deformation[0].float().cpu().numpy(),
                          None if occlusion is None else occlusion[0, 0].float().cpu().numpy())
