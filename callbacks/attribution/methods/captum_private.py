"""The only place the project imports Captum's private modules: Lime's ridge surrogate and its
similarity kernel, which Captum's public API does not export. ``tests/test_captum_private.py`` fails
with the name of what moved if a Captum release changes them."""

from captum._utils.models.linear_model import SkLearnRidge
from captum.attr._core.lime import get_exp_kernel_similarity_function

__all__ = ["SkLearnRidge", "get_exp_kernel_similarity_function"]
