"""Export of the First Order Motion Model's two per-frame networks: ``torch.export`` graphs and ONNX files.

First Order Motion Model for Image Animation, Siarohin et al., NeurIPS 2019; upstream
github.com/AliaksandrSiarohin/first-order-model (MIT licence; the published weights carry that repository's terms).

What is exported is what runs per frame once a source is encoded (``OcclusionAwareGenerator.encode_source``):

- ``kp_detector``: ``image`` (B x C x H x W in [0, 1]) -> ``kp_value`` (B x K x 2) [, ``kp_jacobian`` (B x K x 2 x 2)].
  Always float32: the temperature-0.1 softmax is the part most sensitive to precision.
- ``generator``: the cached source (``features``, ``source_small``), the source keypoints and the (normalised)
  driving keypoints -> ``prediction`` (B x C x H x W), ``mask`` [, ``occlusion_map``] and ``deformation``
  (B x h x w x 2, the dense motion field in grid_sample coordinates, which photo framing carries detail along; the
  dense motion network forms it anyway, so it costs one output). The visualisation-only ``deformed`` image is left
  out (``decode(with_deformed=False)``). ``prediction`` stays the first output.

Inputs and outputs are bound by name (``*_INPUTS`` / ``*_OUTPUTS`` below); jacobian and occlusion entries exist only
for models that have them. Graphs are traced at batch 1 with static shapes (the live path's shapes).

ONNX and TensorRT have no matrix inverse. ``models.motion.inverse_2x2`` switches to its closed form when
``torch.compiler.is_exporting()`` is true, which ``torch.export`` sets (checked in PyTorch 2.13, strict and non-strict);
the ONNX file is made from the same exported program, and every export here checks that no inverse op is left in
the graph rather than trusting the flag. The jacobian step of ``sparse_motions`` (a broadcast 6-D matmul) exports
as a plain ONNX ``MatMul``, which ONNX Runtime runs within 5e-7 of PyTorch on the golden models, so the eager
formulation is kept as it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from fomm_live.models.generator import OcclusionAwareGenerator, SourceState
from fomm_live.models.keypoint_detector import Keypoints, KPDetector

logger = logging.getLogger(__name__)

KP_OUTPUTS = ("kp_value", "kp_jacobian")
GENERATOR_INPUTS = ("features", "source_small", "kp_source_value", "kp_source_jacobian", "kp_driving_value",
                    "kp_driving_jacobian")
GENERATOR_OUTPUTS = ("prediction", "mask", "occlusion_map", "deformation")
ONNX_ATOL = 1e-4  # fp32 ONNX Runtime vs PyTorch, every output; measured 4e-7 on the golden tiny models
_INVERSE_OPS = ("linalg_inv", "linalg_solve", "inverse", "lu_factor")


class ExportError(RuntimeError):
    """An export that failed or did not reproduce PyTorch; the message names the network and the output."""


class KeypointGraph(nn.Module):
    """The keypoint detector with tensor outputs only: ``(kp_value, [kp_jacobian])``."""

    def __init__(self, kp_detector: KPDetector) -> None:
        super().__init__()
        self.kp_detector = kp_detector
        self.has_jacobian = kp_detector.jacobian is not None
        self.input_names = ["image"]
        self.output_names = list(KP_OUTPUTS if self.has_jacobian else KP_OUTPUTS[:1])

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        kp = self.kp_detector(image)
        return (kp.value, kp.jacobian) if self.has_jacobian else (kp.value,)


class FrameGraph(nn.Module):
    """One frame from a cached source: the generator's ``decode`` with tensors in and out, bound by the names in
    ``input_names`` / ``output_names``."""

    def __init__(self, generator: OcclusionAwareGenerator, *, has_jacobian: bool) -> None:
        super().__init__()
        if generator.dense_motion_network is None:
            raise ExportError("a generator without a dense motion network has no per-frame part to export")
        self.generator = generator
        self.has_jacobian = has_jacobian
        self.has_occlusion = generator.dense_motion_network.occlusion is not None
        self.input_names = [n for n in GENERATOR_INPUTS if has_jacobian or not n.endswith("jacobian")]
        self.output_names = [n for n in GENERATOR_OUTPUTS if self.has_occlusion or n != "occlusion_map"]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = dict(zip(self.input_names, inputs, strict=True))
        kp_source = Keypoints(named["kp_source_value"], named.get("kp_source_jacobian"))
        kp_driving = Keypoints(named["kp_driving_value"], named.get("kp_driving_jacobian"))
        state = SourceState(named["source_small"], named["source_small"], named["features"])  # image: unused here
        out = self.generator.decode(state, kp_driving, kp_source, with_deformed=False, with_deformation=True)
        return tuple(out[name] for name in self.output_names)


def frame_inputs(features, source_small, kp_source: Keypoints, kp_driving: Keypoints, i: int) -> dict:
    """The per-frame generator's named inputs for frame ``i`` of a batch, each of batch 1; a batch-1 source or set of
    source keypoints serves every frame. ``features`` and ``source_small`` may be tensors or arrays (sliced alike);
    keypoints are tensors, returned as sliced."""
    s = 0 if features.shape[0] == 1 else i
    named = {"features": features[s:s + 1], "source_small": source_small[s:s + 1]}
    for prefix, kp in (("kp_source", kp_source), ("kp_driving", kp_driving)):
        j = 0 if kp.value.shape[0] == 1 else i
        named[f"{prefix}_value"] = kp.value[j:j + 1]
        if kp.jacobian is not None:
            named[f"{prefix}_jacobian"] = kp.jacobian[j:j + 1]
    return named


def example_inputs(kp_detector: KPDetector, generator: OcclusionAwareGenerator, *, image_size: int = 256,
                   source: SourceState | None = None, kp_source: Keypoints | None = None
                   ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Example inputs for ``KeypointGraph`` and ``FrameGraph``: a fixed pseudo-random image (or the given encoded
    source), and driving keypoints moved a little from the source's so that every motion term is exercised.

    Returns:
        ``(kp_inputs, generator_inputs)``, float32 tensors on the networks' device (ordinary tensors, not
        inference-mode ones, which tracing cannot use).
    """
    device = next(kp_detector.parameters()).device
    channels = kp_detector.predictor.encoder.down_blocks[0].conv.in_channels
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, channels, image_size, image_size, generator=gen).to(device)
    with torch.no_grad():
        if source is None or kp_source is None:
            kp_source = kp_detector(image)
            source = generator.encode_source(image)
        features = source.features[:1].float().contiguous().clone()
        small = source.image_small[:1].float().contiguous().clone()
        value_s = kp_source.value[:1].float().clone()
        shift = (torch.rand(value_s.shape, generator=gen) * 0.2 - 0.1).to(device)
        named = {"features": features, "source_small": small, "kp_source_value": value_s,
                 "kp_driving_value": value_s + shift}
        if kp_source.jacobian is not None:
            jac_s = kp_source.jacobian[:1].float().clone()
            turn = (torch.rand(jac_s.shape, generator=gen) * 0.2 - 0.1).to(device)
            named["kp_source_jacobian"] = jac_s
            named["kp_driving_jacobian"] = jac_s + turn
    names = [n for n in GENERATOR_INPUTS if n in named]
    return (image.clone(),), tuple(named[n] for n in names)


