"""Pipeline benchmark: the real live loop on a driving clip, stage by stage and end to end.

Each run feeds a video file through the same code as a camera (``live.pipeline.LivePipeline``) into a recording sink:
once paced at the clip's fps as a camera delivers frames (``realtime``: stale frames are dropped and counted, and the
end-to-end latency is what a viewer sees), and once unpaced for throughput (every frame, as fast as it goes).

    python -m benchmarks.pipeline --clip driving.mp4 [--checkpoint CKPT --config vox-256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from live.backends import Backend
from live.capture import OpenCVSource
from live.face import FaceDetector
from live.pipeline import LivePipeline, PipelineOptions, prepare_avatars
from live.sinks import RecordingSink
from live.stats import PipelineStats


def run_pipeline_benchmark(make_backend: Callable[[], Backend], clip: str | Path, *, source_image, realtime: bool,
                           max_frames: int | None = None, detector: FaceDetector | None = None,
                           progress: Callable[[int], None] | None = None) -> dict:
    """One run of the live loop on ``clip``; returns the stats summary plus ``achieved_fps`` and ``wall_s``.

    Args:
        make_backend: Builds the backend to measure (called once).
        clip: Driving video.
        source_image: H x W x 3 uint8 RGB photo to animate.
        realtime: Pace the clip at its fps like a camera (else unpaced, every frame).
        max_frames: Stop after this many input frames.
        detector: A face detector to reuse (one is opened and closed otherwise).
        progress: Called with the number of frames output so far, now and then.
    """
    own_detector = detector is None
    detector = detector or FaceDetector()
    try:
        backend = make_backend()
        source = OpenCVSource(str(clip))
        sink = _ProgressSink(progress)
        pipeline = LivePipeline(source, backend, prepare_avatars([("source", source_image)], backend.size, detector),
                                [sink], options=PipelineOptions(realtime=realtime, max_frames=max_frames),
                                detector=detector, stats=PipelineStats())
        start = time.perf_counter()
        summary = pipeline.run()
        wall = time.perf_counter() - start
    finally:
        if own_detector:
            detector.close()
    summary["end_to_end_samples_ms"] = [round(float(v), 3) for v in pipeline.stats.end_to_end_values()[0]]
    summary["wall_s"] = round(wall, 3)
    summary["achieved_fps"] = round(summary["frames_out"] / wall, 2) if wall > 0 else 0.0
    summary["mode"] = "realtime" if realtime else "unpaced"
    summary["backend"] = backend.name
    summary["input"] = source.description
    return summary


class _ProgressSink(RecordingSink):
    def __init__(self, progress: Callable[[int], None] | None) -> None:
        super().__init__(keep_frames=False, keep_infos=False)
        self.progress = progress

    def send(self, frame, info) -> None:
        super().send(frame, info)
        if self.progress is not None:
            self.progress(self.count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", help="driving video (default: the bundled clip on a 640x480 canvas)")
    parser.add_argument("--checkpoint", help="FOMM checkpoint (default: random weights of --config)")
    parser.add_argument("--config", default="vox-256")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend", default="landmarks", choices=["fomm", "landmarks"])
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    from benchmarks.suite import _fomm_backend_factory, _landmark_backend, bench_clip
    from live.media import read_image
    from live.paths import DEFAULT_PORTRAIT

    factory = (_fomm_backend_factory(args.checkpoint, args.config, args.device, "auto") if args.backend == "fomm"
               else _landmark_backend)
    clip = args.clip or str(bench_clip())
    results = [run_pipeline_benchmark(factory, clip, source_image=read_image(DEFAULT_PORTRAIT), realtime=realtime,
                                      max_frames=args.max_frames) for realtime in (True, False)]
    for run in results:
        run.pop("end_to_end_samples_ms")
    text = json.dumps(results, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
