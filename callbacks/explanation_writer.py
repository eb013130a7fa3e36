"""ExplanationWriter: the explain command. During ``predict`` it writes, per image, the top-5 classes
with their probabilities and PNG figures of attribution methods and feature maps."""

import json
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from typing_extensions import override

from callbacks.activations import feature_map_figure, layer_outputs
from callbacks.attribution.callback import DEFAULT_METHODS
from callbacks.attribution.methods import build_method
from callbacks.attribution.targets import Scores, resolve_targets
from callbacks.contracts import check_contracts
from callbacks.inspection import class_name, display_images, inspected_copy
from callbacks.model_copy import conv_layer_names, find_layer
from callbacks.mosaic import Caption
from callbacks.placement import Placement
from datamodules.image_files import ImageFilesDataset

TOP_K = 5


class ExplanationWriter(BasePredictionWriter):
    """Writes ``<output_dir>/<image name>/`` (default: ``explanations/`` in the run folder):
    ``predictions.json`` (the top-5 classes and probabilities), ``attribution_<method>.png`` per method
    and ``activations_<layer>.png`` per layer, for every image ``predict`` sees. With the data module's
    ``predict_files`` these are your own images, prepared exactly as the training images (size,
    channels, normalisation):

        python train.py predict --config configs/mnist_lenet_explain.yaml --ckpt_path CKPT \\
            --data.predict_files='[my_digit.png]'

    Args:
        output_dir: folder of the explanations; default ``explanations/`` in the run's log folder.
        methods: attribution methods and their arguments, as AttributionCallback's ``methods``.
        layers: layers whose feature maps are drawn; default all Conv2d layers; [] draws none.
        target: the class explained: 'predicted', a class index or a class name.
        top_channels: feature maps per layer figure, strongest first; null shows all.
        seed: seed of the methods' random numbers.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        methods: dict[str, dict] | None = None,
        layers: list[str] | None = None,
        target: str | int = "predicted",
        top_channels: int | None = 16,
        seed: int = 0,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.folder: Path | None = None  # set in setup, when the run folder is known
        self.methods = [
            build_method(name, params)
            for name, params in (DEFAULT_METHODS if methods is None else methods).items()
        ]
        self.layers = layers
        self.target = target
        self.top_channels = top_channels
        self.seed = seed

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the contracts and the layer names before predicting."""
        check_contracts("ExplanationWriter", pl_module, trainer.datamodule)
        self.folder = Path(self.output_dir or Path(trainer.log_dir or ".") / "explanations")
        for name in [m.layer_name for m in self.methods if m.layer_name] + (self.layers or []):
            find_layer(pl_module, name)

    @override
    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ):
        dataset = trainer.predict_dataloaders.dataset
        names = [_image_name(dataset, index) for index in batch_indices]
        datamodule = trainer.datamodule
        class_names = list(datamodule.class_names)
        inputs, labels = Placement.of(pl_module).cast(batch[0]), batch[1]
        with inspected_copy(pl_module, inputs, self.seed) as model:
            inputs = inputs.clone().requires_grad_()
            with torch.no_grad():
                logits = model(inputs)
            display = display_images(datamodule, inputs)
            targets = resolve_targets(self.target, logits, labels.to(inputs.device), class_names)
            scores = Scores(model, segmentation=logits.ndim == 4)
            folders = [self.folder / name for name in names]
            for folder, probabilities in zip(folders, logits.softmax(dim=-1), strict=True):
                folder.mkdir(parents=True, exist_ok=True)
                _write_predictions(folder / "predictions.json", probabilities, class_names)
            captions = [
                Caption(f"{name}\n{class_name(class_names, c)} p={p:.2f}")
                for name, c, p in zip(
                    names, targets.classes.tolist(), targets.probabilities.tolist(), strict=True
                )
            ]
            for method in self.methods:
                result = method.attribute(scores, inputs, targets.classes, targets.forward_args)
                for i, folder in enumerate(folders):
                    figure = method.figure(display[i : i + 1], result.rows(i, i + 1), captions[i : i + 1])
                    figure.savefig(folder / f"attribution_{method.name}.png")
            layers = conv_layer_names(model) if self.layers is None else self.layers
            for layer, maps in layer_outputs(model, layers, inputs).items():
                for i, folder in enumerate(folders):
                    figure = feature_map_figure(layer, maps[i], self.top_channels, names[i])
                    figure.savefig(folder / f"activations_{layer}.png")


def _image_name(dataset, index: int) -> str:
    """The output name of a ``predict_files`` image (unique, see ``output_names``), or split and index."""
    if isinstance(dataset, ImageFilesDataset):
        return dataset.names[index]
    return f"{getattr(dataset, 'split', 'image')}_{index}"


def _write_predictions(path: Path, probabilities: torch.Tensor, class_names: list[str]) -> None:
    top = probabilities.topk(min(TOP_K, len(probabilities)))
    ranked = [
        {"class": class_name(class_names, i), "index": i, "probability": round(p, 6)}
        for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]
    path.write_text(json.dumps({"top5": ranked}, indent=2) + "\n")
    print(f"{path.parent.name}: " + ", ".join(f"{r['class']} {r['probability']:.3f}" for r in ranked))
