"""The int8 runtimes: the per-frame generator quantised after training, by OpenVINO + NNCF, ONNX Runtime or PyTorch.

Each runtime turns the float32 per-frame generator (``models.export.FrameGraph``: the cached source and the two sets
of keypoints in; ``prediction``, ``mask``, ``occlusion_map`` and the motion field ``deformation`` out) into an 8-bit
graph, given calibration samples (named float32 arrays, one dict per pose), and writes it to a folder that
``load`` reads back, so that a cached calibration starts in seconds:

- ``openvino``: the ONNX export read by OpenVINO, quantised by NNCF (``nncf.quantize``, post-training, per-channel
  symmetric weights), saved as OpenVINO IR and compiled for the CPU plugin (VNNI / AMX int8 kernels).
- ``onnxruntime``: the ONNX export quantised by ONNX Runtime (``quantize_static``, QDQ format, per-channel weights,
  u8 activations / s8 weights: the VNNI form), saved as ONNX.
- ``torch``: PT2E quantisation (``torchao.quantization.pt2e``, ``X86InductorQuantizer``) of the ``torch.export``
  graph, compiled by inductor with freezing. The calibrated graph is saved with ``torch.export.save``; the compile
  runs at every start (inductor's own cache makes a repeat quicker).

What is quantised: the generator's convolutions (its bottleneck, up-sampling and final blocks: about nine tenths of
its work at vox-256 size). The dense motion network stays in float: its output is the motion field, which photo
framing carries detail along, and its softmax over keypoint heatmaps is the part most sensitive to rounding; it is
about a tenth of the work (``QUANTISE_DENSE_MOTION`` keeps the measurement behind this reproducible).

Telemetry: NNCF and OpenVINO's converter would send usage statistics when no consent file exists; this module sets
NNCF's own switch off (``NNCF_CI``) before importing it and never calls OpenVINO's converter (the ONNX file is read by
``Core.read_model``), so nothing is sent.

Imports ``models.export``; each runtime's package lazily, inside its methods.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from fomm_live.common.switches import switch
from fomm_live.models.export import FrameGraph

logger = logging.getLogger(__name__)

# Fastest first: the order ``auto`` tries them in (measured: benchmarks/int8.py, benchmarks/RESULTS.md).
RUNTIMES = ("openvino", "onnxruntime", "torch")
# The dense motion network in int8 too: off (see the module docstring).
QUANTISE_DENSE_MOTION = False
DENSE_MOTION_SCOPE = "dense_motion_network"

RunGraph = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class Int8Runtime:
    """One int8 runtime: ``missing`` (why it cannot run here, or None), ``version``, ``build`` and ``load``."""

    name = "base"
    packages: tuple[str, ...] = ()

    def missing(self) -> str | None:
        """Why this runtime cannot run here (a missing package, in words), or None when it can."""
        for package in self.packages:
            module = {"onnxruntime": "onnxruntime", "openvino": "openvino", "nncf": "nncf",
                      "torchao": "torchao", "onnx": "onnx"}[package]
            if importlib.util.find_spec(module) is None:
                return f"{package} is not installed (pip install {package})"
        return None

    def version(self) -> str:
        """The versions that decide the quantised graph, e.g. ``openvino-2026.4.1+nncf-3.4.0`` (a cache key part)."""
        parts = []
        for package in self.packages or ("torch",):
            try:
                parts.append(f"{package}-{importlib.metadata.version(package)}")
            except importlib.metadata.PackageNotFoundError:
                parts.append(f"{package}-none")
        return "+".join(parts)

    def build(self, folder: Path, *, onnx_path: Path | None, graph: FrameGraph, example: tuple[torch.Tensor, ...],
              samples: list[dict[str, np.ndarray]], threads: int | None) -> None:
        """Quantise the float32 graph with ``samples`` and write the result into ``folder``."""
        raise NotImplementedError

    def load(self, folder: Path, *, threads: int | None) -> RunGraph:
        """The quantised graph of ``folder``, ready to run: named float32 arrays in, named arrays out."""
        raise NotImplementedError

    needs_onnx = True
    # Whether the runtime also runs the float32 keypoint detector (``build_keypoints`` / ``load_keypoints``; see
    # ``models.engines.int8_keypoints``); where not, PyTorch eager runs it.
    float_keypoints = False

    def build_keypoints(self, folder: Path, *, onnx_path: Path) -> None:
        """Write the float32 keypoint detector exported to ``onnx_path`` into ``folder`` as this runtime's graph."""
        raise NotImplementedError

    def load_keypoints(self, folder: Path, *, threads: int | None) -> RunGraph:
        """The float32 keypoint detector of ``folder``, ready to run: ``image`` in, ``kp_value`` [``kp_jacobian``]
        out."""
        raise NotImplementedError


