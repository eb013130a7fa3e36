"""Each layer's LCA as a TensorBoard run of its own, so that TensorBoard draws every layer in its own
colour on one chart.

A layer is the module owning parameter tensors (weight and bias summed). Its run is the folder
``<log_dir>/lca_layers/<layer>/``, nested in the training run's folder: TensorBoard lists it as
``version_N/lca_layers/net.fc1`` and draws the shared tags of all layers on one chart, one line each:
``lca_layer/step`` (the layer's LCA at each step), ``lca_layer/cumulative`` (summed over the run so far)
and the histogram ``lca_layer/per_parameter`` (the LCA of each of its parameters at a step).
"""

from pathlib import Path

import torch
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard.summary import histogram
from torch.utils.tensorboard.writer import FileWriter

from callbacks.lca.layout import ParameterLayout

FOLDER = "lca_layers"
HISTOGRAM_BINS = 64
STEP_TAG, CUMULATIVE_TAG, HISTOGRAM_TAG = "lca_layer/step", "lca_layer/cumulative", "lca_layer/per_parameter"


def layer_name(module: str) -> str:
    """The layer of a parameter owned by ``module`` (the model itself for a top-level parameter)."""
    return module or "(model)"


class LayerRuns:
    """The per-layer TensorBoard runs of one training run (``log_dir``: its event folder)."""

    def __init__(self, layout: ParameterLayout, log_dir: str) -> None:
        self.layout = layout
        self.layers = [layer_name(module) for module in layout.layers]
        self.indices = layout.layer_indices()
        folder = Path(log_dir) / FOLDER
        self.writers = {layer: FileWriter(str(folder / layer)) for layer in self.layers}

    def log(self, step: int, step_lca: torch.Tensor, cumulative: torch.Tensor) -> None:
        """A step's LCA and the running sum, both per tensor, as each layer's two scalars."""
        for layer, value, total in zip(
            self.layers,
            self.layout.per_layer(step_lca).tolist(),
            self.layout.per_layer(cumulative).tolist(),
            strict=True,
        ):
            values = [
                Summary.Value(tag=STEP_TAG, simple_value=value),
                Summary.Value(tag=CUMULATIVE_TAG, simple_value=total),
            ]
            self.writers[layer].add_summary(Summary(value=values), step)

    def log_histograms(self, step: int, lca: torch.Tensor) -> None:
        """The LCA of every parameter at a step (flat, in layout order), one histogram per layer."""
        values = lca.float().cpu()
        for layer, indices in zip(self.layers, self.indices, strict=True):
            summary = histogram(HISTOGRAM_TAG, values[indices].numpy(), bins=HISTOGRAM_BINS)
            self.writers[layer].add_summary(summary, step)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
