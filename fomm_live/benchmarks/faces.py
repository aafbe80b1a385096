"""The landmark backend's faces up close: contact sheets over a blink, a wide open mouth, speech and a strong head
tilt, the eyes at 4x at openness 1, 0.75, 0.5, 0.25 and 0 and in a squint (``eyes-4x.png``), a 30 degree turn on a
large photo in photo framing at 1280 x 720 (``turn-4x.png``, ``benchmarks.large_photo``), the mouth at rest, speaking
and wide open at 4x (``mouth-4x.png``, ``benchmarks.mouth_sheet``, with its measures), and the figures that say how
the lids and the mouth hold up (the lids' and the turn's own measures: ``benchmarks.face_measures``).

    python -m fomm_live.benchmarks.faces [--out DIR] [--readme benchmarks/faces.png] [--clips DIR]

Sources: the bundled photo, the bundled drawn portrait and the procedurally drawn anime faces
(``live.assets.make_anime_faces``), each cropped to its face square. The driver is the bundled photo's own face
mesh, edited by script (``live.democlip``'s edits, a wink, a squint, speech and a 30 degree roll with yaw), fed to
``render`` as landmarks, so the driver's motion is known exactly. ``--clips`` also writes the scripts as driving MP4s
for ``fomm-live animate --backend landmarks --crop face`` (``openness.mp4`` holds each openness, then a squint;
``turn.mp4`` turns to 30 degrees of yaw each way and holds it).

Figures (printed, and in ``DIR/figures.json``):

- lid sharpness: the Laplacian variance (grey levels^2, 3 x 3 kernel) of the closed lid (the upper half of the
  photo's eye opening, at the blink's peak: the lid's edge and lashes left out) over that of the skin under the eye
  in the same frame; 1 is as sharp as the skin, a blur is far below.
- relative mouth amplitude: the range over a clip of the inner-lip gap (landmarks 13-14) over the outer eye corners'
  distance (33-263), the output's (its face mesh found again by mediapipe) over the driver's.
- drawn eyes' closure (drawn faces): 1 - the drawn eye's whites and iris still visible at the blink's peak over
  those visible in the neutral frame, per eye, inside the eye's true drawn outline.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from fomm_live.live.assets import make_anime_faces
from fomm_live.live.democlip import close_eyes, open_mouth, portrait_crop, rotate_head
from fomm_live.live.landmarks import LEFT_EYE_CORNERS, RIGHT_EYE_CORNERS, LandmarkBackend
from fomm_live.live.landmarks.eyes import eye_polygon
from fomm_live.live.landmarks.points import EYES
from fomm_live.live.media import Mp4Writer, cv2, read_image
from fomm_live.live.paths import ASSETS, DEFAULT_PORTRAIT

logger = logging.getLogger(__name__)

SIZE = 256
FPS = 25
COLUMNS = ("neutral", "half-closed", "blink", "wink", "mouth wide", "speech", "tilt", "tilt + blink")
README_COLUMNS = ("neutral", "open 0.5", "blink", "mouth wide", "turn")
OPENNESS = (1.0, 0.75, 0.5, 0.25, 0.0)
EYE_COLUMNS = (*(f"open {v:g}" for v in OPENNESS), "squint")


def _bump(u: float) -> float:
    """0 at u = 0 and 1, 1 at u = 0.5 (sin^2); 0 outside [0, 1]."""
    return float(np.sin(np.pi * u) ** 2) if 0 < u < 1 else 0.0


def wink(points: np.ndarray, amount: float) -> np.ndarray:
    """The landmarks with only the image-left eye (the subject's right) closed by ``amount``."""
    closed = close_eyes(points, amount)
    out = np.asarray(points, np.float32).copy()
    side = out[:468, 0] < out[168, 0]  # left of the nose bridge in the image
    out[:468][side] = closed[:468][side]
    return out


def squint(points: np.ndarray, amount: float) -> np.ndarray:
    """The landmarks with both eyes narrowed by ``amount`` (0..1) as in a squint: the upper lids down by 0.45 of the
    eye's gap and the lower lids up by 0.25 of it, at 1."""
    out = close_eyes(points, 0.45 * amount / 0.9).astype(np.float64)  # close_eyes closes 0.9 of the gap at 1
    for _, upper, lower in EYES:
        gap = out[list(lower), 1] - np.asarray(points, np.float64)[list(upper), 1]
        out[list(lower), 1] -= 0.25 * amount * gap
    return out.astype(np.float32)


def openness(points: np.ndarray, value: float) -> np.ndarray:
    """The landmarks with both eyes at this openness of their own (1 as they are, 0 shut)."""
    return close_eyes(points, (1.0 - value) / 0.9)  # close_eyes leaves a tenth of the gap at 1


def scripts(neutral: np.ndarray) -> dict[str, list[np.ndarray]]:
    """The driving clips as landmark sequences (2 s each at FPS)."""
    n = 2 * FPS
    u = [i / (n - 1) for i in range(n)]
    blink = [close_eyes(neutral, min(1.0, 1.3 * _bump(2 * t))) if t < 0.5 else
             wink(neutral, min(1.0, 1.3 * _bump(2 * t - 1))) for t in u]
    mouth = [open_mouth(neutral, 1.3 * _bump(t)) for t in u]
    # Speech: syllables at 4 per second, of varying openings.
    speech = [open_mouth(neutral, (0.25 + 0.35 * abs(np.sin(5.3 * t))) * abs(np.sin(4 * np.pi * t * 2)))
              for t in u]
    tilt = [rotate_head(close_eyes(neutral, min(1.0, 1.3 * _bump(2 * t - 0.5))), roll=30 * _bump(t),
                        yaw=20 * _bump(t)) for t in u]
    # Each openness held for 0.4 s (1, 0.75, 0.5, 0.25, 0), then a squint.
    held = [openness(neutral, v) for v in OPENNESS for _ in range(FPS * 2 // 5)]
    held += [squint(neutral, 1.0)] * (FPS * 2 // 5)
    # A strong turn: to 30 degrees of yaw over 0.4 s, held 0.6 s, then the other way.
    turn = [rotate_head(neutral, yaw=30 * side * min(1.0, 2.5 * t)) for side in (1, -1) for t in u[::2]]
    return {"blink": blink, "mouth": mouth, "speech": speech, "tilt": tilt, "openness": held, "turn": turn}


def key_frames(neutral: np.ndarray) -> dict[str, np.ndarray]:
    """One driving pose per contact sheet column."""
    return {"neutral": neutral, "half-closed": close_eyes(neutral, 0.5), "blink": close_eyes(neutral, 1.0),
            "wink": wink(neutral, 1.0), "mouth wide": open_mouth(neutral, 1.3),
            "speech": open_mouth(neutral, 0.45), "tilt": rotate_head(neutral, roll=30, yaw=20),
            "turn": rotate_head(neutral, yaw=25),
            "tilt + blink": rotate_head(close_eyes(neutral, 1.0), roll=30, yaw=20),
            **{f"open {v:g}": openness(neutral, v) for v in OPENNESS}, "squint": squint(neutral, 1.0)}


def sources(backend: LandmarkBackend) -> dict[str, tuple[np.ndarray, list[np.ndarray] | None]]:
    """name -> (face square, the drawn eyes' true masks in it, None for the photo)."""
    image = read_image(DEFAULT_PORTRAIT)
    out = {"photo": (portrait_crop(image, backend.detect(image), SIZE), None)}
    image = read_image(ASSETS / "drawn_portrait.png")
    points = backend.detect(image)
    # The drawn portrait's eye whites: the ellipses its script draws (x = 256 -+ 58, y = 262, half axes 34 x 22).
    whites = []
    for side in (-1, 1):
        mask = np.zeros_like(image)
        cv2().ellipse(mask, (256 + side * 58, 262), (34, 22), 0, 0, 360, (255, 255, 255), -1)
        whites.append(portrait_crop(mask, points, SIZE)[..., 0] > 127)
    out["drawn"] = (portrait_crop(image, points, SIZE), whites)
    for name in make_anime_faces.VARIANTS:
        image, masks = make_anime_faces.draw(name)
        points = backend.detect(image)
        crop = portrait_crop(image, points, SIZE)
        eyes = [portrait_crop(np.repeat(m[..., None].astype(np.uint8) * 255, 3, 2), points, SIZE)[..., 0] > 127
                for m in masks]
        out[name] = (crop, eyes)
    return out


def laplacian_variance(image: np.ndarray, mask: np.ndarray) -> float:
    """Variance of the 3 x 3 Laplacian of the grey image inside ``mask`` (bool)."""
    grey = cv2().cvtColor(image, cv2().COLOR_RGB2GRAY).astype(np.float32)
    lap = cv2().Laplacian(grey, cv2().CV_32F, ksize=1)
    return float(lap[mask].var()) if mask.sum() > 4 else float("nan")


def lid_sharpness(frame: np.ndarray, points: np.ndarray) -> list[float]:
    """Per eye, the closed lid's Laplacian variance over the skin's under the eye (see the module docstring).

    Args:
        frame: The rendered blink's peak (no head motion, so the eyes are where the photo has them).
        points: The photo's 478 x 3 landmarks in output pixels.
    """
    cv = cv2()
    ratios = []
    for eye in EYES:
        polygon = eye_polygon(points, eye)
        lid = np.zeros(frame.shape[:2], np.uint8)
        cv.fillPoly(lid, [np.round(polygon).astype(np.int32)], 1)
        lid = cv.erode(lid, np.ones((3, 3), np.uint8)) > 0
        lid[int(polygon[:, 1].mean()):] = False  # the lid's upper half: its edge and the lashes left out
        width = np.ptp(polygon[:, 0])
        x0, x1 = int(polygon[:, 0].min()), int(polygon[:, 0].max())
        y0 = int(polygon[:, 1].max() + 0.15 * width)
        skin = np.zeros_like(lid)
        skin[y0:int(y0 + 0.3 * width), x0:x1] = True
        ratios.append(laplacian_variance(frame, lid) / laplacian_variance(frame, skin))
    return ratios


def eye_amplitude(points: np.ndarray) -> float:
    """Inner-lip gap (13-14) over the outer eye corners' distance (33-263), any units."""
    xy = np.asarray(points, np.float64)[:, :2]
    return float(np.linalg.norm(xy[13] - xy[14]) / np.linalg.norm(xy[RIGHT_EYE_CORNERS[0]] - xy[LEFT_EYE_CORNERS[0]]))


def visible_eye(frame: np.ndarray, mask: np.ndarray, source: np.ndarray) -> int:
    """Pixels inside a drawn eye's true outline that still show the eye: near the source's own colours there that
    are not skin (whites, iris, pupil), i.e. within 40 RGB levels of a colour the neutral eye shows there."""
    here = frame[mask].astype(np.int32)
    there = source[mask].astype(np.int32)
    return int((np.abs(here - there).sum(1) < 40).sum())


def drawn_closure(frame: np.ndarray, neutral: np.ndarray, source: np.ndarray, masks: list[np.ndarray]) -> list[float]:
    """Per drawn eye, 1 - what of the eye shows at the blink over what shows in the neutral frame (whites and iris:
    pixels unlike the face's skin and like the source's own eye at that place)."""
    skin = np.median(source[SIZE // 2 + 20:SIZE // 2 + 40, SIZE // 2 - 50:SIZE // 2 + 50].reshape(-1, 3), 0)
    out = []
    for mask in masks:
        eye = mask & (np.abs(source.astype(np.int32) - skin).sum(2) > 60)  # the drawn eye less skin-coloured pixels
        shown = visible_eye(frame, eye, source)
        base = max(visible_eye(neutral, eye, source), 1)
        out.append(1.0 - shown / base)
    return out


def sheet(cells: list[list[np.ndarray]], rows: list[str], columns: tuple[str, ...]) -> np.ndarray:
    """Cells in a grid with row and column titles."""
    cv = cv2()
    h, w = cells[0][0].shape[:2]
    left, top = 90, 22
    out = np.full((top + h * len(rows), left + w * len(columns), 3), 255, np.uint8)
    for j, title in enumerate(columns):
        cv.putText(out, title, (left + j * w + 6, 16), cv.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv.LINE_AA)
    for i, (title, row) in enumerate(zip(rows, cells, strict=True)):
        cv.putText(out, title, (6, top + i * h + h // 2), cv.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv.LINE_AA)
        for j, cell in enumerate(row):
            out[top + i * h:top + (i + 1) * h, left + j * w:left + (j + 1) * w] = cell
    return out


def zoom(frame: np.ndarray, points: np.ndarray, what: str) -> np.ndarray:
    """The eyes' or the mouth's region of a frame, 2x (nearest), SIZE wide."""
    xy = points[:468, :2]
    centre = xy[[33, 263]].mean(0) if what == "eyes" else xy[[13, 14]].mean(0)
    x0 = int(np.clip(centre[0] - SIZE / 4, 0, SIZE / 2))
    y0 = int(np.clip(centre[1] - SIZE / 8, 0, SIZE * 3 / 4))
    crop = frame[y0:y0 + SIZE // 4, x0:x0 + SIZE // 2]
    return cv2().resize(crop, (SIZE, SIZE // 2), interpolation=cv2().INTER_NEAREST)


def zoom4(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The eyes' region of a frame, 4x (nearest): SIZE / 2 x SIZE / 8 around the eyes, 2 SIZE wide."""
    centre = points[[33, 263], :2].mean(0)
    x0 = int(np.clip(centre[0] - SIZE / 4, 0, SIZE / 2))
    y0 = int(np.clip(centre[1] - SIZE / 16, 0, SIZE * 7 / 8))
    crop = frame[y0:y0 + SIZE // 8, x0:x0 + SIZE // 2]
    return cv2().resize(crop, (2 * SIZE, SIZE // 2), interpolation=cv2().INTER_NEAREST)


def write_clips(folder: Path, frames: dict[str, list[np.ndarray]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, clip in frames.items():
        with Mp4Writer(folder / f"{name}.mp4", fps=FPS, metadata={"title": f"fomm-live {name} driving clip"}) as w:
            for frame in clip:
                w.write(frame)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("faces-check"), help="folder for sheets and figures")
    parser.add_argument("--readme", type=Path, help="also write the README's sheet (the photo) to this PNG")
    parser.add_argument("--clips", type=Path, help="also write the driving clips as MP4s to this folder")
    parser.add_argument("--quick", action="store_true", help="contact sheets only, no figures")
    parser.add_argument("--only", nargs="+", help="these sources only (photo, drawn, anime_a, anime_b)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cv = cv2()
    figures: dict[str, dict] = {}
    with LandmarkBackend(size=SIZE) as backend:
        faces = sources(backend)
        if args.only:
            faces = {name: faces[name] for name in ["photo", *args.only] if name in faces}  # the driver is "photo"
        driver = faces["photo"][0]
        neutral = backend.detect(driver)
        poses = key_frames(neutral)
        clips = scripts(neutral) if args.clips or not args.quick else {}
        rows, zooms_eyes, zooms_mouth, zooms_open, readme = [], [], [], [], None
        driving_clips: dict[str, list[np.ndarray]] = {}
        if args.clips:  # the driver's own face, rendered by script (the same way as the demo clip)
            backend.set_source(driver)
            backend.calibrate(neutral)
            driving_clips = {name: [backend.render(p).frame for p in clip] for name, clip in clips.items()}
            write_clips(args.clips, driving_clips)
        for name, (square, masks) in faces.items():
            backend.set_source(square)
            backend.calibrate(neutral)
            points = backend._source_points  # noqa: SLF001 (the photo's landmarks, output pixels)
            rendered = {title: backend.render(pose).frame for title, pose in poses.items()}
            rows.append([rendered[c] for c in COLUMNS])
            zooms_eyes.append([zoom(rendered[c], points, "eyes") for c in COLUMNS])
            zooms_mouth.append([zoom(rendered[c], points, "mouth") for c in COLUMNS])
            zooms_open.append([zoom4(rendered[c], points) for c in EYE_COLUMNS])
            if name == "photo":
                readme = [rendered[c] for c in README_COLUMNS]
            if args.quick:
                continue
            entry: dict[str, object] = {}
            if name == "photo":
                entry["lid_sharpness"] = lid_sharpness(rendered["blink"], points)
            if masks is not None:
                entry["drawn_eye_closure"] = drawn_closure(rendered["blink"], rendered["neutral"], square, masks)
                entry["drawn_eye_closure_half"] = drawn_closure(rendered["half-closed"], rendered["neutral"], square,
                                                                masks)
            for clip_name in ("mouth", "speech"):
                out_amp = []
                for pose in clips[clip_name]:
                    found = backend.detect(backend.render(pose).frame)
                    out_amp.append(eye_amplitude(found) if found is not None else np.nan)
                drv = [eye_amplitude(p) for p in clips[clip_name]]
                out_range = float(np.nanmax(out_amp) - np.nanmin(out_amp))
                entry[f"mouth_amplitude_{clip_name}"] = out_range / float(np.ptp(drv))
                entry[f"mouth_frames_lost_{clip_name}"] = int(np.isnan(out_amp).sum())
            figures[name] = entry
    names = list(faces)
    cv.imwrite(str(args.out / "sheet.png"), sheet(rows, names, COLUMNS)[..., ::-1])
    cv.imwrite(str(args.out / "eyes.png"), sheet(zooms_eyes, names, COLUMNS)[..., ::-1])
    cv.imwrite(str(args.out / "mouth.png"), sheet(zooms_mouth, names, COLUMNS)[..., ::-1])
    # One sheet per openness, 4x: each is two eyes wide.
    cv.imwrite(str(args.out / "eyes-4x.png"), sheet(zooms_open, names, EYE_COLUMNS)[..., ::-1])
    # The strong turn on a large photo in photo framing, and the wide mouth, each at 4x.
    from fomm_live.benchmarks import large_photo, mouth_sheet

    large_photo.main(["--out", str(args.out / "turn-4x.png")])
    with LandmarkBackend(size=SIZE) as backend:
        mouths, mouth_figures = mouth_sheet.run(backend, sources(backend))
    side = mouths.shape[1] // 3  # a row per face, a cell per pose
    cells = [[mouths[i * side:(i + 1) * side, j * side:(j + 1) * side] for j in range(3)]
             for i in range(len(mouth_figures))]
    cv.imwrite(str(args.out / "mouth-4x.png"),
               sheet(cells, list(mouth_figures), ("neutral", "speech", "wide"))[..., ::-1])
    for name, entry in mouth_figures.items():
        print(name, "wide mouth:", " ".join(f"{k}={v:.2f}" for k, v in entry.items()))
    if args.readme and readme is not None:
        picture = sheet([readme], ["photo"], README_COLUMNS)[:, 90:]
        cv.imwrite(str(args.readme), picture[..., ::-1], [cv.IMWRITE_PNG_COMPRESSION, 9])
    if figures:
        (args.out / "figures.json").write_text(json.dumps(figures, indent=1))
        for name, entry in figures.items():
            print(name, " ".join(f"{k}={np.round(v, 3).tolist()}" for k, v in entry.items()))


if __name__ == "__main__":
    main()
