import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector
from torch.utils.data import TensorDataset

from callbacks.lca.eval_chunks import evaluation_chunks
from callbacks.lca.evaluation import LossEvaluator, has_batch_norm
from callbacks.lca.integrators import integrate
from callbacks.lca.layout import ParameterLayout
from callbacks.lca.loss import ElementwiseLoss
from callbacks.lca.records import RecordBuilder, value_histogram
from callbacks.placement import Placement
from lightning_app.errors import UserInputError


def evaluator(
    module, criterion, dataset, chunk_size=1000, bn_mode="eval", num_classes=None, rank=0, world_size=1,
    storage="device",
):  # fmt: skip
    """The evaluator the callback builds, on one process (or as rank ``rank`` of ``world_size``)."""
    loss = ElementwiseLoss(criterion)
    placement = Placement.of(module)
    class_rows = None if bn_mode == "batch_stats" and has_batch_norm(module) else num_classes
    chunks = evaluation_chunks(
        dataset, loss, chunk_size, class_rows, rank, world_size, placement.device, placement.dtype, storage,
        workers=0,
    )  # fmt: skip
    return LossEvaluator(module, ParameterLayout.of(module), loss, chunks, bn_mode, num_classes, lambda t: t)


def regression_problem():
    torch.manual_seed(0)
    module = nn.Linear(5, 3).double()
    data = TensorDataset(torch.randn(64, 5, dtype=torch.float64), torch.randn(64, 3, dtype=torch.float64))
    return module, data


def step_from(module, scale=0.5, seed=1):
    theta = parameters_to_vector(module.parameters()).detach()
    generator = torch.Generator().manual_seed(seed)
    return theta, theta + scale * torch.randn(theta.shape, generator=generator, dtype=theta.dtype)


def test_simpson_is_exact_on_a_quadratic_loss_and_first_order_is_not():
    module, data = regression_problem()  # linear model + MSE: the loss is quadratic in the parameters
    evaluate = evaluator(module, nn.MSELoss(), data)
    theta0, theta1 = step_from(module)
    delta = theta1 - theta0
    start = evaluate(theta0)
    (rk4,), splits = integrate([evaluate], theta0, theta1, delta, [start], "rk4")
    assert splits == 2
    loss_change = float(rk4.end.loss - rk4.start.loss)
    assert abs(loss_change) > 0.1
    assert float(rk4.lca_sum(delta)) == pytest.approx(loss_change, abs=1e-12)
    (first,), _ = integrate([evaluate], theta0, theta1, delta, [start], "first_order")
    assert abs(float(first.error(delta))) > 0.01


def test_ranks_share_out_the_chunks_and_a_rank_without_one_contributes_zero():
    module, data = regression_problem()
    theta, _ = step_from(module)

    def on_rank(rank, chunk_size):
        return evaluator(module, nn.MSELoss(), data, chunk_size, rank=rank, world_size=2)(theta)

    whole = evaluator(module, nn.MSELoss(), data)(theta)
    halves = on_rank(0, 16), on_rank(1, 16)  # 4 chunks: 2 each
    assert float(halves[0].loss + halves[1].loss) == pytest.approx(float(whole.loss), rel=1e-12)
    assert torch.allclose(halves[0].grad + halves[1].grad, whole.grad, rtol=1e-10, atol=1e-14)
    idle = on_rank(1, 64)  # a single chunk, held by rank 0
    assert float(idle.loss) == 0 and not idle.grad.any()


def test_chunks_and_a_partial_last_chunk_give_the_exact_mean():
    module, data = regression_problem()
    theta, _ = step_from(module)
    whole = evaluator(module, nn.MSELoss(), data, chunk_size=64)(theta)
    chunked = evaluator(module, nn.MSELoss(), data, chunk_size=7)(theta)  # 9 chunks of 7 and one of 1
    expected = nn.MSELoss()(module(data.tensors[0]), data.tensors[1])
    assert float(whole.loss) == pytest.approx(float(expected), rel=1e-12)
    assert float(chunked.loss) == pytest.approx(float(expected), rel=1e-12)
    assert torch.allclose(chunked.grad, whole.grad, rtol=1e-10, atol=1e-14)