def _dense_motion_nodes(onnx_path: Path) -> list[str]:
    """Names of the ONNX nodes that belong to the dense motion network (by the exporter's module scope)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    names = []
    for node in model.graph.node:
        scope = " ".join(prop.value for prop in node.metadata_props if prop.key == "namespace")
        if DENSE_MOTION_SCOPE in scope:
            names.append(node.name)
    return names


@contextlib.contextmanager
def _quiet_rich() -> Iterator[None]:
    """rich's shared console silenced: NNCF draws its "Statistics collection" bar there, a second bar beside the
    engine's on a terminal, and its last state as a line in every log without one."""
    from rich import get_console

    console = get_console()
    before, console.quiet = console.quiet, True
    try:
        yield
    finally:
        console.quiet = before


class OpenVinoRuntime(Int8Runtime):
    name = "openvino"
    packages = ("openvino", "nncf")

    def build(self, folder, *, onnx_path, graph, example, samples, threads):
        os.environ.setdefault("NNCF_CI", "1")  # NNCF's telemetry off (its only effect), before nncf is imported
        import nncf
        import openvino as ov

        model = ov.Core().read_model(str(onnx_path))
        # Convolutions only, as with the other runtimes: left to itself NNCF also quantises the keypoint maths (the
        # gaussian heatmaps' pow / exp, the jacobians' matmul), which moved the motion field by 0.1 (golden tiny).
        others = sorted({op.get_type_name() for op in model.get_ops()} - {"Convolution", "Parameter", "Result",
                                                                         "Constant"})
        patterns = []
        if not QUANTISE_DENSE_MOTION:
            names = _dense_motion_nodes(onnx_path)
            # OpenVINO names an op after its ONNX node, with a suffix for parts it splits off ("/WithoutBiases").
            patterns = ["^(" + "|".join(re.escape(name) for name in names) + ")(/.*)?$"] if names else []
        ignored = nncf.IgnoredScope(patterns=patterns, types=others, validate=False)
        logging.getLogger("nncf").setLevel(logging.WARNING)
        with _quiet_rich():  # NNCF's own bar; the engine shows one for the calibration (a terminal only)
            quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples),
                                      fast_bias_correction=True, ignored_scope=ignored)
        ov.save_model(quantized, str(folder / "generator.xml"), compress_to_fp16=False)

    float_keypoints = True

    def load(self, folder, *, threads):
        return self._compiled(folder / "generator.xml", threads=threads)

    def build_keypoints(self, folder, *, onnx_path):
        import openvino as ov

        ov.save_model(ov.Core().read_model(str(onnx_path)), str(folder / "kp_detector.xml"), compress_to_fp16=False)

    def load_keypoints(self, folder, *, threads):
        return self._compiled(folder / "kp_detector.xml", threads=threads)

    @staticmethod
    def _compiled(path: Path, *, threads: int | None) -> RunGraph:
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", openvino_config(path.parent / "compiled",
                                                                             threads=threads))
        request = compiled.create_infer_request()
        names = [port.any_name for port in compiled.outputs]
        inputs = [port.any_name for port in compiled.inputs]

        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            result = request.infer({name: feeds[name] for name in inputs})
            return {name: np.array(result[i]) for i, name in enumerate(names)}

        return run


