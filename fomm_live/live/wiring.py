"""Building the running parts from the runtime options: the animation backend, the source photos, the outputs.

Shared by the commands that animate (``run``, ``demo``, ``animate``); takes the dataclasses of ``live.options``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fomm_live.live.backends import Backend
from fomm_live.live.errors import UserError
from fomm_live.live.media import VIDEO_SUFFIXES
from fomm_live.live.options import CHECKPOINT_HELP, ModelOptions, OutputOptions, RemoteOptions

logger = logging.getLogger(__name__)


def resolve_backend(model: ModelOptions) -> str:
    """``auto`` -> fomm with a checkpoint, else landmarks (saying how to get the FOMM backend)."""
    backend = model.backend
    if backend == "auto":
        backend = "fomm" if model.checkpoint else "landmarks"
        if backend == "landmarks":
            logger.info("no --checkpoint: animating with the landmark backend (no weights needed); for the First "
                        "Order Motion Model pass --checkpoint vox-cpk.pth.tar (see the README)")
    if backend == "fomm" and model.checkpoint is None:
        raise UserError("--checkpoint is required: the fomm backend needs " + CHECKPOINT_HELP)
    return backend


def make_backend(model: ModelOptions, *, tracking: bool, remote: RemoteOptions | None = None,
                 lossless: bool = False) -> Backend:
    """The animation backend the options ask for.

    Args:
        model: What animates.
        tracking: The driving frames are a continuous stream (the landmark backend then tracks the face mesh from
            frame to frame instead of detecting it afresh: faster and steadier).
        remote: The FOMM of a ``fomm-live serve`` server instead of a local model (None: local).
        lossless: With ``remote``: every input frame must be animated (a file read losslessly), so a lost server is
            waited for instead of repeating the last frame.
    """
    from fomm_live.live.backends import FommBackend

    if remote is not None:
        return make_remote_backend(model, remote, lossless=lossless)
    if resolve_backend(model) == "fomm":
        return FommBackend(load_animator(model))
    from fomm_live.live.landmarks import LandmarkBackend

    return LandmarkBackend(relative=model.relative, tracking=tracking)


def make_remote_backend(model: ModelOptions, remote: RemoteOptions, *, lossless: bool) -> Backend:
    """``live.remote.client.RemoteBackend`` for ``--remote``: the server's checkpoint animates; the client's model
    options other than the motion ones are accepted and unused (said in one line)."""
    from fomm_live.live.remote.client import RemoteBackend, read_token
    from fomm_live.live.remote.protocol import JPEG_QUALITY

    if model.backend == "landmarks":
        raise UserError("--backend landmarks runs here; --remote is for the FOMM on a server: drop one of them")
    given, defaults = asdict(model), asdict(ModelOptions())
    unused = [name for name in ("checkpoint", "config", "device", "precision", "engine")
              if given[name] != defaults[name]]
    if unused:
        logger.info("--remote: the server's model animates; %s unused here",
                    ", ".join(f"--{name}" for name in unused))
    backend = RemoteBackend(remote.url, token=read_token(remote.token_file), codec=remote.codec,
                            relative=model.relative, adapt_scale=model.adapt_scale, lossless=lossless)
    logger.info("model: the FOMM at %s (%s on the wire)", remote.url,
                f"JPEG quality {JPEG_QUALITY}" if remote.codec == "jpeg" else "PNG, lossless")
    return backend


def load_animator(model: ModelOptions):
    """The ``models.Animator`` the options describe (imports torch only when needed)."""
    from fomm_live.models import Animator, CheckpointError, ConfigError, MotionOptions

    try:
        animator = Animator.from_checkpoint(model.checkpoint, model.config, device=model.device,
                                            precision=model.precision, engine=model.engine,
                                            motion=MotionOptions(relative=model.relative,
                                                                 adapt_scale=model.adapt_scale))
    except (CheckpointError, ConfigError) as err:
        raise UserError(str(err)) from err
    except RuntimeError as err:  # e.g. --device cuda without a GPU
        raise UserError(str(err)) from err
    logger.info("model: %s (%s), device %s, precision %s, %s motion%s", model.checkpoint, model.config,
                animator.device, animator.precision, "relative" if model.relative else "absolute",
                ", adapted scale" if model.relative and model.adapt_scale else "")
    return animator


def close_backend(backend: Backend | None) -> None:
    """Release what a backend holds (the FOMM model's engine, the landmark backend's face mesh, a server's stream)."""
    if backend is not None:
        backend.close()


def load_sources(specs: list[str] | tuple[str, ...] | None, *,
                 in_folders: set[str] | None = None) -> list[tuple[str, np.ndarray]]:
    """Read every source photo (files, or the images of folders in name order); the bundled portrait by default.

    Each photo is named by its path as given (a folder's by the folder's path and its file name), so that every
    message about it says which file it is. A photo named on the command line that cannot be read stops the command;
    one found in a folder is left out with a warning naming it, as long as the folder holds another.

    Args:
        specs: Photo files and folders; None or empty: the bundled portrait.
        in_folders: Receives the names of the photos found in folders (``live.avatars.prepare_avatars`` may leave
            those out too, when the backend finds no face in them).
    """
    from fomm_live.live.media import IMAGE_SUFFIXES, read_image
    from fomm_live.live.paths import DEFAULT_PORTRAIT

    if not specs:
        return [(DEFAULT_PORTRAIT.name, read_image(DEFAULT_PORTRAIT))]
    photos: list[tuple[str, np.ndarray]] = []
    for spec in specs:
        path = Path(spec)
        if not path.is_dir():
            photos.append((str(path), read_image(path)))
            continue
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UserError(f"{path} holds no image files")
        read = []
        for file in found:
            try:
                read.append((str(file), read_image(file)))
            except UserError as err:
                logger.warning("%s; it is left out", err)
        if not read:
            raise UserError(f"no photo in {path} could be read (each is named above)")
        photos.extend(read)
        if in_folders is not None:
            in_folders.update(name for name, _ in read)
    if len(photos) > 9:
        logger.info("%d avatars: hotkeys 1-9 reach the first nine, n/p all of them", len(photos))
    return photos


def browser_port(spec: str) -> int | None:
    """The port of an ``--output browser[:PORT]`` (None: another output); a bad port is a ``UserError``."""
    from fomm_live.live.output.browser import parse_browser_spec

    try:
        return parse_browser_spec(spec)
    except ValueError as err:
        raise UserError(str(err)) from err


def open_outputs(outputs: OutputOptions, *, width: int, height: int, fps: float, clock: str = "capture",
                 stats: object | None = None) -> tuple[list, object | None]:
    """The sinks the options ask for, and the preview window (or None). Unavailable outputs are reported once: as
    warnings when the run goes on with the others, or in the one line of the error when nothing is left.

    Args:
        outputs: What to open.
        width: Output frame width.
        height: Output frame height.
        fps: The input's frame rate (announced to the virtual camera; a recording's nominal rate).
        clock: How recordings are timed: ``capture`` (live sources, paced files) or ``frames`` (a file read
            losslessly, faster than real time).
        stats: The run's ``live.stats.PipelineStats``: recordings count there the frames their encoder dropped.
    """
    from fomm_live.live.output.browser import BrowserSink
    from fomm_live.live.output.sinks import Mp4Sink, SinkUnavailable, VirtualCamSink
    from fomm_live.live.output.window import WindowSink, display_available

    sinks, window, problems = [], None, []
    wanted = list(outputs.outputs) or ["virtualcam"]
    want_window = outputs.preview and (display_available() or "window" in wanted)
    for spec in wanted:
        if spec == "window":
            continue
        try:
            if spec == "virtualcam":
                sinks.append(VirtualCamSink(width=width, height=height, fps=fps, mirror=outputs.mirror_output))
            elif (port := browser_port(spec)) is not None:
                sinks.append(BrowserSink(width=width, height=height, fps=fps, port=port,
                                         mirror=outputs.mirror_output))
            elif spec.lower().endswith(VIDEO_SUFFIXES):
                sinks.append(Mp4Sink(spec, fps=fps, clock=clock, stats=stats))
            else:
                raise UserError(f"unknown --output {spec!r}: use virtualcam, window, browser[:PORT] or a PATH.mp4")
        except SinkUnavailable as err:
            problems.append(str(err))
    if want_window:
        try:
            window = WindowSink()
        except SinkUnavailable as err:
            problems.append(str(err))
    if not sinks and window is None:
        raise UserError("nothing to show or send frames to: " + "; ".join(problems)
                        + "; add --output PATH.mp4 to record instead")
    for problem in problems:
        logger.warning("%s", problem)
    return sinks, window
