import sys

import matplotlib
import pytest

from tests.fake_data import write_cifar10, write_mnist

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def isolated_run(tmp_path, monkeypatch):
    """Each test runs in its own folder (runs/ lands there) with a bare command line."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])


@pytest.fixture
def mnist_dir(tmp_path):
    write_mnist(tmp_path)
    return tmp_path


@pytest.fixture
def cifar_dir(tmp_path):
    write_cifar10(tmp_path)
    return tmp_path