def openvino_config(cache: Path, *, threads: int | None) -> dict[str, object]:
    """The CPU plugin's settings for the generator and the keypoint detector.

    CACHE_DIR: the CPU plugin keeps its compiled blob beside the IR, so a warm start skips the compile.
    INFERENCE_PRECISION_HINT f32: what is not int8 (the dense motion network, the warp, the keypoint detector) runs in
    float32, not the bf16 the plugin would choose on AMX / AVX512-BF16 CPUs (it moved the motion field by 3e-3).
    ENABLE_CPU_PINNING false and TBB_PARTITIONER AUTO with ``FOMM_LIVE_INT8_PINNING=0``: the plugin's own default on a
    2-core CPU pins its two threads to the two cores and splits every layer between them in fixed shares, so that when
    the live loop's camera-rate threads (face mesh, in-betweens, encoder) take one core, the other network thread waits
    at the end of each layer. Unpinned, with work stealing, in the live loop with in-betweens: 6.22 and 5.91 keyframes
    a second against 3.14 and 4.55 pinned, the in-between stage 6.7-7.0 ms p50 against 9.4-10.4; but without
    in-betweens 5.53 and 5.79 against 6.65 and 7.94 (generator 117-126 ms p50 against 66-75). vox-256 size, 1280x720,
    2-core Xeon with AMX, load 3-4 from other jobs (RESULTS 2026-12-07, 05:10). Pinned unless asked: the live loop
    asks with in-betweens (``live.threads.unpin_networks_for_inbetweens``).
    """
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                 "CACHE_DIR": str(cache)}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    if switch("FOMM_LIVE_INT8_PINNING") == "0":
        config.update(ENABLE_CPU_PINNING=False, TBB_PARTITIONER="AUTO")
    return config


class OnnxRuntimeInt8(Int8Runtime):
    name = "onnxruntime"
    packages = ("onnxruntime", "onnx")

    def build(self, folder, *, onnx_path, graph, example, samples, threads):
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter(samples)

            def get_next(self):
                return next(self.items, None)

        excluded = [] if QUANTISE_DENSE_MOTION else _dense_motion_nodes(onnx_path)
        quantize_static(str(onnx_path), str(folder / "generator.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=excluded)

    def load(self, folder, *, threads):
        from fomm_live.models.export import onnx_session

        session = onnx_session(folder / "generator.onnx", threads=threads)
        names = [o.name for o in session.get_outputs()]
        inputs = [i.name for i in session.get_inputs()]

        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return dict(zip(names, session.run(None, {k: feeds[k] for k in inputs}), strict=True))

        return run


class TorchInt8(Int8Runtime):
    name = "torch"
    packages = ("torchao",)
    needs_onnx = False

    def build(self, folder, *, onnx_path, graph, example, samples, threads):
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )

        quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
        if not QUANTISE_DENSE_MOTION:
            # By its children: the exported graph records the modules whose forward ran, and the generator calls
            # the dense motion network's parts, not its forward.
            for child, _ in graph.generator.dense_motion_network.named_children():
                quantizer.set_module_name_qconfig(f"generator.{DENSE_MOTION_SCOPE}.{child}", None)
        with torch.no_grad():
            module = torch.export.export(graph, example).module()
            prepared = prepare_pt2e(module, quantizer)
            for sample in samples:
                prepared(*(torch.from_numpy(sample[name]) for name in graph.input_names))
            converted = convert_pt2e(prepared)
            program = torch.export.export(converted, example)
        torch.export.save(program, str(folder / "generator.pt2"))
        (folder / "inputs.txt").write_text("\n".join(graph.input_names) + "\n", encoding="utf-8")
        (folder / "outputs.txt").write_text("\n".join(graph.output_names) + "\n", encoding="utf-8")

    def load(self, folder, *, threads):
        import torch._inductor.config as inductor_config
        import torchao.quantization.pt2e  # noqa: F401  (registers the quantised ops the saved graph calls)

        inductor_config.freezing = True  # constant weights folded and pre-packed for the int8 convolutions
        program = torch.export.load(str(folder / "generator.pt2"))
        inputs = (folder / "inputs.txt").read_text(encoding="utf-8").split()
        names = (folder / "outputs.txt").read_text(encoding="utf-8").split()
        compiled = torch.compile(program.module())

        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            with torch.no_grad():
                outs = compiled(*(torch.from_numpy(feeds[name]) for name in inputs))
            return {name: out.numpy() for name, out in zip(names, outs, strict=True)}

        return run


def runtime(name: str) -> Int8Runtime:
    """The int8 runtime called ``name`` (one of ``RUNTIMES``)."""
    table = {"openvino": OpenVinoRuntime, "onnxruntime": OnnxRuntimeInt8, "torch": TorchInt8}
    if name not in table:
        raise ValueError(f"unknown int8 runtime {name!r}; choose from {', '.join(RUNTIMES)}")
    return table[name]()
