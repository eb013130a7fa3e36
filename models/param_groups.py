"""Per-layer optimizer settings from the YAML: parameter groups chosen by name pattern.

``param_groups: [{params: "net.fc3.*", lr: 0.0}, {params: "net.conv*", momentum: 0.5}]`` puts every
parameter whose name (as ``named_parameters()`` of the LightningModule gives it: ``net.fc3.weight``)
matches a group's shell-style pattern into that group, with that group's optimizer settings; the first
matching group wins and the other parameters keep the optimizer's own settings. This is the LCA
reference's ``lr_special``, ``mom_special`` and ``l2_special`` for any optimizer.
"""

from fnmatch import fnmatchcase

import torch
from torch import nn

from lightning_app.errors import UserInputError, is_number


def parameter_groups(named: list[tuple[str, nn.Parameter]], specs: list[dict]) -> list[dict]:
    """The optimizer's parameter groups: one per spec (its settings, its matching parameters), then one
    with every parameter no spec matched. A spec without ``params`` or matching nothing is refused."""
    groups = []
    left = dict(named)
    for number, spec in enumerate(specs):
        pattern = spec.get("params")
        if not isinstance(pattern, str):
            raise UserInputError(
                f"model.param_groups[{number}] needs params: a name pattern such as 'net.fc3.*'"
            )
        matching = [name for name in left if fnmatchcase(name, pattern)]
        if not matching:
            raise UserInputError(
                f"model.param_groups[{number}]: params {pattern!r} matches no parameter not already in a "
                f"group; the parameters are {', '.join(name for name, _ in named)}"
            )
        groups.append({**spec, "params": [left.pop(name) for name in matching]})
    if left:
        groups.append({"params": list(left.values())})
    return groups


def check_group_settings(optimizer: torch.optim.Optimizer, specs: list[dict]) -> None:
    """Refuse a group setting the optimizer does not have (torch would keep it silently, unused), and a
    value the optimizer would refuse as its own setting (torch checks only the optimizer's own
    settings: a group's ``lr: -1.0`` would train uphill)."""
    for number, spec in enumerate(specs):
        unknown = sorted(set(spec) - {"params"} - set(optimizer.defaults))
        if unknown:
            raise UserInputError(
                f"model.param_groups[{number}]: {type(optimizer).__name__} has no setting "
                f"{', '.join(unknown)}; its settings are {', '.join(sorted(optimizer.defaults))}"
            )
        for key, value in spec.items():
            if key != "params":
                check_group_value(optimizer, f"model.param_groups[{number}].{key}={value!r}", key, value)


def check_group_value(optimizer: torch.optim.Optimizer, where: str, key: str, value) -> None:
    """``value`` of setting ``key``: a number where the optimizer's own is one, and accepted by the
    optimizer's own checks (an optimizer of the same class built with it on a stand-in parameter)."""
    name, default = type(optimizer).__name__, optimizer.defaults[key]
    if is_number(default) and not is_number(value):
        raise UserInputError(f"{where} must be a number, as {name}'s own {key} ({default})")
    stand_in = [nn.Parameter(torch.zeros(1))]
    try:
        type(optimizer)(stand_in, **optimizer.defaults)
    except (TypeError, ValueError, RuntimeError):
        return  # this optimizer cannot be rebuilt from its defaults: leave the value to it
    try:
        type(optimizer)(stand_in, **{**optimizer.defaults, key: value})
    except (TypeError, ValueError, RuntimeError) as error:
        raise UserInputError(
            f"{where} is refused by {name}: {error}; give a value its own {key} takes"
        ) from None