def _graphs(kp_detector: KPDetector, generator: OcclusionAwareGenerator) -> dict[str, nn.Module]:
    has_jacobian = kp_detector.jacobian is not None
    return {"kp_detector": KeypointGraph(kp_detector).eval(),
            "generator": FrameGraph(generator, has_jacobian=has_jacobian).eval()}


def _check_no_inverse(program: torch.export.ExportedProgram, name: str) -> None:
    for node in program.graph.nodes:
        if node.op == "call_function" and any(op in str(node.target) for op in _INVERSE_OPS):
            raise ExportError(f"{name}: the exported graph still calls {node.target}; ONNX and TensorRT have no "
                              "matrix inverse (models.motion.inverse_2x2 did not take its export branch)")


def export_programs(kp_detector: KPDetector, generator: OcclusionAwareGenerator, *, image_size: int = 256,
                    source: SourceState | None = None, kp_source: Keypoints | None = None, strict: bool = False
                    ) -> dict[str, torch.export.ExportedProgram]:
    """``torch.export`` both per-frame networks (whole graphs: export fails rather than break a graph).

    Args:
        kp_detector: The keypoint detector (eval mode).
        generator: The generator (eval mode).
        image_size: Input size of the traced graphs.
        source: An encoded source to trace with (else a fixed pseudo-random image is encoded).
        kp_source: That source's keypoints.
        strict: Trace with TorchDynamo (``strict=True``) instead of the default non-strict tracer.

    Returns:
        ``{"kp_detector": program, "generator": program}``.

    Raises:
        ExportError: tracing failed, or a matrix inverse is left in a graph.
    """
    inputs = dict(zip(("kp_detector", "generator"), example_inputs(kp_detector, generator, image_size=image_size,
                                                                  source=source, kp_source=kp_source), strict=True))
    return _export(_graphs(kp_detector, generator), inputs, strict=strict)


