"""Sanity checks of attribution methods.

- Model-parameter randomisation (Adebayo et al., 2018, "Sanity Checks for Saliency Maps"): the Spearman
  rank correlation between the absolute attributions of the trained model and of the same model with
  every parameter re-initialised. A method whose maps barely change does not explain the model.
- Captum's ``infidelity`` (Gaussian input perturbations, attributions rescaled optimally) and
  ``sensitivity_max`` (largest change of the attribution under input noise of radius 0.02).
"""

import copy

import numpy as np
import torch
from captum.metrics import infidelity, sensitivity_max
from scipy.stats import spearmanr
from torch import nn

from callbacks.attribution.methods import AttributionMethod
from callbacks.attribution.targets import Scores, Targets
from callbacks.model_copy import shared_attributes

PERTURBATION_STD = 0.1
PERTURBATION_SAMPLES = 10


def randomised_copy(scores: Scores, seed: int) -> Scores:
    """``scores`` with every parameter of its model re-initialised (each module's reset_parameters)."""
    randomised = copy.deepcopy(scores, memo=shared_attributes(scores))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in randomised.modules():
            if (
                hasattr(module, "reset_parameters")
                and next(module.parameters(recurse=False), None) is not None
            ):
                module.reset_parameters()
    return randomised


def rank_correlation(first: torch.Tensor, second: torch.Tensor) -> float:
    """Mean over examples of the Spearman correlation of the absolute attributions (channels summed)."""
    correlations = []
    for a, b in zip(first.abs().sum(dim=1), second.abs().sum(dim=1), strict=True):
        a, b = a.flatten().cpu().double().numpy(), b.flatten().cpu().double().numpy()
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            correlations.append(1.0 if np.array_equal(a, b) else 0.0)
        else:
            correlations.append(float(spearmanr(a, b).statistic))
    return float(np.mean(correlations))


def randomisation_correlation(
    method: AttributionMethod,
    scores: Scores,
    randomised: Scores,
    inputs: torch.Tensor,
    targets: Targets,
    trained_values: torch.Tensor,
) -> float:
    """Rank correlation between the method's maps on the trained and on the randomised model, both
    explaining the classes the trained model was explained for."""
    random_values = method.attribute(randomised, inputs, targets.classes, targets.forward_args).values
    return rank_correlation(trained_values, random_values)


def _gaussian_perturbation(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    noise = torch.randn_like(inputs) * PERTURBATION_STD
    return noise, inputs - noise


def infidelity_score(
    scores: nn.Module, inputs: torch.Tensor, targets: Targets, values: torch.Tensor
) -> float:
    """Captum's infidelity (normalised), averaged over the examples: lower is better."""
    result = infidelity(
        scores,
        _gaussian_perturbation,
        inputs,
        values,
        additional_forward_args=targets.forward_args,
        target=targets.classes,
        n_perturb_samples=PERTURBATION_SAMPLES,
        normalize=True,
    )
    return float(result.mean())


def sensitivity_score(
    method: AttributionMethod, scores: Scores, inputs: torch.Tensor, targets: Targets
) -> float:
    """Captum's sensitivity_max, averaged over the examples: lower is better."""

    def explain(perturbed, target: torch.Tensor, additional_forward_args=None) -> tuple[torch.Tensor]:
        # sensitivity_max passes and expects tuples (it iterates over an untupled first explanation)
        (perturbed,) = perturbed
        return (method.attribute(scores, perturbed, target, additional_forward_args).values,)

    result = sensitivity_max(
        explain,
        inputs,
        target=targets.classes,
        additional_forward_args=targets.forward_args,
        n_perturb_samples=PERTURBATION_SAMPLES,
    )
    return float(result.mean())