class SmallConvNet(nn.Sequential):
    def __init__(self, classes: int = 4) -> None:
        super().__init__(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
            nn.Flatten(), nn.Linear(4 * 6 * 6, classes),
        )  # fmt: skip


def classification_problem(count=60, classes=4):
    torch.manual_seed(0)
    module = SmallConvNet(classes)
    module.train()
    module(torch.randn(32, 1, 8, 8))  # running statistics away from their defaults
    labels = torch.arange(count) % classes
    labels[:5] = 0  # unbalanced classes: class-grouped rows need padding
    return module, TensorDataset(torch.randn(count, 1, 8, 8), labels)


def brute_force_class_gradients(module, data, classes, batch_statistics: bool):
    """Per-class loss gradients by plain autograd, one class at a time (the reference result)."""
    x, y = data.tensors
    gradients = []
    for c in range(classes):
        module.zero_grad()
        module.eval()
        if batch_statistics:  # every example in one forward pass, batch norm on its statistics
            module[1].train()
            saved = [b.clone() for b in module.buffers()]
            losses = nn.functional.cross_entropy(module(x), y, reduction="none")
            ((losses * (y == c)).sum() / len(y)).backward()
            for buffer, value in zip(module.buffers(), saved, strict=True):
                buffer.copy_(value)
        else:  # only the examples of class c
            (nn.functional.cross_entropy(module(x[y == c]), y[y == c], reduction="sum") / len(y)).backward()
        gradients.append(parameters_to_vector(p.grad for p in module.parameters()).clone())
    module.zero_grad()
    return torch.stack(gradients)


@pytest.mark.parametrize("bn_mode", ["eval", "batch_stats"])
def test_per_class_gradients_are_exact_and_sum_to_the_class_free_gradient(bn_mode):
    module, data = classification_problem()
    theta, _ = step_from(module, scale=0.0)
    split = evaluator(module, nn.CrossEntropyLoss(), data, chunk_size=25, bn_mode=bn_mode, num_classes=4)
    assert split.grouped == (
        bn_mode == "eval"
    )  # vectorised class rows, or class masks when examples interact
    # the same chunks: with batch statistics, the chunks define the loss
    whole = evaluator(module, nn.CrossEntropyLoss(), data, chunk_size=25, bn_mode=bn_mode)(theta)
    per_class = split(theta)
    assert torch.allclose(per_class.class_grad.sum(0), whole.grad, atol=1e-6)
    assert float(per_class.class_loss.sum()) == pytest.approx(float(whole.loss), rel=1e-6)
    if bn_mode == "eval":  # chunks of 25 do not change the loss when examples are independent
        reference = brute_force_class_gradients(module, data, 4, batch_statistics=False)
        assert torch.allclose(per_class.class_grad, reference, atol=1e-6)
    else:
        single_chunk = evaluator(
            module, nn.CrossEntropyLoss(), data, chunk_size=60, bn_mode=bn_mode, num_classes=4
        )
        reference = brute_force_class_gradients(module, data, 4, batch_statistics=True)
        assert torch.allclose(single_chunk(theta).class_grad, reference, atol=1e-6)


@pytest.mark.parametrize("bn_mode", ["eval", "batch_stats"])
def test_evaluation_leaves_the_model_as_it_found_it(bn_mode):
    module, data = classification_problem()
    module.train()
    module[3].eval()  # an unusual mix of modes, to be restored exactly
    modes = [m.training for m in module.modules()]
    state = {name: value.clone() for name, value in module.state_dict().items()}
    evaluate = evaluator(module, nn.CrossEntropyLoss(), data, bn_mode=bn_mode, num_classes=4)
    theta, other = step_from(module)
    evaluate(other)
    assert [m.training for m in module.modules()] == modes
    assert all(torch.equal(state[name], value) for name, value in module.state_dict().items())
    assert all(p.grad is None for p in module.parameters())


