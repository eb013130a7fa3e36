"""Feature visualisation on a LeNet trained for 320 steps on the offline MNIST sample."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.autograd import gradcheck

from callbacks.attribution.filter_relevance import ranked_filters
from callbacks.feature_vis import (
    BandStatistics,
    Channel,
    Direction,
    Diversity,
    FeatureVisualization,
    ImageParameterisation,
    LayerEnergy,
    Logit,
    Neuron,
    RenderSettings,
    deepdream,
    render,
)
from callbacks.feature_vis.callback import BANDS_FILE, band_statistics, distinct_tag_suffix, ranked
from callbacks.feature_vis.capture import captured_outputs, forward
from callbacks.feature_vis.objectives import ImagePenalty, check_objectives, penalty
from callbacks.feature_vis.render import scores
from callbacks.feature_vis.transforms import STANDARD, Blur, RandomScale, transform_from_config
from callbacks.inspection import inspected_copy
from callbacks.lca import LossChangeAllocation
from callbacks.lca.store import LCARun
from lightning_app import visualize
from lightning_app.cli import cli_main
from lightning_app.errors import UserInputError

ROOT = Path(__file__).parents[1]
SUMMARY_KEYS = (
    "layer",
    "objective",
    "index",
    "image",
    "activation_start",
    "activation_end",
    "dataset_mean",
    "dataset_max",
)
CONFIG = str(ROOT / "configs" / "mnist_lenet_explain.yaml")
TRAIN = [
    "--config", CONFIG, "--trainer.max_epochs=10", "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false", "--trainer.callbacks=[]",
]  # fmt: skip


def lenet_cli(root: Path, *extra: str):
    return cli_main([*TRAIN, f"--trainer.default_root_dir={root}", *extra], run=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model in eval mode and frozen, data module, band statistics, checkpoint path)."""
    root = tmp_path_factory.mktemp("lenet")
    cli = lenet_cli(root)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == 320
    model = cli.model.eval().requires_grad_(False)
    statistics = band_statistics(cli.datamodule, 512, 0)
    return model, cli.datamodule, statistics, cli.trainer.checkpoint_callback.best_model_path


def validation_images(datamodule, size: int = 500) -> torch.Tensor:
    subset = datamodule.evaluation_subset("val", size=size, seed=0)
    return torch.stack([subset[i][0] for i in range(len(subset))])


def test_channels_of_the_second_conv_exceed_ten_times_their_start_and_every_validation_image(trained):
    model, datamodule, statistics, _ = trained
    channels = [Channel("net.conv2", c) for c in range(4)]
    rendering = render(model, channels, statistics, datamodule.from_display, (1, 28, 28))
    probe = validation_images(datamodule)
    for channel, start, end in zip(channels, rendering.start, rendering.end, strict=True):
        dataset_max = scores(model, [channel] * len(probe), probe).max()
        assert end >= 10 * start and end > dataset_max, channel
    assert rendering.images.shape == (4, 1, 28, 28)
    assert rendering.images.min() > 0 and rendering.images.max() < 1  # display space, through a sigmoid


def test_a_neuron_render_exceeds_the_best_validation_image(trained):
    """With Lucid's jitters in pixels of a 224 px image, a 28 px digit moved by up to 6 px under the
    centre unit and its render reached 0.15-1.0 of the best validation image; scaled to the image, it
    exceeds it, as the channel renders do."""
    model, datamodule, statistics, _ = trained
    neurons = [Neuron("net.conv2", c) for c in range(8)]
    rendering = render(
        model, neurons, statistics, datamodule.from_display, (1, 28, 28), RenderSettings(steps=128)
    )
    probe = validation_images(datamodule)
    for neuron, end in zip(neurons, rendering.end, strict=True):
        assert end > scores(model, [neuron] * len(probe), probe).max(), neuron


