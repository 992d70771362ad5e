"""ONNX graphs on a CUDA device without onnxruntime's CUDA provider: the same graph, converted
op by op to torch modules by onnx2torch, behind the small part of onnxruntime's
``InferenceSession`` that InsightFace and RapidOCR call (``run``, ``get_inputs``,
``get_outputs``, ``get_providers``). The GPU machine's onnxruntime has only the CPU provider
and onnxruntime-gpu is too large to carry; users install onnxruntime-gpu. Every figure made
this way says so (``PROVIDER``), and ``max_difference`` compares it with onnxruntime on the
CPU on the same input.

onnx2torch does not implement ``auto_pad="SAME_UPPER"`` (PP-OCR's detector and recogniser
have three such nodes); ``explicit_pads`` rewrites it as the explicit padding it means for
inputs whose size divides by the node's stride, which is what RapidOCR feeds (the detector
resizes to multiples of 32, the recogniser's height is 48).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# How a figure measured this way is labelled (with the device).
PROVIDER = "onnx2torch ({device}: the ONNX graph converted to torch, fp32)"
# Float initializers at least this large are left out of a stripped graph (weights); smaller
# ones (scales, shapes, constants the graph computes with) are kept.
STRIP_MIN_ELEMENTS = 1024


def explicit_pads(model: Any) -> Any:
    """``model`` (an ``onnx.ModelProto``) with every ``auto_pad="SAME_UPPER"`` of Conv and
    pooling nodes written as explicit ``pads`` (exact for input sizes divisible by the stride:
    total padding ``(kernel - 1) * dilation + 1 - stride``, the extra pixel at the end)."""
    from onnx import helper, numpy_helper

    weights = {init.name: numpy_helper.to_array(init).shape for init in model.graph.initializer}
    for node in model.graph.node:
        attributes = {a.name: a for a in node.attribute}
        auto_pad = attributes.get("auto_pad")
        if auto_pad is None or auto_pad.s != b"SAME_UPPER":
            continue
        if "kernel_shape" in attributes:
            kernel = list(attributes["kernel_shape"].ints)
        else:
            kernel = list(weights[node.input[1]][2:])
        strides = list(attributes["strides"].ints) if "strides" in attributes else [1] * len(kernel)
        dilations = (
            list(attributes["dilations"].ints) if "dilations" in attributes else [1] * len(kernel)
        )
        sides = zip(kernel, strides, dilations, strict=True)
        totals = [max(0, (k - 1) * d + 1 - s) for k, s, d in sides]
        begins = [total // 2 for total in totals]
        ends = [total - begin for total, begin in zip(totals, begins, strict=True)]
        node.attribute.remove(auto_pad)
        node.attribute.append(helper.make_attribute("pads", begins + ends))
    return model


@dataclass(frozen=True)
class _Port:
    """What ``InferenceSession.get_inputs()`` / ``get_outputs()`` items expose."""

    name: str
    shape: list[Any]
    type: str = "tensor(float)"


class TorchOnnxSession:
    """An ONNX file run by torch on ``device`` through onnx2torch, with the calls of
    onnxruntime's ``InferenceSession`` that InsightFace's and RapidOCR's wrappers make."""

    def __init__(self, path: str | Path | Any, device: str) -> None:
        import onnx
        from onnx2torch import convert

        model = onnx.load(str(path)) if isinstance(path, (str, Path)) else path
        model = explicit_pads(model)
        self.inputs = [_port(value) for value in model.graph.input if not _is_weight(model, value)]
        self.outputs = [_port(value) for value in model.graph.output]
        self.device = torch.device(device)
        self.module = convert(model).to(self.device).eval()

    def get_inputs(self) -> list[_Port]:
        return self.inputs

    def get_outputs(self) -> list[_Port]:
        return self.outputs

    def set_providers(self, providers: Sequence[str]) -> None:
        """Ignored: the graph runs on the device it was made for."""

    def get_providers(self) -> list[str]:
        return [PROVIDER.format(device=self.device.type)]

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list:
        arguments = [torch.from_numpy(np.ascontiguousarray(feeds[p.name])) for p in self.inputs]
        with torch.inference_mode():
            outputs = self.module(*(a.to(self.device) for a in arguments))
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        by_name = dict(zip((p.name for p in self.outputs), outputs, strict=True))
        names = output_names or [p.name for p in self.outputs]
        return [by_name[name].float().cpu().numpy() for name in names]


def _is_weight(model: Any, value: Any) -> bool:
    return any(init.name == value.name for init in model.graph.initializer)


def _port(value: Any) -> _Port:
    dims = value.type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
    return _Port(value.name, shape)


def max_difference(path: str | Path | Any, session: TorchOnnxSession, feeds: dict) -> float:
    """Largest absolute difference between ``session`` and onnxruntime on the CPU, over
    every output for ``feeds`` (``path``: an ONNX file or model)."""
    reference = cpu_session(path)
    names = [o.name for o in reference.get_outputs()]
    expected = reference.run(names, feeds)
    got = session.run(names, feeds)
    return max(float(np.abs(a - b).max()) for a, b in zip(expected, got, strict=True))


def cpu_session(path: str | Path | Any) -> Any:
    """onnxruntime on the CPU for an ONNX file or model."""
    import onnxruntime

    source = str(path) if isinstance(path, (str, Path)) else path.SerializeToString()
    return onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])


def strip_weights(model: Any) -> Any:
    """``model`` without its weights: every float initializer of at least
    ``STRIP_MIN_ELEMENTS`` elements keeps its name, type and shape and loses its data (the
    graph's speed does not depend on them). ``fill_weights`` draws them again."""
    for init in model.graph.initializer:
        if init.data_type == 1 and _elements(init) >= STRIP_MIN_ELEMENTS:  # FLOAT
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.doc_string = "stripped"
    return model


def fill_weights(model: Any, seed: int = 0) -> Any:
    """A stripped graph's weights drawn at random (normal, std 0.05)."""
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        if init.doc_string == "stripped":
            values = rng.normal(0, 0.05, tuple(init.dims)).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(values, init.name))
    return model


def _elements(init: Any) -> int:
    return int(np.prod(list(init.dims))) if len(init.dims) else 1


def strip_from_wheel(wheel: str, folder: str, names: Sequence[str]) -> None:
    """The ONNX files ``names`` (paths inside ``wheel``), without their weights, in
    ``folder`` (bench/gpu/fetch_wheels.sh: PP-OCR's graphs travel without rapidocr)."""
    import zipfile

    import onnx

    Path(folder).mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in names:
            model = strip_weights(onnx.load_from_string(archive.read(name)))
            onnx.save(model, str(Path(folder) / Path(name).name))


if __name__ == "__main__":
    import sys

    strip_from_wheel(sys.argv[1], sys.argv[2], sys.argv[3:])
