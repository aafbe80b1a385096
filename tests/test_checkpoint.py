"""Checkpoint loading: both golden formats, prefixes and extras, clear errors, and refusal of code-running pickles."""

from __future__ import annotations

import os
import pickle
import re
import shlex
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import GOLDEN_VARIANTS, REPO, golden_dir

from fomm_live.models import Animator, build_networks, load_config
from fomm_live.models.checkpoint import CheckpointError, load_into, matching_presets, read_checkpoint, strip_prefixes

NETWORKS = ("generator", "kp_detector")
FORMATS = ("checkpoint.pth.tar", "checkpoint-legacy.pth.tar")
SAME_AS_VOX = ["bair-256", "fashion-256", "nemo-256", "taichi-256", "taichi-adv-256", "vox-256", "vox-adv-256"]


def golden_states(variant: str, fmt: str = "checkpoint.pth.tar") -> dict[str, dict[str, torch.Tensor]]:
    return read_checkpoint(golden_dir(variant) / fmt)


def golden_networks(variant: str):
    return build_networks(load_config(golden_dir(variant) / "config.yaml"))


def assert_same_states(got: dict, want: dict) -> None:
    assert set(got) == set(want) == set(NETWORKS)
    for name in NETWORKS:
        assert list(got[name]) == list(want[name]), f"{name}: keys differ"
        for key, value in want[name].items():
            assert got[name][key].dtype == value.dtype, f"{name}.{key} dtype"
            assert torch.equal(got[name][key], value), f"{name}.{key} differs"


def checkpoint_error(path, config=None) -> str:
    """The one-line CheckpointError message (path elided) of reading, or with a config loading, ``path``."""
    with pytest.raises(CheckpointError) as info:
        if config is None:
            read_checkpoint(path)
        else:
            Animator.from_checkpoint(path, config, device="cpu", precision="fp32")
    message = str(info.value)
    assert "\n" not in message, f"message is not one line: {message!r}"
    assert str(path) in message, f"message does not name the file: {message!r}"
    return message.replace(str(path), "<path>")  # test names in tmp_path must not satisfy word checks


def constant_states(config: str) -> dict[str, dict[str, torch.Tensor]]:
    """State dicts with the keys and shapes of a preset, as stride-0 constants (a file of a few KB)."""
    with torch.device("meta"):
        kp_detector, generator = build_networks(load_config(config))
    out = {}
    for name, module in (("kp_detector", kp_detector), ("generator", generator)):
        out[name] = {k: torch.full((), 0.5 if v.is_floating_point() else 0, dtype=v.dtype).expand(v.shape)
                     for k, v in module.state_dict().items()}
    return out


@pytest.fixture(scope="module")
def preset_states() -> dict[str, dict[str, dict[str, torch.Tensor]]]:
    """State dicts of real (random-weight) vox-256 and mgif-256 networks."""
    out = {}
    for name in ("vox-256", "mgif-256"):
        kp_detector, generator = build_networks(load_config(name))
        out[name] = {"kp_detector": kp_detector.state_dict(), "generator": generator.state_dict()}
    return out


# --- the golden checkpoints --------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", GOLDEN_VARIANTS)
def test_golden_formats_give_identical_tensors(variant):
    """The zip and the legacy (non-zip) file hold the same weights, and read_checkpoint drops the extra entries."""
    zipped, legacy = (golden_states(variant, fmt) for fmt in FORMATS)
    assert_same_states(legacy, zipped)
    for name in NETWORKS:
        assert len(zipped[name]) > 50
        assert all(v.device.type == "cpu" for v in zipped[name].values())
    raw = torch.load(golden_dir(variant) / FORMATS[0], map_location="cpu", weights_only=True)
    assert {"epoch", "discriminator", "optimizer_generator"} <= set(raw), "golden file lost its extra entries"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("variant", GOLDEN_VARIANTS)
