"""List a model's layers, so you know what to type as ``layer``/``layers`` in the callbacks' config.

    python -m lightning_app.layers --config configs/mnist_lenet_explain.yaml [--receptive-field
        [--empirical]] [--model.… overrides]

Prints, per layer: its name, type, output shape for one image of the config's data, its parameter
count, and what can target it: ``spatial`` (feature maps: ActivationCallback, LayerGradCam,
GuidedGradCam), ``dense`` (EmbeddingCallback's layer, ActivationCallback's dead units).

``--receptive-field`` adds each layer's theoretical receptive field, effective stride and effective
padding in input pixels, computed from the module graph (torch.fx; the largest over parallel branches
such as residual blocks; ``whole`` after global pooling or a linear layer; not computed after
up-sampling, as in FCNs' decoders; see
:mod:`models.receptive_field`). ``--empirical`` also measures it: the extent of input pixels that the
gradient of the layer's centre unit reaches over 8 random inputs of the data's size (one backward pass
each per layer: slow for big networks).
"""

import sys

import torch

from callbacks.model_copy import find_layer, network_layers
from lightning_app.cli import cli_main
from lightning_app.errors import report_errors
from models.receptive_field import empirical_size, theoretical_fields


def layer_table(model: torch.nn.Module, example: torch.Tensor) -> list[tuple[str, str, str, int, str]]:
    """(name, type, output shape, parameters, targets) per layer, in the order the forward calls them."""
    shapes: dict[str, tuple[int, ...]] = {}
    layers = network_layers(model)

    def record(name: str, output) -> None:
        if isinstance(output, torch.Tensor):
            shapes.setdefault(name, tuple(output.shape[1:]))

    handles = [
        module.register_forward_hook(lambda _m, _i, output, name=name: record(name, output))
        for name, module in layers.items()
    ]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    rows = []
    for name in shapes:
        shape = shapes[name]
        targets = "spatial" if len(shape) == 3 else "dense" if len(shape) == 1 else ""
        parameters = sum(p.numel() for p in layers[name].parameters())
        rows.append((name, type(layers[name]).__name__, "x".join(map(str, shape)), parameters, targets))
    return rows


FLAGS = ("--receptive-field", "--empirical")


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return
    flags = {flag for flag in FLAGS if flag in args}
    rest = [arg for arg in args if arg not in FLAGS]
    report_errors(lambda: print_layers(rest, "--receptive-field" in flags, "--empirical" in flags))


def _axes(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def field_columns(
    model: torch.nn.Module, names: list[str], example: torch.Tensor, empirical: bool
) -> list[tuple]:
    """(receptive field, stride, padding[, measured]) per layer name."""
    fields = theoretical_fields(model)
    columns = []
    for name in names:
        field = fields.get(name)
        if field is None:
            cells = ("", "", "")
        elif field.whole:
            cells = ("whole", "", "")
        elif field.upsampled:
            cells = ("after up-sampling", "", "")
        else:
            cells = (_axes(field.size), _axes(field.stride), _axes(field.padding))
        if empirical:
            measured = empirical_size(model, find_layer(model, name), example)
            cells += ("" if measured is None else _axes(measured),)
        columns.append(cells)
    return columns


def print_layers(args: list[str], receptive_field: bool = False, empirical: bool = False) -> None:
    cli = cli_main(args, run=False)
    cli.datamodule.setup("fit")
    example = cli.datamodule.evaluation_subset("val", size=1)[0][0].unsqueeze(0)
    rows = layer_table(cli.model, example)
    header = ("layer", "type", "output", "parameters", "targets")
    if receptive_field or empirical:
        columns = field_columns(cli.model, [row[0] for row in rows], example, empirical)
        rows = [row + cells for row, cells in zip(rows, columns, strict=True)]
        header += ("receptive field", "stride", "padding") + (("measured",) if empirical else ())
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
