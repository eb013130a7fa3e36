"""Weight initialisation schemes of the reference implementations.

The LCA reference (TensorFlow 1 Keras) initialises kernels with ``he_normal`` and Lees' (2017) Keras
networks with Keras' default ``glorot_uniform``; biases start at zero in both.
"""

import math

from torch import nn

# Keras truncates the normal at two standard deviations and rescales it so the variance stays 2 / fan_in.
_TRUNCATED_NORMAL_STD_CORRECTION = 0.87962566103423978


def he_normal_(module: nn.Module) -> None:
    """Keras ``he_normal`` on each conv and linear layer: truncated normal of variance 2 / fan_in."""
    for layer in _weighted_layers(module):
        fan_in = layer.weight[0].numel()
        std = math.sqrt(2.0 / fan_in) / _TRUNCATED_NORMAL_STD_CORRECTION
        nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def glorot_uniform_(module: nn.Module) -> None:
    """Keras ``glorot_uniform`` (the Keras default) on every conv and linear layer of ``module``."""
    for layer in _weighted_layers(module):
        nn.init.xavier_uniform_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def _weighted_layers(module: nn.Module) -> list[nn.Conv2d | nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
