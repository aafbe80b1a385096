"""``fomm-live serve`` and ``--remote``: the real command started once for this module (Ray Serve on the CPU with the
tiny golden model, a token, on loopback), real WebSocket clients, then SIGTERM and a check that its processes are
gone. The server is stopped and started again in the last test (a fault mid-run). No timing assertions."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import golden_dir, read_rgb
from helpers.serving import TOKEN, Server, golden

from fomm_live.live.capture.driving import resize_to_square
from fomm_live.live.cli import main
from fomm_live.live.errors import UserError
from fomm_live.live.media import read_image
from fomm_live.live.paths import DEFAULT_PORTRAIT
from fomm_live.live.remote import protocol
from fomm_live.live.remote.client import RemoteBackend
from fomm_live.models.engines import psnr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("ray.serve", reason="the serve extra (ray[serve]) is not installed")
    pytest.importorskip("websockets", reason="the serve extra (websockets) is not installed")
    srv = Server(tmp_path_factory.mktemp("serve"))
    srv.start()
    yield srv
    left = srv.stop()
    assert not left, f"SIGTERM left processes of fomm-live serve running: {sorted(left)}"


def local_faces(source: np.ndarray, neutral: np.ndarray, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The local model's faces for ``frames`` (fp32 CPU), the reference for the remote ones."""
    from fomm_live.models import Animator, tensor_to_image

    tiny = golden_dir("tiny")
    animator = Animator.from_checkpoint(tiny / "checkpoint.pth.tar", tiny / "config.yaml", device="cpu",
                                        precision="fp32", engine="eager")
    animator.set_source(source)
    animator.calibrate(neutral)
    return [tensor_to_image(animator.generate(animator.keypoints(f))["prediction"]) for f in frames]


def client(server: Server, **kwargs) -> RemoteBackend:
    kwargs.setdefault("token", TOKEN)
    kwargs.setdefault("codec", "png")
    return RemoteBackend(server.url, start_timeout=30, **kwargs)


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())


def test_serve_logs_serving_on_its_url(server: Server) -> None:
    assert f"serving on {server.url}" in server.log.read_text()
    assert "streams must carry the token" in server.log.read_text()


