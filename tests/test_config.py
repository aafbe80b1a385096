"""Model configs: the published presets, original-format YAML files, and clear errors for bad configs."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import GOLDEN_VARIANTS, golden_dir

from fomm_live.models import ConfigError, build_networks, load_config, preset_names
from fomm_live.models.presets import PRESETS

EXPECTED_PRESETS = {"vox-256", "vox-adv-256", "taichi-256", "taichi-adv-256", "mgif-256", "bair-256", "fashion-256",
                    "nemo-256"}
SECTIONS = ("common_params", "kp_detector_params", "generator_params")

# The original repository's config/vox-256.yaml: model_params plus the sections the model does not use.
ORIGINAL_VOX_YAML = """\
dataset_params:
  root_dir: data/vox-png
  frame_shape: [256, 256, 3]
  id_sampling: True
  pairs_list: data/vox256.csv
  augmentation_params:
    flip_param:
      horizontal_flip: True
      time_flip: True
    jitter_param:
      brightness: 0.1
      contrast: 0.1
      saturation: 0.1
      hue: 0.1

model_params:
  common_params:
    num_kp: 10
    num_channels: 3
    estimate_jacobian: True
  kp_detector_params:
     temperature: 0.1
     block_expansion: 32
     max_features: 1024
     scale_factor: 0.25
     num_blocks: 5
  generator_params:
    block_expansion: 64
    max_features: 512
    num_down_blocks: 2
    num_bottleneck_blocks: 6
    estimate_occlusion_map: True
    dense_motion_params:
      block_expansion: 64
      max_features: 1024
      num_blocks: 5
      scale_factor: 0.25
  discriminator_params:
    scales: [1]
    block_expansion: 32
    max_features: 512
    num_blocks: 4
    sn: True

train_params:
  num_epochs: 100
  num_repeats: 75
  epoch_milestones: [60, 90]
  lr_generator: 2.0e-4
  lr_discriminator: 2.0e-4
  lr_kp_detector: 2.0e-4
  batch_size: 40
  scales: [1, 0.5, 0.25, 0.125]
  checkpoint_freq: 50
  transform_params:
    sigma_affine: 0.05
    sigma_tps: 0.005
    points_tps: 5
  loss_weights:
    generator_gan: 0
    discriminator_gan: 1
    feature_matching: [10, 10, 10, 10]
    perceptual: [10, 10, 10, 10, 10]
    equivariance_value: 10
    equivariance_jacobian: 10

reconstruction_params:
  num_videos: 1000
  format: '.mp4'

animate_params:
  num_pairs: 50
  format: '.mp4'
  normalization_params:
    adapt_movement_scale: False
    use_relative_movement: True
    use_relative_jacobian: True

visualizer_params:
  kp_size: 5
  draw_border: True
  colormap: 'gist_rainbow'
