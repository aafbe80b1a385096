"""Full-resolution output on the demo clip (a head turn, a nod, a blink, a mouth opening) at 1280 x 720 in photo
framing, through the live pipeline, with both backends (FOMM on the tiny golden model, for the mechanics):

- outside the mask's support every output pixel equals the framed photo (``--no-label``);
- no seam: in the band along the mask's edge the output's gradient energy is at most 1.2x the framed photo's
  (median over the animated frames);
- sharpness (landmark backend, at rest): the face region's variance of the Laplacian at least 80% of the framed
  photo's.

The definitions are ``helpers.seam``'s."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import golden_dir, require
from helpers.seam import gradient_energy, seam_band, sharpness, support_bbox

SIZE = (1280, 720)
SEAM_LIMIT = 1.2
SHARPNESS_FLOOR = 0.8


@functools.lru_cache(maxsize=3)
def run_clip(backend_name: str, detail: bool = True
             ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, list[int]]:
    """The animated output frames of the demo clip, the paste mask of each, the framed photo, and the frames'
    input indices."""
    from fomm_live.live.capture.sources import OpenCVSource
    from fomm_live.live.democlip import demo_clip_path
    from fomm_live.live.face import FaceDetector
    from fomm_live.live.loop.pipeline import LivePipeline, PipelineOptions, prepare_avatars
    from fomm_live.live.options import FrameOptions
    from fomm_live.live.wiring import load_sources

    frames: list[np.ndarray] = []
    indices: list[int] = []

    class Keep:
        name = "keep"

        def send(self, frame: np.ndarray, info) -> None:
            if info.animated:
                frames.append(frame.copy())
                indices.append(info.index)

        def close(self) -> None:
            pass

    with FaceDetector() as detector:
        if backend_name == "landmarks":
            from fomm_live.live.landmarks import LandmarkBackend

            backend = LandmarkBackend(tracking=True)
        else:
            from fomm_live.live.backends import FommBackend
            from fomm_live.models import Animator

            folder = golden_dir("tiny")
            backend = FommBackend(Animator.from_checkpoint(require(folder / "checkpoint.pth.tar"),
                                                           folder / "config.yaml", device="cpu", precision="fp32"))
        avatars = prepare_avatars(load_sources(None), backend.size, detector)
        pipeline = LivePipeline(OpenCVSource(str(demo_clip_path())), backend, avatars, [Keep()], detector=detector,
                                options=PipelineOptions(frame=FrameOptions(size=SIZE, framing="photo", label=False,
                                                                           detail=detail),
                                                        pipelining=False))
        photo = pipeline.model.photo
        masks: list[np.ndarray] = []
        paste = photo.paste

        def recording_paste(rendered):
            out = paste(rendered)
            masks.append(photo.paster.full_mask())
            return out

        photo.paste = recording_paste
        try:
            pipeline.run()
        finally:
            backend.close()
    assert len(frames) == len(masks) > 50, "the clip should animate most of its 125 frames"
    return frames, masks, photo.framed, indices


BACKENDS = ["landmarks", "fomm"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_outside_the_mask_support_the_output_is_the_framed_photo(backend: str) -> None:
    frames, masks, framed, _ = run_clip(backend)
    assert any((m > 0).any() for m in masks)
    for i, (frame, mask) in enumerate(zip(frames, masks, strict=True)):
        outside = mask == 0
        if not np.array_equal(frame[outside], framed[outside]):
            ys, xs = np.nonzero(outside & np.any(frame != framed, axis=2))
            raise AssertionError(f"frame {i}: {ys.size} pixels outside the mask differ, first at ({xs[0]}, {ys[0]})")


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_seam_along_the_mask_edge(backend: str) -> None:
    frames, masks, framed, _ = run_clip(backend)
    ratios = []
    for frame, mask in zip(frames, masks, strict=True):
        band = seam_band(mask)
        if band.any():
            ratios.append(gradient_energy(frame, band) / gradient_energy(framed, band))
    median = float(np.median(ratios))
    print(f"{backend}: seam band gradient energy {median:.3f}x the photo's (median of {len(ratios)} frames, "
          f"max {max(ratios):.3f})")
    assert len(ratios) > 10 and median <= SEAM_LIMIT


def face_sharpness(detail: bool) -> tuple[float, float, tuple[int, int, int, int]]:
    """(at rest, while turning and nodding): the median over frames of the face region's variance of the Laplacian
    over the framed photo's. At rest: the clip's last 0.4 s (frames 115 on, back at the start pose). The face region:
    the bounding box of the union of the mask supports over the clip (a frame at rest may animate little)."""
    frames, masks, framed, indices = run_clip("landmarks", detail)
    union = np.zeros(masks[0].shape, bool)
    for mask in masks:
        union |= mask > 0
    bbox = support_bbox(union)
    assert bbox is not None, "the paste mask never covered a pixel over the whole clip: nothing was animated"
    reference = sharpness(framed, bbox)
    at_rest = [sharpness(f, bbox) / reference for f, i in zip(frames, indices, strict=True) if i >= 115]
    moving = [sharpness(f, bbox) / reference for f, i in zip(frames, indices, strict=True) if 15 <= i < 70]
    assert len(at_rest) >= 5 and len(moving) >= 20
    return float(np.median(at_rest)), float(np.median(moving)), bbox


def test_landmark_face_at_rest_is_as_sharp_as_the_photo() -> None:
    at_rest, moving, bbox = face_sharpness(True)
    print(f"landmarks sharpness: at rest {at_rest:.0%} of the photo's, while turning and nodding {moving:.0%} "
          f"(face region {bbox})")
    assert at_rest >= SHARPNESS_FLOOR


def test_landmark_detail_raises_sharpness_over_plain_upscaling() -> None:
    with_detail, without = face_sharpness(True), face_sharpness(False)
    print(f"landmarks sharpness without detail: at rest {without[0]:.0%}, moving {without[1]:.0%}")
    assert with_detail[0] > without[0] + 0.1 and with_detail[1] > without[1] + 0.1
