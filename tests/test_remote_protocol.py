"""The wire format of ``--remote`` without Ray: the motion field's encoding (its error against the float32 field of the
tiny golden model, its size) and its bounds checks on every malformed input, one line each; then ``RemoteBackend``'s
side of it against a stand-in server (a websockets server on loopback that speaks the protocol with fixed faces and
fields, no model): asking for the field, decoding it, refusing a malformed one, holding it through an outage and
asking again after reconnecting; and the server's batched step (``live.remote.batch``) on a batch that mixes streams
with and without the field. The real server's side is in ``tests/test_remote.py``."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import golden_dir, read_rgb

from fomm_live.live.remote import protocol
from fomm_live.live.remote.protocol import (
    ProtocolError,
    decode_field,
    encode_field,
    encode_image,
    frame_reply,
    pack,
    split_frame,
    strength_of,
    unpack,
)

# The rounding's bound (1 / (2 FIELD_SCALE) grid units) plus float32's spacing near 1 (6e-8): the encoding's error.
DEFORMATION_BOUND = 0.5 / protocol.FIELD_SCALE + 1e-6  # grid units; x n / 2 = 0.0079 model pixels at n = 256
OCCLUSION_BOUND = 0.5 / 255 + 1e-6


def model_fields(variant: str) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(deformation h x w x 2, occlusion h x w or None) of the three golden driving frames, float32, from the eager
    CPU model (relative motion from driving frame 0)."""
    from fomm_live.models import Animator

    folder = golden_dir(variant)
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                        precision="fp32", engine="eager")
    animator.set_source(read_rgb(folder / "source.png"))
    animator.calibrate(read_rgb(folder / "driving_0.png"))
    fields = []
    for i in range(3):
        out = animator.generate(animator.keypoints(read_rgb(folder / f"driving_{i}.png")), with_motion=True)
        occlusion = out.get("occlusion_map")
        fields.append((out["deformation"][0].numpy(), None if occlusion is None else occlusion[0, 0].numpy()))
    return fields