def test_golden_loads_strictly_with_its_config(variant, fmt):
    """load_into puts every checkpoint tensor into the networks of the golden config.yaml."""
    states = golden_states(variant, fmt)
    kp_detector, generator = golden_networks(variant)
    load_into(kp_detector, generator, states, source=fmt, config_name="config.yaml")
    for name, module in (("kp_detector", kp_detector), ("generator", generator)):
        loaded = module.state_dict()
        assert set(loaded) == set(states[name])
        for key, value in states[name].items():
            assert torch.equal(loaded[key], value), f"{name}.{key} was not loaded"


@pytest.mark.parametrize("variant", GOLDEN_VARIANTS)
def test_animator_from_checkpoint_golden(variant):
    """Animator.from_checkpoint with the golden YAML path loads both formats to the same weights."""
    folder = golden_dir(variant)
    animators = [Animator.from_checkpoint(folder / fmt, folder / "config.yaml", device="cpu", precision="fp32")
                 for fmt in FORMATS]
    want = golden_states(variant)
    for animator in animators:
        got = {"kp_detector": animator.kp_detector.state_dict(), "generator": animator.generator.state_dict()}
        assert_same_states({n: {k: got[n][k] for k in want[n]} for n in NETWORKS}, want)


# --- prefixes, extras, old checkpoints -----------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "want"), [
    ("kp.weight", "kp.weight"),
    ("module.kp.weight", "kp.weight"),
    ("_orig_mod.kp.weight", "kp.weight"),
    ("module._orig_mod.kp.weight", "kp.weight"),
    ("_orig_mod.module.module.kp.weight", "kp.weight"),
    ("predictor.module.conv.weight", "predictor.module.conv.weight"),
    ("modulex.kp.weight", "modulex.kp.weight"),
])
def test_strip_prefixes(key, want):
    """Only leading module. / _orig_mod. prefixes go, in any order and number."""
    value = torch.zeros(1)
    out = strip_prefixes({key: value})
    assert list(out) == [want]
    assert out[want] is value


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_prefixed_keys_and_extra_entries_load(tmp_path, legacy):
    """A DataParallel / torch.compile checkpoint with training extras reads as the plain golden state dicts."""
    want = golden_states("tiny")
    data = {
        "generator": {"module." + k: v for k, v in want["generator"].items()},
        "kp_detector": {"_orig_mod.module." + k: v for k, v in want["kp_detector"].items()},
        "epoch": 99,
        "discriminator": {"module.down_blocks.0.conv.weight": torch.ones(2, 3, 4, 4)},
        "optimizer_generator": {"state": {0: {"step": torch.tensor(5.0)}}, "param_groups": [{"lr": 2e-4}]},
        "optimizer_kp_detector": {"state": {}, "param_groups": []},
    }
    path = tmp_path / "prefixed.pth.tar"
    torch.save(data, path, _use_new_zipfile_serialization=not legacy)
    assert_same_states(read_checkpoint(path), want)
    animator = Animator.from_checkpoint(path, golden_dir("tiny") / "config.yaml", device="cpu", precision="fp32")
    assert torch.equal(animator.kp_detector.kp.weight, want["kp_detector"]["kp.weight"])


@pytest.mark.parametrize("change", ["unexpected", "misshapen"])
def test_bad_batchnorm_counter_is_a_checkpoint_error(change):
    """An unexpected or misshapen num_batches_tracked entry is a CheckpointError naming the key."""
    states = golden_states("tiny")
    kp_state = states["kp_detector"]
    if change == "unexpected":
        key = "predictor.extra.num_batches_tracked"
        kp_state[key] = torch.tensor(0)
    else:
        key = next(k for k in kp_state if k.endswith("num_batches_tracked"))
        kp_state[key] = torch.zeros(3, dtype=torch.int64)
    kp_detector, generator = golden_networks("tiny")
    with pytest.raises(CheckpointError, match=re.escape(key)):
        load_into(kp_detector, generator, states, source="odd.pth.tar")


