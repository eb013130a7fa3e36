"""LCA stores of any length written through LCAStore, with random but consistent step records (the
sum of LCA over tensors is each step's lca_sum, and the loss change equals it): for the tab's tests and
its time-to-first-draw benchmark, where training 100,000 steps is not the point."""

from pathlib import Path

import numpy as np
import torch

from callbacks.lca.layout import ParameterLayout
from callbacks.lca.records import RunningTotals, SetRecord, StepRecord
from callbacks.lca.store import LCAStore
from callbacks.lca.trajectories import TrajectorySelection
from models.nets.fc import FullyConnected

CLASSES = 10
FLUSH_ROWS = 2000


def write_store(path: Path, steps: int, seed: int = 0) -> ParameterLayout:
    """A store of ``steps`` steps for the LCA paper's 784-100-50-10 network, per class, at ``path``;
    step t's LCA decays as 1 / (1 + t / 50) like a training's. Returns its layout."""
    model = FullyConnected()
    layout = ParameterLayout.of(model)
    tensors, neurons = len(layout.names), layout.num_neurons
    tracked = TrajectorySelection.of(layout).size
    metadata = {"run_id": f"synthetic-{seed}", "integrator": "rk4", "per_class": 1}
    store = LCAStore.create(
        path, layout, metadata, [str(c) for c in range(CLASSES)], {"train": np.arange(100)}, dense=()
    )
    generator = torch.Generator().manual_seed(seed)
    k = layout.num_parameters
    totals = RunningTotals(torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.int32),
                           torch.zeros(k, dtype=torch.int32))  # fmt: skip
    loss = 2.3
    for step in range(steps):
        scale = 0.05 / (1 + step / 50)
        noise = torch.randn(CLASSES, tensors, generator=generator, dtype=torch.float64)
        class_layer = noise * scale / CLASSES
        layer = class_layer.sum(0)
        lca_sum = float(layer.sum())
        start = torch.full((CLASSES,), loss, dtype=torch.float64)
        end = start + class_layer.sum(1)
        record = SetRecord(loss, loss + lca_sum, lca_sum, layer, class_layer, start, end)
        counts = torch.randint(0, 100, (tensors, 3), generator=generator, dtype=torch.int64)
        neuron_lca = torch.randn(neurons, generator=generator) * scale
        leaders = (torch.zeros(tracked), torch.zeros(tracked), torch.zeros(tracked, dtype=torch.int64))
        store.append(StepRecord(step, step + 1, step // 100, True, 2, record, counts, neuron_lca, *leaders))
        loss += lca_sum
        if (step + 1) % FLUSH_ROWS == 0:
            store.flush(totals)
    store.close(totals)
    return layout
