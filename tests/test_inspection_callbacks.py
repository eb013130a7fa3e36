import json
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from callbacks.activations import ActivationCallback, dead_channel_fraction, layer_outputs
from callbacks.attribution import AttributionCallback
from callbacks.embeddings import EmbeddingCallback
from callbacks.explanation_writer import ExplanationWriter
from datamodules.image_files import ImageFilesDataset
from lightning_app import layers
from lightning_app.cli import cli_main
from lightning_app.errors import UserInputError

ROOT = Path(__file__).parents[1]
CONFIG = str(ROOT / "configs" / "mnist_lenet_explain.yaml")
SHORT = [
    "--config", CONFIG, "--trainer.max_epochs=2", "--trainer.limit_train_batches=3",
    "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false", "--trainer.callbacks=[]",
]  # fmt: skip


def short_cli(*extra: str):
    return cli_main([*SHORT, *extra], run=False)


def inspection_callbacks():
    return [
        AttributionCallback(
            methods={"Saliency": {}, "LayerGradCam": {"layer": "net.conv2"}, "Lime": {"n_samples": 40}},
            per_class=1,
            every_n_epochs=1,
        ),
        ActivationCallback(every_n_epochs=1),
        EmbeddingCallback(per_class=3, max_iter=250),
    ]


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    return accumulator.Reload()


def test_callbacks_log_to_tensorboard_and_leave_training_untouched():
    plain = short_cli()
    plain.trainer.fit(plain.model, plain.datamodule)

    inspected = short_cli()
    callbacks = inspection_callbacks()
    inspected.trainer.callbacks.extend(callbacks)
    inspected.trainer.fit(inspected.model, inspected.datamodule)

    for a, b in zip(plain.model.parameters(), inspected.model.parameters(), strict=True):
        assert torch.equal(a, b)
    plain_state = plain.trainer.optimizers[0].state_dict()["state"]
    inspected_state = inspected.trainer.optimizers[0].state_dict()["state"]
    assert all(
        torch.equal(plain_state[k]["square_avg"], inspected_state[k]["square_avg"]) for k in plain_state
    )
    assert inspected.model.training and isinstance(inspected.model.net.relu1, torch.nn.ReLU)

    run_dir = Path(inspected.trainer.log_dir)
    log = events(run_dir)
    probe = callbacks[0].probe.indices
    images = set(log.Tags()["images"])
    assert {"attribution/Saliency", "attribution/LayerGradCam", "attribution/Lime"} <= images
    assert {
        f"activations/net.conv1/{probe[0]}",
        f"activations/net.conv2/{probe[0]}",
        "filters/net.conv1",
    } <= images
    assert "embedding/tsne" in images
    # epoch 1 (step 3) by the schedule, the end of fit (step 6); t-SNE at the start and the end
    assert [e.step for e in log.Images("attribution/Saliency")] == [3, 6]
    assert [e.step for e in log.Images("embedding/tsne")] == [0, 6]
    assert not any(tag.startswith("sanity") for tag in log.Tags()["scalars"])  # one table, one chart
    assert [e.step for e in log.Images("sanity/checks")] == [6]
    (table,) = log.Tensors("sanity/checks/text_summary")
    rows = table.tensor_proto.string_val[0].decode().splitlines()
    assert rows[0].startswith("| method | randomisation correlation | insensitive to the model |")
    sanity = callbacks[0].sanity
    assert [row.split(" | ")[0] for row in rows[2:5]] == ["| Saliency", "| LayerGradCam", "| Lime"]
    assert f"| Saliency | {sanity['Saliency']['randomisation_correlation']:.3f} |" in rows[2]
    dead = log.Scalars("dead_channels/net.conv1")
    assert [e.step for e in dead] == [3, 6]  # after each epoch, a curve
    assert (
        dead[-1].value == pytest.approx(callbacks[1].dead_fractions["net.conv1"]) and 0 <= dead[-1].value <= 1
    )
    projector = text_format.Parse((run_dir / "projector_config.pbtxt").read_text(), ProjectorConfig())
    names = [e.tensor_name for e in projector.embeddings]
    assert names == ["net.fc2 @ start of training", "net.fc2 @ end of training (epoch 2)"]
    assert min(names) == names[1]  # the projector opens on the first name in order: the trained one
    assert projector.embeddings[1].tensor_path.startswith("00006/")
    assert all(e.sprite.image_path for e in projector.embeddings)
    metadata = next(run_dir.glob("00006/*/metadata.tsv")).read_text().splitlines()
    assert metadata[0] == "outcome\tlabel\tpredicted" and len(metadata) == 31
    for row in metadata[1:]:
        outcome, label, predicted = row.split("\t")
        assert outcome == (f"{label} (right)" if label == predicted else f"{label} -> {predicted} (wrong)")
    assert callbacks[2].points.shape == (30, 2)
    assert len(probe) == 10 and probe == sorted(probe)

    inspected.trainer.test(inspected.model, inspected.datamodule)  # runs under inference mode
    assert len(events(run_dir).Images("attribution/Saliency")) == 3


