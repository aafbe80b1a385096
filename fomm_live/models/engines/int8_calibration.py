"""Calibration of the int8 generator: the driving poses it is calibrated on, how far a pose reaches, and the cache.

Poses: the user's photo's own keypoints moved through plausible head motion (``calibration_poses``): turns in the
image plane (roll, up to 25 degrees), left-right and up-down turns (yaw and pitch, drawn as a foreshortening of up to
35% along one axis with the matching shift), a nod of scale (0.85-1.15), a shift of the head (up to 0.12 of the
half-width), and an expression (every keypoint moved on its own, 0.03 standard deviation, and each jacobian turned
and stretched a little). The jacobians follow the same linear map. These are the keypoints the generator sees after
relative motion normalisation (the photo's keypoints plus the driving movement), so no video has to be decoded.

Reach (``pose_reach``): how far a set of driving keypoints is from the photo's: the largest keypoint displacement
(grid units, [-1, 1] across the image) and the largest entry of ``J_driving J_source^-1 - I`` (the local turn and
stretch). The calibration covers the largest reach of its poses; a frame beyond it is checked against float32 again
(``models.engines.int8``).

Cache: ``$FOMM_LIVE_CACHE/int8/<key>/`` (default ``~/.cache/fomm-live/int8/``), the key hashing the checkpoint's
weights, the architecture, the photo (the 256 x 256 model input), the runtime and its version, and the calibration
recipe (``CALIBRATION_VERSION``, the pose count). A folder is written under a temporary name and renamed when whole,
so an interrupted calibration never leaves half a cache behind.

Imports ``models.keypoint_detector``, ``models.motion`` and ``models.paths``.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from fomm_live.models.keypoint_detector import Keypoints
from fomm_live.models.paths import cache_root

# The recipe of ``calibration_poses``; a change of recipe gives another cache folder.
CALIBRATION_VERSION = 1
# 32 poses: with them, 8 held-out poses drawn the same way (another seed) stayed within the covered reach and within
# the bars on golden tiny and vox-256 size (benchmarks/int8.py; no re-check was needed). Fewer or more poses have not
# been compared yet (``benchmarks.int8 --poses N`` measures it); NNCF's statistics pass costs about 0.5 s a pose at
# vox-256 size on the 2-core test CPU.
DEFAULT_POSES = 32
META_FILE = "calibration.json"


@dataclass(frozen=True)
class Reach:
    """How far driving keypoints are from the photo's: ``shift`` (largest keypoint displacement, grid units) and
    ``turn`` (largest entry of ``J_driving J_source^-1 - I``; 0 for models without jacobians)."""

    shift: float
    turn: float

    def beyond(self, covered: Reach) -> bool:
        return self.shift > covered.shift or self.turn > covered.turn

    def widest(self, other: Reach) -> Reach:
        return Reach(max(self.shift, other.shift), max(self.turn, other.turn))

    def scaled(self, factor: float) -> Reach:
        return Reach(self.shift * factor, self.turn * factor)

    def describe(self) -> str:
        return f"shift {self.shift:.3f}, turn {self.turn:.3f}"


def pose_reach(kp_driving: Keypoints, kp_source: Keypoints) -> Reach:
    """The reach of driving keypoints (any batch; the widest frame counts) from the source's; see ``Reach``."""
    shift = float((kp_driving.value - kp_source.value).norm(dim=-1).max().item())  # B x K -> scalar
    turn = 0.0
    if kp_driving.jacobian is not None and kp_source.jacobian is not None:
        from fomm_live.models.motion import inverse_2x2

        relative = kp_driving.jacobian @ inverse_2x2(kp_source.jacobian)  # B x K x 2 x 2
        eye = torch.eye(2, dtype=relative.dtype, device=relative.device)
        turn = float((relative - eye).abs().max().item())
    return Reach(shift, turn)


def calibration_poses(kp_source: Keypoints, count: int = DEFAULT_POSES, *, seed: int = 0) -> list[Keypoints]:
    """``count`` driving poses around the photo's keypoints (batch 1 each); the first is the photo's own pose.

    Convention: keypoints (x, y) in [-1, 1]; the head's linear map ``A`` acts about the keypoints' centroid and on
    the jacobians from the left (``J_driving = A J_source``), as a turn of the head moves both.
    """
    gen = torch.Generator().manual_seed(seed)
    value = kp_source.value[:1].float().cpu()  # 1 x K x 2
    centre = value.mean(dim=1, keepdim=True)  # 1 x 1 x 2

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=gen))

    poses = [Keypoints(value.clone(), None if kp_source.jacobian is None else kp_source.jacobian[:1].float().cpu())]
    for _ in range(count - 1):
        roll = math.radians(uniform(-25, 25))
        rotation = torch.tensor([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
        squash = torch.eye(2)
        axis = int(torch.rand((), generator=gen) < 0.5)  # 0: yaw (x foreshortened), 1: pitch (y)
        squash[axis, axis] = uniform(0.65, 1.0)
        linear = uniform(0.85, 1.15) * rotation @ squash  # 2 x 2
        shift = torch.tensor([uniform(-0.12, 0.12), uniform(-0.12, 0.12)])
        expression = torch.randn(value.shape, generator=gen) * 0.03  # 1 x K x 2
        moved = (value - centre) @ linear.T + centre + shift + expression  # 1 x K x 2
        jacobian = None
        if kp_source.jacobian is not None:
            jac = kp_source.jacobian[:1].float().cpu()  # 1 x K x 2 x 2
            wobble = torch.eye(2) + torch.randn(jac.shape, generator=gen) * 0.05  # 1 x K x 2 x 2
            jacobian = linear @ wobble @ jac
        poses.append(Keypoints(moved.clamp(-1, 1), jacobian))
    return poses


def photo_digest(image: torch.Tensor) -> str:
    """SHA-256 of the photo as the model sees it (the float32 model input)."""
    data = image.detach().float().cpu().contiguous()
    return hashlib.sha256(data.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def cache_key(*, weights: str, architecture: str, photo: str, runtime: str, runtime_version: str,
              poses: int) -> str:
    """Folder name of one calibration: any change of input gives another folder."""
    return folder_key({"weights": weights, "architecture": architecture, "photo": photo, "runtime": runtime,
                       "runtime_version": runtime_version, "calibration": CALIBRATION_VERSION, "poses": poses})


def folder_key(fields: dict) -> str:
    """A cache folder's name: a hash of everything that decides its contents (any change gives another folder)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def cache_folder() -> Path:
    """Where calibrations are kept: ``int8`` in the user cache folder (``models.paths.cache_root``)."""
    return cache_root() / "int8"


def read_cached(folder: Path) -> Reach | None:
    """The covered reach of a whole cached calibration in ``folder``, or None when there is none."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        return Reach(float(meta["covered_shift"]), float(meta["covered_turn"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class CacheWriter:
    """A temporary folder beside ``final``, renamed to ``final`` by ``commit`` (removed if never committed)."""

    def __init__(self, final: Path) -> None:
        self.final = final
        final.parent.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))

    def commit(self, covered: Reach, facts: dict) -> None:
        meta = {"covered_shift": covered.shift, "covered_turn": covered.turn, **facts}
        (self.folder / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        self.rename()

    def rename(self) -> None:
        """Make the written folder the final one (whatever it holds)."""
        if self.final.exists():  # a stale or broken folder of the same key
            shutil.rmtree(self.final, ignore_errors=True)
        self.folder.rename(self.final)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
