"""Fuzzing the loaders that read files from strangers: whatever the bytes, the image reader raises only UserError
and the checkpoint reader only CheckpointError, and no checkpoint byte pattern runs code. Bounded for CI."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import golden_dir

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
