"""A small real run for the Interpretability tab's tests: the quickstart's network and callbacks (LCA
per class, attributions with sanity checks, feature visualisation chosen by LCA) plus faithfulness,
two short epochs, written by the CLI into a logdir of its own."""

import os
import sys
from pathlib import Path

import pytest
import yaml

from lightning_app.cli import cli_main

QUICKSTART = Path(__file__).parents[1] / "configs" / "quickstart.yaml"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
SHORTER = {
    "callbacks.attribution.AttributionCallback": {"every_n_epochs": 1},
    "callbacks.feature_vis.FeatureVisualization": {"every_n_epochs": 1, "steps": 16},
    "callbacks.embeddings.EmbeddingCallback": {"per_class": 3},
}
FAITHFULNESS = {
    "class_path": "callbacks.attribution.FaithfulnessCallback",
    "init_args": {"methods": {"Saliency": {}}, "metrics": ["deletion"], "size": 5, "every_n_epochs": 1},
}


def train_tab_run(folder: Path) -> Path:
    """Train the run in ``folder`` (its logdir is ``folder/runs``) and return the run folder."""
    config = yaml.safe_load(QUICKSTART.read_text())
    config["trainer"]["max_epochs"] = 2
    config["trainer"]["limit_train_batches"] = 20
    for callback in config["trainer"]["callbacks"]:
        callback["init_args"].update(SHORTER.get(callback["class_path"], {}))
    config["trainer"]["callbacks"].append(FAITHFULNESS)
    path = folder / "tab.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    cwd = os.getcwd()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["train.py"])
        os.chdir(folder)
        try:
            cli_main(["fit", "--config", str(path), *QUIET])
        finally:
            os.chdir(cwd)
    return folder / "runs" / "tab" / "version_0"