def test_missing_batchnorm_counters_load():
    """Checkpoints from before PyTorch 0.4.1 have no num_batches_tracked; they still load strictly."""
    states = {n: {k: v for k, v in s.items() if not k.endswith("num_batches_tracked")}
              for n, s in golden_states("tiny").items()}
    kp_detector, generator = golden_networks("tiny")
    assert any(k.endswith("num_batches_tracked") for k in kp_detector.state_dict())
    load_into(kp_detector, generator, states, source="old.pth.tar")
    assert torch.equal(generator.state_dict()["dense_motion_network.hourglass.encoder.down_blocks.0.norm.running_mean"],
                       states["generator"]["dense_motion_network.hourglass.encoder.down_blocks.0.norm.running_mean"])


# --- files that are not checkpoints --------------------------------------------------------------------------------


def _truncated(fmt: str, keep: float | int):
    """The tiny golden file cut to a fraction (float) or a number of bytes (int)."""
    def make(tmp_path: Path) -> Path:
        data = (golden_dir("tiny") / fmt).read_bytes()
        path = tmp_path / f"cut-{fmt}"
        path.write_bytes(data[:int(len(data) * keep) if isinstance(keep, float) else keep])
        return path
    return make


def _saved(obj, legacy: bool = False):
    def make(tmp_path: Path) -> Path:
        path = tmp_path / "saved.pth.tar"
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        return path
    return make


def _written(data: bytes, name: str = "file.pth.tar"):
    def make(tmp_path: Path) -> Path:
        (tmp_path / name).write_bytes(data)
        return tmp_path / name
    return make


def _copied(name: str):
    def make(tmp_path: Path) -> Path:
        return Path(shutil.copy(golden_dir("tiny") / name, tmp_path / "looks-like.pth.tar"))
    return make


def _plain_zip(tmp_path: Path) -> Path:
    path = tmp_path / "archive.pth.tar"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    return path


NOT_CHECKPOINTS = {
    "missing": (lambda tmp_path: tmp_path / "nothing-here.pth.tar", ["not found"]),
    "directory": (lambda tmp_path: tmp_path, ["not a file"]),
    "empty": (_written(b""), ["empty", "not a checkpoint"]),
    "png": (_copied("source.png"), ["not a PyTorch checkpoint"]),
    "text": (_written(b"model_params:\n  common_params: {}\n"), ["not a PyTorch checkpoint"]),
    "plain-zip": (_plain_zip, ["corrupt"]),
    "truncated-zip-header": (_truncated(FORMATS[0], 64), ["truncated"]),
    "truncated-zip-half": (_truncated(FORMATS[0], 0.5), ["truncated"]),
    "truncated-zip-end": (_truncated(FORMATS[0], 0.999), ["truncated"]),
    "truncated-legacy-early": (_truncated(FORMATS[1], 1000), ["truncated"]),  # EOFError with an empty message
    "truncated-legacy-half": (_truncated(FORMATS[1], 0.5), ["truncated"]),
    "truncated-legacy-end": (_truncated(FORMATS[1], 0.999), ["truncated"]),
    "dict-without-networks": (_saved({"model": {"w": torch.zeros(2)}, "epoch": 3}),
                              ["not a First Order Motion Model checkpoint", "'generator' and 'kp_detector'",
                               "found epoch, model"]),
    "dict-without-kp-detector": (_saved({"generator": {"w": torch.zeros(2)}}, legacy=True),
                                 ["not a First Order Motion Model checkpoint", "found generator"]),
    "kp-detector-not-a-dict": (_saved({"generator": {}, "kp_detector": torch.zeros(2)}),
                               ["not a First Order Motion Model checkpoint"]),
    "empty-dict": (_saved({}), ["not a First Order Motion Model checkpoint", "found nothing"]),
    "list": (_saved([torch.zeros(2), torch.ones(2)]), ["not a First Order Motion Model checkpoint", "found list"]),
    "list-legacy": (_saved([1, 2, 3], legacy=True), ["not a First Order Motion Model checkpoint", "found list"]),
    "bare-tensor": (_saved(torch.zeros(3)), ["not a First Order Motion Model checkpoint", "found Tensor"]),
    "non-tensor-entry": (_saved({"generator": {"w": 1.5}, "kp_detector": {}}), ["generator entry 'w' is not a tensor"]),
}


