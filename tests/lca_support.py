"""Test-only pieces for LCA runs: data in a fixed order, a process killed mid-run, the parameters of
every step, and SyncBatchNorm on CPU processes."""

import os
import signal

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_reduce
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import parameters_to_vector
from torch.utils.data import DataLoader, DistributedSampler

from datamodules.mnist import MNISTDataModule


class UnshuffledMNIST(MNISTDataModule):
    """MNIST whose train batches come in file order, so that a resumed run replays the same steps and a
    run on 2 processes (``use_distributed_sampler=false``) sees, together, the batches of one process."""

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train")
        sampler = DistributedSampler(dataset, shuffle=False) if torch.distributed.is_initialized() else None
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, sampler=sampler)


class CountingEvaluator:
    """Wraps an LCA evaluator and counts its evaluations."""

    def __init__(self, evaluator) -> None:
        self.evaluator = evaluator
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.evaluator, name)

    def __call__(self, theta):
        self.calls += 1
        return self.evaluator(theta)


class ParameterTrail(pl.Callback):
    """The flat parameter vector before and after every training batch, and the buffers after it (those
    LCA evaluates with in 'eval' mode), on the CPU."""

    def __init__(self) -> None:
        self.before: list[torch.Tensor] = []
        self.after: list[torch.Tensor] = []
        self.buffers: list[dict[str, torch.Tensor]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.before.append(parameters_to_vector(pl_module.parameters()).detach().cpu().clone())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.after.append(parameters_to_vector(pl_module.parameters()).detach().cpu().clone())
        self.buffers.append({name: b.detach().cpu().clone() for name, b in pl_module.named_buffers()})


class KillAtStep(pl.Callback):
    """Kills its own process with SIGKILL (kill -9: no clean-up at all) after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def _cpu_sync_batch_norm(module: torch.nn.SyncBatchNorm, inputs: torch.Tensor) -> torch.Tensor:
    """SyncBatchNorm's training-mode forward on CPU tensors: batch statistics summed over the module's
    process group (differentiable all_reduce), running statistics updated from them."""
    group = module.process_group or dist.group.WORLD
    if not (module.training and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return torch.nn.modules.batchnorm._BatchNorm.forward(module, inputs)
    dims = [0, *range(2, inputs.dim())]
    count = torch.tensor([inputs.numel() / inputs.shape[1]], dtype=inputs.dtype)
    sums = torch.cat([inputs.sum(dims), (inputs * inputs).sum(dims), count])
    sums = all_reduce(sums, group=group)
    channels = inputs.shape[1]
    total = sums[-1]
    mean = sums[:channels] / total
    variance = sums[channels : 2 * channels] / total - mean * mean
    with torch.no_grad():
        module.num_batches_tracked.add_(1)
        momentum = module.momentum
        module.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
        module.running_var.mul_(1 - momentum).add_(momentum * variance.detach() * total / (total - 1))
    shape = [1, channels] + [1] * (inputs.dim() - 2)
    normalised = (inputs - mean.view(shape)) / torch.sqrt(variance.view(shape) + module.eps)
    return normalised * module.weight.view(shape) + module.bias.view(shape)


class EmulatedSyncBatchNorm(pl.Callback):
    """Lets SyncBatchNorm train on CPU processes (gloo), where PyTorch runs it only on accelerators: from
    ``setup`` on, DistributedDataParallel accepts it on CPU and its forward synchronises batch statistics
    with all_reduce as it does on GPUs. The strategy converts the model to SyncBatchNorm after ``setup``,
    as with ``sync_batchnorm: true`` on GPUs."""

    def setup(self, trainer, pl_module, stage) -> None:
        torch.nn.SyncBatchNorm.forward = _cpu_sync_batch_norm
        DistributedDataParallel._passing_sync_batchnorm_handle = lambda ddp, module: None
