"""Fuzzing the loaders that read files from strangers: whatever the bytes, the image reader raises only UserError
and the checkpoint reader only CheckpointError, and no checkpoint byte pattern runs code. Bounded for CI."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import golden_dir
from helpers.jpeg import split_segments

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis drives the fuzzing (pip install -e '.[test]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fomm_live.live.errors import UserError  # noqa: E402
from fomm_live.live.media import read_image  # noqa: E402
from fomm_live.models import CheckpointError, read_checkpoint  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
PREFIXES = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"BM", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBP"]


@FUZZ
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=4096))
def test_image_reader_never_crashes(tmp_path: Path, prefix: bytes, body: bytes) -> None:
    path = tmp_path / "fuzz.img"
    path.write_bytes(prefix + body)
    try:
        image = read_image(path)
    except UserError:
        return
    assert image.ndim == 3 and image.shape[2] == 3


@FUZZ
@given(data=st.data())
def test_checkpoint_reader_never_crashes_or_runs_code(tmp_path: Path, data) -> None:
    """Mutations of a real legacy (pickle) checkpoint: flipped bytes, cuts, and inserted pickle opcodes."""
    original = (golden_dir("tiny") / "checkpoint-legacy.pth.tar").read_bytes()
    blob = bytearray(original[: data.draw(st.integers(16, len(original)))])
    for _ in range(data.draw(st.integers(0, 8))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):  # splice a GLOBAL/REDUCE of os.system into the pickle stream
        at = data.draw(st.integers(2, min(len(blob), 400)))
        blob[at:at] = b"cposix\nsystem\n(Vtouch " + str(tmp_path / "PWNED").encode() + b"\ntR"
    path = tmp_path / "fuzz.pth.tar"
    path.write_bytes(bytes(blob))
    try:
        read_checkpoint(path)
    except CheckpointError:
        pass
    assert not (tmp_path / "PWNED").exists()


# ---------------------------------------------------------------------------------------- serve's image size check
def _jpeg(width: int, height: int, progressive: bool = False) -> bytes:
    import cv2
    import numpy as np

    rng = np.random.default_rng(width * 1000 + height)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])[1].tobytes()


def _fake_sof(width: int, height: int) -> bytes:
    import struct

    return b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", height, width) + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"


@FUZZ
@given(data=st.data())
def test_jpeg_size_check_reads_the_size_the_decoder_decodes(data) -> None:
    """Differential: JPEGs with fill bytes before their markers, comments and APPn segments hiding fake frame headers,
    and flipped bytes. Whenever the size check accepts a payload and OpenCV decodes it, the decoded image has the size
    the check read."""
    import cv2
    import numpy as np

    from fomm_live.live.remote.protocol import ProtocolError, image_dimensions

    width, height = data.draw(st.integers(8, 48)), data.draw(st.integers(8, 48))
    parts, rest = split_segments(_jpeg(width, height, progressive=data.draw(st.booleans())))
    for _ in range(data.draw(st.integers(0, 3))):  # a comment or APPn hiding a fake frame header
        hidden = data.draw(st.binary(max_size=8)) + _fake_sof(data.draw(st.integers(8, 64)), 9)
        marker = data.draw(st.sampled_from([0xFE, 0xE1, 0xEF]))
        segment = bytes([0xFF, marker]) + (len(hidden) + 2).to_bytes(2, "big") + hidden
        parts.insert(data.draw(st.integers(1, len(parts))), segment)
    parts = [b"\xff" * data.draw(st.integers(0, 3)) + p if k else p for k, p in enumerate(parts)]  # fill bytes
    blob = bytearray(b"".join(parts) + rest)
    for _ in range(data.draw(st.integers(0, 3))):
        blob[data.draw(st.integers(0, min(len(blob) - 1, 400)))] = data.draw(st.integers(0, 255))
    try:
        codec, w, h = image_dimensions(bytes(blob))
    except ProtocolError:
        return
    decoded = cv2.imdecode(np.frombuffer(bytes(blob), np.uint8), cv2.IMREAD_COLOR)
    assert codec == "jpeg"
    assert decoded is None or decoded.shape[:2] == (h, w), f"read {w}x{h}, decoded {decoded.shape}"


def test_fill_byte_before_the_frame_header_does_not_hide_the_real_size() -> None:
    """The bypass: a 0xFF fill byte before the real start-of-frame made the old walk jump 0xC000 bytes ahead into a
    comment holding a fake 64 x 64 header; the real frame is 1100 x 20 (over the 1024 limit)."""
    from fomm_live.live.remote.protocol import ProtocolError, decode_image, image_dimensions

    parts, rest = split_segments(_jpeg(1100, 20))
    sof = next(k for k, p in enumerate(parts) if p[1] == 0xC0)
    landing = 2 + 0xC000  # where the old walk landed: 0xFF 0xFF 0xC0 0x00 read as marker 0xFF of length 0xC000
    comment_body = bytearray(0xC000)
    after_sof = sum(len(p) for p in parts[sof + 1:])
    offset = landing - (1 + len(parts[sof]) + after_sof + 4)  # from the comment's body start
    comment_body[offset:offset + 19] = _fake_sof(64, 64)
    comment = b"\xff\xfe" + (len(comment_body) + 2).to_bytes(2, "big") + bytes(comment_body)
    blob = b"".join(parts[:sof]) + b"\xff" + b"".join(parts[sof:]) + comment + rest
    assert image_dimensions(blob) == ("jpeg", 1100, 20)
    with pytest.raises(ProtocolError, match="1100x20 pixels is out of bounds"):
        decode_image(blob)


def test_many_scans_refused_before_decoding() -> None:
    from fomm_live.live.remote.protocol import MAX_JPEG_SCANS, ProtocolError, image_dimensions

    parts, rest = split_segments(_jpeg(32, 32, progressive=True))
    scan_end = rest.index(b"\xff", 2 + int.from_bytes(rest[2:4], "big"))  # the first scan: header, entropy data
    empty = rest[:scan_end]
    blob = b"".join(parts) + empty * (MAX_JPEG_SCANS + 1) + b"\xff\xd9"
    assert image_dimensions(b"".join(parts) + empty * 3 + b"\xff\xd9") == ("jpeg", 32, 32)
    with pytest.raises(ProtocolError, match="scans"):
        image_dimensions(blob)


def test_png_whose_first_chunk_is_not_its_header_is_refused() -> None:
    import cv2
    import numpy as np

    from fomm_live.live.remote.protocol import ProtocolError, image_dimensions

    png = cv2.imencode(".png", np.zeros((20, 30, 3), np.uint8))[1].tobytes()
    assert image_dimensions(png) == ("png", 30, 20)
    text = b"\x00\x00\x00\x04tEXtabcd\x00\x00\x00\x00"  # a chunk before IHDR (libpng refuses it; so does the check)
    with pytest.raises(ProtocolError, match="IHDR"):
        image_dimensions(png[:8] + text + png[8:])
