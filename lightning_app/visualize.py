"""Render what a trained model's channels, classes or layers respond to.

    python -m lightning_app.visualize --config configs/X.yaml --ckpt_path C.ckpt --layer net.conv2
        --channels 0-7 [--objective channel|neuron|layer|logit|deepdream] [--image FILE] [--steps N]
        [--lr 0.05] [--pixel] [--seed 0] --out DIR

Writes ``DIR/<layer>/<objective>_<index>.png`` (the rendered image in the data's display space, its
first band or first three bands), ``DIR/<layer>/<objective>_overview.png`` (all of them enlarged, with
the value each reached) and ``DIR/summary.json``: per image ``{"layer", "objective", "index",
"activation_start", "activation_end", "dataset_mean", "dataset_max"}``, the objective's value on the
start image, on the final image, and its mean and maximum over 500 validation images. ``logit``
renders class models (``--channels`` are class indices; ``--layer`` is not needed). ``deepdream`` starts
from ``--image`` (or the first validation image) and dreams into the whole layer over three octaves;
``layer`` does the same from noise. All of a layer's channels render in one batch.
"""

import argparse
import json
from pathlib import Path

import torch
from torchvision.utils import save_image

from callbacks.contracts import VisualisableDataModule, check_contract
from callbacks.feature_vis.callback import band_statistics
from callbacks.feature_vis.capture import OUTPUT
from callbacks.feature_vis.deepdream import deepdream
from callbacks.feature_vis.figure import display_rgb
from callbacks.feature_vis.objectives import OBJECTIVES, check_objectives, named_objective
from callbacks.feature_vis.render import RenderSettings, render, scores
from callbacks.mosaic import Caption, Panel, mosaic_figure
from datamodules.image_files import read_image
from lightning_app.cli import check_input_files, cli_main
from lightning_app.errors import UserInputError, report_errors

OVERVIEW_COLUMNS = 10
DATASET_SIZE = 500  # validation images the objective's mean and maximum are measured on
STATISTICS_SIZE = 512  # training images the band statistics are estimated from


def channel_list(text: str) -> list[int]:
    """'0-7' or '0,3,5' (or both: '0-3,8') as indices."""
    indices = []
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            indices += range(int(first), int(last or first) + 1)
    except ValueError:
        raise UserInputError(f"--channels {text!r} is not a list like 0-7 or 0,3,5") from None
    return indices


def parser() -> argparse.ArgumentParser:
    arguments = argparse.ArgumentParser(
        prog="python -m lightning_app.visualize", description=__doc__.split("\n\n")[0]
    )
    arguments.add_argument("--config", required=True, action="append", help="the run's config (repeatable)")
    arguments.add_argument("--ckpt_path", required=True, help="the trained checkpoint")
    arguments.add_argument("--layer", help="a layer name from python -m lightning_app.layers")
    arguments.add_argument("--channels", default="0", help="channel or class indices: 0-7, 0,3,5")
    arguments.add_argument("--objective", default="channel", choices=OBJECTIVES)
    arguments.add_argument("--image", help="the start image of deepdream (default: a validation image)")
    arguments.add_argument(
        "--steps", type=int, default=256, help="optimisation steps (per octave for deepdream)"
    )
    arguments.add_argument("--lr", type=float, default=0.05)
    arguments.add_argument("--pixel", action="store_true", help="pixel parameters instead of Fourier")
    arguments.add_argument("--seed", type=int, default=0)
    arguments.add_argument("--out", required=True, help="output folder")
    return arguments


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    report_errors(lambda: visualize(args))


def visualize(args: argparse.Namespace) -> None:
    if args.objective != "logit" and not args.layer:
        raise UserInputError(f"--objective {args.objective} needs --layer (python -m lightning_app.layers)")
    model, datamodule = trained_model(args.config, args.ckpt_path)
    validation = datamodule.evaluation_subset("val", size=DATASET_SIZE, seed=args.seed)
    probe = torch.stack([validation[i][0] for i in range(len(validation))])
    layer = args.layer or OUTPUT
    indices = [0] if args.objective in ("layer", "deepdream") else channel_list(args.channels)
    objectives = [named_objective(args.objective, layer, i) for i in indices]
    check_objectives(model, objectives, probe[:1])
    statistics = band_statistics(datamodule, STATISTICS_SIZE, args.seed)
    settings = RenderSettings(steps=args.steps, lr=args.lr, fourier=not args.pixel, seed=args.seed)
    shape = tuple(probe.shape[1:])
    start = None
    if args.objective == "deepdream":
        start = read_image(Path(args.image), shape)[None] if args.image else datamodule.denormalize(probe[:1])
        rendering = deepdream(model, objectives[0], statistics, datamodule.from_display, start, settings)
    else:
        rendering = render(model, objectives, statistics, datamodule.from_display, shape, settings)
    with torch.no_grad():
        on_data = torch.stack([scores(model, [o] * len(probe), probe) for o in objectives])
    summary = [
        {
            "layer": layer,
            "objective": args.objective,
            "index": index,
            "activation_start": float(rendering.start[i]),
            "activation_end": float(rendering.end[i]),
            "dataset_mean": float(on_data[i].mean()),
            "dataset_max": float(on_data[i].max()),
        }
        for i, index in enumerate(indices)
    ]
    write_outputs(Path(args.out), rendering.images, summary, start)


def trained_model(configs: list[str], checkpoint: str) -> tuple[torch.nn.Module, VisualisableDataModule]:
    """The config's model with the checkpoint's weights (eval mode, frozen) and its data module."""
    config_args = [arg for path in configs for arg in ("--config", path)]
    check_input_files([*config_args, "--ckpt_path", checkpoint])
    cli = cli_main(config_args, run=False)
    check_contract("visualize", "data module", cli.datamodule, VisualisableDataModule)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    cli.model.load_state_dict(state)
    cli.datamodule.setup("fit")
    return cli.model.eval().requires_grad_(False), cli.datamodule


def write_outputs(out: Path, images: torch.Tensor, summary: list[dict], start: torch.Tensor | None) -> None:
    """``out/<layer>/<objective>_<index>.png`` per image, ``<objective>_overview.png`` (every image
    enlarged and captioned, after the start image for deepdream), ``out/summary.json``, and a line per
    image."""
    folder = out / summary[0]["layer"]
    folder.mkdir(parents=True, exist_ok=True)
    objective = summary[0]["objective"]
    panels = [] if start is None else [Panel(display_rgb(start[0], None), Caption("start"))]
    for row, image in zip(summary, images, strict=True):
        pixels = display_rgb(image, None)
        save_image(torch.from_numpy(pixels).permute(2, 0, 1), folder / f"{objective}_{row['index']}.png")
        caption = f"{objective} {row['index']}\n{row['activation_end']:.3g}"
        panels.append(Panel(pixels, Caption(caption)))
        print(
            f"{row['layer']} {objective} {row['index']}: {row['activation_start']:.4g} -> "
            f"{row['activation_end']:.4g} (data: mean {row['dataset_mean']:.4g}, "
            f"max {row['dataset_max']:.4g})"
        )
    rows = [panels[i : i + OVERVIEW_COLUMNS] for i in range(0, len(panels), OVERVIEW_COLUMNS)]
    title = f"{summary[0]['layer']}: {objective}, with the value each image reached"
    mosaic_figure(title, rows).savefig(folder / f"{objective}_overview.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {len(summary)} images, an overview and summary.json to {out}")


if __name__ == "__main__":
    main()
