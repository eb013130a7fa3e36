"""Faithfulness and localisation metrics (callbacks/attribution/faithfulness.py) and their callback."""

import csv
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from callbacks.attribution import FaithfulnessCallback
from callbacks.attribution.faithfulness import (
    curve_area,
    deletion_curves,
    fraction_masks,
    insertion_curves,
    noisy_linear_imputation,
    pointing_game,
    probability_curves,
    relevance_mass,
    road_curves,
)
from callbacks.attribution.targets import Targets, resolve_targets
from lightning_app.cli import cli_main
from lightning_app.errors import UserInputError

ROOT = Path(__file__).parents[1]


def linear_model() -> nn.Module:
    """Two classes: logit 0 = w . x, logit 1 = -w . x, with weights of very different sizes."""
    torch.manual_seed(0)
    weights = torch.randn(1, 8, 8) * torch.linspace(0.01, 3, 64).reshape(1, 8, 8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2, bias=False))
    model[1].weight.data = torch.stack([weights.flatten(), -weights.flatten()])
    return model


def class_zero_targets(model, inputs) -> Targets:
    logits = model(inputs)
    return resolve_targets(0, logits, torch.zeros(len(inputs)), ["a", "b"])


def test_deletion_auc_of_the_true_saliency_is_lower_than_that_of_a_random_map():
    model = linear_model()
    inputs = torch.rand(6, 1, 8, 8)
    targets = class_zero_targets(model, inputs)
    true_map = model[1].weight[0].reshape(1, 8, 8) * inputs  # each pixel's exact share of logit 0
    random_map = torch.rand(inputs.shape, generator=torch.Generator().manual_seed(1))
    baseline = torch.zeros(1, 1, 8, 8)
    true_auc = curve_area(deletion_curves(model, inputs, targets, true_map, baseline, 16, 32))
    random_auc = curve_area(deletion_curves(model, inputs, targets, random_map, baseline, 16, 32))
    assert (true_auc < random_auc).all() and true_auc.mean() < random_auc.mean() - 0.1
    insert_true = curve_area(insertion_curves(model, inputs, targets, true_map, baseline, 16, 32))
    insert_random = curve_area(insertion_curves(model, inputs, targets, random_map, baseline, 16, 32))
    assert (insert_true > insert_random).all()


def test_curves_start_at_the_input_and_end_at_the_baseline_by_hand():
    model = linear_model()
    inputs = torch.rand(2, 1, 8, 8)
    targets = class_zero_targets(model, inputs)
    values = torch.rand(inputs.shape)
    curves = deletion_curves(model, inputs, targets, values, torch.zeros(1, 1, 8, 8), 4, 3)
    assert torch.allclose(curves[:, 0], targets.probabilities)
    assert torch.allclose(curves[:, -1], torch.full((2,), 0.5))  # both logits 0
    # after step 1 the top quarter (16 pixels) of each map is zero
    order = values.sum(dim=1).flatten(1).argsort(dim=1, descending=True)[:, :16]
    deleted = inputs.flatten(1).clone().scatter_(1, order, 0.0).reshape(inputs.shape)
    assert torch.allclose(curves[:, 1], model(deleted).softmax(dim=1)[:, 0])
    assert torch.allclose(curve_area(torch.tensor([[1.0, 0.5, 0.0]])), torch.tensor([0.5]))


def test_fraction_masks_follow_the_order_in_equal_parts():
    masks = fraction_masks(torch.tensor([[3, 0, 2, 1]]), steps=2, shape=(2, 2))
    assert masks.shape == (1, 3, 1, 2, 2)
    assert masks[0, 0].sum() == 0 and masks[0, 2].all()
    assert masks[0, 1].flatten().tolist() == [True, False, False, True]


