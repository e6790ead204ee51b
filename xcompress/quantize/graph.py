"""Small read/write helpers over an ``onnx.ModelProto`` graph, shared by the rewrites.

onnx ships the proto types and checkers but no pattern-matching API, and onnxruntime's graph
transformers run only inside a session (their result is tied to one onnxruntime version), so
the few lookups the rewrites need (producer, consumers, constant values) are kept here.

Example:
    >>> g = GraphView(model)                     # doctest: +SKIP
    >>> g.const("conv.w")                        # numpy array of an initializer or Constant
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper


class GraphView:
    """Index of one graph: producers, consumers and constant tensors.

    The view is built once; rewrites that change the graph call :meth:`refresh` (cheap:
    one pass over the nodes) before matching again.
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.refresh()

    def refresh(self) -> None:
        g = self.model.graph
        self.inits = {t.name: t for t in g.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in g.node:
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                if i:
                    self.consumers[i].append(n)
        self.graph_outputs = {o.name for o in g.output}

    # -- constants -------------------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        """The value of an initializer or of a ``Constant`` node's output, else None."""
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name == "value_float":
                    return np.array(a.f, np.float32)
                if a.name == "value_floats":
                    return np.array(list(a.floats), np.float32)
                if a.name == "value_int":
                    return np.array(a.i, np.int64)
                if a.name == "value_ints":
                    return np.array(list(a.ints), np.int64)
        return None

    def add_init(self, name_hint: str, value: np.ndarray) -> str:
        """Add an initializer under a fresh name and return the name."""
        name, k = name_hint, 0
        while name in self.inits or name in self.producer:
            k += 1
            name = f"{name_hint}_{k}"
        t = numpy_helper.from_array(np.ascontiguousarray(value), name)
        self.model.graph.initializer.append(t)
        self.inits[name] = t
        return name

    def clip_bounds(self, clip: onnx.NodeProto) -> tuple[float, float]:
        """A Clip's output interval, from its inputs (opset >= 11) or its attributes (older);
        a bound it does not set is infinite."""
        ins = clip.input
        lo = self.scalar(ins[1]) if len(ins) > 1 and ins[1] else attr(clip, "min")
        hi = self.scalar(ins[2]) if len(ins) > 2 and ins[2] else attr(clip, "max")
        return (-np.inf if lo is None else float(lo), np.inf if hi is None else float(hi))

    # -- structure -------------------------------------------------------------------------
    def sole_consumer(self, tensor: str) -> onnx.NodeProto | None:
        """The only node reading ``tensor``, if it is not also a graph output."""
        users = self.consumers.get(tensor, [])
        if len(users) == 1 and tensor not in self.graph_outputs:
            return users[0]
        return None

    def other_input(self, node: onnx.NodeProto, tensor: str) -> str | None:
        """For a binary op, the input that is not ``tensor``."""
        ins = list(node.input)
        if len(ins) != 2 or tensor not in ins:
            return None
        return ins[1] if ins[0] == tensor else ins[0]

    def scalar(self, name: str) -> float | None:
        """The value of a constant holding a single number, else None."""
        v = self.const(name)
        if v is None or v.size != 1:
            return None
        return float(v.reshape(()))


def attr(node: onnx.NodeProto, name: str, default=None):
    """An attribute's Python value, or ``default``."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def set_attr(node: onnx.NodeProto, name: str, value) -> None:
    """Set (replace) an attribute."""
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(onnx.helper.make_attribute(name, value))


def remove_nodes(model: onnx.ModelProto, dead: list[onnx.NodeProto]) -> None:
    """Remove nodes (by identity) from the graph, keeping the order of the others."""
    dead_ids = {id(n) for n in dead}
    keep = [n for n in model.graph.node if id(n) not in dead_ids]
    del model.graph.node[:]
    model.graph.node.extend(keep)


def prune_unused(model: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nobody reads, and initializers nobody uses."""
    g = model.graph
    needed = {o.name for o in g.output}
    keep: list[onnx.NodeProto] = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)


def opset_of(model: onnx.ModelProto) -> int:
    """The default-domain opset version."""
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def rename_input(model: onnx.ModelProto, old: str, new: str) -> None:
    """Make every node that reads ``old`` read ``new``."""
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = new
