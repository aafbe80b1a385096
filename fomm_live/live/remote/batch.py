"""The batched step of ``fomm-live serve``: the frames of many streams in one pass of the FOMM networks.

Keypoints of B crops, per-stream keypoint smoothing (the client's options and media times) and motion normalisation,
then one decode of the B frames from their B cached sources: the function that ``benchmarks.gpu_batch`` times on a
GPU. When any stream asked for the motion field (photo framing's detail transfer), the decode returns it: the
engines' fast paths compute it anyway (``models.engines``), and only the streams that asked are sent theirs.

Imports torch and ``models`` when called; imported by ``live.remote.server``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fomm_live.live.remote.protocol import Field

RenderedFrame = tuple[np.ndarray, Field | None]  # (the face S x S x 3 uint8, its field when the stream asked)


class FrameFailed(ValueError):
    """One stream's frame could not be rendered (its keypoints after smoothing and normalisation are not finite, or
    they raised): returned in that frame's place, so that the other frames of the batch are rendered."""


def render_frames(animator: Any, items: list[tuple[np.ndarray, Any, float | None]]
                  ) -> list[RenderedFrame | FrameFailed]:
    """The faces (and asked-for motion fields) of B driving crops of B streams; a ``FrameFailed`` in the place of a
    frame whose stream's state could not move its keypoints (the others are rendered all the same).

    Args:
        animator: The replica's ``models.Animator`` (its engine and image conversion).
        items: (crop H x W x 3 uint8, stream, media time or None) per frame; a stream (``live.remote.server.Stream``)
            has ``smooth``, ``normalizer``, ``encoding`` (its avatar's state and keypoints) and ``field``.
    """
    import torch

    from fomm_live.models import to_levels
    from fomm_live.models.generator import SourceState
    from fomm_live.models.keypoint_detector import Keypoints

    engine = animator.engine
    with torch.inference_mode():
        frames = torch.cat([animator.to_tensor(crop) for crop, _, _ in items])  # B x 3 x S x S
        kp = engine.keypoints(frames)
        norms, sources, states, failed = [], [], [], {}
        for i, (_, stream, t) in enumerate(items):
            one = Keypoints(kp.value[i:i + 1], None if kp.jacobian is None else kp.jacobian[i:i + 1])
            try:  # one stream's state (its times, its neutral pose) must not fail the frames of the others
                one = stream.smooth(one, t)
                norm = stream.normalizer(one, stream.encoding.kp_source)
                finite = bool(torch.isfinite(norm.value).all()) and (
                    norm.jacobian is None or bool(torch.isfinite(norm.jacobian).all()))
            except (ArithmeticError, ValueError, RuntimeError) as err:
                failed[i] = FrameFailed(f"the frame's keypoints could not be moved ({type(err).__name__})")
                continue
            if not finite:
                failed[i] = FrameFailed("the frame's keypoints are not finite after smoothing and normalisation")
                continue
            norms.append(norm)
            sources.append(stream.encoding.kp_source)
            states.append(stream.encoding.state)
        if not norms:
            return [failed[i] for i in range(len(items))]
        kept = [i for i in range(len(items)) if i not in failed]

        def cat(parts: list) -> Keypoints:
            jac = None if parts[0].jacobian is None else torch.cat([p.jacobian for p in parts])  # G x K x 2 x 2
            return Keypoints(torch.cat([p.value for p in parts]), jac)  # G x K x 2

        state = SourceState(*(torch.cat(list(f)) for f in zip(*states, strict=True)))
        wanted = [bool(items[i][1].field) for i in kept]
        out = engine.decode(state, cat(norms), cat(sources), with_deformation=any(wanted))  # B frames
        images = to_levels(out["prediction"]).permute(0, 2, 3, 1).cpu().numpy()  # B x S x S x 3 uint8
        deformation = occlusion = None
        if any(wanted):
            deformation = out["deformation"].float().cpu().numpy()  # B x h x w x 2
            occlusion = out.get("occlusion_map")  # B x 1 x h x w, or None
            occlusion = None if occlusion is None else occlusion.float().cpu().numpy()[:, 0]  # B x h x w
        rendered: dict[int, RenderedFrame] = {}
        for j, (i, want) in enumerate(zip(kept, wanted, strict=True)):
            field = None
            if want and deformation is not None:
                field = (deformation[j], None if occlusion is None else occlusion[j])
            rendered[i] = (images[j], field)
    return [rendered[i] if i in rendered else failed[i] for i in range(len(items))]
