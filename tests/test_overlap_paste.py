"""Photo framing's paste-back on a thread of its own (``FOMM_LIVE_OVERLAP_PASTE``): on a file read losslessly the
loop sends exactly the frames, in the same order and with the same infos, as with the paste-back inline; the frame
held while no face is in view is the last pasted one; and the paste thread is not started where it cannot help (a
preview is built from the pasted frame)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from clips import moving_frames, portrait, write_clip
from test_pipeline import tiny_backend

from live.capture import OpenCVSource
from live.pipeline import LivePipeline, PipelineOptions, prepare_avatars
from live.sinks import RecordingSink

SIZE = (320, 240)


def run(clip: Path, overlap: bool) -> tuple[LivePipeline, RecordingSink]:
    backend = tiny_backend()
    sink = RecordingSink()
    pipeline = LivePipeline(OpenCVSource(str(clip)), backend,
                            prepare_avatars([("a", portrait())], backend.size, None, crop="none"), [sink],
                            options=PipelineOptions(output_size=SIZE, framing="photo", crop="none", pipelining=False,
                                                    calibrate_first=True, overlap_paste=overlap))
    pipeline.run()
    return pipeline, sink


def test_the_paste_thread_sends_the_same_frames_as_the_inline_paste(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "in.mp4", moving_frames(24, still=4), fps=25)
    inline, inline_sink = run(clip, overlap=False)
    overlapped, overlapped_sink = run(clip, overlap=True)
    assert inline.model._pasting is None and overlapped.model._pasting is not None
    assert overlapped.stats.summary()["stages_ms"]["compose"]["count"] > 0, "the paste thread reports its time"
    assert len(inline_sink.frames) == len(overlapped_sink.frames) == 24
    assert [i.index for i in overlapped_sink.infos] == list(range(24))
    assert sum(i.animated for i in overlapped_sink.infos) > 15
    for i, (a, b) in enumerate(zip(inline_sink.frames, overlapped_sink.frames, strict=True)):
        assert np.array_equal(a, b), f"frame {i} differs: max {np.abs(a.astype(int) - b.astype(int)).max()}"
    assert isinstance(overlapped.model.held_frame(), np.ndarray)
    assert np.array_equal(overlapped.model.held_frame(), inline.model.held_frame())


def test_no_paste_thread_with_a_preview_or_without_photo_framing() -> None:
    from live.calibration import AutoCalibrator
    from live.hotkeys import Controls
    from live.stages import ModelStage
    from live.stats import PipelineStats

    backend = tiny_backend()
    avatars = prepare_avatars([("a", portrait())], backend.size, None, crop="none")

    def stage(*, preview: bool, framing: str) -> ModelStage:
        return ModelStage(backend=backend, avatars=avatars, output_size=SIZE, crop_mode="none", smoother=None,
                          calibrator=AutoCalibrator(), controls=Controls(), label=True, preview=preview,
                          stats=PipelineStats(), camera_lost=lambda: False, framing=framing, overlap_paste=True)

    assert stage(preview=True, framing="photo")._pasting is None, "the preview is built from the pasted frame"
    assert stage(preview=False, framing="face")._pasting is None, "nothing to paste"
    overlapped = stage(preview=False, framing="photo")
    assert overlapped._pasting is not None
    overlapped.close()
    overlapped.close()
