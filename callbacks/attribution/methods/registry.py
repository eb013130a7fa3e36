"""The registry of attribution methods: a name in the YAML -> its adapter class (as timm's model
registry). Decorate an :class:`~callbacks.attribution.methods.base.AttributionMethod` subclass with
:func:`register_method` and the YAML can name it."""

import importlib

from callbacks.attribution.methods.base import AttributionMethod
from lightning_app.errors import UserInputError

_METHODS: dict[str, type[AttributionMethod]] = {}


def register_method(cls: type[AttributionMethod]) -> type[AttributionMethod]:
    """Register ``cls`` under its class name."""
    if cls.__name__ in _METHODS:
        raise ValueError(f"attribution method {cls.__name__} is registered twice")
    cls.name = cls.__name__
    _METHODS[cls.__name__] = cls
    return cls


def method_names() -> list[str]:
    """The registered method names, in registration order."""
    return list(_METHODS)


def build_method(name: str, params: dict | None = None) -> AttributionMethod:
    """The method ``name`` with its arguments. A dotted name (``my_package.MyAttribution``) wraps any
    class with Captum's interface: ``Cls(forward_func).attribute(inputs, target=...)``."""
    if "." in name:
        return _captum_like_method(name)(params)
    if name not in _METHODS:
        raise UserInputError(
            f"attribution method {name!r} is not one of the registered image attribution methods: "
            f"{', '.join(_METHODS)}"
        )
    return _METHODS[name](params)


def _captum_like_method(name: str) -> type[AttributionMethod]:
    module_name, _, class_name = name.rpartition(".")
    try:
        captum_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise UserInputError(f"attribution method {name!r} cannot be imported: {error}") from error
    return type(class_name, (AttributionMethod,), {"name": name, "captum_class": captum_class})