def test_dropout_is_off_and_batch_norm_follows_bn_mode():
    module, data = classification_problem()
    theta, _ = step_from(module, scale=0.0)
    evaluate = evaluator(module, nn.CrossEntropyLoss(), data, bn_mode="eval")
    assert float(evaluate(theta).loss) == float(evaluate(theta).loss)  # no dropout noise
    module.eval()
    expected = nn.CrossEntropyLoss()(module(data.tensors[0]), data.tensors[1])
    assert float(evaluate(theta).loss) == pytest.approx(float(expected), rel=1e-6)
    batch_stats = evaluator(module, nn.CrossEntropyLoss(), data, chunk_size=60, bn_mode="batch_stats")
    module[1].train()
    with torch.no_grad():
        expected = nn.CrossEntropyLoss()(module(data.tensors[0]), data.tensors[1])
    assert float(batch_stats(theta).loss) == pytest.approx(float(expected), rel=1e-6)


def test_pixel_classes_and_ignored_pixels_of_a_segmentation_loss():
    torch.manual_seed(0)
    module = nn.Conv2d(3, 3, 3, padding=1)
    targets = torch.randint(0, 3, (6, 8, 8))
    targets[:, :2] = 255  # ignored rows
    data = TensorDataset(torch.randn(6, 3, 8, 8), targets)
    criterion = nn.CrossEntropyLoss(ignore_index=255)
    theta, _ = step_from(module, scale=0.0)
    result = evaluator(module, criterion, data, chunk_size=4, num_classes=3)(theta)
    expected = criterion(module(data.tensors[0]), targets)
    assert float(result.loss) == pytest.approx(float(expected), rel=1e-6)
    assert float(result.class_loss.sum()) == pytest.approx(float(expected), rel=1e-6)
    module.zero_grad()
    expected.backward()
    assert torch.allclose(
        result.class_grad.sum(0), parameters_to_vector(p.grad for p in module.parameters()), atol=1e-6
    )


def test_adaptive_doubles_the_sub_intervals_until_the_tolerance_holds():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    data = TensorDataset(torch.randn(50, 4, dtype=torch.float64), torch.arange(50) % 3)
    evaluate = evaluator(module, nn.CrossEntropyLoss(), data)
    theta0, theta1 = step_from(module, scale=0.8)
    delta = theta1 - theta0
    start = evaluate(theta0)
    (rk4,), _ = integrate([evaluate], theta0, theta1, delta, [start], "rk4")
    assert abs(float(rk4.error(delta))) > 1e-6
    (tight,), splits = integrate([evaluate], theta0, theta1, delta, [start], "adaptive", tolerance=1e-6)
    assert 2 < splits <= 32
    assert abs(float(tight.error(delta))) <= 1e-6
    (loose,), splits = integrate([evaluate], theta0, theta1, delta, [start], "adaptive", tolerance=1.0)
    assert splits == 2


def test_neurons_are_output_units_with_their_bias():
    layout = ParameterLayout.of(nn.Sequential(nn.Linear(3, 2), nn.Conv2d(1, 4, 2)))
    assert layout.units == ((0, 2), (0, 2), (2, 4), (2, 4))
    assert layout.neuron_modules == ("0", "0", "1", "1", "1", "1")
    lca = torch.arange(float(layout.num_parameters)).double()
    neurons = RecordBuilder(layout, torch.device("cpu")).per_neuron(lca)
    weight, bias = lca[:6].view(2, 3), lca[6:8]
    assert torch.equal(neurons[:2], weight.sum(1) + bias)
    conv_weight, conv_bias = lca[8:24].view(4, 4), lca[24:28]
    assert torch.equal(neurons[2:], conv_weight.sum(1) + conv_bias)


def test_value_histogram_counts_every_nonzero_value_once():
    lca = torch.tensor([-1e-3, -2e-3, 0.0, 5e-7, 1e-20, 3.0e5], dtype=torch.float64)
    counts = value_histogram(lca)
    assert counts.sum() == 5 and counts[0].sum() == 2 and counts[1].sum() == 3
    assert counts[1, 0] == 1 and counts[1, -1] == 1  # out-of-range values land in the edge bins


def test_a_criterion_that_is_not_an_element_mean_is_refused():
    module, data = regression_problem()
    with pytest.raises(UserInputError, match="reduction='mean'.*got MSELoss"):
        evaluator(module, nn.MSELoss(reduction="sum"), data)
    with pytest.raises(UserInputError, match="got function"):
        evaluator(module, lambda a, b: (a - b).abs().mean(), data)


