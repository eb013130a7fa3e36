import pytest
import torch
from torch import nn

from callbacks.attribution.methods import build_method, method_names
from callbacks.attribution.sanity import randomisation_correlation, randomised_copy, sensitivity_score
from callbacks.attribution.targets import Scores, class_index, resolve_targets
from callbacks.inspection import inspected_copy
from callbacks.model_copy import CallSiteCopies, find_layer, inspection_copy
from lightning_app.errors import UserInputError
from tests.attribution_support import PixelSegmenter, TinyCNN

SMALL = {
    "IntegratedGradients": {"n_steps": 8},
    "SmoothGrad": {"nt_samples": 4},
    "NoiseTunnel": {"nt_samples": 4, "nt_type": "vargrad"},
    "GradientShap": {"n_samples": 4},
    "Occlusion": {"window": 2, "stride": 2},
    "Lime": {"n_samples": 60, "superpixels": {"algorithm": "slic", "n_segments": 8, "channel_axis": -1}},
}


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = inspection_copy(TinyCNN(), torch.rand(1, 1, 8, 8))
    return Scores(model, segmentation=False), torch.rand(4, 1, 8, 8, requires_grad=True)


@pytest.mark.parametrize("name", method_names())
def test_every_method_gives_finite_input_shaped_attributions_that_depend_on_the_target(tiny, name):
    scores, inputs = tiny
    method = build_method(name, SMALL.get(name, {}))
    first = method.attribute(scores, inputs, torch.zeros(4, dtype=torch.long)).values
    torch.manual_seed(0)
    second = method.attribute(scores, inputs, torch.ones(4, dtype=torch.long)).values
    assert first.shape == inputs.shape
    assert torch.isfinite(first).all() and torch.isfinite(second).all()
    assert not torch.allclose(first, second)


def test_the_copy_splits_a_reused_relu_and_leaves_the_model_alone():
    model = TinyCNN()
    copy = inspection_copy(model, torch.rand(1, 1, 8, 8))
    assert isinstance(copy.relu, CallSiteCopies) and len(copy.relu.copies) == 2
    assert not any(m.inplace for m in copy.relu.copies)
    assert model.relu.inplace and isinstance(model.relu, nn.ReLU) and model.training
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(copy(x), model.eval()(x))


def test_saliency_of_a_linear_model_is_its_weights_for_the_target_class():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    scores = Scores(linear, segmentation=False)
    inputs = torch.rand(3, 1, 4, 4, requires_grad=True)
    targets = torch.tensor([2, 0, 1])
    values = build_method("Saliency", {"abs": False}).attribute(scores, inputs, targets).values
    assert torch.allclose(values, linear[1].weight[targets].reshape(3, 1, 4, 4))


def test_occlusion_puts_all_attribution_in_the_quadrant_the_model_looks_at():
    class TopLeft(nn.Module):
        def forward(self, x):
            return torch.stack([x[:, 0, :4, :4].sum(dim=(1, 2)), -x[:, 0, :4, :4].sum(dim=(1, 2))], dim=1)

    inputs = torch.rand(2, 1, 8, 8) + 0.1
    values = (
        build_method("Occlusion", {"window": 2, "stride": 2})
        .attribute(Scores(TopLeft(), False), inputs, torch.zeros(2, dtype=torch.long))
        .values
    )
    assert (values[:, :, :4, :4] > 0).all()
    assert values[:, :, 4:, :].abs().sum() == 0 and values[:, :, :, 4:].abs().sum() == 0


