"""Feature visualisation: activation maximisation (Olah et al., 2017), class models (Simonyan et al.,
2014), DeepDream and dataset examples, for any number of bands."""

from callbacks.feature_vis.callback import FeatureVisualization
from callbacks.feature_vis.deepdream import deepdream
from callbacks.feature_vis.objectives import (
    Channel,
    Direction,
    Diversity,
    ImagePenalty,
    LayerEnergy,
    Logit,
    Neuron,
    Objective,
    named_objective,
)
from callbacks.feature_vis.parameterisations import BandStatistics, ImageParameterisation
from callbacks.feature_vis.render import Rendering, RenderSettings, render

__all__ = [
    "BandStatistics",
    "Channel",
    "Direction",
    "Diversity",
    "FeatureVisualization",
    "ImageParameterisation",
    "ImagePenalty",
    "LayerEnergy",
    "Logit",
    "Neuron",
    "Objective",
    "Rendering",
    "RenderSettings",
    "deepdream",
    "named_objective",
    "render",
]