def test_transposed_convolution_neurons_are_its_output_channels():
    from models.nets.linknet_selim import LinkNetSelim

    net = nn.Sequential(LinkNetSelim(transposed=True), nn.ConvTranspose2d(4, 6, 3, groups=2))
    layout = ParameterLayout.of(net)
    lca = torch.randn(layout.num_parameters, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    neurons = RecordBuilder(layout, torch.device("cpu")).per_neuron(lca)
    parts = dict(zip(layout.names, lca.split(layout.sizes), strict=True))
    transposed = [name for name, m in net.named_modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(transposed) == 6  # one per LinkNet decoder, and the grouped one
    for name in transposed:
        module = net.get_submodule(name)
        weight, bias = parts[f"{name}.weight"], parts[f"{name}.bias"]
        per_group = weight.view(module.groups, -1, *module.weight.shape[1:]).sum(
            dim=(1, 3, 4)
        )  # (groups, out/g)
        first, count = layout.units[layout.names.index(f"{name}.weight")]
        assert (
            count == module.out_channels and layout.neuron_modules[first : first + count] == (name,) * count
        )
        torch.testing.assert_close(
            neurons[first : first + count], per_group.flatten() + bias, rtol=1e-12, atol=0
        )


@pytest.mark.parametrize("num_classes", [None, 4])
@pytest.mark.parametrize(
    "criterion",
    [
        nn.CrossEntropyLoss(weight=torch.tensor([0.5, 2.0, 1.0, 3.0])),
        nn.CrossEntropyLoss(weight=torch.tensor([0.5, 2.0, 1.0, 3.0]), ignore_index=2, label_smoothing=0.1),
    ],
    ids=["class_weights", "class_weights_ignore_smoothing"],
)
def test_a_class_weighted_criterion_gives_the_training_criterion(criterion, num_classes):
    module, data = classification_problem()
    module.eval()
    theta, _ = step_from(module, scale=0.0)
    result = evaluator(module, criterion, data, chunk_size=7, num_classes=num_classes)(theta)
    x, y = data.tensors
    expected = criterion(module(x), y)
    module.zero_grad()
    expected.backward()
    assert float(result.loss) == pytest.approx(float(expected), rel=1e-6)
    torch.testing.assert_close(result.grad, parameters_to_vector(p.grad for p in module.parameters()))


@pytest.mark.parametrize("bn_mode", ["eval", "batch_stats"])
def test_a_streamed_evaluation_set_gives_the_same_numbers_as_a_resident_one(bn_mode):
    module, data = classification_problem()
    theta, _ = step_from(module)
    resident = evaluator(module, nn.CrossEntropyLoss(), data, 25, bn_mode, num_classes=4)
    streamed = evaluator(module, nn.CrossEntropyLoss(), data, 25, bn_mode, num_classes=4, storage="dataset")
    assert (resident.chunks.storage, streamed.chunks.storage) == ("device", "dataset")
    a, b = resident(theta), streamed(theta)
    assert torch.equal(a.class_loss, b.class_loss) and torch.equal(a.class_grad, b.class_grad)


def test_storage_follows_the_memory_cap():
    from callbacks.lca.eval_chunks import chosen_storage

    cpu = torch.device("cpu")
    assert chosen_storage("auto", 10 * 2**20, cpu, torch.float32, memory_cap=2**30) == "device"
    assert chosen_storage("auto", 10 * 2**20, cpu, torch.float32, memory_cap=2**20) == "dataset"
    assert chosen_storage("dataset", 10 * 2**20, cpu, torch.float32, memory_cap=None) == "dataset"
    with pytest.raises(
        UserInputError,
        match=r"the LCA evaluation set needs 10 MiB in torch.float32 but eval_memory_cap_mib allows 1 MiB on "
        r"device \(cpu\): set eval_storage to dataset or auto to stream it, or choose a smaller eval_size",
    ):
        chosen_storage("device", 10 * 2**20, cpu, torch.float32, memory_cap=2**20)
