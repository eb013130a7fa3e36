"""Feature visualisation speed: 8 channels of a ResNet-18's layer3 at 128 px with Lucid's standard transforms.

Measures channel-steps per second (channels x optimisation steps / seconds) for
  (a) ours, the 8 channels in one batch (one forward and backward pass per step),
  (b) ours, one channel at a time,
  (c) torch-lucent 0.1.8 (the PyTorch port of Lucid), one channel at a time, its defaults (Fourier
      image, ImageNet colour decorrelation, its standard transforms), when it is installed
and prints the ratios. Same model (torchvision's resnet18, random weights: no download), image size,
steps and optimiser (Adam, lr 0.05) for all. lucent is not a dependency; install it in a separate
environment that shares this one's torch:

    python -m venv --system-site-packages /tmp/lucentenv
    /tmp/lucentenv/bin/pip install torch-lucent kornia==0.4.1 decorator ipython
    /tmp/lucentenv/bin/python bench/feature_vis_speed.py [--steps 16] [--device cpu|cuda]
"""

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from torchvision.models import resnet18

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callbacks.feature_vis import BandStatistics, Channel, RenderSettings, render  # noqa: E402
from callbacks.feature_vis.transforms import STANDARD  # noqa: E402

CHANNELS = 8
SIZE = 128
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def timed(function) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def ours(model, device, steps: int, batched: bool) -> float:
    mean, std = IMAGENET_MEAN.to(device), IMAGENET_STD.to(device)
    statistics = BandStatistics(IMAGENET_MEAN.flatten().double(), torch.eye(3, dtype=torch.float64) * 0.05)
    settings = RenderSettings(steps=steps, transforms=STANDARD)  # Lucid's own distances, as lucent's

    def run(channels):
        objectives = [Channel("layer3", c) for c in channels]
        render(model, objectives, statistics, lambda x: (x - mean) / std, (3, SIZE, SIZE), settings)

    groups = [range(CHANNELS)] if batched else [[c] for c in range(CHANNELS)]
    return timed(lambda: [run(group) for group in groups])


def lucent(model, steps: int) -> float | None:
    try:
        from lucent.optvis import param
        from lucent.optvis import render as lucent_render
    except ImportError:
        return None

    def run():
        for channel in range(CHANNELS):
            lucent_render.render_vis(
                model, f"layer3:{channel}", param_f=lambda: param.image(SIZE), thresholds=(steps,),
                show_image=False, progress=False, fixed_image_size=SIZE,
            )  # fmt: skip

    return timed(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = resnet18(weights=None).to(args.device).eval().requires_grad_(False)
    work = CHANNELS * args.steps
    ours(model, args.device, 2, True)  # warm-up
    batched = work / ours(model, args.device, args.steps, True)
    one_at_a_time = work / ours(model, args.device, args.steps, False)
    seconds = lucent(model, args.steps)
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {torch.get_num_threads()} threads, {args.device}")
    print(f"{CHANNELS} channels of resnet18 layer3, {SIZE} px, {args.steps} steps; channel-steps per second:")
    print(f"  ours, batched:               {batched:8.2f}")
    ratio = batched / one_at_a_time
    print(f"  ours, one at a time:         {one_at_a_time:8.2f}   (batched / this = {ratio:.2f}x)")
    if seconds is None:
        print("  torch-lucent: not installed (see the docstring)")
        return
    ratio = batched * seconds / work
    print(f"  torch-lucent, one at a time: {work / seconds:8.2f}   (ours batched / lucent = {ratio:.2f}x)")


if __name__ == "__main__":
    main()
