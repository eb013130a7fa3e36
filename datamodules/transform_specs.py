"""Augmentations configured in the YAML as ``[{TransformName: {args}}, ...]``, built from a transforms
library with one-line errors naming the item."""

import inspect
from types import ModuleType

from lightning_app.errors import UserInputError, describe


def build_transform(
    spec: dict, library: ModuleType, base: type, kind: str, defaults: dict[str, dict] | None = None
):
    """The transform ``spec`` names in ``library`` (a subclass of ``base``; ``kind`` says which library in
    errors), with ``defaults[name]`` for the arguments the spec leaves out."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise UserInputError(f"data.augmentations: each item is {{TransformName: {{args}}}}, got {spec!r}")
    ((name, args),) = spec.items()
    transform_class = getattr(library, str(name), None)
    if not (isinstance(transform_class, type) and issubclass(transform_class, base)):
        raise UserInputError(f"data.augmentations: {name!r} is not {kind} transform")
    args = {**(defaults or {}).get(name, {}), **(args or {})}
    accepted = inspect.signature(transform_class.__init__).parameters
    unknown = sorted(set(args) - set(accepted) - {"self"})
    if unknown:
        raise UserInputError(
            f"data.augmentations: {name} has no argument {', '.join(unknown)}; it takes "
            f"{', '.join(p for p in accepted if p not in ('self', 'kwargs'))}"
        )
    try:
        return transform_class(**args)
    except (TypeError, ValueError) as error:
        raise UserInputError(f"data.augmentations: {name} {args}: {describe(error)}") from error
