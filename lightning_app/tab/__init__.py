"""The Interpretability tab: a TensorBoard dynamic plugin that reads our run folders (LCA store,
attribution records, checkpoints) and answers live questions about a trained checkpoint.

``pip install -e .`` registers it (the ``tensorboard_plugins`` entry point); ``tensorboard --logdir runs``
then shows the tab whenever a run under ``runs`` holds our records.
"""