@pytest.mark.parametrize("case", list(NOT_CHECKPOINTS))
def test_not_a_checkpoint(tmp_path, case):
    """Each kind of bad file gives one one-line CheckpointError with words that say what is wrong."""
    make, words = NOT_CHECKPOINTS[case]
    path = make(tmp_path)
    message = checkpoint_error(path)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert "refused" not in message


def test_not_a_checkpoint_through_animator(tmp_path):
    """Animator.from_checkpoint surfaces the same CheckpointError (a ValueError) as read_checkpoint."""
    path = _copied("source.png")(tmp_path)
    assert "not a PyTorch checkpoint" in checkpoint_error(path, config=golden_dir("tiny") / "config.yaml")
    assert issubclass(CheckpointError, ValueError)


def test_zip_truncated_early_says_truncated(tmp_path):
    """A zip checkpoint cut after its first records says it is truncated."""
    data = (golden_dir("tiny") / FORMATS[0]).read_bytes()
    path = tmp_path / "short.pth.tar"
    path.write_bytes(data[:20000])
    assert "truncated" in checkpoint_error(path)


# --- checkpoints for another architecture --------------------------------------------------------------------------


def test_other_golden_config_names_unexpected_keys():
    """A first-order checkpoint with a zero-order config: the jacobian head is named as unexpected."""
    path = golden_dir("tiny") / FORMATS[0]
    message = checkpoint_error(path, config=golden_dir("tiny_zero_order") / "config.yaml")
    assert "does not fit" in message
    assert "kp_detector unexpected: jacobian.weight, jacobian.bias" in message
    assert "no built-in preset matches it" in message


def test_zero_order_checkpoint_names_missing_keys():
    """A zero-order checkpoint with a first-order config: the jacobian head is named as missing."""
    path = golden_dir("tiny_zero_order") / FORMATS[1]
    message = checkpoint_error(path, config=golden_dir("tiny") / "config.yaml")
    assert "missing: jacobian.weight, jacobian.bias" in message


def test_other_keypoint_count_names_shapes():
    """6 keypoints and one jacobian map against a 10-keypoint config: shapes are listed, got != expected."""
    path = golden_dir("tiny_single_jacobian") / FORMATS[0]
    message = checkpoint_error(path, config=golden_dir("tiny") / "config.yaml")
    assert re.search(r"kp\.weight \[6, \d+, 7, 7\] != expected \[10, \d+, 7, 7\]", message), message
    assert re.search(r"jacobian\.weight \[4, \d+, 7, 7\] != expected \[40, \d+, 7, 7\]", message), message


def test_tiny_checkpoint_with_vox_preset():
    """The small golden model under vox-256: the first shape differences and a count of the rest, no preset hint."""
    path = golden_dir("tiny") / FORMATS[0]
    message = checkpoint_error(path, config="vox-256")
    assert "does not fit vox-256" in message
    assert re.search(r"shape: \S+ \[\d+(, \d+)*\] != expected \[\d+(, \d+)*\]", message), message
    assert re.search(r"\(\+\d+ more\)", message), message
    assert "no built-in preset matches it" in message


def test_matching_presets(preset_states):
    """Real vox-256 weights match the seven presets of that architecture; mgif-256 only its own; tiny none."""
    assert matching_presets(preset_states["vox-256"]) == sorted(SAME_AS_VOX, key=lambda n: (n != "vox-256", n))
    assert matching_presets(preset_states["mgif-256"]) == ["mgif-256"]
    assert matching_presets(golden_states("tiny")) == []


def test_mismatch_suggests_matching_preset(preset_states):
    """mgif-256 weights under vox-256 (and the reverse) name the preset that fits."""
    kp_detector, generator = build_networks(load_config("vox-256"))
    with pytest.raises(CheckpointError) as info:
        load_into(kp_detector, generator, preset_states["mgif-256"], source="mgif.pth.tar", config_name="vox-256")
    message = str(info.value)
    assert "does not fit vox-256" in message
    assert "jacobian.weight [4," in message
    assert "it matches preset mgif-256 (use --config mgif-256)" in message

    kp_detector, generator = build_networks(load_config("mgif-256"))
    with pytest.raises(CheckpointError) as info:
        load_into(kp_detector, generator, preset_states["vox-256"], source="vox.pth.tar", config_name="mgif-256")
    hint = str(info.value).split("it matches preset ", 1)[1]
    assert "vox-256" in hint
    assert "mgif-256" not in hint