"""


def config_error(spec) -> str:
    """The one-line ConfigError message of ``load_config(spec)``."""
    with pytest.raises(ConfigError) as info:
        load_config(spec)
    message = str(info.value)
    assert "\n" not in message, f"message is not one line: {message!r}"
    return message


def meta_shapes(config: dict) -> dict[str, dict[str, tuple[int, ...]]]:
    """Key -> shape of both networks of a config, built on the meta device."""
    with torch.device("meta"):
        kp_detector, generator = build_networks(config)
    return {"kp_detector": {k: tuple(v.shape) for k, v in kp_detector.state_dict().items()},
            "generator": {k: tuple(v.shape) for k, v in generator.state_dict().items()}}


def test_the_eight_presets_exist():
    """The eight published 256x256 configs are the presets, listed sorted."""
    assert set(preset_names()) == EXPECTED_PRESETS
    assert preset_names() == sorted(preset_names())


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_builds(name):
    """Each preset loads, builds (on the meta device) and has 10 keypoints with the right jacobian head."""
    config = load_config(name)
    assert set(SECTIONS) <= set(config["model_params"])
    assert config["model_params"]["common_params"]["num_kp"] == 10
    with torch.device("meta"):
        kp_detector, generator = build_networks(config)
    assert not kp_detector.training and not generator.training
    assert kp_detector.num_kp == 10
    assert kp_detector.kp.out_channels == 10
    single = config["model_params"]["kp_detector_params"].get("single_jacobian_map", False)
    assert kp_detector.jacobian.out_channels == (4 if single else 40)
    assert generator.dense_motion_network is not None
    assert sum(p.numel() for p in generator.parameters()) > 10_000_000


def test_only_mgif_has_a_single_jacobian_map():
    """mgif-256 shares one jacobian map among its keypoints; the other presets have one per keypoint."""
    single = [name for name in preset_names()
              if PRESETS[name]["model_params"]["kp_detector_params"].get("single_jacobian_map")]
    assert single == ["mgif-256"]
    assert load_config("mgif-256")["model_params"]["kp_detector_params"]["single_jacobian_map"] is True


def test_preset_is_a_copy():
    """Changing a loaded config does not change the preset."""
    config = load_config("vox-256")
    config["model_params"]["common_params"]["num_kp"] = 3
    config["model_params"]["generator_params"]["dense_motion_params"]["num_blocks"] = 1
    again = load_config("vox-256")
    assert again["model_params"]["common_params"]["num_kp"] == 10
    assert again["model_params"]["generator_params"]["dense_motion_params"]["num_blocks"] == 5


def test_original_yaml_with_extra_sections(tmp_path):
    """The original vox-256.yaml, with dataset/train/animate/discriminator sections, gives the vox-256 model."""
    path = tmp_path / "vox-256.yaml"
    path.write_text(ORIGINAL_VOX_YAML, encoding="utf-8")
    config = load_config(path)
    assert set(config) == {"model_params"}
    assert set(config["model_params"]) == set(SECTIONS)
    preset = load_config("vox-256")["model_params"]
    assert config["model_params"] == {k: preset[k] for k in SECTIONS}
    assert meta_shapes(config) == meta_shapes(load_config("vox-256"))
    assert load_config(str(path)) == config


@pytest.mark.parametrize("variant", GOLDEN_VARIANTS)
def test_golden_yaml_loads(variant):
    """The golden config.yaml files load from a path and build."""
    config = load_config(golden_dir(variant) / "config.yaml")
    shapes = meta_shapes(config)
    num_kp = config["model_params"]["common_params"]["num_kp"]
    assert shapes["kp_detector"]["kp.weight"][0] == num_kp
    assert ("jacobian.weight" in shapes["kp_detector"]) == config["model_params"]["common_params"]["estimate_jacobian"]


def test_dict_is_validated_and_copied():
    """A dict goes through the same validation and comes back as a copy."""
    raw = copy.deepcopy(PRESETS["taichi-256"])
    config = load_config(raw)
    config["model_params"]["common_params"]["num_kp"] = 1
    assert raw["model_params"]["common_params"]["num_kp"] == 10
    del raw["model_params"]["generator_params"]
    assert "model_params.generator_params is missing" in config_error(raw)


def test_unknown_preset_lists_presets():
    """An unknown name says so and lists every preset."""
    message = config_error("vox-512")
    assert "unknown preset 'vox-512'" in message
    for name in EXPECTED_PRESETS:
        assert name in message


@pytest.mark.parametrize("name", ["missing.yaml", "missing.YML", "configs/missing"])
def test_missing_yaml_path(tmp_path, name):
    """A path that does not exist says 'not found' (not 'unknown preset')."""
    path = tmp_path / name
    message = config_error(path)
    assert "config file not found" in message
    assert str(path) in message


@pytest.mark.parametrize(("text", "words"), [
    ("", "no model_params section"),
    ("just a string\n", "no model_params section"),
    ("- 1\n- 2\n", "no model_params section"),
    ("dataset_params:\n  root_dir: data\n", "no model_params section"),
    ("model_params: 3\n", "no model_params section"),
    ("model_params:\n  common_params: {num_kp: 10, num_channels: 3}\n", "model_params.kp_detector_params is missing"),
])
def test_yaml_that_is_not_a_fomm_config(tmp_path, text, words):
    """Valid YAML of the wrong shape names what is missing."""
    path = tmp_path / "other.yaml"
    path.write_text(text, encoding="utf-8")
    message = config_error(path)
    assert words in message
    assert str(path) in message


@pytest.mark.parametrize(("section", "key"), [
    ("kp_detector_params", "num_keypoints"),
    ("common_params", "image_size"),
    ("generator_params", "use_attention"),
])
def test_unknown_key(section, key):
    """A key the model does not know (a typo, another model's config) is named, with its section."""
    config = copy.deepcopy(PRESETS["vox-256"])
    config["model_params"][section][key] = 7
    message = config_error(config)
    assert f"unknown keys in model_params.{section}: {key}" in message


def test_unknown_dense_motion_key():
    """Unknown keys inside dense_motion_params are named too."""
    config = copy.deepcopy(PRESETS["vox-256"])
    config["model_params"]["generator_params"]["dense_motion_params"]["kp_variance"] = 0.01
    assert "unknown keys in dense_motion_params: kp_variance" in config_error(config)


@pytest.mark.parametrize("value", [0, -3, "10", 2.5, None])
def test_num_kp_must_be_a_positive_integer(value):
    """num_kp that is not a positive integer is refused before building."""
    config = copy.deepcopy(PRESETS["vox-256"])
    config["model_params"]["common_params"]["num_kp"] = value
    assert "common_params.num_kp must be a positive integer" in config_error(config)


def test_invalid_yaml_syntax(tmp_path):
    """Broken YAML is reported as such, with the file name."""
    path = tmp_path / "broken.yaml"
    path.write_text("model_params:\n  common_params: {num_kp: 10\n  kp_detector_params: [\n", encoding="utf-8")
    message = config_error(path)
    assert "is not valid YAML" in message
    assert str(path) in message


def test_binary_file_is_not_yaml(tmp_path):
    """A file that is not UTF-8 text is not valid YAML either."""
    path = tmp_path / "image.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    assert "is not valid YAML" in config_error(path)


def test_huge_file_is_refused(tmp_path):
    """Files far larger than any config are refused without parsing."""
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * 120_000, encoding="utf-8")
    assert "too large to be a model config" in config_error(path)


def test_negative_width_is_a_config_error():
    """A negative block_expansion is a ConfigError, not a torch RuntimeError."""
    config = load_config(copy.deepcopy(PRESETS["vox-256"]))
    config["model_params"]["kp_detector_params"]["block_expansion"] = -1
    with pytest.raises(ConfigError), torch.device("meta"):
        build_networks(config)
