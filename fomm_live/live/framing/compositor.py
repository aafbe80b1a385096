"""The one compositor interface: every output frame is ``compositor.paste(rendered)``, whichever backend rendered it
and however the output is framed. ``make_compositor`` chooses the implementation once, from the framing asked for
and the backend's declared fields (``live.backends.Backend``):

- ``framing="face"``: the model's square scaled to fit the output and padded (``FaceCompositor``), on the backend's
  device when it ``composes_on_device`` (one download of the finished frame), else with OpenCV on the host;
- ``framing="photo"``: the whole source photo framed for the output (``live.framing.layout``) with the animated face
  pasted back (``PhotoCompositor``), by the paste-back that fits what the backend renders:

  ============================  ======================  ==============================================
  backend's ``motion_kind``     ``detail``              paste-back
  ============================  ======================  ==============================================
  ``field`` (FOMM), CPU device  on or off               ``pasteback_field.FieldPasteBack`` (OpenCV)
  ``field`` (FOMM), GPU device  on or off               ``pasteback_torch.TensorPasteBack`` (PyTorch)
  ``warp`` (landmarks)          on                      ``pasteback_map.MapPasteBack`` (the photo moved)
  any other                     off, or no motion       ``pasteback.PasteBack`` (the square upscaled)
  ============================  ======================  ==============================================

Each compositor also says whether the backend should render its motion (``detail``) and what to show before
the first animated frame (``unanimated``). The framing of an avatar is made once, when it is first shown, so the
frame changes only when the avatar does.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from fomm_live.live.avatars import Avatar
from fomm_live.live.backends import Backend, Rendered
from fomm_live.live.compose import fit_to_output
from fomm_live.live.face import centre_crop_box
from fomm_live.live.framing.layout import Framing, make_framing, render_framed
from fomm_live.live.framing.pasteback import PasteBack
from fomm_live.live.framing.pasteback_field import FieldPasteBack
from fomm_live.live.framing.pasteback_map import MapPasteBack

logger = logging.getLogger(__name__)


class Paster(Protocol):
    """A paste-back: one framed photo, one ``paste(rendered)`` per frame."""

    def paste(self, rendered: Rendered) -> np.ndarray:
        """The framed photo with the rendered face pasted in: H x W x 3 uint8, a new array."""

    def full_mask(self) -> np.ndarray:
        """Where the last paste may differ from the framed photo: H x W float32."""

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the region of the output a paste writes into; outside it, the framed photo."""


class Compositor(Protocol):
    """Makes output frames (H x W x 3 uint8, without the label) from a backend's renders.

    Attributes:
        detail: Render with the backend's motion, for the paste-back to carry the photo's detail along.
    """

    detail: bool

    def select(self, index: int) -> None:
        """Show avatar ``index`` from now on."""

    def paste(self, rendered: Rendered) -> np.ndarray:
        """The output frame of one render."""

    def unanimated(self) -> np.ndarray:
        """The current avatar at the output size, not animated (shown until the first animated frame)."""

    def still_outside(self) -> tuple[int, tuple[int, int, int, int]] | None:
        """(background, box) for the current avatar's frames, ``paste``'s and ``unanimated``'s: outside box (x0, y0,
        x1, y1) they are the background that the number names (``FrameInfo.still_outside``); None: not known."""


class FaceCompositor:
    """``framing="face"``: the model's square fitted to the output (``live.compose.fit_to_output``).

    Args:
        avatars: The prepared source photos.
        output_size: (width, height) of output frames.
        on_device: Fit on the frame's device and download the finished frame once (the backend's
            ``composes_on_device``).
    """

    detail = False

    def __init__(self, *, avatars: list[Avatar], output_size: tuple[int, int], on_device: bool) -> None:
        self.avatars = avatars
        self.output_size = output_size
        self.on_device = on_device
        self.index = 0
        self._fitted: dict[int, np.ndarray] = {}

    def select(self, index: int) -> None:
        self.index = index

    def still_outside(self) -> None:
        return None  # the whole output is the model's square, fitted

    def paste(self, rendered: Rendered) -> np.ndarray:
        width, height = self.output_size
        if self.on_device and not isinstance(rendered.frame, np.ndarray):
            from fomm_live.live.compose import fit_to_output_tensor
            from fomm_live.models.animator import download_image

            return download_image(fit_to_output_tensor(rendered.frame, width, height))
        return fit_to_output(rendered.image(), width, height)

    def unanimated(self) -> np.ndarray:
        if self.index not in self._fitted:
            self._fitted[self.index] = fit_to_output(self.avatars[self.index].crop, *self.output_size)
        return self._fitted[self.index]


