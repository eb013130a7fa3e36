import pytest
import torch
from torch import nn

from callbacks.attribution import AttributionCallback
from callbacks.attribution.batch_norm_folding import BatchNormFolding
from callbacks.attribution.filter_relevance import class_filter_scores, ranked_filters, top_filters
from callbacks.attribution.lrp_rules import RuleSettings, lrp_composite
from callbacks.attribution.methods import build_method
from callbacks.attribution.targets import Scores, resolve_targets
from callbacks.inspection import ProbeSet
from lightning_app.errors import UserInputError
from models.nets.allcnn import AllCNN
from models.nets.resnet_cifar import ResNetCIFAR


def relu_net_without_biases() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, bias=False),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, bias=False),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 12, bias=False),
        nn.ReLU(),
        nn.Linear(12, 3, bias=False),
    ).double()
    for layer in (model[0], model[2], model[6], model[8]):
        layer.weight.data *= 4  # logits of order 1, well above the rules' stabiliser (1e-6)
    return model


def explained_logits(model, inputs, targets):
    return model(inputs).gather(1, targets[:, None])[:, 0]


@pytest.mark.parametrize("composite", ["deep_taylor", "epsilon_plus"])
def test_z_plus_conserves_relevance_on_a_relu_network_without_biases(composite):
    model = relu_net_without_biases()
    inputs = torch.rand(4, 1, 8, 8, dtype=torch.double)
    targets = model(inputs).argmax(dim=1)
    rules = {"Conv2d": "zplus", "Linear": "zplus"} if composite == "epsilon_plus" else None
    method = build_method("LRP", {"composite": composite, "rules": rules, "layers": ["2", "6"]})
    result = method.attribute(Scores(model, False), inputs, targets)
    logits = explained_logits(model, inputs, targets)
    assert torch.allclose(result.values.sum(dim=(1, 2, 3)), logits, rtol=1e-5, atol=1e-8)
    for layer in ("2", "6"):
        per_example = result.layer_relevance[layer].flatten(1).sum(dim=1)
        assert torch.allclose(per_example, logits, rtol=1e-5), layer


def test_z_box_relevance_is_non_negative_inside_the_bounds_for_a_positive_logit():
    model = relu_net_without_biases()
    inputs = torch.rand(6, 1, 8, 8, dtype=torch.double) * 2 - 1  # in [-1, 1]
    logits = model(inputs)
    targets = logits.argmax(dim=1)
    keep = explained_logits(model, inputs, targets) > 0
    method = build_method("LRP", {"composite": "deep_taylor", "bounds": [-1.0, 1.0]})
    values = method.attribute(Scores(model, False), inputs[keep], targets[keep]).values
    assert keep.sum() >= 2
    assert (values >= -1e-12).all() and (values > 0).any()
    assert torch.allclose(
        values.sum(dim=(1, 2, 3)), explained_logits(model, inputs, targets)[keep], rtol=1e-5
    )
    # z^B credits a pixel at the lower bound only through negative weights, at the upper bound only
    # through positive ones: a pixel where every weight's sign matches its bound gets nothing.
    low = -torch.ones(1, 1, 8, 8, dtype=torch.double)
    first = model[0].weight.data
    model[0].weight.data = first.abs()
    target = model(low).argmax(dim=1)
    assert (
        build_method("LRP", {"composite": "deep_taylor", "bounds": [-1.0, 1.0]})
        .attribute(Scores(model, False), low, target)
        .values.abs()
        .max()
        < 1e-9
    )


@pytest.mark.parametrize("net", [ResNetCIFAR(blocks_per_stage=1), AllCNN()], ids=["resnet", "allcnn"])
def test_batch_norm_folding_leaves_the_outputs_unchanged(net):
    torch.manual_seed(0)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    net.eval()
    inputs = torch.rand(2, 3, 32, 32)
    before = net(inputs)
    instances = BatchNormFolding(inputs[:1]).apply(net)
    batch_norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(instances) == len(batch_norms)
    assert all(torch.equal(bn.weight, torch.ones_like(bn.weight)) for bn in batch_norms)
    assert (net(inputs) - before).abs().max() <= 1e-5 * before.abs().max()
    for instance in instances:
        instance.remove()
    assert torch.equal(net(inputs), before)


def test_folding_follows_the_forward_pass_not_the_order_of_registration():
    class NormFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(4)
            self.conv = nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return self.bn(self.conv(x)).sum(dim=(2, 3))

    model = NormFirst().eval()
    model.bn.running_mean.fill_(0.5)
    inputs = torch.rand(1, 1, 6, 6)
    before = model(inputs)
    assert len(BatchNormFolding(inputs).apply(model)) == 1
    assert model.bn.running_mean.abs().max() == 0
    assert torch.allclose(model(inputs), before, atol=1e-6)


def test_lrp_runs_on_a_batch_norm_network_and_restores_it():
    net = ResNetCIFAR(blocks_per_stage=1).eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    inputs = torch.rand(2, 3, 32, 32)
    values = (
        build_method("LRP", {"composite": "epsilon_gamma_box"})
        .attribute(Scores(net, False), inputs, torch.tensor([0, 1]))
        .values
    )
    assert values.shape == inputs.shape and torch.isfinite(values).all() and values.abs().sum() > 0
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_rules_from_the_yaml_name_patterns_before_types():
    model = relu_net_without_biases()
    composite = lrp_composite(
        model,
        torch.rand(1, 1, 8, 8, dtype=torch.double),
        RuleSettings("deep_taylor", rules={"Linear": "epsilon", "8": "gamma"}),
    )
    rules = {
        name: type(composite.module_map(None, name, module)).__name__
        for name, module in model.named_children()
    }
    assert rules == {
        "0": "ZBox", "1": "Pass", "2": "ZPlus", "3": "Pass", "4": "Norm", "5": "NoneType",
        "6": "Epsilon", "7": "Pass", "8": "Gamma",
    }  # fmt: skip