def test_animate_remote_png_equals_local_within_one_level_and_jpeg_psnr(server: Server, tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    tiny = golden_dir("tiny")
    driving = tmp_path / "driving"
    driving.mkdir()
    for i in range(3):
        shutil.copy(tiny / f"driving_{i}.png", driving / f"driving_{i}.png")
    common = ["animate", "--source", str(tiny / "source.png"), "--checkpoint", str(tiny / "checkpoint.pth.tar"),
              "--config", str(tiny / "config.yaml"), "--device", "cpu", "--precision", "fp32", "--driving",
              str(driving), "--no-label"]
    remote = ["--remote", server.url, "--token-file", str(server.token_file)]
    assert main([*common, "--output", str(tmp_path / "local")]) == 0
    with caplog.at_level(logging.INFO):
        assert main([*common, *remote, "--remote-codec", "png", "--output", str(tmp_path / "png")]) == 0
    assert "--checkpoint, --config, --device, --precision unused here" in caplog.text
    assert main([*common, *remote, "--output", str(tmp_path / "jpeg")]) == 0
    psnrs = []
    for i in range(3):
        local, png, jpeg = (read_rgb(tmp_path / d / f"{i:05d}.png").astype(np.float64)
                            for d in ("local", "png", "jpeg"))
        assert max_diff(png, local) <= 1, f"frame {i}: lossless remote differs from local by {max_diff(png, local)}"
        psnrs.append(psnr(jpeg, local, peak=255))
    print(f"JPEG quality {protocol.JPEG_QUALITY} vs local: PSNR {', '.join(f'{p:.1f}' for p in psnrs)} dB")
    assert min(psnrs) > 30, psnrs  # JPEG both ways at quality 90: a visible loss would be well under 30 dB


def test_run_remote_on_a_file_sends_every_frame_and_records_them_all(server: Server, tmp_path: Path) -> None:
    from helpers.clips import moving_frames, write_clip

    from fomm_live.live.capture.driving import open_driving

    clip = write_clip(tmp_path / "clip.mp4", moving_frames(20, still=20))  # 0.8 s: calibrates once still 0.5 s
    before = server.stats()
    out, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
    assert main(["run", "--camera", str(clip), "--output", str(out), "--no-preview", "--crop", "none",
                 "--stats-json", str(stats), "--remote", server.url, "--token-file", str(server.token_file)]) == 0
    summary = json.loads(stats.read_text())
    assert (summary["frames_in"], summary["frames_out"], summary["frames_dropped"]) == (20, 20, 0), summary
    after = server.stats()
    sent = after["frames"] - before["frames"]
    assert 1 <= sent <= 20, sent  # every frame after the calibration was rendered remotely
    assert after["fields"] - before["fields"] == sent, "run's photo framing with detail: a motion field per frame"
    recorded = open_driving(out)
    count = 0
    while recorded.read() is not None:
        count += 1
    recorded.close()
    assert count == 20


def test_two_clients_get_their_own_avatars_and_a_third_reuses_the_cached_one(server: Server) -> None:
    source, neutral, drive = golden("source.png"), golden("driving_0.png"), golden("driving_1.png")
    other = resize_to_square(read_image(DEFAULT_PORTRAIT), 256)  # a second avatar: the bundled portrait
    before = server.stats()
    a, b = client(server), client(server)
    a.set_source(source)
    b.set_source(other)
    for backend in (a, b):
        backend.calibrate(backend.detect(neutral))
    got: dict[str, np.ndarray] = {}
    threads = [threading.Thread(target=lambda n=n, c=c: got.__setitem__(n, c.render(c.detect(drive)).frame))
               for n, c in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    want_a, want_b = local_faces(source, neutral, [drive])[0], local_faces(other, neutral, [drive])[0]
    assert max_diff(got["a"], want_a) <= 1 and max_diff(got["b"], want_b) <= 1
    # The tiny golden model has random weights, so its faces depend little on the avatar; they still differ by far
    # more than the 1-level tolerance, which is what tells the two streams apart.
    assert max_diff(got["a"], want_b) > 2 and max_diff(got["b"], want_a) > 2, "each stream got its own avatar"
    middle = server.stats()
    c = client(server)
    c.set_source(source)
    c.calibrate(c.detect(neutral))
    assert max_diff(c.render(c.detect(drive)).frame, want_a) <= 1
    after = server.stats()
    for backend in (a, b, c):
        backend.close()
    assert middle["avatar_encodings"] - before["avatar_encodings"] <= 2
    assert after["avatar_encodings"] == middle["avatar_encodings"], "the third client's avatar was encoded again"
    assert after["avatar_cache_hits"] == middle["avatar_cache_hits"] + 1
    assert after["frames"] >= middle["frames"] + 1 and after["streams_total"] == middle["streams_total"] + 1


def test_the_server_applies_each_streams_strengths_from_the_frame_it_came_with(server: Server) -> None:
    """A client's head and expression strengths travel with its frames and the server applies them to its stream
    only: the remote faces equal the local model's at the same strengths (within 1 level), at (0, 0) the face is
    the neutral frame's, and a second stream at (1, 1) at the same time gets today's face."""
    from fomm_live.models import Animator, Strengths, tensor_to_image

    source, neutral = golden("source.png"), golden("driving_0.png")
    drives = [golden("driving_1.png"), golden("driving_2.png")]
    tiny = golden_dir("tiny")
    animator = Animator.from_checkpoint(tiny / "checkpoint.pth.tar", tiny / "config.yaml", device="cpu",
                                        precision="fp32", engine="eager")
    animator.set_source(source)
    animator.calibrate(neutral)
    want = {}
    for pair in ((0.0, 1.0), (1.0, 0.0), (0.0, 0.0), (1.0, 1.0)):
        animator.strengths = Strengths(*pair)
        want[pair] = [tensor_to_image(animator.generate(animator.keypoints(d))["prediction"]) for d in drives]
    a, b = client(server), client(server)
    for backend in (a, b):
        backend.set_source(source)
        backend.calibrate(backend.detect(neutral))
    for pair in ((0.0, 1.0), (1.0, 0.0), (0.0, 0.0)):
        a.set_strengths(*pair)
        for i, drive in enumerate(drives):
            got = a.render(a.detect(drive)).frame
            assert max_diff(got, want[pair][i]) <= 1, f"strengths {pair}, frame {i}: {max_diff(got, want[pair][i])}"
            other = b.render(b.detect(drive)).frame
            assert max_diff(other, want[(1.0, 1.0)][i]) <= 1, f"the other stream took strengths {pair}"
        assert max(max_diff(want[pair][i], want[(1.0, 1.0)][i]) for i in range(2)) > 2, f"{pair} changed nothing"
    still = a.render(a.detect(neutral)).frame
    assert max_diff(a.render(a.detect(drives[1])).frame, still) <= 1, "at (0, 0) the face holds the neutral pose"
    with pytest.raises(ValueError, match="expression strength must be from 0 to 2"):
        a.set_strengths(1.0, 2.5)
    for backend in (a, b):
        backend.close()


def test_the_server_smooths_keypoints_with_the_clients_options_and_times_only_when_asked(server: Server) -> None:
    """A ``MotionSmoother`` in front of ``RemoteBackend`` (as the live loop has it) stamps each crop with its options
    and media time; the server then smooths the keypoints it finds as the local model's loop does (calibrating on the
    smoothed pose, the frame it calibrated on not filtered twice), within 1 level. Unstamped crops are not smoothed,
    and the two differ by far more than that on a face that moves."""
    from helpers.clips import moving_frames

    from fomm_live.live.loop.smoothing import MotionSmoother
    from fomm_live.models import Animator, tensor_to_image

    source = golden("source.png")
    crops = [resize_to_square(f, 256) for f in moving_frames(8, still=2)]  # the face sways from frame 2
    times = [i / 25 for i in range(len(crops))]
    tiny = golden_dir("tiny")
    animator = Animator.from_checkpoint(tiny / "checkpoint.pth.tar", tiny / "config.yaml", device="cpu",
                                        precision="fp32", engine="eager")
    animator.set_source(source)
    local_smoother = MotionSmoother(min_cutoff=0.5, beta=0.5)
    want = []
    for i, (crop, t) in enumerate(zip(crops, times, strict=True)):
        kp = local_smoother(animator.keypoints(crop), t)
        if i == 0:
            animator.calibrate(kp)
        want.append(tensor_to_image(animator.generate(kp)["prediction"]))

    def remote_faces(smoother: MotionSmoother | None) -> list[np.ndarray]:
        backend = client(server)
        backend.set_source(source)
        faces = []
        for i, (crop, t) in enumerate(zip(crops, times, strict=True)):
            motion = backend.detect(crop)
            motion = smoother(motion, t) if smoother is not None else motion
            if i == 0:
                backend.calibrate(motion)
            faces.append(backend.render(motion).frame)
        backend.close()
        return faces

    smoothed = remote_faces(MotionSmoother(min_cutoff=0.5, beta=0.5))
    raw = remote_faces(None)
    unsmoothed = local_faces(source, crops[0], crops)
    for i in range(len(crops)):
        assert max_diff(smoothed[i], want[i]) <= 1, f"frame {i}: smoothed, {max_diff(smoothed[i], want[i])} off"
        assert max_diff(raw[i], unsmoothed[i]) <= 1, f"frame {i}: unsmoothed, {max_diff(raw[i], unsmoothed[i])} off"
    assert max_diff(smoothed[0], raw[0]) <= 1, "the first sample passes the filter unchanged"
    assert max(max_diff(a, b) for a, b in zip(smoothed, raw, strict=True)) > 2, "smoothing changed nothing"


def test_animate_crop_face_remote_smooths_as_local_and_no_smoothing_differs(server: Server, tmp_path: Path) -> None:
    """``animate --crop face`` smooths the crop box locally and the keypoints on the server: its frames equal the
    local run's within 1 level with the lossless codec; ``--no-smoothing`` gives other frames."""
    from helpers.clips import moving_frames, write_clip

    clip = write_clip(tmp_path / "clip.mp4", moving_frames(10, still=3))
    tiny = golden_dir("tiny")
    common = ["animate", "--source", str(tiny / "source.png"), "--checkpoint", str(tiny / "checkpoint.pth.tar"),
              "--config", str(tiny / "config.yaml"), "--device", "cpu", "--precision", "fp32", "--driving",
              str(clip), "--crop", "face", "--no-label"]
    remote = ["--remote", server.url, "--token-file", str(server.token_file), "--remote-codec", "png"]
    assert main([*common, "--output", str(tmp_path / "local")]) == 0
    assert main([*common, *remote, "--output", str(tmp_path / "remote")]) == 0
    assert main([*common, *remote, "--no-smoothing", "--output", str(tmp_path / "raw")]) == 0
    names = sorted(p.name for p in (tmp_path / "local").glob("*.png"))
    assert len(names) == 10 and names == sorted(p.name for p in (tmp_path / "remote").glob("*.png"))
    diffs = []
    for name in names:
        local, smoothed, raw = (read_rgb(tmp_path / d / name) for d in ("local", "remote", "raw"))
        assert max_diff(smoothed, local) <= 1, f"{name}: remote differs from local by {max_diff(smoothed, local)}"
        diffs.append(max_diff(smoothed, raw))
    assert max(diffs) > 2, f"--no-smoothing changed nothing: {diffs}"


def test_photo_framed_remote_run_with_detail_matches_local_within_three_levels(server: Server,
                                                                                tmp_path: Path) -> None:
    """``--framing photo`` with the detail transfer, the face from the server (PNG) and the motion field with it: the
    output frames equal the local run's within 3 levels. The face is lossless and within 1 level of the local model's
    (float32 sums in another order on the server); the field's encoding moves it by at most 0.008 model pixels (0.015
    output pixels here; the occlusion by 0.002), and the host paste-back (``live.framing.pasteback_field``) samples the
    photo's detail at OpenCV's 1/32-pixel positions, so that a field that close can move a sample by 1/32 pixel: up to
    1.3 levels on the photo's finest texture, rounded to 2: 1 + 2 (measured: 1, 2 and 3 on these frames). With
    ``--no-detail`` no field is asked for or sent, and the frames lose the photo's detail: tens of levels apart."""
    from fomm_live.live.paths import DEFAULT_PORTRAIT

    tiny = golden_dir("tiny")
    driving = tmp_path / "driving"
    driving.mkdir()
    for i in range(3):
        shutil.copy(tiny / f"driving_{i}.png", driving / f"driving_{i}.png")
    common = ["animate", "--source", str(DEFAULT_PORTRAIT), "--checkpoint", str(tiny / "checkpoint.pth.tar"),
              "--config", str(tiny / "config.yaml"), "--device", "cpu", "--precision", "fp32", "--driving",
              str(driving), "--no-label", "--framing", "photo", "--output-size", "640x360"]
    remote = ["--remote", server.url, "--token-file", str(server.token_file), "--remote-codec", "png"]
    assert main([*common, "--output", str(tmp_path / "local")]) == 0
    before = server.stats()
    assert main([*common, *remote, "--output", str(tmp_path / "remote")]) == 0
    middle = server.stats()
    assert main([*common, *remote, "--no-detail", "--output", str(tmp_path / "plain")]) == 0
    after = server.stats()
    assert middle["fields"] - before["fields"] == 3, "one motion field per rendered frame"
    assert after["fields"] == middle["fields"] and after["frames"] == middle["frames"] + 3, "--no-detail: no field"
    diffs = []
    for i in range(3):
        local, got, plain = (read_rgb(tmp_path / d / f"{i:05d}.png") for d in ("local", "remote", "plain"))
        assert local.shape == (360, 640, 3)
        diffs.append((max_diff(got, local), max_diff(plain, got)))
    print(f"photo framing, remote vs local (max levels), and --no-detail vs detail: {diffs}")
    assert all(d <= 3 for d, _ in diffs), f"remote differs from local by more than 3 levels: {diffs}"
    assert all(d > 10 for _, d in diffs), f"the detail transfer changed nothing: {diffs}"


def test_the_servers_field_equals_the_local_one_and_streams_not_asking_get_none(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """``render(..., detail=True)`` brings the server's deformation and occlusion map, equal to the local
    model's within the encoding's rounding (1 / 16384 grid units, 1 / 510) plus float32 sums in another order
    (1e-5); a raw stream gets a field only while it asks; a bad ``want`` and an old protocol version are refused in
    one line."""
    from fomm_live.models import Animator

    source, neutral, drive = golden("source.png"), golden("driving_0.png"), golden("driving_1.png")
    tiny = golden_dir("tiny")
    animator = Animator.from_checkpoint(tiny / "checkpoint.pth.tar", tiny / "config.yaml", device="cpu",
                                        precision="fp32", engine="eager")
    animator.set_source(source)
    animator.calibrate(neutral)
    want = animator.generate(animator.keypoints(drive), with_motion=True)
    backend = client(server)
    backend.set_source(source)
    backend.calibrate(backend.detect(neutral))
    rendered = backend.render(backend.detect(drive), detail=True)
    backend.close()
    deformation_error = float(np.abs(rendered.field.deformation - want["deformation"][0].numpy()).max())
    occlusion_error = float(np.abs(rendered.field.occlusion - want["occlusion_map"][0, 0].numpy()).max())
    print(f"field vs local: deformation {deformation_error * 128:.4f} model pixels, occlusion {occlusion_error:.5f}")
    assert deformation_error <= 0.5 / protocol.FIELD_SCALE + 1e-5 and occlusion_error <= 0.5 / 255 + 1e-5
    face = rendered.frame
    assert max_diff(face, tensor_image(want["prediction"])) <= 1

    before = server.stats()
    with raw_stream(server) as ws:
        assert ask(ws, {"type": "hello", "version": protocol.PROTOCOL_VERSION, "codec": "png",
                        "relative": False})["type"] == "ready"
        assert "'want'" in ask(ws, {"type": "field", "want": "yes"})["message"]
        avatar = protocol.content_hash(source)
        if not ask(ws, {"type": "avatar", "hash": avatar})["known"]:
            ask(ws, {"type": "upload", "hash": avatar}, protocol.encode_image(source, "png"))
        crop = protocol.encode_image(drive, "png")

        def frame(frame_id: int) -> tuple[dict, bytes]:
            ws.send(protocol.pack({"type": "frame", "id": frame_id}, crop))
            return protocol.unpack(ws.recv(timeout=60))

        plain, data = frame(1)
        assert plain["type"] == "frame" and "field" not in plain, "a stream not asking got a field"
        assert protocol.decode_image(data).shape == (256, 256, 3)
        assert ask(ws, {"type": "field", "want": True}) == {"type": "ok"}
        header, data = frame(2)
        image, field = protocol.split_frame(header, data)
        deformation, occlusion = protocol.decode_field(header["field"], field)
        assert deformation.shape == (64, 64, 2) and occlusion.shape == (64, 64)
        assert ask(ws, {"type": "field", "want": False}) == {"type": "ok"}
        assert "field" not in frame(3)[0]
        old = ask(ws, {"type": "hello", "version": protocol.PROTOCOL_VERSION - 1, "codec": "png"})["message"]
        assert old == (f"protocol version {protocol.PROTOCOL_VERSION - 1}; this server speaks "
                       f"{protocol.PROTOCOL_VERSION}: update the client or the server")
    assert server.stats()["fields"] == before["fields"] + 1
    monkeypatch.setattr("fomm_live.live.remote.client.PROTOCOL_VERSION", protocol.PROTOCOL_VERSION - 1)
    with pytest.raises(UserError, match=r"^the server at .* refused the stream: protocol version \d+; this server "
                                        r"speaks \d+: update the client or the server$"):
        client(server)


def tensor_image(prediction) -> np.ndarray:
    from fomm_live.models import tensor_to_image

    return tensor_to_image(prediction)


def raw_stream(server: Server, token: str | None = TOKEN):
    from websockets.sync.client import connect

    ws = connect(server.url.replace("http", "ws") + protocol.STREAM_ROUTE, max_size=None,
                 additional_headers={"Authorization": f"Bearer {token}"} if token else None)
    return ws


def ask(ws, header: dict, payload: bytes = b"") -> dict:
    ws.send(protocol.pack(header, payload))
    return protocol.unpack(ws.recv(timeout=60))[0]


def test_malformed_messages_get_clear_errors_and_the_server_serves_the_others(server: Server) -> None:
    good = client(server)
    good.set_source(golden("source.png"))
    good.calibrate(good.detect(golden("driving_0.png")))
    want = local_faces(golden("source.png"), golden("driving_0.png"), [golden("driving_2.png")])[0]
    with raw_stream(server) as ws:
        ws.send(b"\x00\x01garbage")
        reply = protocol.unpack(ws.recv(timeout=60))[0]
        assert reply["type"] == "error" and not reply["fatal"] and "header" in reply["message"]
        assert "before" not in reply["message"]
        ws.send("text, not binary")
        assert "expected a binary message" in protocol.unpack(ws.recv(timeout=60))[0]["message"]
        assert "must be 'hello'" in ask(ws, {"type": "frame", "id": 1})["message"]
        assert ask(ws, {"type": "hello", "version": protocol.PROTOCOL_VERSION, "codec": "png"})["type"] == "ready"
        crop = protocol.encode_image(golden("driving_1.png"), "png")
        assert "no avatar yet" in ask(ws, {"type": "frame", "id": 4}, crop)["message"]
        unknown = ask(ws, {"type": "avatar", "hash": "ab" * 32})
        assert unknown == {"type": "avatar", "hash": "ab" * 32, "known": False}
        missing = ask(ws, {"type": "frame", "id": 3}, crop)
        assert missing["message"] == f"unknown avatar {'ab' * 32}: upload it first" and missing["id"] == 3
        forged = ask(ws, {"type": "upload", "hash": "ab" * 32}, protocol.encode_image(golden("source.png"), "png"))
        assert "does not match its hash" in forged["message"]
        huge = protocol.encode_image(np.zeros((protocol.MAX_SIDE + 8, 32, 3), np.uint8), "png")
        assert "out of bounds" in ask(ws, {"type": "calibrate"}, huge)["message"]
        assert "neither PNG nor JPEG" in ask(ws, {"type": "calibrate"}, b"GIF89a" + bytes(64))["message"]
        assert "unknown message type" in ask(ws, {"type": "shutdown"})["message"]
        neutral = protocol.encode_image(golden("driving_0.png"), "png")
        assert "two numbers" in ask(ws, {"type": "calibrate", "t": 0.0, "smooth": "fast"}, neutral)["message"]
        assert "min_cutoff > 0" in ask(ws, {"type": "calibrate", "t": 0.0, "smooth": [0, 1]}, neutral)["message"]
        assert "finite number" in ask(ws, {"type": "calibrate", "smooth": [1.0, 2.0]}, neutral)["message"]
        # The same stream still works after all of that, and so does the other client.
        assert good.render(good.detect(golden("driving_2.png"))).frame is not None
    from websockets.exceptions import ConnectionClosed

    with raw_stream(server) as ws:  # a message over the limit ends its stream, refused from its frame header
        with pytest.raises(ConnectionClosed) as closed:
            ask(ws, {"type": "frame", "id": 2}, b"\x89PNG" + bytes(protocol.MAX_MESSAGE_BYTES))
        assert closed.value.rcvd.code == 1009  # message too big; the reason names the limit
        assert f"exceeds limit of {protocol.MAX_MESSAGE_BYTES} bytes" in closed.value.rcvd.reason
    assert max_diff(good.render(good.detect(golden("driving_2.png"))).frame, want) <= 1
    good.close()


def test_a_wrong_or_missing_token_is_refused_with_one_clear_line(server: Server) -> None:
    for token in ("wrong-token", None):
        with pytest.raises(UserError, match="refused the stream: wrong or missing token"):
            RemoteBackend(server.url, token=token, start_timeout=30)
        with pytest.raises(urllib.error.HTTPError) as err:
            server.stats(token)
        assert err.value.code == 401
    assert server.stats()["errors"] >= 2


class PacedFrames:
    """A camera stand-in: the golden driving frames in turn at 10 fps until ``stop`` is set."""

    fps, width, height, is_file, description = 10.0, 256, 256, False, "paced test frames"

    def __init__(self) -> None:
        self.frames = [golden(f"driving_{i}.png") for i in range(3)]
        self.stop = threading.Event()
        self.count = 0
        self.started = time.perf_counter()

    def read(self) -> np.ndarray | None:
        if self.stop.is_set():
            return None
        time.sleep(max(0.0, self.started + self.count / self.fps - time.perf_counter()))
        self.count += 1
        return self.frames[self.count % 3].copy()

    def rewind(self) -> bool:
        return False

    def close(self) -> None:
        pass


class Recording:
    """A sink that keeps each frame's arrival time; ``wait_for(n)`` returns once it has ``n`` frames."""

    name = "recording"

    def __init__(self) -> None:
        self.times: list[float] = []
        self._arrived = threading.Condition()

    def send(self, frame: np.ndarray, info) -> None:
        with self._arrived:
            self.times.append(time.perf_counter())
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.times) >= count, timeout)

    def close(self) -> None:
        pass


def test_the_client_recovers_when_the_server_restarts_mid_run(server: Server,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """Last in the module: it stops the module's server and starts it again. Photo framing with the detail
    transfer: the outage repeats the last face with its motion field, and the new server is asked for the field
    again (it counts fields from zero)."""
    from fomm_live.live.loop.pipeline import LivePipeline, PipelineOptions, prepare_avatars
    from fomm_live.live.options import CalibrationOptions, FrameOptions, PacingOptions, TrackingOptions

    backend = client(server, codec="jpeg")
    avatars = prepare_avatars([("source.png", golden("source.png"))], backend.size, None, crop="none")
    source, recording = PacedFrames(), Recording()
    options = PipelineOptions(tracking=TrackingOptions(crop="none"),
                              calibration=CalibrationOptions(first=True, auto=False),
                              frame=FrameOptions(framing="photo", size=(256, 256), detail=True, label=False),
                              pacing=PacingOptions(fps=10.0))
    pipeline = LivePipeline(source, backend, avatars, [recording], options=options)
    summary: dict = {}
    runner = threading.Thread(target=lambda: summary.update(pipeline.run()))
    with caplog.at_level(logging.INFO):
        runner.start()
        assert recording.wait_for(5, timeout=120), "no frames before the restart"
        at_stop = len(recording.times)
        left = server.stop()
        assert not left, f"SIGTERM left processes running: {sorted(left)}"
        # While the server is down the outputs keep getting the last face (events, not a share of wall-clock time).
        assert recording.wait_for(at_stop + 5, timeout=60), "the outputs stopped during the outage"
        server.start()
        deadline = time.monotonic() + 120  # a bound on a condition: the client reconnecting
        while backend.reconnects < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert recording.wait_for(len(recording.times) + 5, timeout=max(0.0, deadline - time.monotonic())), (
            "no frames after the server came back")
        source.stop.set()
        runner.join(timeout=60)
    backend.close()
    assert not runner.is_alive(), "the run did not end after its camera did"
    assert backend.reconnects >= 1, "the client did not reconnect"
    assert caplog.text.count("lost the server") == 1 and caplog.text.count("is back; animating again") == 1
    stats = server.stats()
    assert stats["frames"] >= 1 and stats["avatar_encodings"] == 1, stats  # setup replayed, frames rendered
    assert stats["fields"] == stats["frames"], stats  # the field asked for again on the new server
    assert summary["frames_out"] + summary["frames_dropped"] == summary["frames_in"], summary
    assert len(recording.times) >= summary["frames_out"]  # and the output thread's repeats, if any