class PhotoCompositor:
    """``framing="photo"``: per avatar, the framed photo and the paste-back that puts the animated face into it.

    Args:
        avatars: The prepared source photos.
        output_size: (width, height) of output frames.
        kind: The paste-back (``field``, ``tensor``, ``map`` or ``plain``; see the module docstring).
        device: Where the ``tensor`` paste-back runs (the backend's ``device``).
        detail: Carry the photo's fine detail along the backend's motion (``field`` and ``tensor``).
    """

    def __init__(self, *, avatars: list[Avatar], output_size: tuple[int, int], kind: str, device: str = "cpu",
                 detail: bool = True) -> None:
        self.avatars = avatars
        self.output_size = output_size
        self.kind = kind
        self.device = device
        self.detail = detail and kind in ("field", "tensor", "map")
        self._prepared: dict[int, tuple[Framing, np.ndarray, Paster]] = {}
        self.index = 0

    def _paster(self, framed: np.ndarray, avatar: Avatar, framing: Framing) -> Paster:
        if self.kind == "field":
            return FieldPasteBack(framed=framed, reference=avatar.crop, box=framing.box, detail=self.detail)
        if self.kind == "tensor":
            from fomm_live.live.framing.pasteback_torch import TensorPasteBack

            return TensorPasteBack(framed=framed, reference=avatar.crop, box=framing.box, device=self.device,
                                   detail=self.detail)
        if self.kind == "map":
            return MapPasteBack(framed=framed, size=avatar.crop.shape[0], box=framing.box)
        return PasteBack(framed=framed, reference=avatar.crop, box=framing.box)

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
        bx, by, side = framing.box
        logger.info("avatar %d framed at %dx%d: face square %.0f px at (%.0f, %.0f), %.2fx the model's", index + 1,
                    *self.output_size, side, bx, by, side / avatar.crop.shape[0])
        self._prepared[index] = (framing, framed, self._paster(framed, avatar, framing))

    @property
    def framing(self) -> Framing:
        return self._prepared[self.index][0]

    @property
    def framed(self) -> np.ndarray:
        """The current avatar's framed photo, unanimated: H x W x 3 uint8."""
        return self._prepared[self.index][1]

    @property
    def paster(self) -> Paster:
        return self._prepared[self.index][2]

    def paste(self, rendered: Rendered) -> np.ndarray:
        """The output frame: ``rendered`` pasted into the framed photo."""
        return self.paster.paste(rendered)

    def unanimated(self) -> np.ndarray:
        return self.framed

    def still_outside(self) -> tuple[int, tuple[int, int, int, int]]:
        """The framed photo outside the paste-back's region: every paste is a copy of it written inside only. Its
        ``id`` names it (kept here as long as the compositor, so no other array takes the number meanwhile)."""
        return id(self.framed), self.paster.bounds


def paste_kind(backend: Backend, *, detail: bool) -> str:
    """Which paste-back photo framing uses for ``backend`` (see the module docstring's table)."""
    if backend.motion_kind == "field":
        # OpenCV is the faster host path: PyTorch's element-wise work on a 2-core CPU costs several times as much.
        return "field" if str(backend.device).startswith("cpu") else "tensor"
    if backend.motion_kind == "warp" and detail:
        return "map"
    return "plain"


def make_compositor(*, framing: str, avatars: list[Avatar], output_size: tuple[int, int], backend: Backend,
                    detail: bool) -> Compositor:
    """The compositor for ``framing`` (``face`` or ``photo``) and ``backend``, chosen once.

    Args:
        framing: ``face`` or ``photo``.
        avatars: The prepared source photos.
        output_size: (width, height) of output frames.
        backend: The animation backend (its declared fields choose the paste-back).
        detail: With photo framing, carry the photo's fine detail along the backend's motion.
    """
    if framing == "face":
        return FaceCompositor(avatars=avatars, output_size=output_size, on_device=backend.composes_on_device)
    if framing != "photo":
        raise ValueError(f"framing: expected face or photo, got {framing!r}")
    kind = paste_kind(backend, detail=detail)
    if detail and kind == "plain":
        logger.info("photo framing: the %s backend gives no motion to carry the photo's detail along; its frames "
                    "are upscaled", backend.name)
    return PhotoCompositor(avatars=avatars, output_size=output_size, kind=kind, device=str(backend.device),
                           detail=detail)