def test_bad_lrp_settings_get_clear_errors():
    with pytest.raises(
        UserInputError, match="LRP composite 'deep_tailor' is not one of epsilon, epsilon_plus"
    ):
        build_method("LRP", {"composite": "deep_tailor"})
    with pytest.raises(UserInputError, match=r"LRP rules: Conv2d: 'z\+' is not one of epsilon, gamma, zplus"):
        build_method("LRP", {"rules": {"Conv2d": "z+"}})
    with pytest.raises(
        UserInputError, match=r"LRP bounds \[1.0, 0.0\] must be \[low, high\] with low < high"
    ):
        build_method("LRP", {"bounds": [1.0, 0.0]})
    model, inputs = relu_net_without_biases(), torch.rand(1, 1, 8, 8, dtype=torch.double)
    with pytest.raises(
        UserInputError, match="LRP rules: features.9 match no layer that runs; the layers are: 0, 1"
    ):
        lrp_composite(model, inputs, RuleSettings(rules={"features.9": "zplus"}))
    with pytest.raises(
        UserInputError,
        match=r"LRP rules: ReLU: zplus applies to convolution and linear layers, not to 1 \(ReLU\)",
    ):
        lrp_composite(model, inputs, RuleSettings(rules={"ReLU": "zplus"}))


def test_filters_are_ranked_by_their_total_relevance_per_explained_class():
    relevance = torch.zeros(3, 4, 2, 2)
    relevance[0, 2] = 1.0  # class 0: filter 2 carries 4, filter 1 carries 2
    relevance[0, 1, 0] = 1.0
    relevance[1, 3] = 0.5  # class 1: filter 3 only
    relevance[2, 1] = 0.25  # class 0 again: filter 1 gains 1
    per_class = class_filter_scores(relevance, torch.tensor([0, 1, 0]))
    assert per_class[0].tolist() == [0.0, 3.0, 4.0, 0.0] and per_class[1].tolist() == [0.0, 0.0, 0.0, 2.0]
    assert top_filters(per_class[0], 2) == [(2, 4 / 7), (1, 3 / 7)]


def test_the_ranking_for_feature_visualisation_is_the_deep_taylor_relevance_of_the_predicted_classes():
    model = relu_net_without_biases()
    inputs = torch.rand(5, 1, 8, 8, dtype=torch.double)
    ranking = ranked_filters(model, inputs, ["2"], count=3)["2"]
    predicted = model(inputs).argmax(dim=1)
    method = build_method("LRP", {"composite": "deep_taylor", "layers": ["2"]})
    relevance = method.attribute(Scores(model, False), inputs, predicted).layer_relevance["2"]
    totals = relevance.sum(dim=(0, 2, 3))
    expected = torch.argsort(totals, descending=True)[:3]
    assert [f for f, _ in ranking] == expected.tolist()
    assert ranking[0][1] == pytest.approx(float(totals.max() / totals.sum()))


class RecordingWriter:
    def __init__(self):
        self.figures = {}

    def add_figure(self, tag, figure, step):
        self.figures[tag] = figure


def test_the_attribution_callback_logs_layer_maps_and_filter_rankings_for_lrp_layers():
    model = relu_net_without_biases().float()
    inputs = torch.rand(3, 1, 8, 8)
    probe = ProbeSet(inputs, torch.tensor([0, 1, 2]), inputs, [7, 8, 9], "val", ["a", "b", "c"])
    callback = AttributionCallback(methods={"LRP": {"layers": ["2", "6"]}}, sanity_checks=False)
    writer = RecordingWriter()
    callback.inspect(model, probe, writer, step=4, final=False)
    assert set(writer.figures) == {"attribution/LRP", "attribution/LRP/2", "attribution/LRP/2/filters",
                                   "attribution/LRP/6/filters"}  # fmt: skip
    predicted = {probe.class_name(c) for c in model(inputs).argmax(dim=1).tolist()}
    titles = [ax.get_title() for ax in writer.figures["attribution/LRP/2/filters"].axes if ax.get_visible()]
    assert {title.split(":")[0] for title in titles} == predicted
    assert all(title.endswith("%") and "top 8" in title for title in titles)


def test_filters_of_a_segmentation_network_are_ranked_without_labels():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).double()
    inputs = torch.rand(2, 1, 6, 6, dtype=torch.double)
    ranking = ranked_filters(model, inputs, ["0"], count=4)["0"]
    targets = resolve_targets("predicted", model(inputs), torch.empty(0), [])
    method = build_method("LRP", {"composite": "deep_taylor", "layers": ["0"]})
    relevance = method.attribute(Scores(model, True), inputs, targets.classes, targets.forward_args)
    totals = relevance.layer_relevance["0"].sum(dim=(0, 2, 3))
    assert [f for f, _ in ranking] == torch.argsort(totals, descending=True).tolist()
