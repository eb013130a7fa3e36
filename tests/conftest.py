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


@pytest.fixture(scope="session")
def tab_run(tmp_path_factory):
    """A small real run with every record the Interpretability tab reads (trained once per session)."""
    from tests.tab_support import train_tab_run

    return train_tab_run(tmp_path_factory.mktemp("tab"))
