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

PROVIDER = "onnx2torch on CUDA (the ONNX graph converted to torch, fp32)"


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

    def __init__(self, path: str | Path, device: str) -> None:
        import onnx
        from onnx2torch import convert

        model = explicit_pads(onnx.load(str(path)))
        self.inputs = [_port(value) for value in model.graph.input if not _is_weight(model, value)]
        self.outputs = [_port(value) for value in model.graph.output]
        self.device = torch.device(device)
        self.module = convert(model).to(self.device).eval()

    def get_inputs(self) -> list[_Port]:
        return self.inputs

    def get_outputs(self) -> list[_Port]:
        return self.outputs

    def get_providers(self) -> list[str]:
        return [PROVIDER]

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


def max_difference(path: str | Path, session: TorchOnnxSession, feeds: dict) -> float:
    """Largest absolute difference between ``session`` and onnxruntime on the CPU, over
    every output for ``feeds``."""
    import onnxruntime

    reference = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in reference.get_outputs()]
    expected = reference.run(names, feeds)
    got = session.run(names, feeds)
    return max(float(np.abs(a - b).max()) for a, b in zip(expected, got, strict=True))
