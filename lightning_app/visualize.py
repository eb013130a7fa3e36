"""Render what a trained model's channels, classes or layers respond to.

    python -m lightning_app.visualize --config configs/X.yaml --ckpt_path C.ckpt --layer net.conv2
        --channels 0-7 [--objective channel|neuron|layer|logit|deepdream] [--image FILE] [--steps N]
        [--lr 0.05] [--pixel] [--seed 0] [--images 4 --diversity 100] [--penalty tv=0.01]
        [--logit_l2 0.001] [--transforms '[{pad: 2}, {jitter: 1}]'] [--display_bands 4,2,1] --out DIR

Writes per image ``DIR/<layer>/<objective>_<index>.png`` (``..._<index>_<image>.png`` with --images
above 1; the rendered image in the data's display space: grey for one band, else the display bands)
and ``.npy`` beside it (every band, float32 (bands, H, W) in display space), then
``DIR/<layer>/<objective>_overview.png`` (all of them enlarged, with the value each reached) and
``DIR/summary.json``: per image ``{"layer", "objective", "index", "image", "activation_start",
"activation_end", "dataset_mean", "dataset_max"}``, the objective's value (without penalties or
diversity) on the start image, on the final image, and its mean and maximum over 500 validation images.
``logit`` renders class models (``--channels`` are class indices; ``--layer`` is not needed).
``deepdream`` starts from ``--image`` (or the first validation image) and dreams into the whole layer
over three octaves; ``layer`` does the same from noise. All images render in one batch.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from callbacks.contracts import VisualisableDataModule, check_contract
from callbacks.feature_vis.callback import band_statistics
from callbacks.feature_vis.capture import OUTPUT
from callbacks.feature_vis.deepdream import deepdream
from callbacks.feature_vis.figure import display_rgb, eight_bit
from callbacks.feature_vis.objectives import (
    OBJECTIVES,
    Diversity,
    Objective,
    check_objectives,
    named_objective,
    penalty,
)
from callbacks.feature_vis.render import RenderSettings, render, scores
from callbacks.feature_vis.transforms import transform_from_config
from callbacks.mosaic import Caption, Panel, mosaic_figure
from datamodules.image_files import read_image
from lightning_app.cli import check_input_files, cli_main
from lightning_app.errors import UserInputError, report_errors

OVERVIEW_COLUMNS = 10
DATASET_SIZE = 500  # validation images the objective's mean and maximum are measured on
STATISTICS_SIZE = 512  # training images the band statistics are estimated from


def index_list(text: str, option: str) -> list[int]:
    """'0-7' or '0,3,5' (or both: '0-3,8') as indices."""
    indices = []
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            indices += range(int(first), int(last or first) + 1)
    except ValueError:
        raise UserInputError(f"{option} {text!r} is not a list like 0-7 or 0,3,5") from None
    return indices


def penalty_weight(text: str) -> tuple[str, float]:
    """'tv=0.01' as ('tv', 0.01)."""
    kind, _, weight = text.partition("=")
    try:
        return kind, float(weight)
    except ValueError:
        raise UserInputError(f"--penalty {text!r} is not KIND=WEIGHT, e.g. tv=0.01") from None


def transform_list(text: str) -> tuple:
    """A YAML (or JSON) list of transforms, as the callback's ``transforms``."""
    specs = yaml.safe_load(text)
    if not isinstance(specs, list):
        raise UserInputError(f"--transforms {text!r} is not a list like '[{{pad: 2}}, {{jitter: 1}}]'")
    return tuple(transform_from_config(spec) for spec in specs)


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
    arguments.add_argument("--images", type=int, default=1, help="images per channel (or class)")
    arguments.add_argument(
        "--diversity",
        type=float,
        default=0.0,
        help="weight of the diversity between the images of one channel, read at --layer (needs --images "
        "2 or more; balances as Lucid's `objective - w * diversity(layer)`, which uses 100)",
    )
    arguments.add_argument(
        "--penalty",
        action="append",
        default=[],
        type=penalty_weight,
        help="KIND=WEIGHT, repeatable: tv (total variation), l1, l2 (means over the model's input) "
        "subtracted from every objective, as the callback's penalties",
    )
    arguments.add_argument(
        "--logit_l2",
        type=float,
        default=0.0,
        help="the class model's L2 weight (Simonyan et al.: logit - w * sum of the squared input)",
    )
    arguments.add_argument(
        "--transforms",
        type=transform_list,
        help="the random transforms as a list, as the callback's: '[{pad: 2}, {jitter: 1}, {scale: "
        "[0.9, 1.1]}]' (default: Lucid's standard set scaled to the image size; '[]': none)",
    )
    arguments.add_argument(
        "--display_bands", help="the bands shown for images of other than 1 or 3 bands, e.g. 4,2,1"
    )
    arguments.add_argument("--out", required=True, help="output folder")
    return arguments


def main(argv: list[str] | None = None) -> None:
    report_errors(lambda: visualize(parser().parse_args(argv)))