def test_a_layer_after_a_relu_renders_above_the_validation_mean(trained):
    model, datamodule, statistics, _ = trained
    channels = [Channel("net.relu2", c) for c in range(6)]
    rendering = render(model, channels, statistics, datamodule.from_display, (1, 28, 28))
    probe = validation_images(datamodule)
    assert (rendering.start == 0).any()  # off everywhere on the start image
    for channel, end in zip(channels, rendering.end, strict=True):
        assert end > scores(model, [channel] * len(probe), probe).mean(), channel


class OffAtTheStart(nn.Module):
    """One unit after a ReLU, off (-0.5) for the mid-grey start image and every small shift of it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu = nn.Conv2d(1, 1, 3), nn.ReLU()
        with torch.no_grad():
            self.conv.weight.fill_(1 / 9)
            self.conv.bias.fill_(-2.5)

    def forward(self, x):
        return self.relu(self.conv(x)).mean(dim=(2, 3))


def test_the_redirected_relu_gradient_starts_a_render_the_plain_gradient_cannot(monkeypatch):
    import sys

    model = OffAtTheStart().eval().requires_grad_(False)
    statistics = BandStatistics(
        torch.tensor([0.5], dtype=torch.float64), torch.tensor([[0.01]], dtype=torch.float64)
    )
    settings = RenderSettings(steps=64, transforms=())
    redirected = render(model, [Channel("relu", 0)], statistics, lambda x: 4 * x, (1, 16, 16), settings)
    assert redirected.start.item() == 0 and redirected.end.item() > 0.3
    monkeypatch.setattr(sys.modules["callbacks.feature_vis.render"], "REDIRECT_STEPS", 0)
    plain = render(model, [Channel("relu", 0)], statistics, lambda x: 4 * x, (1, 16, 16), settings)
    assert plain.end.item() == 0  # no gradient ever reaches the image


def test_the_redirected_gradient_is_the_relu_gradient_unless_that_is_zero_for_the_image():
    from callbacks.feature_vis.redirected_relu import RedirectedReLU

    x = torch.tensor([[1.0, -1.0, -2.0], [-1.0, -2.0, -3.0]], requires_grad=True)
    gradient = torch.tensor([[-1.0, -1.0, 1.0], [-1.0, 1.0, -2.0]])
    (result,) = torch.autograd.grad(RedirectedReLU.apply(x), x, gradient)
    # image 0 has a unit on: ReLU's gradient; image 1 has none: the gradient except where it would push
    # a negative input further down (a positive gradient of the loss)
    assert result.tolist() == [[-1.0, 0.0, 0.0], [-1.0, 0.0, -2.0]]


def test_lucids_transform_distances_scale_with_the_image():
    from callbacks.feature_vis.transforms import Jitter, Pad, standard_transforms

    assert standard_transforms(224) == STANDARD
    assert (STANDARD[0], STANDARD[1], STANDARD[4]) == (Pad(12), Jitter(8), Jitter(4))
    small = standard_transforms(28)
    assert (small[0], small[1], small[4]) == (Pad(2), Jitter(1), Jitter(1))
    assert small[2:4] == STANDARD[2:4]  # scale and rotation are relative


def test_the_class_model_of_each_digit_is_classified_as_that_digit(trained):
    model, datamodule, statistics, _ = trained
    rendering = render(model, [Logit(c) for c in range(10)], statistics, datamodule.from_display, (1, 28, 28))
    assert model(datamodule.from_display(rendering.images)).argmax(dim=1).tolist() == list(range(10))


def test_the_same_seed_renders_the_same_image_bit_for_bit(trained):
    model, datamodule, statistics, _ = trained
    settings = RenderSettings(steps=32, thresholds=(8, 16))
    first, second = (
        render(model, [Channel("net.conv1", 3)], statistics, datamodule.from_display, (1, 28, 28), settings)
        for _ in range(2)
    )
    assert torch.equal(first.images, second.images)
    assert sorted(first.snapshots) == [8, 16] and torch.equal(first.snapshots[8], second.snapshots[8])
    other_seed = RenderSettings(steps=32, seed=1)
    other = render(
        model, [Channel("net.conv1", 3)], statistics, datamodule.from_display, (1, 28, 28), other_seed
    )
    assert not torch.equal(first.images, other.images)


@pytest.mark.parametrize("bands", [1, 3, 4, 8])
def test_band_statistics_whiten_the_data_and_the_parameterisation_reproduces_an_image(bands):
    generator = torch.Generator().manual_seed(bands)
    mixing = torch.randn(bands, bands, generator=generator)
    pixels = (mixing @ torch.randn(bands, 40 * 16 * 16, generator=generator)).reshape(bands, 40, 16, 16)
    images = torch.sigmoid(pixels).transpose(0, 1)
    statistics = BandStatistics.of(images)
    whitened = statistics.whiten(images.transpose(0, 1).flatten(start_dim=1))
    covariance = torch.cov(whitened).view(bands, bands)
    torch.testing.assert_close(covariance, torch.eye(bands, dtype=torch.float64), atol=0.03, rtol=0)
    target = 0.1 + 0.8 * torch.rand(2, bands, 16, 16, generator=generator)
    for fourier in (True, False):
        image = ImageParameterisation((2, bands, 16, 16), statistics, fourier)
        image.start_from(target)
        torch.testing.assert_close(image(), target, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bands", [3, 4, 8])
def test_whitening_on_realistic_multispectral_statistics(bands):
    """11-bit bands scaled to [0, 1]: means about 0.15, standard deviations about 0.04, correlations
    about 0.95 between bands. The whitened data's covariance is the identity (a fixed ridge of 1e-4
    left eigenvalues of 0.29 to 0.99)."""
    generator = torch.Generator().manual_seed(bands)
    std = 0.04 * (1 + 0.2 * torch.rand(bands, generator=generator, dtype=torch.float64))
    correlation = torch.full((bands, bands), 0.95, dtype=torch.float64).fill_diagonal_(1.0)
    covariance = std[:, None] * correlation * std[None, :]
    noise = torch.randn(bands, 200_000, generator=generator, dtype=torch.float64)
    pixels = 0.15 + torch.linalg.cholesky(covariance) @ noise
    statistics = BandStatistics.of(pixels.reshape(bands, 2000, 10, 10).transpose(0, 1))
    eigenvalues = torch.linalg.eigvalsh(torch.cov(statistics.whiten(pixels)))
    torch.testing.assert_close(eigenvalues, torch.ones(bands, dtype=torch.float64), atol=1e-3, rtol=0)


def test_band_statistics_are_saved_and_read_back(tmp_path):
    statistics = BandStatistics.of(torch.rand(5, 3, 8, 8))
    statistics.save(tmp_path / "bands.json")
    read = BandStatistics.load(tmp_path / "bands.json")
    torch.testing.assert_close(read.covariance, statistics.covariance)
    torch.testing.assert_close(read.mean, statistics.mean)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"pad": -1}, "the argument of pad must be a whole number of pixels, 0 or more"),
        ({"jitter": 2.5}, "the argument of jitter must be a whole number of pixels, 0 or more"),
        ({"scale": [0.9, -1]}, "the argument of scale must be a list of positive factors"),
        ({"rotate": "5"}, "the argument of rotate must be a list of angles in degrees"),
        ({"blur": 0}, "the argument of blur must be a positive standard deviation in pixels"),
        ({"zoom": 2}, "is not one of ['blur', 'jitter', 'pad', 'rotate', 'scale'] with its argument"),
    ],
)
def test_bad_transform_arguments_are_refused_in_one_line(spec, message):
    with pytest.raises(UserInputError, match=re.escape(message)):
        transform_from_config(spec)
    assert transform_from_config({"scale": [0.9, 1.1]}) == RandomScale((0.9, 1.1))


@pytest.mark.parametrize("transform", [*STANDARD, Blur(0.7)], ids=lambda t: type(t).__name__)
def test_every_transform_passes_gradients_through(transform):
    image = torch.rand(1, 2, 20, 20, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x: transform(x, torch.Generator().manual_seed(5)), (image,), eps=1e-6, atol=1e-4)


def test_objectives_on_hand_built_activations():
    output = torch.arange(2 * 3 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3, 3)
    outputs, images = {"layer": output}, torch.ones(2, 1, 2, 2)
    torch.testing.assert_close(Channel("layer", 1)(outputs, images), output[:, 1].mean(dim=(1, 2)))
    torch.testing.assert_close(Neuron("layer", 2)(outputs, images), output[:, 2, 1, 1])
    torch.testing.assert_close(Neuron("layer", 2, (0, 2))(outputs, images), output[:, 2, 0, 2])
    torch.testing.assert_close(LayerEnergy("layer")(outputs, images), output.pow(2).mean(dim=(1, 2, 3)))
    direction = Direction("layer", (1.0, 0.0, -1.0))(outputs, images)
    torch.testing.assert_close(direction, (output[:, 0] - output[:, 2]).mean(dim=(1, 2)))
    combined = 2 * Channel("layer", 0) + -Channel("layer", 1)
    expected = 2 * output[:, 0].mean(dim=(1, 2)) - output[:, 1].mean(dim=(1, 2))
    torch.testing.assert_close(combined(outputs, images), expected)
    logits = {"output": torch.tensor([[1.0, 5.0], [2.0, 0.0]])}
    torch.testing.assert_close(Logit(1, l2=0.5)(logits, images), torch.tensor([5.0 - 2.0, 0.0 - 2.0]))
    same = {"layer": output[:1].expand(3, -1, -1, -1)}
    torch.testing.assert_close(Diversity("layer")(same, images), torch.full((3,), -2.0))
    # two groups: a pair of equal images, and a pair whose Gram matrices share no entry
    first, second = torch.zeros(2, 1, 1), torch.zeros(2, 1, 1)
    first[0], second[1] = 1.0, 1.0
    groups = {"layer": torch.stack([first, first, first, second])}
    torch.testing.assert_close(Diversity("layer", group=2)(groups, images), torch.tensor([-1.0, -1, 0, 0]))
    torch.testing.assert_close(Diversity("layer")(groups, images), torch.tensor([-2.0, -2, -2, 0]))
    with pytest.raises(UserInputError, match="a batch of 4 images is not in groups of 3"):
        Diversity("layer", group=3)(groups, images)


def test_deepdream_amplifies_the_layer_from_a_validation_image(trained):
    model, datamodule, statistics, _ = trained
    start = datamodule.denormalize(validation_images(datamodule, 1))
    dream = deepdream(model, LayerEnergy("net.conv2"), statistics, datamodule.from_display, start)
    assert dream.images.shape == start.shape
    assert dream.end[0] > 1.1 * dream.start[0]


def test_the_callback_leaves_training_bit_identical_and_logs_a_figure_per_layer(tmp_path):
    plain = lenet_cli(tmp_path / "plain", "--trainer.max_epochs=2")
    plain.trainer.fit(plain.model, plain.datamodule)
    visualised = lenet_cli(tmp_path / "visualised", "--trainer.max_epochs=2")
    callback = FeatureVisualization(layers=["net.conv2", "net.fc2"], channels=4, steps=16, every_n_epochs=1)
    visualised.trainer.callbacks.append(callback)
    visualised.trainer.fit(visualised.model, visualised.datamodule)
    for a, b in zip(plain.model.parameters(), visualised.model.parameters(), strict=True):
        assert torch.equal(a, b)
    run_dir = Path(visualised.trainer.log_dir)
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0}).Reload()
    for layer in ("net.conv2", "net.fc2"):
        assert [image.step for image in events.Images(f"feature_vis/{layer}")] == [32, 64]
    assert len(BandStatistics.load(run_dir / BANDS_FILE).mean) == 1
    assert callback.renderings["net.fc2"].images.shape == (4, 1, 28, 28)


def test_the_command_writes_the_images_and_the_summary(trained, tmp_path, capsys):
    _, _, _, checkpoint = trained
    out = tmp_path / "vis"
    arguments = ["--config", CONFIG, "--ckpt_path", checkpoint, "--layer", "net.conv2", "--channels", "0-1,5"]
    visualize.main([*arguments, "--steps", "64", "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert [row["index"] for row in summary] == [0, 1, 5]
    written = {p.name for p in (out / "net.conv2").iterdir()}
    assert written == {f"channel_{i}.{kind}" for i in (0, 1, 5) for kind in ("png", "npy")} | {
        "channel_overview.png"
    }
    png = Image.open(out / "net.conv2" / "channel_0.png")
    assert png.size == (28, 28) and png.mode == "L"  # the image itself, one band as one band
    array = np.load(out / "net.conv2" / "channel_0.npy")
    assert array.shape == (1, 28, 28) and array.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(png), (array[0] * 255 + 0.5).astype(np.uint8))
    for row in summary:
        assert list(row) == list(SUMMARY_KEYS)
        assert row["activation_end"] > row["activation_start"] and row["dataset_max"] >= row["dataset_mean"]
    assert "net.conv2 channel 5:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--layer", "net.conv9"], "layer 'net.conv9' is not in the model; its layers are: net, net.conv1"),
        (
            ["--layer", "net.conv2", "--channels", "40"],
            "channel 40 is out of range: layer 'net.conv2' has 32",
        ),
        (
            ["--objective", "logit", "--channels", "10"],
            "channel 10 is out of range: the model's output has 10",
        ),
        (["--objective", "channel"], "--objective channel needs --layer"),
        (["--layer", "net.conv2", "--channels", "a-b"], "--channels 'a-b' is not a list like 0-7 or 0,3,5"),
        (["--layer", "net.conv2", "--steps", "0"], "--steps 0 must be positive"),
        (["--layer", "net.conv2", "--steps", "-5"], "--steps -5 must be positive"),
        (["--layer", "net.conv2", "--lr", "0"], "--lr 0.0 must be positive"),
        (["--layer", "net.conv2", "--images", "0"], "--images 0 must be positive"),
        (["--layer", "net.conv2", "--diversity", "-1"], "--diversity -1.0 must be 0 or more"),
        (
            ["--layer", "net.conv2", "--diversity", "100"],
            "--diversity needs --images 2 or more and the --layer",
        ),
        (["--objective", "logit", "--images", "2", "--diversity", "100"], "--diversity needs --images 2 or"),
        (["--layer", "net.conv2", "--logit_l2", "0.1"], "--logit_l2 weighs the class model's L2; it needs"),
        (["--layer", "net.conv2", "--penalty", "tv"], "--penalty 'tv' is not KIND=WEIGHT, e.g. tv=0.01"),
        (["--layer", "net.conv2", "--penalty", "blur=1"], "penalties ['blur'] are not among l1, l2, tv"),
        (["--layer", "net.conv2", "--penalty", "tv=-1"], "penalties {'tv': -1.0} must be 0 or more"),
        (["--layer", "net.conv2", "--transforms", "{pad: 2}"], "--transforms '{pad: 2}' is not a list like"),
        (
            ["--layer", "net.conv2", "--transforms", "[{pad: -2}]"],
            "the argument of pad must be a whole number",
        ),
        (
            ["--layer", "net.conv2", "--display_bands", "0,1"],
            "display_bands [0, 1] must be one or three band",
        ),
        (["--objective", "deepdream", "--layer", "net.conv2", "--images", "2"], "dreams into one image"),
    ],
)
def test_the_command_refuses_bad_layers_and_indices_in_one_line(trained, tmp_path, capsys, extra, message):
    _, _, _, checkpoint = trained
    with pytest.raises(SystemExit) as exit_info:
        visualize.main(["--config", CONFIG, "--ckpt_path", checkpoint, *extra, "--out", str(tmp_path)])
    assert message in str(exit_info.value) and str(exit_info.value).startswith("error: ")


def gram_similarity(model, images: torch.Tensor, datamodule, layer: str) -> float:
    """The cosine similarity of the Gram matrices of two display-space images at ``layer``."""
    with captured_outputs(model, [layer]) as outputs:
        forward(model, datamodule.from_display(images), outputs)
    features = outputs[layer].flatten(start_dim=2)
    grams = torch.nn.functional.normalize((features @ features.transpose(1, 2)).flatten(start_dim=1), dim=1)
    return float(grams[0] @ grams[1])


def test_the_command_renders_several_images_per_channel_apart_with_diversity(trained, tmp_path):
    model, datamodule, _, checkpoint = trained
    arguments = ["--config", CONFIG, "--ckpt_path", checkpoint, "--layer", "net.conv2", "--channels", "3"]
    similarity = {}
    for weight in ("0", "100"):
        out = tmp_path / weight
        visualize.main(
            [*arguments, "--images", "2", "--diversity", weight, "--steps", "64", "--out", str(out)]
        )
        summary = json.loads((out / "summary.json").read_text())
        assert [(row["index"], row["image"]) for row in summary] == [(3, 0), (3, 1)]
        images = torch.stack(
            [torch.from_numpy(np.load(out / "net.conv2" / f"channel_3_{i}.npy")) for i in (0, 1)]
        )
        similarity[weight] = gram_similarity(model, images, datamodule, "net.conv2")
        assert all(row["activation_end"] > row["dataset_mean"] for row in summary)
    assert similarity["100"] < similarity["0"] - 0.05


def test_the_command_passes_penalties_and_transforms_to_the_render(trained, tmp_path):
    _, _, _, checkpoint = trained
    arguments = ["--config", CONFIG, "--ckpt_path", checkpoint, "--objective", "logit", "--channels", "3"]
    arguments += ["--steps", "64", "--transforms", "[]"]
    norms, variations = {}, {}
    for name, extra in (("plain", []), ("l2", ["--logit_l2", "0.05"]), ("tv", ["--penalty", "tv=5"])):
        visualize.main([*arguments, *extra, "--out", str(tmp_path / name)])
        image = torch.from_numpy(np.load(tmp_path / name / "output" / "logit_3.npy"))[None]
        norms[name] = float(image.pow(2).sum())
        variations[name] = float(ImagePenalty("tv")({}, image))
    assert norms["l2"] < 0.8 * norms["plain"] and variations["tv"] < 0.8 * variations["plain"]


def test_a_multispectral_render_is_written_with_every_band(tmp_path, capsys):
    images = torch.rand(2, 8, 6, 5, generator=torch.Generator().manual_seed(0))
    row = dict.fromkeys(SUMMARY_KEYS, 0.0) | {"layer": "net.conv2", "objective": "channel", "index": 1}
    summary = [row | {"image": 0}, row | {"image": 1}]
    visualize.write_outputs(tmp_path, images, summary, None, [4, 2, 1])
    for image in (0, 1):
        array = np.load(tmp_path / "net.conv2" / f"channel_1_{image}.npy")
        np.testing.assert_array_equal(array, images[image].numpy())
        png = Image.open(tmp_path / "net.conv2" / f"channel_1_{image}.png")
        assert png.mode == "RGB" and png.size == (5, 6)
        expected = (images[image][[4, 2, 1]].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        np.testing.assert_array_equal(np.asarray(png), expected)
    assert "net.conv2 channel 1 image 1: 0 -> 0" in capsys.readouterr().out


def test_an_objective_on_a_layer_without_channels_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(start_dim=0))
    with pytest.raises(UserInputError, match="layer '1' has no channels"):
        check_objectives(model, [Channel("1", 0)], torch.zeros(1, 1, 5, 5))


def test_lca_chooses_the_channels_whose_parameters_helped_most_in_the_last_epoch(tmp_path):
    cli = lenet_cli(tmp_path, "--trainer.max_epochs=2")
    lca = LossChangeAllocation(eval_size=100, report=False)
    callback = FeatureVisualization(
        layers=["net.conv2", "net.fc2"], channels={"lca_top_helped": 3}, steps=8, examples=0, every_n_epochs=1
    )
    hurt = FeatureVisualization(
        layers=["net.conv2"], channels={"lca_top_hurt": 3}, steps=8, examples=0, every_n_epochs=1
    )
    cli.trainer.callbacks.extend([lca, callback, hurt])
    cli.trainer.fit(cli.model, cli.datamodule)
    run = LCARun(Path(cli.trainer.log_dir) / "lca.h5")
    last_epoch = run.steps["epoch"] == 1
    assert callback.lca_epoch == 1 and last_epoch.sum() == 32
    modules = np.asarray(run.neuron_modules)
    for layer in ("net.conv2", "net.fc2"):
        summed = run.steps["neuron_lca"][last_epoch][:, modules == layer].astype(np.float64).sum(axis=0)
        chosen = callback.chosen[layer]
        assert [channel for channel, _ in chosen] == np.argsort(summed)[:3].tolist()
        np.testing.assert_allclose([value for _, value in chosen], np.sort(summed)[:3], rtol=1e-6)
        assert chosen[0][1] < 0  # the channel that helped most lowered the loss
        assert callback.renderings[layer].images.shape[0] == 3
    assert 0 < len(hurt.chosen["net.conv2"]) <= 3 and all(value > 0 for _, value in hurt.chosen["net.conv2"])
    events = EventAccumulator(cli.trainer.log_dir, size_guidance={"images": 0}).Reload()
    tags = sorted(tag.removeprefix("feature_vis/") for tag in events.Tags()["images"] if "feature_vis" in tag)
    assert tags == ["net.conv2", "net.conv2/lca_top_hurt", "net.fc2"]


def test_lca_ranking_keeps_only_channels_that_helped_or_hurt():
    lca = np.array([-0.3, 0.2, -0.1, 0.5, 0.0])
    assert ranked(lca, "lca_top_helped", 4) == [(0, -0.3), (2, -0.1)]
    assert ranked(lca, "lca_top_hurt", 4) == [(3, 0.5), (1, 0.2)]
    assert ranked(lca, "lca_top_hurt", 1) == [(3, 0.5)]
    assert ranked(np.array([0.1, 0.2]), "lca_top_helped", 2) == []
    callback = FeatureVisualization(layers=["net.conv2"], channels={"lca_top_hurt": 4})
    callback.chosen, callback.lca_epoch = {"net.conv2": ranked(lca, "lca_top_hurt", 4)}, 3
    assert callback._title("net.conv2", 10).endswith(
        "(the only 2 of 4 channels asked whose parameters hurt the loss most in epoch 3, by LCA)"
    )


def test_callbacks_rendering_the_same_layer_log_under_distinct_tags():
    helped = FeatureVisualization(layers=["net.conv2"], channels={"lca_top_helped": 2})
    hurt = FeatureVisualization(layers=["net.conv2", "net.fc1"], channels={"lca_top_hurt": 2})
    first = FeatureVisualization(layers=["net.fc1"], channels=4)
    again = FeatureVisualization(layers=["net.conv2"], channels={"lca_top_helped": 3})
    callbacks = [helped, hurt, first, again]
    suffixes = [distinct_tag_suffix(callback, callbacks) for callback in callbacks]
    assert suffixes == ["", "/lca_top_hurt", "/channel", "/lca_top_helped_4"]


def test_relevance_chooses_the_channels_with_the_most_deep_taylor_relevance(tmp_path):
    cli = lenet_cli(tmp_path, "--trainer.max_epochs=1", "--trainer.limit_train_batches=20")
    callback = FeatureVisualization(
        layers=["net.conv2"], channels={"relevance_top": 3}, steps=8, examples=0, every_n_epochs=1
    )
    cli.trainer.callbacks.append(callback)
    cli.trainer.fit(cli.model, cli.datamodule)
    with inspected_copy(cli.model, callback.probe.inputs, seed=0) as model:
        expected = ranked_filters(model, callback.probe.inputs, ["net.conv2"], 3)["net.conv2"]
    chosen = callback.chosen["net.conv2"]
    assert [c for c, _ in chosen] == [c for c, _ in expected]
    np.testing.assert_allclose([s for _, s in chosen], [s for _, s in expected], rtol=1e-5)
    assert 0 < chosen[2][1] <= chosen[1][1] <= chosen[0][1] < 1
    assert callback.renderings["net.conv2"].images.shape[0] == 3
    assert callback.caption("net.conv2", "net.conv2:5", 0, 1.0).endswith(
        f"relevance {100 * chosen[0][1]:.1f} %"
    )


def test_lca_choice_needs_the_lca_callback_and_layers_with_parameters(tmp_path):
    cli = lenet_cli(tmp_path)
    cli.trainer.callbacks.append(FeatureVisualization(layers=["net.conv2"], channels={"lca_top_hurt": 2}))
    with pytest.raises(UserInputError, match="need the LossChangeAllocation callback in the same run"):
        cli.trainer.fit(cli.model, cli.datamodule)
    cli = lenet_cli(tmp_path)
    relu = FeatureVisualization(layers=["net.relu2"], channels={"lca_top_hurt": 2})
    cli.trainer.callbacks.extend([LossChangeAllocation(eval_size=100, report=False), relu])
    with pytest.raises(UserInputError, match="layer 'net.relu2' owns no parameters"):
        cli.trainer.fit(cli.model, cli.datamodule)
    with pytest.raises(UserInputError, match="must be one of lca_top_helped, lca_top_hurt or relevance_top"):
        FeatureVisualization(layers=["net.conv2"], channels={"lca_top": 2})


class NeverCalled(nn.Module):
    def forward(self, x):
        raise AssertionError("the forward pass went past the last layer an objective reads")


def test_the_forward_pass_stops_after_the_last_layer_the_objectives_read():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), NeverCalled()).requires_grad_(False)
    statistics = BandStatistics.of(torch.rand(4, 1, 8, 8))
    settings = RenderSettings(steps=3)
    rendering = render(
        model, [Channel("0", 1), Channel("1", 2)], statistics, lambda x: x, (1, 8, 8), settings
    )
    assert rendering.images.shape == (2, 1, 8, 8) and torch.isfinite(rendering.end).all()


def test_penalties_lower_the_image_total_variation(trained):
    model, datamodule, statistics, _ = trained
    channel = Channel("net.conv2", 4)
    settings = RenderSettings(steps=64)
    plain, smooth = (
        render(model, [channel], statistics, datamodule.from_display, (1, 28, 28), settings, batch)
        for batch in (None, penalty({"tv": 1.0, "l1": 0.0}))
    )
    variation = [ImagePenalty("tv")({}, rendering.images).item() for rendering in (plain, smooth)]
    assert variation[1] < 0.7 * variation[0]
    # the value reported is the channel's, without the penalty
    with torch.no_grad():
        reached = scores(model, [channel], datamodule.from_display(smooth.images))
    torch.testing.assert_close(smooth.end, reached)
    assert penalty({"l2": 0.0}) is None
    with pytest.raises(UserInputError, match=r"penalties \['blur'\] are not among l1, l2, tv"):
        penalty({"blur": 1.0})
    with pytest.raises(UserInputError, match=r"penalties \{'tv': -0.1\} must be 0 or more"):
        penalty({"tv": -0.1})


def test_a_segmentation_class_model_reads_the_logit_over_its_region():
    logits = torch.arange(2 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 2, 2, 2)
    region = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    score = Logit(1, region=region)({"output": logits}, torch.zeros(2, 1, 2, 2))
    torch.testing.assert_close(score, (logits[:, 1] * region).sum(dim=(1, 2)) / 2)
    whole = Logit(0)({"output": logits}, torch.zeros(2, 1, 2, 2))
    torch.testing.assert_close(whole, logits[:, 0].mean(dim=(1, 2)))
