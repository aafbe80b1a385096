"""Photo framing in the live loop: per avatar, the framed photo and the paste-back that puts the animated face into
it (``live.framing`` for where, ``live.pasteback`` / ``live.pasteback_torch`` for how).

A backend with ``render_parts`` (FOMM, local or remote) is pasted on its ``paste_device`` (else the model's device),
with the detail transfer along its motion field unless it is off (``live.pasteback_torch`` on CUDA,
``live.pasteback_field`` on the CPU). A backend with
``render_layers`` (landmarks) moves the full-resolution photo along its own warp (``live.pasteback_map``); with
``--no-detail``, and for any other backend, the square is upscaled and pasted with OpenCV (``live.pasteback``). The
framing of an avatar is made once, when it is first shown, so the frame changes only when the avatar does.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from live.avatars import Avatar
from live.face import centre_crop_box
from live.framing import Framing, make_framing, render_framed
from live.pasteback import PasteBack
from live.pasteback_field import FieldPasteBack
from live.pasteback_map import MapPasteBack

logger = logging.getLogger(__name__)


class PhotoCompositor:
    """The output frames of photo framing.

    Args:
        avatars: The prepared source photos.
        output_size: (width, height) of output frames.
        backend: The animation backend (``render_parts`` picks the on-device path).
        detail: Carry the photo's fine detail along the backend's motion (``live.pasteback_torch``,
            ``live.pasteback_map``).
    """

    def __init__(self, *, avatars: list[Avatar], output_size: tuple[int, int], backend: Any, detail: bool) -> None:
        self.avatars = avatars
        self.output_size = output_size
        self.backend = backend
        self.detail = detail
        self.on_device = hasattr(backend, "render_parts")
        self.layered = detail and not self.on_device and hasattr(backend, "render_layers")
        if detail and not (self.on_device or self.layered):
            logger.info("photo framing: the %s backend gives no motion to carry the photo's detail along; its frames "
                        "are upscaled", getattr(backend, "name", "current"))
        self._prepared: dict[int, tuple[Framing, np.ndarray, Any]] = {}
        self.index = 0

    def select(self, index: int) -> None:
        """Show avatar ``index`` from now on (its framing is made on first use)."""
        self.index = index
        if index in self._prepared:
            return
        avatar = self.avatars[index]
        photo = avatar.photo if avatar.photo is not None else avatar.crop
        box = avatar.box if avatar.box is not None else centre_crop_box(*photo.shape[:2])
        framing = make_framing(photo.shape[:2], self.output_size, box, avatar.face)
        framed = render_framed(photo, framing)
        if self.on_device and self.pastes_on_host:  # OpenCV is the faster host path
            paster: Any = FieldPasteBack(framed=framed, reference=avatar.crop, box=framing.box, detail=self.detail)
        elif self.on_device:
            from live.pasteback_torch import TensorPasteBack

            paster = TensorPasteBack(framed=framed, reference=avatar.crop, box=framing.box, device=self.paste_device,
                                     detail=self.detail)
        elif self.layered:
            paster = MapPasteBack(framed=framed, size=avatar.crop.shape[0], box=framing.box)
        else:
            paster = PasteBack(framed=framed, reference=avatar.crop, box=framing.box)
        bx, by, side = framing.box
        logger.info("avatar %d framed at %dx%d: face square %.0f px at (%.0f, %.0f), %.2fx the model's", index + 1,
                    *self.output_size, side, bx, by, side / avatar.crop.shape[0])
        self._prepared[index] = (framing, framed, paster)

    @property
    def paste_device(self) -> Any:
        """Where the on-device paste-back runs: the backend's ``paste_device`` (the remote FOMM: the CPU, beside its
        decoded frames and motion field), else its model's device."""
        device = getattr(self.backend, "paste_device", None)
        return device if device is not None else self.backend.animator.device

    @property
    def pastes_on_host(self) -> bool:
        """Whether the paste-back runs on the host, in OpenCV (else in PyTorch on the model's GPU)."""
        return not self.on_device or str(self.paste_device).startswith("cpu")

    @property
    def framing(self) -> Framing:
        return self._prepared[self.index][0]

    @property
    def framed(self) -> np.ndarray:
        """The current avatar's framed photo, unanimated: H x W x 3 uint8."""
        return self._prepared[self.index][1]

    @property
    def paster(self) -> Any:
        return self._prepared[self.index][2]

    def render(self, motion: Any) -> Any:
        """The backend's part of a frame (the model's work, timed as the generator)."""
        if self.on_device:
            return self.backend.render_parts(motion, with_motion=self.detail)
        if self.layered:
            return self.backend.render_layers(motion)
        return self.backend.render(motion)

    def paste(self, rendered: Any) -> np.ndarray:
        """The output frame: ``rendered`` pasted into the framed photo (timed as composition)."""
        if self.on_device:  # FieldPasteBack or TensorPasteBack, from the backend's tensors
            return self.paster.paste_parts(rendered)
        return self.paster.paste(rendered)