def test_segmentation_target_is_the_class_logits_summed_over_the_predicted_region():
    torch.manual_seed(0)
    model = PixelSegmenter()
    inputs = torch.rand(2, 1, 6, 6, requires_grad=True)
    logits = model(inputs)
    targets = resolve_targets("predicted", logits, torch.zeros(2, 6, 6), ["background", "building"])
    region = logits.argmax(dim=1) == 1
    assert torch.equal(targets.regions[:, 1].bool(), region) and targets.classes.tolist() == [1, 1]
    scores = Scores(model, segmentation=True)
    assert torch.allclose(scores(inputs, targets.regions)[:, 1], (logits[:, 1] * region).sum(dim=(1, 2)))
    values = build_method("Saliency", {}).attribute(scores, inputs, targets.classes, targets.forward_args)
    outside = ~region.unsqueeze(1)
    assert values.values[outside].abs().sum() == 0 and (values.values[~outside] > 0).all()
    ig = build_method("IntegratedGradients", {"n_steps": 8})
    assert ig.attribute(scores, inputs, targets.classes, targets.forward_args).values.shape == inputs.shape


def test_ground_truth_region_of_a_binary_segmentation_model():
    model = PixelSegmenter(classes=1)
    truth = torch.zeros(1, 6, 6)
    truth[0, :2, :3] = 1
    targets = resolve_targets("true", model(torch.rand(1, 1, 6, 6)), truth, [])
    assert targets.regions.sum() == 6 and targets.classes.tolist() == [0]


def test_the_randomisation_test_flags_a_method_that_ignores_the_model(tiny):
    scores, inputs = tiny
    targets = resolve_targets("predicted", scores(inputs), torch.zeros(4), [])
    randomised = randomised_copy(scores, seed=1)
    assert not torch.equal(randomised.model.fc.weight, scores.model.fc.weight)
    blind = build_method("tests.attribution_support.InputAsAttribution")
    values = blind.attribute(scores, inputs, targets.classes).values
    assert randomisation_correlation(blind, scores, randomised, inputs, targets, values) == pytest.approx(1.0)
    saliency = build_method("Saliency")
    values = saliency.attribute(scores, inputs, targets.classes).values
    assert randomisation_correlation(saliency, scores, randomised, inputs, targets, values) < 0.5


def test_attribution_works_under_inference_mode():
    model = TinyCNN().eval()
    with torch.inference_mode():
        inputs = torch.rand(2, 1, 8, 8)
        with inspected_copy(model, inputs, seed=0) as copy:
            values = build_method("IntegratedGradients", {"n_steps": 4}).attribute(
                Scores(copy, False), inputs.clone().requires_grad_(), torch.tensor([0, 1])
            )
    assert values.values.abs().sum() > 0


def test_bad_method_names_arguments_layers_and_targets_get_clear_errors():
    with pytest.raises(
        UserInputError,
        match="'Sailency' is not one of the registered image attribution methods: .*Saliency, InputXGradient",
    ):
        build_method("Sailency")
    with pytest.raises(UserInputError, match="IntegratedGradients does not take steps; it takes: .*n_steps"):
        build_method("IntegratedGradients", {"steps": 8})
    with pytest.raises(UserInputError, match="superpixels algorithm 'watershed' is not one of slic"):
        build_method("Lime", {"superpixels": {"algorithm": "watershed"}})
    with pytest.raises(
        UserInputError, match="layer 'conv9' is not in the model; its layers are: conv1, conv2"
    ):
        find_layer(TinyCNN(), "conv9")
    with pytest.raises(
        UserInputError, match=r"target class 12 is out of range: the model has 10 classes \(0-9\)"
    ):
        class_index(12, [], 10)
    with pytest.raises(UserInputError, match="'dog' is not a class name; the classes are"):
        class_index("dog", ["0", "1"], 2)


@pytest.mark.parametrize("name", method_names())
def test_sanity_scores_of_a_three_band_model(name):
    torch.manual_seed(0)
    scores = Scores(inspection_copy(TinyCNN(channels=3), torch.rand(1, 3, 8, 8)), segmentation=False)
    inputs = torch.rand(2, 3, 8, 8, requires_grad=True)
    targets = resolve_targets("predicted", scores(inputs), torch.zeros(2), [])
    method = build_method(name, SMALL.get(name, {}))
    assert method.attribute(scores, inputs, targets.classes).values.is_contiguous()
    assert torch.isfinite(torch.tensor(sensitivity_score(method, scores, inputs, targets)))


