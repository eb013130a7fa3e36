"""torchvision and timm classifiers by name with weights from local files only."""

import logging

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from lightning_app.errors import UserInputError
from models.nets.zoo import TimmNet, TorchvisionNet


def saved_resnet18(path, num_classes: int = 1000) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None, num_classes=num_classes).state_dict()
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_weights_load_from_a_local_file(tmp_path, suffix):
    saved = saved_resnet18(tmp_path / f"resnet18{suffix}")
    loaded = TorchvisionNet("resnet18", 1000, str(tmp_path / f"resnet18{suffix}")).model.state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[key], saved[key]) for key in saved)


def test_torchvision_head_is_replaced_for_other_class_counts(tmp_path, caplog):
    saved = saved_resnet18(tmp_path / "imagenet.pth")
    with caplog.at_level(logging.INFO):
        net = TorchvisionNet("resnet18", 10, str(tmp_path / "imagenet.pth"))
    assert net.model.fc.out_features == 10 and net(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
    assert torch.equal(net.model.conv1.weight, saved["conv1.weight"])  # the body keeps its weights
    assert "torchvision resnet18: head fc replaced, 1000 -> 10 classes" in caplog.text
    fine_tuned = saved_resnet18(tmp_path / "ten.pth", num_classes=10)  # a head of the file's own size loads
    net = TorchvisionNet("resnet18", 10, str(tmp_path / "ten.pth"))
    assert torch.equal(net.model.fc.weight, fine_tuned["fc.weight"])


def test_bad_names_and_files_get_one_line_errors(tmp_path):
    with pytest.raises(UserInputError, match="'resnet81' is not a torchvision classifier; close: resnet18"):
        TorchvisionNet("resnet81")
    with pytest.raises(UserInputError, match="no such file. Weights are never downloaded at run time"):
        TorchvisionNet("resnet18", weights_path=str(tmp_path / "missing.pth"))
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(UserInputError, match="text.pth: cannot read weights"):
        TimmNet("resnet18", weights_path=str(tmp_path / "text.pth"))
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), tmp_path / "alexnet.pth")
    with pytest.raises(UserInputError, match="alexnet.pth does not fit this network"):
        TorchvisionNet("resnet18", weights_path=str(tmp_path / "alexnet.pth"))


def test_timm_adapts_a_three_band_file_to_four_bands_and_a_new_head(tmp_path):
    torch.manual_seed(2)
    saved = timm.create_model("resnet18", pretrained=False).state_dict()
    torch.save(saved, tmp_path / "resnet18.pth")
    net = TimmNet("resnet18", num_classes=5, in_chans=4, weights_path=str(tmp_path / "resnet18.pth"))
    conv = net.model.conv1.weight
    # timm's adapt_input_conv: the 3 bands repeated to 4, scaled by 3/4
    expected = torch.cat([saved["conv1.weight"], saved["conv1.weight"][:, :1]], dim=1) * 3 / 4
    assert conv.shape == (64, 4, 7, 7) and torch.allclose(conv, expected)
    assert torch.equal(net.model.layer1[0].conv1.weight, saved["layer1.0.conv1.weight"])
    assert net.model.fc.out_features == 5 and net(torch.zeros(2, 4, 64, 64)).shape == (2, 5)
