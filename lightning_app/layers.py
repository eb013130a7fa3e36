"""List a model's layers, so you know what to type as ``layer``/``layers`` in the callbacks' config.

    python -m lightning_app.layers --config configs/mnist_lenet_explain.yaml [--model.… overrides]

Prints, per layer: its name, type, output shape for one image of the config's data, its parameter
count, and what can target it: ``spatial`` (feature maps: ActivationCallback, LayerGradCam,
GuidedGradCam), ``dense`` (EmbeddingCallback's layer, ActivationCallback's dead units).
"""

import sys

import torch

from callbacks.model_copy import network_layers
from lightning_app.cli import cli_main
from lightning_app.errors import report_errors


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


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return
    report_errors(lambda: print_layers(args))


def print_layers(args: list[str]) -> None:
    cli = cli_main(args, run=False)
    cli.datamodule.setup("fit")
    example = cli.datamodule.evaluation_subset("val", size=1)[0][0].unsqueeze(0)
    rows = layer_table(cli.model, example)
    widths = [
        max(len(str(row[i])) for row in rows + [("layer", "type", "output", "parameters", "")])
        for i in range(5)
    ]
    header = ("layer", "type", "output", "parameters", "targets")
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
