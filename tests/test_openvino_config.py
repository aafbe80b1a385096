"""OpenVINO's settings for the int8 generator and the keypoint detector (``models.engines.int8_runtimes``):
``FOMM_LIVE_INT8_PINNING=0`` leaves the threads unpinned with work stealing, and the CPU plugin takes it (read back
from a compiled model); unset, the plugin's own pinning stays, except where the live loop asks for unpinned threads
because in-betweens will share the cores (``live.threads.unpin_networks_for_inbetweens``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fomm_live.models.engines.int8_runtimes import openvino_config

ov = pytest.importorskip("openvino", reason="the OpenVINO runtime is an optional dependency")


def test_pinned_by_default_and_unpinned_with_work_stealing_when_asked(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path) -> None:
    monkeypatch.delenv("FOMM_LIVE_INT8_PINNING", raising=False)
    config = openvino_config(tmp_path, threads=2)
    assert config["INFERENCE_NUM_THREADS"] == 2 and config["CACHE_DIR"] == str(tmp_path)
    assert "ENABLE_CPU_PINNING" not in config and "TBB_PARTITIONER" not in config
    monkeypatch.setenv("FOMM_LIVE_INT8_PINNING", "0")
    config = openvino_config(tmp_path, threads=None)
    assert "INFERENCE_NUM_THREADS" not in config
    assert config["ENABLE_CPU_PINNING"] is False and config["TBB_PARTITIONER"] == "AUTO"


def _small_model():
    from openvino import opset13 as ops

    x = ops.parameter([1, 8, 16, 16], np.float32, name="x")
    weights = ops.constant(np.random.default_rng(0).standard_normal((8, 8, 3, 3)).astype(np.float32))
    y = ops.relu(ops.convolution(x, weights, [1, 1], [1, 1], [1, 1], [1, 1]))
    return ov.Model([y], [x], "small")


def test_the_cpu_plugin_takes_the_unpinned_settings_and_computes_the_same(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path) -> None:
    feeds = np.random.default_rng(1).standard_normal((1, 8, 16, 16)).astype(np.float32)
    outputs = {}
    for pinning in ("1", "0"):
        monkeypatch.setenv("FOMM_LIVE_INT8_PINNING", pinning)
        compiled = ov.Core().compile_model(_small_model(), "CPU", openvino_config(tmp_path / pinning, threads=2))
        if pinning == "0":
            assert compiled.get_property("ENABLE_CPU_PINNING") is False
            assert str(compiled.get_property("TBB_PARTITIONER")).endswith("AUTO")
        outputs[pinning] = np.array(compiled.create_infer_request().infer({"x": feeds})[0])
    np.testing.assert_allclose(outputs["0"], outputs["1"], rtol=0, atol=1e-5)


def test_the_live_loop_unpins_the_networks_only_with_inbetweens_and_never_against_the_users_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from fomm_live.live.threads import unpin_networks_for_inbetweens

    monkeypatch.setenv("FOMM_LIVE_INT8_PINNING", "")  # unset, as the switch reads it (and restored after the test)
    assert unpin_networks_for_inbetweens(inbetweens=False) is False
    assert os.environ["FOMM_LIVE_INT8_PINNING"] == "" and "ENABLE_CPU_PINNING" not in openvino_config(
        Path("c"), threads=2)
    assert unpin_networks_for_inbetweens(inbetweens=True) is True
    assert os.environ["FOMM_LIVE_INT8_PINNING"] == "0"
    assert openvino_config(Path("c"), threads=2)["ENABLE_CPU_PINNING"] is False
    monkeypatch.setenv("FOMM_LIVE_INT8_PINNING", "1")  # the user's choice stays
    assert unpin_networks_for_inbetweens(inbetweens=True) is False
    assert os.environ["FOMM_LIVE_INT8_PINNING"] == "1"