def test_batched_perturbation_gives_the_same_curves_as_one_image_at_a_time():
    model = linear_model()
    inputs = torch.rand(3, 1, 8, 8)
    targets = class_zero_targets(model, inputs)
    values, baseline = torch.rand(inputs.shape), torch.zeros(1, 1, 8, 8)
    batched = deletion_curves(model, inputs, targets, values, baseline, 10, 64)
    single = deletion_curves(model, inputs, targets, values, baseline, 10, 1)
    assert torch.allclose(batched, single)
    seen = []
    probability_curves(model, targets, lambda i: seen.append(len(i)) or inputs[i // 4], 12, 5)
    assert seen == [5, 5, 2]


def test_noisy_linear_imputation_continues_a_linear_ramp_into_the_hole():
    ramp = torch.linspace(0, 1, 12).repeat(12, 1)[None].double()  # (1, 12, 12), rising to the right
    removed = torch.zeros(12, 12, dtype=torch.bool)
    removed[3:9, 4:8] = True
    filled = noisy_linear_imputation(ramp, removed, torch.Generator().manual_seed(0))
    assert torch.equal(filled[:, ~removed], ramp[:, ~removed])
    assert torch.allclose(filled, ramp, atol=0.04)  # noise of standard deviation 0.01
    assert not torch.equal(filled, ramp)
    everything = noisy_linear_imputation(ramp, torch.ones(12, 12, dtype=torch.bool), torch.Generator())
    assert abs(float(everything.mean()) - 0.5) < 0.01


def test_road_auc_of_the_true_saliency_is_lower_than_that_of_a_random_map():
    model = linear_model()
    model[1].weight.data /= 10  # logits of order 1, away from saturation
    inputs = torch.rand(6, 1, 8, 8)
    targets = class_zero_targets(model, inputs)
    true_map = model[1].weight[0].reshape(1, 8, 8) * inputs
    random_map = torch.rand(inputs.shape, generator=torch.Generator().manual_seed(1))
    true_curves = road_curves(model, inputs, targets, true_map, 8, 32, seed=0)
    random_curves = road_curves(model, inputs, targets, random_map, 8, 32, seed=0)
    assert torch.allclose(true_curves[:, 0], targets.probabilities)
    assert curve_area(true_curves).mean() < curve_area(random_curves).mean() - 0.05


def test_relevance_mass_and_pointing_game_by_hand():
    values = torch.zeros(2, 1, 2, 2)
    values[0, 0] = torch.tensor([[3.0, 1.0], [-5.0, 0.0]])
    values[1, 0] = torch.tensor([[-1.0, -1.0], [-1.0, -2.0]])
    masks = torch.tensor([[[True, False], [True, True]], [[False, True], [False, False]]])
    assert relevance_mass(values, masks).tolist() == [0.75, 0.0]
    assert pointing_game(values, masks).tolist() == [1.0, 0.0]


def lenet_cli(root: Path, *extra: str):
    return cli_main(
        [
            "--config", str(ROOT / "configs" / "mnist_lenet_explain.yaml"), "--trainer.max_epochs=2",
            "--trainer.limit_train_batches=10", "--trainer.limit_val_batches=1", "--trainer.callbacks=[]",
            "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={root}", *extra,
        ],
        run=False,
    )  # fmt: skip


def test_the_callback_logs_a_line_per_method_and_metric_each_evaluation(tmp_path):
    cli = lenet_cli(tmp_path)
    callback = FaithfulnessCallback(
        methods={"Saliency": {}, "LayerGradCam": {"layer": "net.conv2"}}, steps=5, size=4, every_n_epochs=1
    )
    cli.trainer.callbacks.append(callback)
    cli.trainer.fit(cli.model, cli.datamodule)
    run = Path(cli.trainer.log_dir)
    rows = list(csv.DictReader((run / "faithfulness.csv").open()))
    assert {(r["metric"], r["method"]) for r in rows} == {
        (metric, method)
        for metric in ("deletion", "insertion")
        for method in ("random", "Saliency", "LayerGradCam")
    }
    # before the first step (the untrained model), each epoch, not again at the end
    assert [int(r["step"]) for r in rows] == [0] * 6 + [10] * 6 + [20] * 6
    assert all(0 <= float(r["value"]) <= 1 for r in rows)
    events = EventAccumulator(str(run / "faithfulness"), size_guidance={"scalars": 0, "images": 0}).Reload()
    assert [e.step for e in events.Scalars("faithfulness/deletion/Saliency")] == [0, 10, 20]
    for figure in ("faithfulness/curves", "faithfulness/over_training"):  # drawn once, at the end
        assert [image.step for image in events.Images(figure)] == [20]
    cli.trainer.validate(cli.model, cli.datamodule)  # after fit's teardown: the same step, figures again
    events = EventAccumulator(str(run / "faithfulness"), size_guidance={"images": 0}).Reload()
    assert [image.step for image in events.Images("faithfulness/curves")] == [20, 20]
    assert len(list(csv.DictReader((run / "faithfulness.csv").open()))) == len(rows)
    last = [r for r in rows if r["step"] == "20" and r["metric"] == "deletion" and r["method"] == "Saliency"]
    assert float(last[-1]["value"]) == pytest.approx(
        events.Scalars("faithfulness/deletion/Saliency")[-1].value
    )


def test_bad_faithfulness_settings_get_clear_errors(tmp_path):
    with pytest.raises(UserInputError, match=r"metrics \['auc'\] are not among deletion"):
        FaithfulnessCallback(metrics=["deletion", "auc"])
    with pytest.raises(UserInputError, match="FaithfulnessCallback.steps=0 must be positive"):
        FaithfulnessCallback(steps=0)
    cli = lenet_cli(tmp_path)
    cli.trainer.callbacks.append(FaithfulnessCallback(methods={"Saliency": {}}, metrics=["pointing_game"]))
    with pytest.raises(UserInputError, match=r"\['pointing_game'\] need segmentation masks"):
        cli.trainer.fit(cli.model, cli.datamodule)
