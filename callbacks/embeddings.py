"""EmbeddingCallback: a layer's features of a fixed probe set in TensorBoard's projector, and t-SNE."""

import re
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from google.protobuf import text_format
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from typing_extensions import override

from callbacks.inspection import InspectionCallback, ProbeSet
from callbacks.model_copy import find_layer, network_layers
from lightning_app.errors import UserInputError

SPRITE_SIZE = 28
METADATA_HEADER = ["outcome", "label", "predicted"]


def layer_inputs(
    model: nn.Module, layer: nn.Module, inputs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (flattened) input of ``layer`` for ``inputs``, and the model's output."""
    captured = {}
    handle = layer.register_forward_pre_hook(lambda _m, args: captured.__setitem__("x", args[0].detach()))
    try:
        with torch.no_grad():
            logits = model(inputs)
    finally:
        handle.remove()
    return captured["x"].flatten(start_dim=1), logits


def outcome(label: str, predicted: str) -> str:
    """The projector's first metadata column, its default label: "3 -> 5 (wrong)" or "3 (right)"."""
    return f"{label} (right)" if label == predicted else f"{label} -> {predicted} (wrong)"


def drop_step_suffixes(config_path: Path) -> None:
    """Drop the ``:<step>`` that ``add_embedding`` appends to each tensor's name in the projector's
    config (a ``ProjectorConfig`` in text format): the names say when the tensor was taken."""
    config = text_format.Parse(config_path.read_text(), ProjectorConfig())
    for embedding in config.embeddings:
        embedding.tensor_name = re.sub(r":\d+$", "", embedding.tensor_name)
    config_path.write_text(text_format.MessageToString(config))


def classifier_head(model: nn.Module) -> str:
    """The default layer whose input is embedded: the model's last Linear layer."""
    linear = [name for name, module in network_layers(model).items() if isinstance(module, nn.Linear)]
    if not linear:
        raise UserInputError("the model has no Linear layer; name the embedded layer with 'layer'")
    return linear[-1]


def tsne_figure(
    points: np.ndarray, labels: list[int], wrong: np.ndarray, names: list[str], title: str
) -> Figure:
    """The 2-D t-SNE points coloured by class, each drawn as its class name; misclassified circled."""
    figure = Figure(figsize=(6, 6), layout="constrained")
    axis = figure.subplots()
    palette = [f"C{c % 10}" for c in range(max(labels) + 1)]
    for (x, y), label in zip(points, labels, strict=True):
        axis.text(x, y, names[label] if label < len(names) else str(label), color=palette[label],
                  fontsize=7, ha="center", va="center")  # fmt: skip
    axis.scatter(
        points[wrong, 0], points[wrong, 1], s=80, facecolors="none", edgecolors="black", label="misclassified"
    )
    axis.set_xlim(points[:, 0].min() - 2, points[:, 0].max() + 2)
    axis.set_ylim(points[:, 1].min() - 2, points[:, 1].max() + 2)
    axis.set_title(title, fontsize=9)
    axis.legend(loc="upper right", fontsize=7)
    return figure


class EmbeddingCallback(InspectionCallback):
    """Features of one layer for a fixed probe set: TensorBoard's projector and a t-SNE scatter.

    Logs the input of ``layer`` (default: the input of the last Linear layer, the classifier head)
    with ``add_embedding`` (metadata: the outcome "3 -> 5 (wrong)", the true and the predicted label;
    image sprites; tensors named "net.fc2 @ epoch 5", the trained one first), and a t-SNE
    figure ``embedding/tsne`` (scikit-learn, Lees's settings: perplexity 30, learning rate 1,000,
    1,000 iterations, random initialisation) at the start and the end of training, and every
    ``every_n_epochs`` epochs when set.

    Args:
        layer: the layer whose input is embedded; default the last Linear layer.
        split, per_class, size, seed: the probe set (default 50 images per class of the val split).
        every_n_epochs: period during ``fit``; 0 (default) logs only at the start and the end.
        perplexity, learning_rate, max_iter: t-SNE settings.
    """

    tag = "embedding"

    def __init__(
        self,
        layer: str | None = None,
        split: str = "val",
        per_class: int | None = 50,
        size: int | None = None,
        seed: int = 0,
        every_n_epochs: int = 0,
        perplexity: float = 30.0,
        learning_rate: float = 1000.0,
        max_iter: int = 1000,
    ) -> None:
        super().__init__(split, per_class, size, seed, every_n_epochs)
        self.layer = layer
        self.tsne: dict[str, float] = {
            "perplexity": perplexity,
            "learning_rate": learning_rate,
            "max_iter": max_iter,
        }
        self.points: np.ndarray | None = None
        self.moment = ""  # "epoch 5": when the projector's tensor was taken

    @override
    def setup(self, trainer, pl_module, stage: str) -> None:
        """Check the contracts and the layer name before any training."""
        super().setup(trainer, pl_module, stage)
        find_layer(pl_module, self.layer or classifier_head(pl_module))

    @override
    def on_train_start(self, trainer, pl_module) -> None:
        self.run(trainer, pl_module, final=False)

    @override
    def run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, final: bool) -> None:
        """Inspect, naming the projector's tensor by when it was taken. The projector opens on the first
        name in alphabetical order: "end of training" sorts before "epoch N" and "start of training"."""
        epochs = trainer.fit_loop.epoch_progress.current.processed
        if trainer.state.fn != "fit":
            self.moment = f"{trainer.state.fn} (step {trainer.global_step})"
        elif final:
            self.moment = f"end of training (epoch {epochs})"
        else:
            self.moment = f"epoch {epochs}" if epochs else "start of training"
        super().run(trainer, pl_module, final)

    @override
    def inspect(
        self, model: nn.Module, probe: ProbeSet, writer: SummaryWriter, step: int, final: bool
    ) -> None:
        name = self.layer or classifier_head(model)
        features, logits = layer_inputs(model, find_layer(model, name), probe.inputs)
        if logits.ndim != 2:
            raise UserInputError("EmbeddingCallback needs a classifier (logits of shape (N, classes))")
        labels = probe.labels.tolist()
        predicted = logits.argmax(dim=1).tolist()
        metadata = [
            [outcome(probe.class_name(t), probe.class_name(p)), probe.class_name(t), probe.class_name(p)]
            for t, p in zip(labels, predicted, strict=True)
        ]
        sprites = torch.nn.functional.interpolate(probe.display, size=(SPRITE_SIZE, SPRITE_SIZE))
        writer.add_embedding(
            features.cpu(),
            metadata=metadata,
            metadata_header=METADATA_HEADER,
            label_img=sprites.expand(-1, 3, -1, -1).cpu(),
            global_step=step,
            tag=f"{name} @ {self.moment}",
        )
        drop_step_suffixes(Path(writer.get_logdir()) / "projector_config.pbtxt")
        perplexity = min(self.tsne["perplexity"], (len(features) - 1) / 3)
        tsne = TSNE(2, init="random", random_state=self.seed, **self.tsne | {"perplexity": perplexity})
        self.points = tsne.fit_transform(features.double().cpu().numpy())
        wrong = np.array(labels) != np.array(predicted)
        title = f"t-SNE of the input of {name}, step {step} ({wrong.sum()} of {len(labels)} misclassified)"
        writer.add_figure(
            f"{self.tag}/tsne", tsne_figure(self.points, labels, wrong, probe.class_names, title), step
        )
