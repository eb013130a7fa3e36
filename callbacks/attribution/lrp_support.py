"""What LRP cannot explain in a model: the operations through which relevance would pass by their
gradient without being conserved.

Zennit applies its rules to modules (convolutions, linear layers, activations, pooling, the ``Sum`` of
:mod:`callbacks.attribution.residual_sums`); everything else passes relevance back by its gradient. For
many operations that is what LRP does anyway (reshapes, concatenation, indexing, ReLU, max pooling,
averages and interpolation keep the total); for others it changes the total: a functional
``torch.sigmoid`` scales it by the sigmoid's slope (0.24 of the score reaches the input), an addition of
two computed tensors doubles it, products and attention mix it (-0.5 to -13 through a transformer block).
:func:`unsupported_operations` traces the model (torch.fx, after the residual additions are routed
through ``Sum``) and names those operations and the modules without a rule.
"""

import operator

from torch import fx, nn
from zennit.layer import Sum
from zennit.types import Activation, AvgPool, BatchNorm, Convolution, Linear

from callbacks.attribution.residual_sums import ResidualSums, carries_relevance
from callbacks.model_copy import CallSiteCopies

# functions and tensor methods whose gradient keeps the relevance total (LRP's identity or average)
CONSERVING = frozenset({
    "getitem", "getattr", "size", "dim", "view", "reshape", "flatten", "unflatten", "permute", "transpose",
    "contiguous", "squeeze", "unsqueeze", "expand", "expand_as", "cat", "concat", "stack", "split", "chunk",
    "unbind", "broadcast_tensors", "clone", "relu", "relu_", "max_pool1d", "max_pool2d", "max_pool3d",
    "max_pool1d_with_indices", "max_pool2d_with_indices", "max_pool3d_with_indices",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "mean",
    "interpolate", "upsample", "pad", "dropout", "dropout1d", "dropout2d", "dropout3d", "identity",
    "to", "type_as", "float", "double",
    "checked_logits",  # models.segmentation's shape check (fx-wrapped), which returns the logits as they are
})  # fmt: skip
BIAS_LIKE = (operator.add, operator.sub, operator.iadd, operator.isub)  # fine with one computed operand
GRADIENT_KEEPS_TOTAL = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Flatten, nn.Unflatten,
    nn.Identity, nn.Upsample, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d,
)  # fmt: skip


def has_rule(module: nn.Module) -> bool:
    """Whether LRP explains ``module``: a rule applies to it (or it is folded, or it keeps the total)."""
    if isinstance(module, CallSiteCopies):
        module = module.copies[0]
    if isinstance(module, nn.MultiheadAttention):  # Zennit counts it among the activations
        return False
    if isinstance(module, nn.Sequential) and len(module) == 0:  # an identity shortcut
        return True
    ruled = (Convolution, Linear, BatchNorm, AvgPool, Activation, Sum)
    return isinstance(module, (*ruled, *GRADIENT_KEEPS_TOTAL))


class LeafTracer(fx.Tracer):
    """fx's usual tracer, with Zennit's ``Sum`` and :class:`CallSiteCopies` (which only dispatches to
    copies) kept as calls."""

    def is_leaf_module(self, module: nn.Module, module_qualified_name: str) -> bool:
        leaf = isinstance(module, (Sum, CallSiteCopies))
        return leaf or super().is_leaf_module(module, module_qualified_name)


def _name(node: fx.Node) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _where(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack), "") or "the model's forward"


def _unsupported(node: fx.Node, model: nn.Module, memo: dict) -> str | None:
    if node.op == "call_module":
        module = model.get_submodule(node.target)
        return None if has_rule(module) else f"{type(module).__name__} ({node.target})"
    if node.op not in ("call_function", "call_method"):
        return None
    computed = [arg for arg in node.all_input_nodes if carries_relevance(arg, memo)]
    name = _name(node)
    if not computed or name in CONSERVING:
        return None
    if node.target in BIAS_LIKE and len(computed) == 1:
        return None
    return f"{name} (in {_where(node)})"


def unsupported_operations(model: nn.Module) -> list[str] | None:
    """The operations and modules of ``model``'s forward through which relevance would not be conserved
    (module docstring), by name; None when the forward does not trace (then nothing can be said)."""
    instances = ResidualSums().apply(model)
    # fx traces a root module by its class's forward: a root given sums is traced through its new forward
    root = next((instance.traced for instance in instances if instance.module is model), model)
    try:
        graph = LeafTracer().trace(root)
        memo: dict = {}
        found = [_unsupported(node, root, memo) for node in graph.nodes]
    except Exception:  # noqa: BLE001 -- data-dependent control flow and the like: not traceable
        return None
    finally:
        for instance in instances:
            instance.remove()
    return list(dict.fromkeys(name for name in found if name is not None))