def test_preset_shaped_file_loads_only_under_its_preset(tmp_path):
    """A file with mgif-256's keys and shapes: refused by vox-256 with a hint, loaded by mgif-256."""
    path = tmp_path / "mgif-cpk.pth.tar"
    torch.save(constant_states("mgif-256"), path)
    message = checkpoint_error(path, config="vox-256")
    assert "use --config mgif-256" in message
    animator = Animator.from_checkpoint(path, "mgif-256", device="cpu", precision="fp32")
    assert animator.kp_detector.jacobian.weight.shape[0] == 4
    assert bool((animator.kp_detector.jacobian.weight == 0.5).all())
    assert bool((animator.generator.final.weight == 0.5).all())


# --- pickles that would run code -----------------------------------------------------------------------------------


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _malicious(tmp_path: Path, how: str, marker: Path) -> Path:
    path = tmp_path / f"evil-{how}.pth.tar"
    payload = _Payload(marker)
    if how == "zip":
        torch.save({"generator": payload, "kp_detector": {}}, path)
    elif how == "legacy":
        torch.save({"generator": payload, "kp_detector": {}}, path, _use_new_zipfile_serialization=False)
    elif how == "zip-in-extra-entry":
        good = golden_states("tiny")
        torch.save({**good, "optimizer_generator": payload}, path)
    elif how.startswith("raw-pickle"):
        protocol = int(how.rsplit("-", 1)[1]) if how[-1].isdigit() else pickle.DEFAULT_PROTOCOL
        with path.open("wb") as f:
            pickle.dump({"generator": payload, "kp_detector": {}}, f, protocol=protocol)
    else:
        raise AssertionError(how)
    return path


def test_payload_is_live(tmp_path):
    """Control: plain pickle really runs the payload, so the refusal tests below mean something."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("how", ["zip", "legacy", "zip-in-extra-entry", "raw-pickle-2"])
def test_code_running_pickle_is_refused(tmp_path, how):
    """torch.save / pickle files that would call os.system are refused by name, and the payload never runs."""
    marker = tmp_path / "payload-ran"
    path = _malicious(tmp_path, how, marker)
    message = checkpoint_error(path)
    assert "refused" in message and "would load code" in message
    assert "system" in message
    assert not marker.exists(), "the pickle payload ran"
    with pytest.raises(CheckpointError, match="refused"):
        Animator.from_checkpoint(path, golden_dir("tiny") / "config.yaml", device="cpu", precision="fp32")
    assert not marker.exists(), "the pickle payload ran"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("how", ["raw-pickle-default", "raw-pickle-0"])
def test_other_pickles_are_rejected(tmp_path, how):
    """Raw pickles in other protocols fail before reaching the payload (not always worded 'refused')."""
    marker = tmp_path / "payload-ran"
    path = _malicious(tmp_path, how, marker)
    message = checkpoint_error(path)
    assert "refused" in message or "not a PyTorch checkpoint" in message
    assert not marker.exists(), "the pickle payload ran"


def test_models_never_unpickle_unsafely():
    """No file in models/ turns weights_only off or calls pickle.load directly; every torch.load is weights-only."""
    sources = sorted((REPO / "fomm_live" / "models").rglob("*.py"))
    assert sources, "models/ has no Python files"
    loads = 0
    for source in sources:
        text = source.read_text(encoding="utf-8")
        assert not re.search(r"weights_only\s*=\s*False", text), f"{source} turns weights-only loading off"
        assert not re.search(r"\bpickle\.(load|loads|Unpickler)\b", text), f"{source} unpickles directly"
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            loads += 1
            assert re.search(r"weights_only\s*=\s*True", call.group(1)), f"{source}: {call.group(0)}"
    assert loads >= 1, "no torch.load call found in models/"
