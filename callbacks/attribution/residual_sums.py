"""Residual additions routed through Zennit's ``Sum``, so that LRP splits relevance between the branches.

``f(x) + x`` is a plain tensor addition. LRP passes relevance back through an operation without a rule
by its gradient, which gives *each* branch all of the relevance: the relevance reaching the input
doubles at every residual block (ResNet-20: 275 to 420 times the logit). Zennit's ``Sum`` module with
the ``Norm`` rule splits it in proportion to each branch's share of the sum, as Zennit's ResNet
canonizer does for torchvision's blocks. :class:`ResidualSums` does this for every module whose own
``forward`` adds two tensors computed from its inputs (our ``ResidualBlock``, torchvision's, timm's and
SMP's blocks, a decoder's skip connections): it traces that ``forward`` one level deep (torch.fx,
submodules kept as calls), replaces each such addition by a ``Sum`` over the two operands stacked, and
overloads the module's ``forward`` with the result while LRP runs. A forward that does not trace is
left as it is; :mod:`callbacks.attribution.lrp_support` then names what LRP cannot explain.
"""

import operator

import torch
from torch import fx, nn
from zennit.canonizers import Canonizer
from zennit.layer import Sum

from callbacks.model_copy import CallSiteCopies

ADDITIONS = (operator.add, torch.add)  # fx records ``a += b`` as operator.add
SUM_NAME = "lrp_sum_{}"


class OneLevelTracer(fx.Tracer):
    """Traces a module's own forward: every submodule it calls stays one call."""

    def is_leaf_module(self, module: nn.Module, module_qualified_name: str) -> bool:
        return True


SHAPE_QUERIES = ("size", "dim", "numel", "getattr")  # their results describe a tensor, carry no relevance


def carries_relevance(node: fx.Node, memo: dict) -> bool:
    """Whether ``node`` is a tensor computed from the traced forward's inputs (so relevance flows through
    it), not a parameter, a constant or a shape."""
    if node not in memo:
        name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
        if node.op == "placeholder":
            memo[node] = True
        elif node.op == "get_attr" or name in SHAPE_QUERIES:
            memo[node] = False
        else:
            memo[node] = any(carries_relevance(parent, memo) for parent in node.all_input_nodes)
    return memo[node]


def residual_additions(graph: fx.Graph) -> list[fx.Node]:
    """The additions of two tensors that both depend on the forward's inputs (not a bias or a constant)."""
    memo: dict = {}
    return [
        node
        for node in graph.nodes
        if node.op == "call_function" and node.target in ADDITIONS and not node.kwargs
        and len(node.args) == 2 and all(isinstance(arg, fx.Node) for arg in node.args)
        and all(carries_relevance(arg, memo) for arg in node.args)
    ]  # fmt: skip


def summed_graph(module: nn.Module) -> tuple[fx.Graph, int] | None:
    """``module``'s forward with each residual addition replaced by a call of submodule
    ``lrp_sum_<i>`` on the two operands stacked, and how many; None if it has none or does not trace."""
    try:
        graph = OneLevelTracer().trace(module)
    except Exception:  # noqa: BLE001 -- any forward fx cannot trace is left as it is
        return None
    additions = residual_additions(graph)
    for index, node in enumerate(additions):
        with graph.inserting_before(node):
            pair = graph.call_function(torch.broadcast_tensors, tuple(node.args))
            stacked = graph.call_function(torch.stack, (pair,), {"dim": -1})
            summed = graph.call_module(SUM_NAME.format(index), (stacked,))
        node.replace_all_uses_with(summed)
        graph.erase_node(node)
    return (graph, len(additions)) if additions else None


class ResidualSums(Canonizer):
    """A Zennit canonizer: every module (outside ``torch.nn``) whose forward adds two tensors computed
    from its inputs gets ``Sum`` modules for those additions (module docstring)."""

    def __init__(self) -> None:
        self.module: nn.Module | None = None
        self.traced: fx.GraphModule | None = None  # the new forward's module (fx traces a root by its class)
        self.names: list[str] = []

    def apply(self, root_module: nn.Module) -> list["ResidualSums"]:
        instances = []
        for _, module in list(root_module.named_modules()):
            if type(module).__module__.startswith("torch.nn") or isinstance(module, CallSiteCopies):
                continue  # torch's own modules add nothing that is residual; call-site copies only dispatch
            traced = summed_graph(module)
            if traced is not None:
                instance = ResidualSums()
                instance.register(module, *traced)
                instances.append(instance)
        return instances

    def register(self, module: nn.Module, graph: fx.Graph, count: int) -> None:
        self.module = module
        self.names = [SUM_NAME.format(index) for index in range(count)]
        for name in self.names:
            module.add_module(name, Sum())
        self.traced = fx.GraphModule(module, graph)
        module.forward = self.traced.forward

    def remove(self) -> None:
        del self.module.forward
        for name in self.names:
            delattr(self.module, name)

    def copy(self) -> "ResidualSums":
        return ResidualSums()