def check_arguments(args: argparse.Namespace) -> None:
    """One line for the first setting that cannot work, naming the option and the fix."""
    for option in ("steps", "lr", "images"):
        if getattr(args, option) <= 0:
            raise UserInputError(f"--{option} {getattr(args, option)} must be positive")
    for option in ("diversity", "logit_l2"):
        if getattr(args, option) < 0:
            raise UserInputError(f"--{option} {getattr(args, option)} must be 0 or more")
    if args.objective != "logit" and not args.layer:
        raise UserInputError(f"--objective {args.objective} needs --layer (python -m lightning_app.layers)")
    if args.logit_l2 and args.objective != "logit":
        raise UserInputError("--logit_l2 weighs the class model's L2; it needs --objective logit")
    if args.diversity and (args.images < 2 or not args.layer):
        raise UserInputError("--diversity needs --images 2 or more and the --layer it compares them at")
    if args.objective == "deepdream" and args.images > 1:
        raise UserInputError("--objective deepdream dreams into one image; leave out --images")


def visualize(args: argparse.Namespace) -> None:
    check_arguments(args)
    batch_objective = render_terms(args)
    model, datamodule = trained_model(args.config, args.ckpt_path)
    validation = datamodule.evaluation_subset("val", size=DATASET_SIZE, seed=args.seed)
    probe = torch.stack([validation[i][0] for i in range(len(validation))])
    layer = args.layer if args.objective != "logit" else OUTPUT
    indices = [0] if args.objective in ("layer", "deepdream") else index_list(args.channels, "--channels")
    objectives = [named_objective(args.objective, layer, i, args.logit_l2) for i in indices]
    check_objectives(model, [*objectives, *([batch_objective] if batch_objective else [])], probe[:1])
    bands = index_list(args.display_bands, "--display_bands") if args.display_bands else None
    display_rgb(probe[0], bands)  # display bands that do not fit the images fail here, before rendering
    statistics = band_statistics(datamodule, STATISTICS_SIZE, args.seed)
    settings = RenderSettings(
        steps=args.steps, lr=args.lr, fourier=not args.pixel, transforms=args.transforms, seed=args.seed
    )
    shape = tuple(probe.shape[1:])
    start = None
    if args.objective == "deepdream":
        start = read_image(Path(args.image), shape)[None] if args.image else datamodule.denormalize(probe[:1])
        rendering = deepdream(
            model, objectives[0], statistics, datamodule.from_display, start, settings,
            batch_objective=batch_objective,
        )  # fmt: skip
    else:
        repeated = [objective for objective in objectives for _ in range(args.images)]
        rendering = render(
            model, repeated, statistics, datamodule.from_display, shape, settings, batch_objective
        )
    with torch.no_grad():
        on_data = [scores(model, [objective] * len(probe), probe) for objective in objectives]
    summary = [
        {
            "layer": layer,
            "objective": args.objective,
            "index": index,
            "image": image,
            "activation_start": float(rendering.start[position * args.images + image]),
            "activation_end": float(rendering.end[position * args.images + image]),
            "dataset_mean": float(on_data[position].mean()),
            "dataset_max": float(on_data[position].max()),
        }
        for position, index in enumerate(indices)
        for image in range(args.images)
    ]
    write_outputs(Path(args.out), rendering.images, summary, start, bands)


def render_terms(args: argparse.Namespace) -> Objective | None:
    """The penalties and the diversity, rendered beside the objectives (None when neither is set)."""
    terms = [penalty(dict(args.penalty))]
    if args.diversity:
        terms.append(args.diversity * Diversity(args.layer, group=args.images))
    terms = [term for term in terms if term is not None]
    return sum(terms[1:], terms[0]) if terms else None


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


def png_pixels(image: torch.Tensor, bands: list[int] | None) -> Image.Image:
    """A display-space image (bands, H, W) as an 8-bit PNG image: grey for one band, else RGB of the
    display bands."""
    return eight_bit(image[0].numpy() if len(image) == 1 else display_rgb(image, bands))


def write_outputs(
    out: Path, images: torch.Tensor, summary: list[dict], start: torch.Tensor | None, bands: list[int] | None
) -> None:
    """Per image ``out/<layer>/<objective>_<index>[_<image>]`` as ``.png`` and ``.npy`` (every band),
    ``<objective>_overview.png`` (every image enlarged and captioned, after the start image for
    deepdream), ``out/summary.json``, and a line per image."""
    folder = out / summary[0]["layer"]
    folder.mkdir(parents=True, exist_ok=True)
    objective = summary[0]["objective"]
    several = any(row["image"] for row in summary)
    panels = [] if start is None else [Panel(display_rgb(start[0], bands), Caption("start"))]
    for row, image in zip(summary, images, strict=True):
        name = f"{objective}_{row['index']}" + (f"_{row['image']}" if several else "")
        png_pixels(image, bands).save(folder / f"{name}.png")
        np.save(folder / f"{name}.npy", image.numpy().astype(np.float32))
        panels.append(Panel(display_rgb(image, bands), Caption(f"{name}\n{row['activation_end']:.3g}")))
        print(
            f"{row['layer']} {objective} {row['index']}"
            + (f" image {row['image']}" if several else "")
            + f": {row['activation_start']:.4g} -> {row['activation_end']:.4g} "
            f"(data: mean {row['dataset_mean']:.4g}, max {row['dataset_max']:.4g})"
        )
    rows = [panels[i : i + OVERVIEW_COLUMNS] for i in range(0, len(panels), OVERVIEW_COLUMNS)]
    title = f"{summary[0]['layer']}: {objective}, with the value each image reached"
    mosaic_figure(title, rows).savefig(folder / f"{objective}_overview.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    images_written = f"{len(summary)} image" + ("s" if len(summary) > 1 else "")
    print(f"wrote {images_written} (.png and .npy), an overview and summary.json to {out}")


if __name__ == "__main__":
    main()