def test_dead_channels_are_channels_never_positive_on_the_probe_set():
    cli = short_cli()
    net = cli.model.net
    with torch.no_grad():
        net.conv1.bias.fill_(1e3)
        net.conv1.bias[[3, 7]] = -1e3
    outputs = layer_outputs(cli.model, ["net.conv1"], torch.rand(5, 1, 28, 28))
    assert outputs["net.conv1"].shape == (5, 32, 26, 26)
    assert dead_channel_fraction(outputs["net.conv1"]) == 2 / 32


def test_explain_writes_top5_and_figures_for_user_images(tmp_path):
    fit = cli_main([*SHORT, f"--trainer.default_root_dir={tmp_path}"], run=False)
    fit.trainer.fit(fit.model, fit.datamodule)
    checkpoint = fit.trainer.checkpoint_callback.best_model_path
    digits = fit.datamodule.evaluation_subset("test", size=2, seed=3)
    files = []
    for i in range(2):
        path = tmp_path / f"digit_{i}.png"
        Image.fromarray((digits[i][0][0].numpy() * 255).round().astype(np.uint8)).resize((56, 56)).save(path)
        files.append(str(path))
    Image.new("RGB", (10, 10)).save(tmp_path / "big.jpg")

    out = tmp_path / "explanations"
    cli_main(
        [
            "predict", *SHORT, f"--ckpt_path={checkpoint}", f"--data.predict_files=[{tmp_path}/digit_*.png]",
            "--trainer.callbacks+=callbacks.explanation_writer.ExplanationWriter",
            f"--trainer.callbacks.output_dir={out}",
            "--trainer.callbacks.methods={Saliency: {}, Occlusion: {window: 4, stride: 4}}",
        ]
    )  # fmt: skip
    for i in range(2):
        folder = out / f"digit_{i}"
        ranked = json.loads((folder / "predictions.json").read_text())["top5"]
        assert len(ranked) == 5
        probabilities = [r["probability"] for r in ranked]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6
        assert {p.name for p in folder.glob("*.png")} == {
            "attribution_Saliency.png", "attribution_Occlusion.png",
            "activations_net.conv1.png", "activations_net.conv2.png",
        }  # fmt: skip
    # the 56x56 file is read back at the data's 28x28, as the model's data module prepares its images
    image, label = ImageFilesDataset([Path(files[0])], (1, 28, 28))[0]
    assert image.shape == (1, 28, 28) and label == -1
    assert (image - digits[0][0]).abs().mean() < 0.05


def test_explain_rejects_unreadable_and_missing_images(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(UserInputError, match="cannot read image .*broken.png"):
        ImageFilesDataset([broken], (1, 28, 28))
    cli = short_cli(f"--data.predict_files=[{tmp_path}/none_*.png]")
    with pytest.raises(UserInputError, match="no file matches .*none_"):
        cli.datamodule.predict_dataloader()


def test_callbacks_check_layer_names_before_training():
    cli = short_cli()
    cli.trainer.callbacks.append(ActivationCallback(layers=["net.conv7"]))
    with pytest.raises(
        UserInputError, match="layer 'net.conv7' is not in the model; its layers are: net, net.conv1"
    ):
        cli.trainer.fit(cli.model, cli.datamodule)
    with pytest.raises(UserInputError, match="not in the model"):
        ExplanationWriter(layers=["nope"]).setup(cli.trainer, cli.model, "predict")


def test_layers_command_lists_names_shapes_parameters_and_targets(capsys):
    layers.main(["--config", CONFIG])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["layer", "type", "output", "parameters", "targets"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["net.conv1"] == ["Conv2d", "32x26x26", "320", "spatial"]
    assert rows["net.fc2"] == ["Linear", "10", "1290", "dense"]
    assert rows["net"][2] == "113386"
