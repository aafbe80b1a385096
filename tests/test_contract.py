"""The backend contract (``live.backends``) and the compositor chosen from it (``live.framing.compositor``): what a
backend declares decides the paste-back, a render's frame reads back as the image ``models.tensor_to_image`` gives,
keypoint tensors are smoothed where they are, and ``close`` reaches the model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fomm_live.live.avatars import Avatar
from fomm_live.live.backends import Backend, FommBackend, MotionField, Rendered
from fomm_live.live.framing.compositor import FaceCompositor, PhotoCompositor, make_compositor, paste_kind
from fomm_live.live.framing.pasteback import PasteBack
from fomm_live.live.framing.pasteback_field import FieldPasteBack
from fomm_live.live.framing.pasteback_map import MapPasteBack
from fomm_live.live.framing.pasteback_torch import TensorPasteBack
from fomm_live.live.loop.smoothing import MotionSmoother
from fomm_live.models import tensor_to_image
from fomm_live.models.keypoint_detector import Keypoints


class Declared(Backend):
    """A stand-in backend that only declares its fields (the compositor reads nothing else)."""

    def __init__(self, *, motion_kind: str = "none", device: str = "cpu", composes_on_device: bool = False) -> None:
        self.motion_kind = motion_kind
        self.device = device
        self.composes_on_device = composes_on_device


@pytest.mark.parametrize(("motion_kind", "device", "detail", "kind"), [
    ("field", "cpu", True, "field"), ("field", "cpu", False, "field"), ("field", "cuda:0", True, "tensor"),
    ("warp", "cpu", True, "map"), ("warp", "cpu", False, "plain"), ("none", "cpu", True, "plain"),
])
def test_the_paste_back_follows_what_the_backend_declares(motion_kind: str, device: str, detail: bool,
                                                          kind: str) -> None:
    assert paste_kind(Declared(motion_kind=motion_kind, device=device), detail=detail) == kind


def _avatar(n: int = 32) -> Avatar:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    return Avatar(name="a", crop=np.ascontiguousarray(photo[:n, :n]), photo=photo, box=None, face=None, points=None)


@pytest.mark.parametrize(("motion_kind", "detail", "paster", "renders_motion"), [
    ("field", True, FieldPasteBack, True), ("field", False, FieldPasteBack, False),
    ("warp", True, MapPasteBack, True), ("warp", False, PasteBack, False), ("none", True, PasteBack, False),
])
def test_photo_framing_chooses_its_paste_back_once_and_asks_for_motion_only_when_it_uses_it(
        motion_kind: str, detail: bool, paster: type, renders_motion: bool) -> None:
    compositor = make_compositor(framing="photo", avatars=[_avatar()], output_size=(160, 90),
                                 backend=Declared(motion_kind=motion_kind), detail=detail)
    compositor.select(0)
    assert isinstance(compositor, PhotoCompositor) and type(compositor.paster) is paster
    assert compositor.detail is renders_motion


def test_face_framing_fits_on_the_device_only_when_the_backend_composes_there() -> None:
    avatars = [_avatar()]
    host = make_compositor(framing="face", avatars=avatars, output_size=(64, 48), backend=Declared(), detail=True)
    device = make_compositor(framing="face", avatars=avatars, output_size=(64, 48),
                             backend=Declared(composes_on_device=True), detail=True)
    assert isinstance(host, FaceCompositor) and not host.on_device and device.on_device and not host.detail
    frame = torch.rand(1, 3, 32, 32)
    a, b = host.paste(Rendered(frame)), device.paste(Rendered(frame))
    assert a.shape == b.shape == (48, 64, 3) and np.abs(a.astype(int) - b.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="face or photo"):
        make_compositor(framing="square", avatars=avatars, output_size=(64, 48), backend=Declared(), detail=True)


def test_a_rendered_tensor_reads_back_as_tensor_to_image_gives_it() -> None:
    frame = torch.rand(1, 3, 17, 17) * 1.2 - 0.1  # past both ends: clamped as the original rounds
    np.testing.assert_array_equal(Rendered(frame).image(), tensor_to_image(frame))
    levels = torch.randint(0, 256, (1, 3, 17, 17), dtype=torch.uint8)
    np.testing.assert_array_equal(Rendered(levels).image(), levels[0].permute(1, 2, 0).numpy())
    field = MotionField(torch.rand(1, 8, 8, 2), torch.rand(1, 1, 8, 8))
    deformation, occlusion = field.arrays()
    assert deformation.shape == (8, 8, 2) and occlusion.shape == (8, 8) and deformation.dtype == np.float32


def test_the_tensor_paste_back_takes_host_arrays_and_tensors_alike() -> None:
    avatar = _avatar()
    framed = avatar.photo
    paster = TensorPasteBack(framed=framed, reference=avatar.crop, box=(40.0, 10.0, 64.0), device="cpu")
    rng = np.random.default_rng(1)
    square = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    deformation = np.stack(np.meshgrid(*(np.linspace(-1, 1, 8, dtype=np.float32),) * 2), axis=-1)
    occlusion = np.ones((8, 8), np.float32)
    from_host = paster.paste(Rendered(square, MotionField(deformation, occlusion)))
    tensor = torch.from_numpy(square).permute(2, 0, 1)[None]
    from_tensors = paster.paste(Rendered(tensor, MotionField(torch.from_numpy(deformation)[None],
                                                             torch.from_numpy(occlusion)[None, None])))
    np.testing.assert_array_equal(from_host, from_tensors)
    assert not np.array_equal(from_host, framed)


def test_keypoint_tensors_are_smoothed_where_they_are_as_the_host_filter_would() -> None:
    rng = np.random.default_rng(2)
    values = [rng.normal(size=(1, 10, 2)).astype(np.float32) for _ in range(6)]
    on_device, on_host = MotionSmoother(min_cutoff=1.0, beta=2.0), MotionSmoother(min_cutoff=1.0, beta=2.0)
    for i, value in enumerate(values):
        smoothed = on_device(Keypoints(value=torch.from_numpy(value), jacobian=None), i / 25)
        want = on_host(value, i / 25)
        assert isinstance(smoothed.value, torch.Tensor) and smoothed.value.dtype == torch.float32
        assert smoothed.jacobian is None
        np.testing.assert_array_equal(smoothed.value.numpy(), want)


def test_closing_the_fomm_backend_closes_its_animator() -> None:
    closed = []
    animator = SimpleNamespace(image_size=64, device=torch.device("cpu"), precision="bf16",
                               close=lambda: closed.append(True))
    backend = FommBackend(animator)
    assert backend.device == "cpu" and backend.uses_all_cores and not backend.composes_on_device
    assert backend.motion_kind == "field" and not backend.first_source_slow
    backend.close()
    assert closed == [True]
    animator.precision = "int8"  # calibrates on each new photo: the loop prepares every avatar at start
    assert FommBackend(animator).first_source_slow
