"""The full vox-256 model has exactly the state-dict keys, shapes and dtypes of the original (the reference TSV)."""

from __future__ import annotations

import pytest
import torch
from conftest import REFERENCE_TSV, require

from fomm_live.models import build_networks, load_config
from fomm_live.models.checkpoint import matching_presets

NETWORKS = ("generator", "kp_detector")
MAX_SHOWN = 10

Entry = tuple[tuple[int, ...], str]


def parse_shape(text: str) -> tuple[int, ...]:
    text = text.strip()
    assert text.startswith("[") and text.endswith("]"), f"bad shape {text!r}"
    inner = text[1:-1].strip()
    return tuple(int(part) for part in inner.split(",")) if inner else ()


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[str, Entry]]:
    """network -> key -> (shape, dtype) from the reference TSV, in file order."""
    path = require(REFERENCE_TSV)
    out: dict[str, dict[str, Entry]] = {name: {} for name in NETWORKS}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        assert len(fields) == 4, f"{path}:{number}: expected 4 tab-separated fields, got {fields}"
        network, key, shape, dtype = fields
        if (network, key) == ("network", "key"):
            continue  # a header row
        assert network in out, f"{path}:{number}: unknown network {network!r}"
        assert key not in out[network], f"{path}:{number}: duplicate key {key}"
        out[network][key] = (parse_shape(shape), dtype)
    return out


@pytest.fixture(scope="module")
def built() -> dict[str, dict[str, Entry]]:
    """network -> key -> (shape, dtype) of the vox-256 preset, built on the meta device."""
    with torch.device("meta"):
        kp_detector, generator = build_networks(load_config("vox-256"))
    out = {}
    for name, module in (("generator", generator), ("kp_detector", kp_detector)):
        state = module.state_dict()
        assert all(v.device.type == "meta" for v in state.values())
        out[name] = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()}
    return out


def differences(want: dict[str, Entry], got: dict[str, Entry]) -> list[str]:
    lines = [f"missing {k} {list(want[k][0])} {want[k][1]}" for k in want if k not in got]
    lines += [f"extra {k} {list(got[k][0])} {got[k][1]}" for k in got if k not in want]
    lines += [f"differs {k}: built {list(got[k][0])} {got[k][1]}, reference {list(want[k][0])} {want[k][1]}"
              for k in want if k in got and got[k] != want[k]]
    return lines


def test_reference_is_sane(reference):
    """The TSV lists both networks, with float32 weights and int64 batch-norm counters."""
    assert len(reference["generator"]) > 100
    assert len(reference["kp_detector"]) > 50
    dtypes = {dtype for entries in reference.values() for _, dtype in entries.values()}
    assert dtypes == {"float32", "int64"}
    assert reference["kp_detector"]["kp.weight"][0][0] == 10
    assert reference["kp_detector"]["jacobian.weight"][0][0] == 40


@pytest.mark.parametrize("network", NETWORKS)
def test_keys_shapes_and_dtypes_match_reference(reference, built, network):
    """Every key of the full vox-256 model has the reference shape and dtype; none missing, none extra."""
    problems = differences(reference[network], built[network])
    shown = "\n  ".join(problems[:MAX_SHOWN])
    more = f"\n  (+{len(problems) - MAX_SHOWN} more)" if len(problems) > MAX_SHOWN else ""
    assert not problems, f"{network}: {len(problems)} differences from {REFERENCE_TSV.name}:\n  {shown}{more}"


def test_batchnorm_counters_are_int64(built):
    """num_batches_tracked buffers are int64 scalars; everything else is float32."""
    for network, entries in built.items():
        for key, (shape, dtype) in entries.items():
            if key.endswith("num_batches_tracked"):
                assert (shape, dtype) == ((), "int64"), f"{network}.{key}"
            else:
                assert dtype == "float32", f"{network}.{key}"


def test_reference_matches_vox_presets(reference):
    """A checkpoint with the reference's keys and shapes is recognised as vox-256 (and not as mgif-256)."""
    states = {network: {k: torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
                        for k, (shape, dtype) in entries.items()}
              for network, entries in reference.items()}
    matches = matching_presets(states)
    assert "vox-256" in matches
    assert "mgif-256" not in matches
