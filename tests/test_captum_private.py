"""Captum's private names the project relies on (callbacks/attribution/methods/captum_private.py): if a
Captum release moves or changes them, this fails with what changed."""

import torch


def test_the_private_captum_names_still_exist_with_the_arguments_we_pass():
    from callbacks.attribution.methods.captum_private import SkLearnRidge, get_exp_kernel_similarity_function

    ridge = SkLearnRidge(alpha=1.0)
    assert hasattr(ridge, "fit"), "SkLearnRidge(alpha=...) no longer builds a trainable surrogate"
    kernel = get_exp_kernel_similarity_function("cosine", 0.25)
    same = torch.ones(1, 4)
    assert kernel(same, same, same) == 1.0, "the exponential cosine kernel of identical inputs is no longer 1"
