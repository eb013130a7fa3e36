"""Attribution methods by name: :func:`build_method` ``(name, params)`` gives the adapter registered
under ``name`` (see :func:`method_names`), its YAML arguments checked. Each adapter is one class in
one of these modules; a new one is a class decorated with :func:`register_method`."""

from callbacks.attribution.methods import cam, gradients, lime, lrp, noise_tunnel, perturbation  # noqa: F401
from callbacks.attribution.methods.base import AttributionMethod
from callbacks.attribution.methods.registry import build_method, method_names, register_method

__all__ = ["AttributionMethod", "build_method", "method_names", "register_method"]