@pytest.mark.parametrize(("strength", "message"), [
    ("1", "two numbers"), ([1.0], "two numbers"), ([1.0, True], "two numbers"), ([1.0, "2"], "two numbers"),
    ([2.5, 1.0], "from 0 to 2"), ([1.0, -0.1], "from 0 to 2"), ([float("nan"), 1.0], "from 0 to 2"),
])
def test_a_malformed_strength_is_refused_in_one_line(strength: object, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        strength_of({"type": "frame", "strength": strength})


def test_a_frame_without_strength_copies_the_motion_and_one_with_it_reads_back() -> None:
    assert strength_of({"type": "frame"}) == (1.0, 1.0)
    assert strength_of({"type": "frame", "strength": [0, 1.6]}) == (0.0, 1.6)


def test_the_model_field_survives_the_wire_within_a_hundredth_of_a_model_pixel() -> None:
    sizes = []
    for deformation, occlusion in model_fields("tiny"):
        spec, blob = encode_field(deformation, occlusion)
        assert spec == {"h": 64, "w": 64, "occlusion": True}
        got_deformation, got_occlusion = decode_field(dict(spec, image_bytes=1), blob)
        assert got_deformation.dtype == np.float32 and got_deformation.shape == deformation.shape
        error = np.abs(got_deformation - deformation).max()
        assert error <= DEFORMATION_BOUND, f"deformation off by {error * 128:.4f} model pixels"
        assert np.abs(got_occlusion - occlusion).max() <= OCCLUSION_BOUND
        sizes.append(len(blob))
    print(f"motion field on the wire: {sizes} bytes (64 x 64; raw {64 * 64 * 5})")
    assert max(sizes) < 64 * 64 * 5 + 64, sizes  # deflate never costs more than its few bytes of framing


def test_a_model_without_an_occlusion_map_sends_the_deformation_alone() -> None:
    deformation, occlusion = model_fields("tiny_zero_order")[1]
    assert occlusion is None
    spec, blob = encode_field(deformation, None)
    got, got_occlusion = decode_field(dict(spec, image_bytes=1), blob)
    assert spec["occlusion"] is False and got_occlusion is None
    assert np.abs(got - deformation).max() <= DEFORMATION_BOUND


def test_far_displacements_are_clipped_and_row_differences_wrap_around_exactly() -> None:
    """Neighbours at the two ends of the fixed-point range: their differences overflow int16 and must wrap back; a
    displacement past +-4 grid units is clipped to it (the source lies far outside the square either way)."""
    identity = protocol.field_identity(4, 6)
    displacement = np.tile(np.array([[4.0, -4.0], [-4.0, 4.0]]), (4, 3, 1))[:, :6]  # 4 x 6 x 2, alternating
    displacement[0, 0] = [50.0, -50.0]  # clipped to +-32767 / FIELD_SCALE
    got, _ = decode_field(dict(encode_field(identity + displacement, None)[0], image_bytes=1),
                          encode_field(identity + displacement, None)[1])
    want = identity + np.clip(displacement, -32767 / protocol.FIELD_SCALE, 32767 / protocol.FIELD_SCALE)
    assert np.abs(got - want).max() <= DEFORMATION_BOUND


def test_the_frame_reply_carries_the_face_then_the_field_and_splits_back() -> None:
    deformation, occlusion = model_fields("tiny")[2]
    face = protocol.encode_image(read_rgb(golden_dir("tiny") / "source.png"), "png")
    header, payload = unpack(frame_reply(7, face, encode_field(deformation, occlusion)))
    assert header["type"] == "frame" and header["id"] == 7 and header["field"]["image_bytes"] == len(face)
    image, field = split_frame(header, payload)
    assert image == face and field is not None
    assert np.abs(decode_field(header["field"], field)[0] - deformation).max() <= DEFORMATION_BOUND
    header, payload = unpack(frame_reply(8, face))
    assert "field" not in header and split_frame(header, payload) == (face, None)


def test_encoding_refuses_a_non_finite_or_misshapen_field() -> None:
    identity = protocol.field_identity(8, 8)
    bad = identity.copy()
    bad[3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        encode_field(bad, None)
    with pytest.raises(ValueError, match="not finite"):
        encode_field(identity, np.full((8, 8), np.inf))
    with pytest.raises(ValueError, match="expected h x w x 2"):
        encode_field(identity[..., :1], None)
    with pytest.raises(ValueError, match="occlusion map of shape"):
        encode_field(identity, np.zeros((4, 8)))


def _valid() -> tuple[dict, bytes]:
    spec, blob = encode_field(protocol.field_identity(8, 8) + 0.01, np.full((8, 8), 0.5))
    return dict(spec, image_bytes=1), blob


@pytest.mark.parametrize(("case", "message"), [
    ("not an object", "'field' must be an object"),
    ("side 0", "its sides must be whole numbers, 2 to 256"),
    ("side 1000", "its sides must be whole numbers, 2 to 256"),
    ("side 8.0", "its sides must be whole numbers"),
    ("side true", "its sides must be whole numbers"),
    ("occlusion 1", "'occlusion' must be true or false"),
    ("not zlib", "not a zlib stream"),
    ("truncated", "does not hold the 320 bytes of a 8x8 field with occlusion"),
    ("trailing bytes", "does not hold the 320 bytes"),
    ("more than announced", "does not hold the 320 bytes"),
    ("a bomb", "does not hold the 256 bytes of a 8x8 field"),
    ("header says no occlusion", "does not hold the 256 bytes"),
])
def test_a_malformed_field_is_refused_in_one_line(case: str, message: str) -> None:
    spec, blob = _valid()
    if case == "not an object":
        spec = [8, 8]
    elif case.startswith("side"):
        spec["h"] = {"side 0": 0, "side 1000": 1000, "side 8.0": 8.0, "side true": True}[case]
    elif case == "occlusion 1":
        spec["occlusion"] = 1
    elif case == "not zlib":
        blob = b"\x00" * 40
    elif case == "truncated":
        blob = blob[:-6]
    elif case == "trailing bytes":
        blob = blob + b"\x00"
    elif case == "more than announced":
        blob = zlib.compress(bytes(321))
    elif case == "a bomb":  # 16 MB of zeros in ~16 KB: only 257 bytes are ever inflated
        spec["occlusion"] = False
        blob = zlib.compress(bytes(16 << 20), 9)
    elif case == "header says no occlusion":
        spec["occlusion"] = False
    with pytest.raises(ProtocolError, match=message) as err:
        decode_field(spec, blob)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("cut", [0, -1, 10, 11, "4", True, None])
def test_a_frame_reply_whose_image_bytes_do_not_split_its_payload_is_refused(cut: object) -> None:
    with pytest.raises(ProtocolError, match="'image_bytes' .* does not split a 10 byte payload"):
        split_frame({"type": "frame", "field": {"h": 8, "w": 8, "occlusion": False, "image_bytes": cut}}, bytes(10))
    with pytest.raises(ProtocolError, match="does not split"):
        split_frame({"type": "frame", "field": "64x64"}, bytes(10))


class StandInServer:
    """A stand-in for ``fomm-live serve`` on loopback: answers the protocol's messages with one fixed 64 x 64 face
    and, when the stream asked for it, one fixed 16 x 16 motion field (``field_mode``: ``good``, ``bad`` (a field
    whose bytes are not what its header says) or ``missing``). ``down``: every new stream is closed unanswered;
    ``drop_next_frame``: the next frame's connection is closed instead of answered. Records every header received."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        rng = np.random.default_rng(3)
        self.face = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        identity = protocol.field_identity(16, 16)
        self.deformation = (identity + rng.normal(0, 0.05, identity.shape)).astype(np.float32)  # 16 x 16 x 2
        self.occlusion = rng.random((16, 16)).astype(np.float32)
        self.received: list[dict] = []
        self.field_mode = "good"
        self.down = False
        self.drop_next_frame = False
        self.server = serve(self.handle, "127.0.0.1", 0, max_size=None)
        self.url = f"http://127.0.0.1:{self.server.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, ws) -> None:
        if self.down:
            return  # closes the connection before its hello is answered
        wants_field = False
        for message in ws:
            header, _ = unpack(message)
            self.received.append(header)
            kind = header["type"]
            if kind == "hello":
                reply = pack({"type": "ready", "image_size": 64, "max_fps": 60.0})
            elif kind in ("avatar", "upload"):
                reply = pack({"type": "avatar", "hash": header["hash"], "known": True})
            elif kind == "field":
                wants_field = header["want"]
                reply = pack({"type": "ok"})
            elif kind == "frame":
                if self.drop_next_frame:
                    self.drop_next_frame = False
                    return
                reply = frame_reply(header["id"], encode_image(self.face, "png"), self.field() if wants_field else None)
            else:
                reply = pack({"type": "ok"})
            ws.send(reply)

    def field(self) -> tuple[dict, bytes] | None:
        if self.field_mode == "missing":
            return None
        spec, blob = encode_field(self.deformation, self.occlusion)
        return (dict(spec, h=17), blob) if self.field_mode == "bad" else (spec, blob)

    def kinds(self) -> list[str]:
        return [h["type"] for h in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture
def stand_in() -> Iterator[StandInServer]:
    pytest.importorskip("websockets", reason="the serve extra (websockets) is not installed")
    server = StandInServer()
    yield server
    server.close()


def stand_in_client(server: StandInServer):
    from fomm_live.live.remote.client import RemoteBackend

    backend = RemoteBackend(server.url, codec="png", relative=False, start_timeout=10)
    backend.set_source(server.face)
    return backend


def test_the_client_asks_for_the_field_once_and_hands_it_on_as_host_arrays(stand_in: StandInServer) -> None:
    from fomm_live.live.remote.client import CropMotion

    backend = stand_in_client(stand_in)
    assert backend.device == "cpu" and backend.motion_kind == "field"
    crop = CropMotion(stand_in.face)
    assert backend.render(crop, detail=False).field is None
    backend.render(crop)
    assert "field" not in stand_in.kinds(), "a client without photo framing or detail asks for no field"
    rendered = backend.render(crop, detail=True)
    rendered = backend.render(crop, detail=True)
    assert stand_in.kinds().count("field") == 1 and stand_in.received[-3] == {"type": "field", "want": True}
    assert rendered.frame.dtype == np.uint8 and rendered.frame.shape == (64, 64, 3)
    np.testing.assert_array_equal(rendered.frame, stand_in.face)
    field = rendered.field
    assert field is not None and field.deformation.shape == (16, 16, 2) and field.occlusion.shape == (16, 16)
    assert np.abs(field.deformation - stand_in.deformation).max() <= DEFORMATION_BOUND
    assert np.abs(field.occlusion - stand_in.occlusion).max() <= OCCLUSION_BOUND
    assert backend.render(crop, detail=False).field is None  # --no-detail: asks it off
    assert stand_in.received[-2] == {"type": "field", "want": False}
    backend.close()


@pytest.mark.parametrize(("mode", "message"), [
    ("bad", r"^the motion field does not hold the 1360 bytes of a 17x16 field with occlusion$"),
    ("missing", r"^frame \d+ came without the motion field the stream asked for$"),
])
def test_a_malformed_or_missing_field_from_the_server_is_refused_in_one_line(stand_in: StandInServer, mode: str,
                                                                             message: str) -> None:
    from fomm_live.live.remote.client import CropMotion

    backend = stand_in_client(stand_in)
    stand_in.field_mode = mode
    with pytest.raises(ProtocolError, match=message):
        backend.render(CropMotion(stand_in.face), detail=True)
    backend.close()


def test_an_outage_reuses_the_last_face_with_its_field_and_the_reconnection_asks_for_the_field_again(
        stand_in: StandInServer) -> None:
    from fomm_live.live.remote.client import CropMotion

    backend = stand_in_client(stand_in)
    crop = CropMotion(stand_in.face)
    before = backend.render(crop, detail=True)
    stand_in.down, stand_in.drop_next_frame = True, True
    held = backend.render(crop, detail=True)  # the frame is lost, and so is the reconnection
    assert held.field is not None and held.field.occlusion is not None
    for name, got, want in (("face", held.frame, before.frame), ("deformation", held.field.deformation,
                                                                 before.field.deformation),
                            ("occlusion", held.field.occlusion, before.field.occlusion)):
        assert np.array_equal(got, want), f"the held {name} differs from the last frame's"
    stand_in.down = False
    count = len(stand_in.received)
    deadline = time.monotonic() + 30
    while backend.reconnects == 0 and time.monotonic() < deadline:  # the held frame until the back-off's next step
        backend.render(crop, detail=True)
        time.sleep(0.1)
    assert backend.reconnects == 1
    replayed = stand_in.kinds()[count:]
    assert replayed[:2] == ["hello", "field"] and replayed[-1] == "frame", replayed
    backend.close()


def test_a_batch_mixing_streams_with_and_without_the_field_gives_each_its_own_frame_in_order() -> None:
    """``live.remote.batch.render_frames`` (the server's batched step, no Ray needed) on three streams of two avatars,
    the middle one asking for the field: each face equals its stream's own local render within 1 level, the field
    comes only to the stream that asked, equal to its local field within float32 noise (the batch of two sums in
    another order)."""
    from dataclasses import dataclass
    from types import SimpleNamespace

    import torch

    from fomm_live.live.remote.batch import render_frames
    from fomm_live.models import Animator, MotionNormalizer, MotionOptions, tensor_to_image

    folder = golden_dir("tiny")
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                        precision="fp32", engine="eager")
    neutral = read_rgb(folder / "driving_0.png")
    avatars = [read_rgb(folder / "source.png"), np.ascontiguousarray(read_rgb(folder / "source.png")[:, ::-1])]

    @dataclass
    class BatchStream:  # what render_frames reads of live.remote.server.Stream
        encoding: SimpleNamespace
        normalizer: MotionNormalizer
        field: bool

        def smooth(self, kp, t):
            return kp

    def stream(avatar: np.ndarray, field: bool) -> BatchStream:
        with torch.inference_mode():
            tensor = animator.to_tensor(avatar)
            encoding = SimpleNamespace(state=animator.engine.encode(tensor),
                                       kp_source=animator.engine.keypoints(tensor))
            normalizer = MotionNormalizer(MotionOptions(relative=True, adapt_scale=True))
            normalizer.calibrate(animator.keypoints(neutral), encoding.kp_source)
        return BatchStream(encoding, normalizer, field)

    crops = [read_rgb(folder / f"driving_{i}.png") for i in (1, 2, 1)]
    streams = [stream(avatars[0], False), stream(avatars[1], True), stream(avatars[1], False)]
    results = render_frames(animator, [(crop, s, None) for crop, s in zip(crops, streams, strict=True)])
    for i, ((face, field), crop, s) in enumerate(zip(results, crops, streams, strict=True)):
        local = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                         precision="fp32", engine="eager")
        local.set_source(avatars[0 if i == 0 else 1])
        local.calibrate(neutral)
        want = local.generate(local.keypoints(crop), with_motion=True)
        assert np.abs(face.astype(int) - tensor_to_image(want["prediction"]).astype(int)).max() <= 1, f"stream {i}"
        assert (field is not None) == s.field, f"stream {i}: field {'missing' if s.field else 'not asked for'}"
        if field is not None:
            assert np.abs(field[0] - want["deformation"][0].numpy()).max() <= 1e-5
            assert np.abs(field[1] - want["occlusion_map"][0, 0].numpy()).max() <= 1e-5