def _export(graphs: dict[str, nn.Module], inputs: dict[str, tuple[torch.Tensor, ...]], *, strict: bool = False
            ) -> dict[str, torch.export.ExportedProgram]:
    programs = {}
    for name, module in graphs.items():
        try:
            with torch.no_grad(), quiet_exporter():
                programs[name] = torch.export.export(module, inputs[name], strict=strict)
        except Exception as err:  # torch.export raises many types; report which network and why, keep the cause
            raise ExportError(f"torch.export of the {name} failed: {type(err).__name__}: "
                              f"{str(err).strip().splitlines()[0][:200]}") from err
        _check_no_inverse(programs[name], name)
    return programs


def _first_mismatch(got: torch.Tensor, want: torch.Tensor) -> str:
    err = (got.double() - want.double()).abs()
    idx = tuple(int(i) for i in torch.unravel_index(torch.argmax(err), err.shape))
    return f"max abs error {err.max().item():.3e} at {idx} (got {got[idx].item():.6f}, expected {want[idx].item():.6f})"


def export_onnx_networks(kp_detector: KPDetector, generator: OcclusionAwareGenerator, out_dir: str | os.PathLike, *,
                         image_size: int = 256, source: SourceState | None = None, kp_source: Keypoints | None = None,
                         verify: bool = True, atol: float = ONNX_ATOL, opset: int | None = None) -> dict[str, Path]:
    """Write ``kp_detector.onnx`` and ``generator.onnx`` (float32) to ``out_dir``; see ``export_onnx``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kp_detector, generator = kp_detector.eval(), generator.eval()
    graphs = _graphs(kp_detector, generator)
    kp_in, gen_in = example_inputs(kp_detector, generator, image_size=image_size, source=source, kp_source=kp_source)
    inputs = {"kp_detector": kp_in, "generator": gen_in}
    programs = _export(graphs, inputs)
    paths = {name: _write_onnx(name, program, graphs[name], out_dir / f"{name}.onnx", opset=opset)
             for name, program in programs.items()}
    if verify:
        verify_onnx(paths, graphs, inputs, atol=atol)
    return paths


def export_onnx_keypoints(kp_detector: KPDetector, path: str | os.PathLike, *, image_size: int = 256,
                          opset: int | None = None) -> Path:
    """Write the keypoint detector alone (``KeypointGraph``, float32, batch 1) to ``path``, unverified: its user
    checks it on its first real input (``models.engines.int8_keypoints``)."""
    graph = KeypointGraph(kp_detector.eval()).eval()
    device = next(kp_detector.parameters()).device
    channels = kp_detector.predictor.encoder.down_blocks[0].conv.in_channels
    image = torch.rand(1, channels, image_size, image_size, generator=torch.Generator().manual_seed(0)).to(device)
    program = _export({"kp_detector": graph}, {"kp_detector": (image,)})["kp_detector"]
    return _write_onnx("kp_detector", program, graph, Path(path), opset=opset)


def _write_onnx(name: str, program: torch.export.ExportedProgram, graph: nn.Module, path: Path, *,
                opset: int | None) -> Path:
    try:
        with quiet_exporter():
            torch.onnx.export(program, f=str(path), input_names=graph.input_names, output_names=graph.output_names,
                              opset_version=opset, external_data=False, verbose=False, optimize=True)
    except Exception as err:  # the exporter raises many types; name the network, keep the cause
        raise ExportError(f"ONNX export of the {name} failed: {type(err).__name__}: "
                          f"{str(err).strip().splitlines()[0][:200]}") from err
    return path


# What the exporters say at INFO (each optimisation pass: "Removed 87 unused nodes", "Replaced initializer ...") and
# the warning that torchvision's ops are not registered (the graphs use none): dozens of lines in the log of a
# first int8 start, none of them about the user's run.
_CHATTY = {"onnx_ir": logging.WARNING, "onnxscript": logging.WARNING,
           "torch.onnx._internal.exporter._registration": logging.ERROR}


@contextlib.contextmanager
def quiet_exporter():
    """``torch.export`` and ``torch.onnx.export`` without their progress chatter (see ``_CHATTY``) or PyTorch's own
    deprecation warnings about its internals; errors and real warnings still come through."""
    levels = {name: logging.getLogger(name).level for name in _CHATTY}
    try:
        for name, level in _CHATTY.items():
            logging.getLogger(name).setLevel(level)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def export_onnx(animator, out_dir: str | os.PathLike, *, verify: bool = True, atol: float = ONNX_ATOL,
                opset: int | None = None) -> dict[str, Path]:
    """Export an ``Animator``'s keypoint detector and per-frame generator to ONNX, checked with ONNX Runtime.

    The graphs are traced with the animator's encoded source when one is set (else a fixed pseudo-random image),
    on the networks' float32 weights whatever the animator's precision.

    Args:
        animator: A ``models.Animator``.
        out_dir: Folder for ``kp_detector.onnx`` and ``generator.onnx`` (created if needed).
        verify: Run both files with ONNX Runtime (CPU) on the tracing inputs and compare every output, by name,
            with PyTorch; needs ``onnxruntime``.
        atol: Largest absolute difference accepted by the check (1e-4 by default: fp32 graphs).
        opset: ONNX opset (the exporter's default when None).

    Returns:
        ``{"kp_detector": path, "generator": path}``.

    Raises:
        ExportError: the export failed, or ONNX Runtime's outputs differ from PyTorch's by more than ``atol``.
    """
    return export_onnx_networks(animator.kp_detector, animator.generator, out_dir, image_size=animator.image_size,
                                source=animator.source, kp_source=animator.kp_source, verify=verify, atol=atol,
                                opset=opset)


def onnx_session(path: str | os.PathLike, *, providers: list[str] | None = None, threads: int | None = None):
    """An ONNX Runtime inference session (``onnxruntime`` imported here, lazily)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the exporter's graphs trigger harmless shape-inference notes
    # No busy-waiting between runs: spinning threads took a whole core from the PyTorch work around each frame
    # (the keypoint detector after an ONNX Runtime call went from 16 to 32 ms on the 2-core test machine).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"])


def verify_onnx(paths: dict[str, Path], graphs: dict[str, nn.Module], inputs: dict[str, tuple[torch.Tensor, ...]], *,
                atol: float = ONNX_ATOL) -> dict[str, float]:
    """Run each ONNX file with ONNX Runtime and compare its outputs, by name, with the PyTorch module's.

    Returns:
        The largest absolute difference per ``network/output``.

    Raises:
        ExportError: an output is missing or differs by more than ``atol``.
    """
    errors = {}
    for name, path in paths.items():
        graph = graphs[name]
        session = onnx_session(path)
        ops = {node.op_type for node in _onnx_nodes(path)}
        if "Inverse" in ops:
            raise ExportError(f"{name}: {path.name} contains an Inverse op, which TensorRT cannot run")
        feeds = {n: t.detach().cpu().numpy() for n, t in zip(graph.input_names, inputs[name], strict=True)}
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
        with torch.no_grad():
            want = dict(zip(graph.output_names, graph(*inputs[name]), strict=True))
        for out_name, ref in want.items():
            if out_name not in got:
                raise ExportError(f"{name}: {path.name} has no output named {out_name!r} (has {sorted(got)})")
            value = torch.from_numpy(got[out_name])
            ref = ref.detach().cpu().float()
            if value.shape != ref.shape:
                raise ExportError(f"{name}/{out_name}: ONNX shape {tuple(value.shape)} != PyTorch {tuple(ref.shape)}")
            err = (value.double() - ref.double()).abs().max().item()
            errors[f"{name}/{out_name}"] = err
            if not err <= atol:
                raise ExportError(f"{name}/{out_name}: ONNX Runtime differs from PyTorch beyond {atol:.0e}: "
                                  f"{_first_mismatch(value, ref)}")
    logger.info("ONNX check passed (atol %.0e): %s", atol, ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    return errors


def _onnx_nodes(path: Path) -> list:
    import onnx

    return list(onnx.load(str(path), load_external_data=False).graph.node)