class TwoChannelHead(nn.Module):
    """conv (2 channels) -> global average -> logit = mean(channel 0) - mean(channel 1)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.conv.weight.data = torch.tensor([1.0, 1.0]).reshape(2, 1, 1, 1)
        self.conv.bias.data.zero_()

    def forward(self, x):
        means = self.conv(x).mean(dim=(2, 3))
        return torch.stack([means[:, 0] - means[:, 1], means[:, 1] - means[:, 0]], dim=1)


def test_grad_cam_plus_plus_keeps_only_channels_with_positive_gradients():
    torch.manual_seed(0)
    model, inputs = TwoChannelHead(), torch.rand(2, 1, 4, 4) + 0.1
    values = (
        build_method("GradCamPlusPlus", {"layer": "conv"})
        .attribute(Scores(model, False), inputs, torch.tensor([0, 0]))
        .values
    )
    # gradient g = 1/16 for channel 0 and -1/16 for channel 1, so only channel 0 counts, weighted by
    # alpha * g summed over positions: alpha = g^2 / (2 g^2 + sum(A) g^3) per position
    g, total = 1 / 16, inputs.sum(dim=(1, 2, 3))
    weight = 16 * g * g**2 / (2 * g**2 + total * g**3)
    assert torch.allclose(values, weight[:, None, None, None] * inputs, rtol=1e-4)


def test_score_cam_weights_the_channel_whose_mask_raises_the_score():
    torch.manual_seed(0)
    model, inputs = TwoChannelHead(), torch.rand(1, 1, 4, 4) + 0.1
    model.conv.weight.data = torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1)  # channel 1 is all negative
    values = (
        build_method("ScoreCam", {"layer": "conv"})
        .attribute(Scores(model, False), inputs, torch.tensor([0]))
        .values
    )
    mask = (inputs - inputs.min()) / (inputs.max() - inputs.min())  # channel 0 = x, scaled to [0, 1]
    # channel 1 = -x, so its mask is 1 - mask; the logit is 2 mean(x) of the masked input
    channel_scores = torch.stack([2 * (inputs * mask).mean(), 2 * (inputs * (1 - mask)).mean()])
    weights = channel_scores.softmax(dim=0)
    expected = ((weights[0] - weights[1]) * inputs).relu()
    assert torch.allclose(values, expected, rtol=1e-4)


def test_grad_cam_plus_plus_and_score_cam_explain_a_segmentation_region():
    model = PixelSegmenter(classes=2)  # channel 1 = x, channel 0 = -x: class 1 is predicted everywhere
    model.conv.weight.data = torch.tensor([-1.0, 1.0]).reshape(2, 1, 1, 1)
    model.conv.bias.data.zero_()
    inputs = torch.rand(1, 1, 4, 4) + 0.1
    targets = resolve_targets("predicted", model(inputs), torch.zeros(1, 4, 4), [])
    assert targets.regions[0, 1].all() and targets.classes.tolist() == [1]
    scores = Scores(model, segmentation=True)
    explain = {"layer": "conv"}
    plus = build_method("GradCamPlusPlus", explain).attribute(
        scores, inputs, targets.classes, targets.forward_args
    )
    # the gradient of the region's summed logit is 1 on channel 1 and 0 on channel 0 at every position
    assert torch.allclose(plus.values, 16 / (2 + inputs.sum()) * inputs, rtol=1e-4)
    score = build_method("ScoreCam", explain).attribute(scores, inputs, targets.classes, targets.forward_args)
    mask = (inputs - inputs.min()) / (inputs.max() - inputs.min())
    weights = torch.stack([(inputs * (1 - mask)).sum(), (inputs * mask).sum()]).softmax(dim=0)
    assert torch.allclose(score.values, ((weights[1] - weights[0]) * inputs).relu(), rtol=1e-4)
