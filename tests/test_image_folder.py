"""The image-folder data module on generated folders, and torchvision networks trained and explained on
it with the callbacks."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from callbacks.contracts import VisualisableDataModule
from datamodules.image_folder import ImageFolderDataModule
from lightning_app.errors import UserInputError

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 210)}


def write_folder(root: Path, per_class: int = 10, classes=COLOURS) -> Path:
    """``root/<class>/`` with PNG and JPEG images of the class colour, sizes 40..58 px; one grey and one
    RGBA image in the first class."""
    rng = np.random.default_rng(0)
    for index, (name, colour) in enumerate(classes.items()):
        folder = root / name
        folder.mkdir(parents=True)
        for number in range(per_class):
            size = 40 + 2 * number
            pixels = np.clip(np.array(colour) + rng.normal(0, 10, (size, size + 3, 3)), 0, 255).astype(
                np.uint8
            )
            image = Image.fromarray(pixels)
            if index == 0 and number == 0:
                image = image.convert("L")
            if index == 0 and number == 1:
                image = image.convert("RGBA")
            image.save(folder / f"{number}.{'png' if number % 2 else 'jpg'}")
    return root


def test_class_folders_are_split_per_class_and_prepared(tmp_path):
    data = ImageFolderDataModule(write_folder(tmp_path / "images"), image_size=32, val_fraction=0.2,
                                 test_fraction=0.2, seed=1)  # fmt: skip
    data.setup()
    assert data.class_names == ["blue", "green", "red"] and data.num_classes == 3
    for split, count in (("train", 6), ("val", 2), ("test", 2)):
        labels = data.dataset(split).labels
        assert torch.equal(torch.bincount(labels), torch.tensor([count] * 3))
    assert set(data.dataset("train").indices).isdisjoint(data.dataset("val").indices)
    image, label = data.dataset("val", augment=False)[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    shown = data.denormalize(image)  # back in [0, 1]: the class colour
    expected = torch.tensor(COLOURS[data.class_names[label]], dtype=torch.float32) / 255
    assert torch.allclose(shown.mean(dim=(1, 2)), expected, atol=0.06)
    assert torch.allclose(data.from_display(shown), image, atol=1e-5)
    again = ImageFolderDataModule(
        tmp_path / "images", image_size=32, val_fraction=0.2, test_fraction=0.2, seed=1
    )
    again.setup()
    assert again.split_indices == data.split_indices  # the seed fixes the split


def test_contract_and_evaluation_subsets(tmp_path):
    data = ImageFolderDataModule(write_folder(tmp_path / "images"), image_size=32)
    assert isinstance(data, VisualisableDataModule)
    subset = data.evaluation_subset("train", per_class=2, seed=0)
    assert torch.equal(torch.bincount(subset.labels), torch.tensor([2, 2, 2]))
    assert torch.equal(subset.source_indices, torch.tensor(subset.indices))
    assert len(data.evaluation_subset("train", size=5)) == 5


def test_train_val_test_folders_and_labels_files(tmp_path, caplog):
    root = tmp_path / "images"
    for split in ("train", "val"):
        write_folder(root / split, per_class=3, classes={"goldfish": (200, 120, 20), "0": (90, 90, 90)})
    data = ImageFolderDataModule(root, image_size=32, labels="imagenet")
    data.setup()
    assert len(data.class_names) == 1000 and data.class_names[:2] == ["tench", "goldfish"]
    assert sorted(set(data.dataset("train").labels.tolist())) == [0, 1]  # folder '0' is the index
    assert len(data.dataset("val")) == 6
    with pytest.raises(UserInputError, match="has no test/ folder"):
        data.dataset("test")
    twice = tmp_path / "twice"
    write_folder(twice, per_class=1, classes={"cat": (1, 2, 3)})
    (tmp_path / "labels.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(UserInputError, match="'cat' names several classes .* by its index \\(0, 2\\)"):
        ImageFolderDataModule(twice, labels=str(tmp_path / "labels.txt")).setup()
    typo = tmp_path / "typo"
    write_folder(typo, per_class=1, classes={"goldfsh": (1, 2, 3)})
    with pytest.raises(UserInputError, match="'goldfsh' is not a class of .*close: goldfish"):
        ImageFolderDataModule(typo, labels="imagenet").setup()


def test_bad_input_gets_one_line_errors(tmp_path):
    with pytest.raises(UserInputError, match="data.root .*missing is not a folder"):
        ImageFolderDataModule(tmp_path / "missing").setup()
    with pytest.raises(UserInputError, match="'Spin' is not a torchvision.transforms.v2 transform"):
        ImageFolderDataModule(tmp_path, augmentations=[{"Spin": {}}])
    root = write_folder(tmp_path / "images", per_class=3)
    (root / "red" / "broken.jpg").write_bytes(b"not a jpeg")
    data = ImageFolderDataModule(root, image_size=32, val_fraction=0.0, test_fraction=0.0)
    dataset = data.dataset("train", augment=False)
    broken = next(
        i for i in range(len(dataset)) if dataset.samples[dataset.indices[i]][0].endswith("broken.jpg")
    )
    with pytest.raises(UserInputError, match="cannot read image .*broken.jpg .*remove or replace it"):
        dataset[broken]


def test_imagefolder_config_trains_and_explains_a_torchvision_resnet(tmp_path):
    """configs/imagefolder_resnet18_explain.yaml on a generated folder (32 px): attribution, activation
    and embedding figures of the torchvision ResNet-18 in TensorBoard, then predict from its checkpoint."""
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lightning_app.cli import cli_main

    root = write_folder(tmp_path / "images")
    override = {
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "enable_progress_bar": False},
        "data": {"init_args": {"root": str(root), "image_size": 32, "batch_size": 6, "num_workers": 0,
                               "val_fraction": 0.3}},
    }  # fmt: skip
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(override))
    config = str(Path(__file__).resolve().parents[1] / "configs" / "imagefolder_resnet18_explain.yaml")
    configs = ["--config", config, "--config", str(tmp_path / "override.yaml")]
    fit = cli_main(["fit", *configs])
    events = EventAccumulator(fit.trainer.log_dir, size_guidance={"images": 0})
    events.Reload()
    images = set(events.Tags()["images"])
    assert {"attribution/Saliency", "attribution/IntegratedGradients", "attribution/LayerGradCam"} <= images
    assert any(tag.startswith("activations/net.model.layer4") for tag in images)
    assert any(tag.startswith("embedding") for tag in images)
    predict = cli_main(["predict", *configs, "--ckpt_path", fit.trainer.checkpoint_callback.best_model_path])
    assert predict.datamodule.class_names == ["blue", "green", "red"]


def test_lca_and_feature_visualisation_work_on_a_timm_network(tmp_path, capsys):
    """A timm ResNet by name on the folder: Loss Change Allocation conserves the loss change of its 3
    steps (18 training images, batch 6), feature visualisation renders layer4's channels with dataset
    examples, and the layers command lists timm's layer names with their receptive fields. LCA uses the
    running batch-norm statistics: with each 12-image chunk's own statistics (layer4 is 1 x 1 here) the
    loss is far from linear in the step and RK4 conserved 98.7 %."""
    import yaml

    from callbacks.feature_vis import FeatureVisualization
    from callbacks.lca.analysis import summary
    from callbacks.lca.store import LCARun
    from lightning_app.cli import cli_main
    from lightning_app.layers import print_layers

    root = write_folder(tmp_path / "images")
    override = {
        "trainer": {"max_epochs": 1, "enable_progress_bar": False, "callbacks": [
            {"class_path": "callbacks.lca.LossChangeAllocation",
             "init_args": {"eval_size": 12, "report": False, "bn_mode": "eval"}},  # see the note
            {"class_path": "callbacks.feature_vis.FeatureVisualization",
             "init_args": {"layers": ["net.model.layer4"], "channels": 2, "steps": 4, "examples": 2,
                           "every_n_epochs": 1}},
        ]},
        "model": {"init_args": {"net": {"class_path": "models.nets.zoo.TimmNet",
                                        "init_args": {"name": "test_resnet", "num_classes": 3}},
                                "optimizer": {"init_args": {"lr": 0.001}}}},
        "data": {"init_args": {"root": str(root), "image_size": 32, "batch_size": 6, "num_workers": 0,
                               "val_fraction": 0.3}},
    }  # fmt: skip
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(override))
    config = str(Path(__file__).resolve().parents[1] / "configs" / "imagefolder_resnet18_explain.yaml")
    configs = ["--config", config, "--config", str(tmp_path / "override.yaml")]
    fit = cli_main(["fit", *configs])
    numbers = summary(LCARun(Path(fit.trainer.log_dir) / "lca.h5"))
    assert numbers["iterations"] == 3 and numbers["conservation_rel_error"] < 1e-2
    visualisation = next(c for c in fit.trainer.callbacks if isinstance(c, FeatureVisualization))
    assert visualisation.renderings["net.model.layer4"].images.shape == (2, 3, 32, 32)
    print_layers(configs, receptive_field=True)
    listed = capsys.readouterr().out
    assert "net.model.layer4" in listed and "net.model.fc" in listed
