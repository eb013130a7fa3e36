"""What a feature visualisation maximises: a score per image of a batch, read from the outputs of named
layers (their names as ``python -m lightning_app.layers`` prints them) or from the model's output.

Objectives combine like numbers: ``-objective`` minimises it, ``2 * a + b`` is a weighted sum. A batch
renders one objective per image (:func:`~callbacks.feature_vis.render.render`), so the score of image
``i`` only depends on image ``i``; :class:`Diversity` is the exception, a term over the whole batch.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from callbacks.feature_vis.capture import OUTPUT, captured_outputs, forward
from lightning_app.errors import UserInputError


class Objective(ABC):
    """A score per image (N,) to maximise, from ``outputs`` (layer name -> (N, C, ...) tensor, and the
    model's output under ``OUTPUT``) and the images as the model sees them."""

    layers: tuple[str, ...]
    """The layers whose outputs it reads."""

    @abstractmethod
    def __call__(self, outputs: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor: ...

    @property
    @abstractmethod
    def name(self) -> str:
        """A short name for captions and file names: 'channel 3', 'logit 7'."""

    def __neg__(self) -> "Objective":
        return WeightedSum(((-1.0, self),))

    def __add__(self, other: "Objective") -> "Objective":
        return WeightedSum(((1.0, self), (1.0, other)))

    def __rmul__(self, weight: float) -> "Objective":
        return WeightedSum(((float(weight), self),))


def channel_map(output: torch.Tensor, channel: int) -> torch.Tensor:
    """Channel ``channel`` of a layer's output, (N, ...): a feature map, or one value per image for a
    dense layer (N, C)."""
    return output[:, channel]


@dataclass(frozen=True)
class LayerObjective(Objective, ABC):
    """An objective reading one layer's output."""

    layer: str

    @property
    def layers(self) -> tuple[str, ...]:
        return (self.layer,)


@dataclass(frozen=True)
class Channel(LayerObjective):
    """The mean of a channel's activation over all positions (a dense layer's unit)."""

    channel: int

    @property
    def name(self) -> str:
        return f"channel {self.channel}"

    def __call__(self, outputs, images):
        values = channel_map(outputs[self.layer], self.channel)
        return values.flatten(start_dim=1).mean(dim=1) if values.ndim > 1 else values


@dataclass(frozen=True)
class Neuron(LayerObjective):
    """A channel's activation at one position: ``(y, x)``, the centre by default."""

    channel: int
    position: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return f"neuron {self.channel}"

    def __call__(self, outputs, images):
        values = channel_map(outputs[self.layer], self.channel)
        if values.ndim == 1:  # a dense unit is a neuron already
            return values
        y, x = self.position or (values.shape[1] // 2, values.shape[2] // 2)
        return values[:, y, x]


@dataclass(frozen=True)
class LayerEnergy(LayerObjective):
    """The mean squared activation of a whole layer: DeepDream's objective."""

    @property
    def name(self) -> str:
        return "deepdream"

    def __call__(self, outputs, images):
        return outputs[self.layer].pow(2).flatten(start_dim=1).mean(dim=1)


@dataclass(frozen=True)
class Logit(Objective):
    """A class model (Simonyan et al., 2014): the class's pre-softmax score minus ``l2`` times the
    squared L2 norm of the image. For a segmentation network (N, C, H, W) the score is the class's logit
    averaged over ``region`` (a (H, W) mask; the whole image by default)."""

    target: int
    l2: float = 0.0
    region: torch.Tensor | None = None

    @property
    def layers(self) -> tuple[str, ...]:
        return (OUTPUT,)

    @property
    def name(self) -> str:
        return f"logit {self.target}"

    def __call__(self, outputs, images):
        logits = outputs[OUTPUT][:, self.target]
        if logits.ndim == 3:
            region = torch.ones_like(logits[0]) if self.region is None else self.region.to(logits)
            logits = (logits * region).sum(dim=(1, 2)) / region.sum()
        return logits - self.l2 * images.pow(2).flatten(start_dim=1).sum(dim=1)


@dataclass(frozen=True)
class Direction(LayerObjective):
    """The mean over positions of the activation projected on a vector in channel space."""

    vector: tuple[float, ...]

    @property
    def name(self) -> str:
        return "direction"

    def __call__(self, outputs, images):
        output = outputs[self.layer]
        vector = torch.tensor(self.vector, dtype=output.dtype, device=output.device)
        shape = (1, -1) + (1,) * (output.ndim - 2)
        return (output * vector.view(shape)).sum(dim=1).flatten(start_dim=1).mean(dim=1)


@dataclass(frozen=True)
class Diversity(LayerObjective):
    """Pushes the images of one objective apart (Olah et al., 2017): each image scores minus the summed
    cosine similarity between its Gram matrix at ``layer`` and those of the other images of its group,
    consecutive blocks of ``group`` images (the whole batch when 0). Summed over a group of n images,
    this is n times minus Lucid's ``diversity(layer)``; as the group's n channel scores also sum to n
    times Lucid's batch-mean channel objective, a weight w here balances as Lucid's ``- w * diversity``.
    """

    group: int = 0

    @property
    def name(self) -> str:
        return "diversity"

    def __call__(self, outputs, images):
        output = outputs[self.layer]
        count = len(output)
        size = self.group or count
        if count % size:
            raise UserInputError(f"Diversity: a batch of {count} images is not in groups of {size}")
        features = output.flatten(start_dim=2)
        grams = torch.nn.functional.normalize(
            (features @ features.transpose(1, 2)).flatten(start_dim=1), dim=1
        ).view(count // size, size, -1)
        similarity = grams @ grams.transpose(1, 2)
        to_others = similarity.sum(dim=2) - similarity.diagonal(dim1=1, dim2=2)
        return -to_others.flatten()


@dataclass(frozen=True)
class WeightedSum(Objective):
    """Σ weight x objective."""

    terms: tuple[tuple[float, Objective], ...]

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(layer for _, term in self.terms for layer in term.layers))

    @property
    def name(self) -> str:
        return " + ".join(f"{w:g} {term.name}" if w != 1 else term.name for w, term in self.terms)

    def __call__(self, outputs, images):
        return sum(weight * term(outputs, images) for weight, term in self.terms)


PENALTIES = ("l1", "l2", "tv")


@dataclass(frozen=True)
class ImagePenalty(Objective):
    """A property of the image itself, to subtract: ``l1`` (mean |x|), ``l2`` (mean x²) or ``tv`` (mean
    absolute difference of neighbouring pixels, total variation), per image, on the model's input."""

    kind: str

    @property
    def layers(self) -> tuple[str, ...]:
        return ()

    @property
    def name(self) -> str:
        return self.kind

    def __call__(self, outputs, images):
        if self.kind == "l1":
            return images.abs().flatten(start_dim=1).mean(dim=1)
        if self.kind == "l2":
            return images.pow(2).flatten(start_dim=1).mean(dim=1)
        dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(start_dim=1).mean(dim=1)
        dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(start_dim=1).mean(dim=1)
        return dy + dx


OBJECTIVES = ("channel", "neuron", "layer", "logit", "deepdream")


def named_objective(kind: str, layer: str, index: int | None = None, l2: float = 0.0) -> Objective:
    """An objective by name: 'channel' or 'neuron' ``index`` of ``layer``, 'layer' or 'deepdream' (the
    layer's energy), or 'logit' ``index`` (a class model; ``l2`` weighs the image penalty)."""
    if kind in ("channel", "neuron"):
        return Channel(layer, index) if kind == "channel" else Neuron(layer, index)
    if kind in ("layer", "deepdream"):
        return LayerEnergy(layer)
    if kind == "logit":
        return Logit(index, l2)
    raise UserInputError(f"objective {kind!r} is not one of {', '.join(OBJECTIVES)}")


def check_objectives(model: nn.Module, objectives: list[Objective], example: torch.Tensor) -> None:
    """One forward pass of ``example`` (1, bands, H, W) to check every objective against the layers it
    reads: the layer exists, has channels, and the channel (or class) index is in range; one message
    naming the layer and the fix otherwise."""
    layers = [layer for o in objectives for layer in o.layers]
    with torch.no_grad(), captured_outputs(model, layers) as outputs:
        forward(model, example, outputs)
    for item in objectives:
        for layer in item.layers:
            output = outputs[layer]
            where = "the model's output" if layer == OUTPUT else f"layer {layer!r}"
            if not isinstance(output, torch.Tensor) or output.ndim < 2:
                raise UserInputError(
                    f"{where} has no channels (its output is not a (N, C, ...) tensor); choose another "
                    "layer from: python -m lightning_app.layers --config X.yaml"
                )
            index = getattr(item, "channel", getattr(item, "target", None))
            if index is not None and not 0 <= index < output.shape[1]:
                raise UserInputError(
                    f"channel {index} is out of range: {where} has {output.shape[1]} channels "
                    f"(0-{output.shape[1] - 1})"
                )


def penalty(weights: dict[str, float]) -> Objective | None:
    """Minus ``weight`` x :class:`ImagePenalty` (``kind``) summed over ``{kind: weight}``, to render as a
    batch term beside the objectives (so that what they reach is reported without it); None when no
    weight is set. Weights must be 0 or more."""
    unknown = set(weights) - set(PENALTIES)
    if unknown:
        raise UserInputError(f"penalties {sorted(unknown)} are not among {', '.join(PENALTIES)}")
    negative = {kind: weight for kind, weight in weights.items() if weight < 0}
    if negative:
        raise UserInputError(f"penalties {negative} must be 0 or more (the weights subtracted)")
    terms = tuple((-float(weight), ImagePenalty(kind)) for kind, weight in weights.items() if weight)
    return WeightedSum(terms) if terms else None
