import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from callbacks.attribution import AttributionCallback
from callbacks.attribution.batch_norm_folding import BatchNormFolding
from callbacks.attribution.filter_relevance import class_filter_scores, ranked_filters, top_filters
from callbacks.attribution.lrp_rules import RuleSettings, lrp_composite
from callbacks.attribution.methods import build_method
from callbacks.attribution.records import load_record
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


def randomise_batch_norms(net: nn.Module, shift: float) -> None:
    """Batch-norm statistics and affine parameters as training leaves them: means and shifts in
    [-shift, shift], variances in [0.5, 2], scales in [0.5, 1.5]."""
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-shift, shift)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-shift, shift)


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
    randomise_batch_norms(net, shift=0.5)
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
    composite, unexplained = lrp_composite(
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
    assert unexplained == []  # Flatten passes relevance by its gradient, which keeps it whole


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
    """What the callback writes to TensorBoard, kept; its records go to ``log_dir`` as to a run folder."""

    def __init__(self, log_dir: Path):
        self.figures, self.scalars = {}, {}
        self.log_dir = str(log_dir)

    def add_figure(self, tag, figure, step):
        self.figures[tag] = figure

    def add_scalar(self, tag, value, step):
        self.scalars[tag] = value


def test_the_attribution_callback_logs_layer_maps_and_filter_rankings_for_lrp_layers(tmp_path):
    model = relu_net_without_biases().float()
    inputs = torch.rand(3, 1, 8, 8)
    probe = ProbeSet(inputs, torch.tensor([0, 1, 2]), inputs, [7, 8, 9], "val", ["a", "b", "c"])
    callback = AttributionCallback(methods={"LRP": {"layers": ["2", "6"]}}, sanity_checks=False)
    writer = RecordingWriter(tmp_path)
    callback.inspect(model, probe, writer, step=4, final=False)
    assert set(writer.figures) == {"attribution/LRP", "attribution/LRP/2", "attribution/LRP/2/filters",
                                   "attribution/LRP/6/filters"}  # fmt: skip
    assert writer.scalars["attribution/LRP/conservation"] == pytest.approx(1.0, abs=1e-4)  # no biases
    predicted = {probe.class_name(c) for c in model(inputs).argmax(dim=1).tolist()}
    titles = [ax.get_title() for ax in writer.figures["attribution/LRP/2/filters"].axes if ax.get_visible()]
    assert {title.split(":")[0] for title in titles} == predicted
    assert all(title.endswith("%") and "top 8" in title for title in titles)
    assert load_record(tmp_path, 4).maps["LRP"].shape == (3, 8, 8)  # the tab's record of the same maps


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


class AddedSkip(nn.Module):
    """fc((relu(conv(x)) + x).flatten(1)): the smallest residual connection."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(16, 2, bias=False)

    def forward(self, x):
        return self.fc((self.relu(self.conv(x)) + x).flatten(1))


def test_a_residual_addition_splits_relevance_between_its_branches():
    """With positive weights and inputs, passing the sum by its gradient gave each branch all the
    relevance (2.0 times the logit under Deep Taylor); split in proportion, the input gets the logit."""
    torch.manual_seed(0)
    model = AddedSkip().double()
    for parameter in model.parameters():
        parameter.data = parameter.data.abs()
    inputs = torch.rand(3, 1, 4, 4, dtype=torch.double)
    targets = model(inputs).argmax(dim=1)
    result = build_method("LRP", {"composite": "deep_taylor"}).attribute(
        Scores(model, False), inputs, targets
    )
    logits = explained_logits(model, inputs, targets)
    assert torch.allclose(result.values.sum(dim=(1, 2, 3)), logits, rtol=1e-5)
    assert torch.allclose(result.conservation, torch.ones(3, dtype=torch.double), rtol=1e-5)
    assert not any(name.startswith("lrp_sum") for name, _ in model.named_modules())  # canonizer removed


def resnet20(bias_scale: float) -> nn.Module:
    """ResNet-20 in eval mode with random batch-norm statistics; its convolution biases and batch-norm
    shifts multiplied by ``bias_scale`` (0: none)."""
    torch.manual_seed(0)
    model = ResNetCIFAR().double().eval()
    randomise_batch_norms(model, shift=0.2 * bias_scale)  # the folded bias is beta - gamma * mean / std
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear) and module.bias is not None:
            module.bias.data.uniform_(-0.1, 0.1).mul_(bias_scale)
    return model


def test_resnet20_relevance_sums_to_the_logit_less_what_biases_absorb():
    """Deep Taylor on ResNet-20 (nine residual additions; 275 to 420 times the logit before they were
    split): without biases the input relevance is the logit (to the rules' 1e-6 stabilisers); with
    biases, z+ keeps each positive bias's share in its layer, so the input gets between 0 and 1 of it."""
    inputs = torch.rand(4, 3, 32, 32, dtype=torch.double)
    for bias_scale, low, high in ((0.0, 1 - 1e-4, 1 + 1e-4), (1.0, 0.0, 1 + 1e-6)):
        model = resnet20(bias_scale)
        targets = model(inputs).argmax(dim=1)
        result = build_method("LRP", {"composite": "deep_taylor"}).attribute(
            Scores(model, False), inputs, targets
        )
        ratio = result.values.sum(dim=(1, 2, 3)) / explained_logits(model, inputs, targets)
        assert ((ratio > low) & (ratio < high)).all(), (bias_scale, ratio)
        assert torch.allclose(result.conservation, ratio)
    assert ratio.max() < 0.999  # the biases do absorb some


def z_plus(layer, inputs: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """The z+ rule, written out: each input's positive contributions' share of the output's relevance."""
    positive = copy.deepcopy(layer)
    positive.weight.data = layer.weight.data.clamp(min=0)
    with torch.enable_grad():
        x = inputs.detach().clone().requires_grad_()
        z = positive(x)
        (gradient,) = torch.autograd.grad(z, x, relevance / (z + 1e-6 * ((z == 0) + z.sign())))
    return inputs * gradient


def test_lrp_of_a_two_block_residual_net_equals_a_hand_written_lrp():
    """z+ in every layer, relevance through ReLUs unchanged, and each residual sum's relevance split in
    proportion to its two terms, written out layer by layer."""
    torch.manual_seed(1)
    stem = nn.Conv2d(1, 3, 3, padding=1, bias=False)
    blocks = [(nn.Conv2d(3, 3, 3, padding=1, bias=False), nn.Conv2d(3, 3, 3, padding=1, bias=False))
              for _ in range(2)]  # fmt: skip
    fc = nn.Linear(3 * 6 * 6, 4, bias=False)

    class TwoBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.fc = stem, fc
            self.convs = nn.ModuleList(conv for block in blocks for conv in block)
            self.relus = nn.ModuleList(nn.ReLU() for _ in range(5))

        def forward(self, x):
            a = self.relus[0](self.stem(x))
            for i in range(2):
                a = self.relus[1 + 2 * i + 1](
                    self.convs[2 * i + 1](self.relus[1 + 2 * i](self.convs[2 * i](a))) + a
                )
            return self.fc(a.flatten(1))

    model = TwoBlocks().double()
    inputs = torch.rand(2, 1, 6, 6, dtype=torch.double)
    targets = model(inputs).argmax(dim=1)
    settings = {"composite": "epsilon_plus", "rules": {"Conv2d": "zplus", "Linear": "zplus"}}
    ours = build_method("LRP", settings).attribute(Scores(model, False), inputs, targets).values

    with torch.no_grad():
        a0 = torch.relu(model.stem(inputs))
        a, acts = a0, []
        for i in range(2):
            hidden = torch.relu(model.convs[2 * i](a))
            branch = model.convs[2 * i + 1](hidden)
            acts.append((a, hidden, branch))
            a = torch.relu(branch + a)
        relevance = z_plus(model.fc, a.flatten(1), explained_logits(model, inputs, targets)[:, None]
                           * torch.nn.functional.one_hot(targets, 4)).reshape(a.shape)  # fmt: skip
        for i in reversed(range(2)):
            skip, hidden, branch = acts[i]
            total = branch + skip
            share = relevance / (total + 1e-6 * ((total == 0) + total.sign()))
            from_branch, from_skip = branch * share, skip * share
            relevance = from_skip + z_plus(
                model.convs[2 * i], skip, z_plus(model.convs[2 * i + 1], hidden, from_branch)
            )
        expected = z_plus(model.stem, inputs, relevance)
    assert torch.allclose(ours, expected, rtol=1e-9, atol=1e-12)


def test_torchvision_resnet_blocks_are_split_as_zennits_resnet_canonizer_splits_them():
    from torchvision.models import resnet18
    from zennit.torchvision import ResNetBasicBlockCanonizer

    from callbacks.model_copy import inspection_copy

    torch.manual_seed(0)
    inputs = torch.rand(2, 3, 64, 64, dtype=torch.double)
    model = inspection_copy(resnet18(num_classes=5).double().eval(), inputs[:1])
    targets = model(inputs).argmax(dim=1)
    ours = build_method("LRP", {"composite": "epsilon_plus"}).attribute(Scores(model, False), inputs, targets)
    composite, _ = lrp_composite(model, inputs, RuleSettings("epsilon_plus"))
    composite.canonizers[0] = ResNetBasicBlockCanonizer()  # Zennit's, in place of our ResidualSums
    x = inputs.clone().requires_grad_()
    with composite.context(model):
        logits = model(x)
        (theirs,) = torch.autograd.grad(logits, x, logits.detach() * torch.nn.functional.one_hot(targets, 5))
    assert torch.allclose(ours.values, theirs, rtol=1e-9, atol=1e-12)
    assert ours.conservation.min() > 0.5


class FunctionalSigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.sigmoid(self.conv(x)).flatten(1))


class Attention(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.embed, self.layer, self.fc = nn.Linear(4, 8), layer, nn.Linear(8, 3)

    def forward(self, x):
        tokens = self.embed(x.reshape(-1, 4, 4))  # 4 tokens (the rows) of 4 values: (N, 4, 8)
        out = (
            self.layer(tokens, tokens, tokens)[0]
            if isinstance(self.layer, nn.MultiheadAttention)
            else self.layer(tokens)
        )
        return self.fc(out.mean(dim=1))


@pytest.mark.parametrize(("model", "named"), [
    (FunctionalSigmoid(), r"sigmoid \(in the model's forward\)"),
    (Attention(nn.MultiheadAttention(8, 2, batch_first=True)), r"MultiheadAttention \(layer\)"),
    (Attention(nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)),
     r"TransformerEncoderLayer \(layer\)"),
])  # fmt: skip
def test_lrp_refuses_what_no_rule_explains_unless_the_user_opts_in(model, named):
    model.eval()
    inputs = torch.rand(2, 1, 4, 4)
    targets = model(inputs).argmax(dim=1)
    with pytest.raises(UserInputError, match=f"LRP cannot explain {named}.*: .*gradient_fallback: true"):
        build_method("LRP").attribute(Scores(model, False), inputs, targets)
    with pytest.raises(UserInputError, match=f"LRP cannot explain {named}"):
        build_method("LRP").check_model(model)
    with pytest.warns(UserWarning, match=f"LRP has no rule for {named}"):
        result = build_method("LRP", {"gradient_fallback": True}).attribute(
            Scores(model, False), inputs, targets
        )
    assert result.unexplained and torch.isfinite(result.values).all()


def test_the_callback_logs_conservation_and_warns_when_it_is_lost(tmp_path):
    """A functional sigmoid passed by its gradient scales relevance by its slope (at most 1/4)."""
    torch.manual_seed(0)
    model = FunctionalSigmoid()
    inputs = torch.rand(3, 1, 4, 4)
    probe = ProbeSet(inputs, torch.tensor([0, 1, 2]), inputs, [0, 1, 2], "val", ["a", "b", "c"])
    callback = AttributionCallback(methods={"LRP": {"gradient_fallback": True}}, sanity_checks=False)
    writer = RecordingWriter(tmp_path)
    expected = (
        r"LRP: the relevance reaching the input is .* times the explained score "
        r"\(outside 0.75 to 1.25\): relevance passed sigmoid \(in the model's forward\)"
    )
    with pytest.warns(UserWarning, match=expected):
        callback.inspect(model, probe, writer, step=3, final=False)
    assert 0 < abs(writer.scalars["attribution/LRP/conservation"]) < 0.75


def test_lrp_settings_and_probe_sizes_are_checked_before_training(tmp_path):
    """A typo in an LRP rule, or a probe set that cannot be drawn, ends fit before its first step, not
    when the callback first runs (here after 6 epochs)."""
    from lightning_app.cli import cli_main

    base = ["--config", str(Path(__file__).parents[1] / "configs" / "mnist_lenet_explain.yaml"),
            "--trainer.max_epochs=6", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
            "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false"]  # fmt: skip
    cases = [
        (AttributionCallback(methods={"LRP": {"rules": {"net.conv9": "zplus"}}}, every_n_epochs=6),
         r"LRP rules: net.conv9 match no layer name or type of the model"),
        (AttributionCallback(methods={"Saliency": {}}, size=8, every_n_epochs=6),
         "give either size or per_class for an evaluation subset, not both"),
    ]  # fmt: skip
    for callback, message in cases:
        cli = cli_main(base, run=False)
        cli.trainer.callbacks.append(callback)
        with pytest.raises(UserInputError, match=message):
            cli.trainer.fit(cli.model, cli.datamodule)
        assert cli.trainer.global_step == 0


def test_lrp_explains_a_residual_segmentation_network_region():
    """selim's LinkNet (residual encoder blocks, decoder skips added to encoder features) inside the
    segmentation module: nothing is refused (its identity shortcuts, the module's shape check), and
    without biases the relevance of the explained region's logits reaches the input whole, less what the
    rules' stabilisers (1e-6 in each denominator) take from near-zero units."""
    from callbacks.model_copy import inspection_copy
    from models.nets.linknet_selim import LinkNetSelim
    from models.segmentation import SegmentationModule

    torch.manual_seed(0)
    module = SegmentationModule(LinkNetSelim(in_channels=3, classes=1)).double().eval()
    for parameter in module.net.parameters():
        if parameter.ndim == 1:
            parameter.data.zero_()  # biases: nothing absorbs relevance
    inputs = torch.rand(1, 3, 64, 64, dtype=torch.double)
    model = inspection_copy(module, inputs)
    targets = resolve_targets("predicted", model(inputs), torch.zeros(1, 64, 64), ["background", "road"])
    build_method("LRP").check_model(model)
    result = build_method("LRP", {"composite": "epsilon_plus"}).attribute(
        Scores(model, True), inputs, targets.classes, targets.forward_args
    )
    assert result.unexplained == []
    assert result.conservation.item() == pytest.approx(1.0, abs=5e-3)
