"""The record writer: on a thread of its own (what a GPU run uses), the same store as inline."""

import numpy as np
import pytest
import torch
from torch import nn

from callbacks.lca.evaluation import Evaluation
from callbacks.lca.integrators import PathIntegral
from callbacks.lca.layout import ParameterLayout
from callbacks.lca.record_writer import Outputs, RecordWriter, StepResult
from callbacks.lca.records import RecordBuilder
from callbacks.lca.store import LCARun, LCAStore

LAYOUT = ParameterLayout.of(nn.Linear(3, 2))


def step_result(step: int, generator: torch.Generator, size: int = LAYOUT.num_parameters) -> StepResult:
    grad = torch.randn(size, generator=generator, dtype=torch.float64)
    delta = torch.randn(size, generator=generator, dtype=torch.float64)
    point = Evaluation(torch.tensor(1.0 - step / 10, dtype=torch.float64), grad)
    return StepResult(step, step + 1, 0, 2, delta, grad * delta, PathIntegral(point, point, grad, None), None)


def writer_at(path, background: bool, flush_every: int) -> RecordWriter:
    store = LCAStore.create(path, LAYOUT, {}, None, {"train": np.arange(4)}, dense=())
    return RecordWriter(
        RecordBuilder(LAYOUT, torch.device("cpu")),
        Outputs(store, 0, ("lca",), flush_every, 0, None),
        background,
    )


def test_the_background_writer_writes_what_the_inline_writer_does(tmp_path):
    generator = torch.Generator().manual_seed(0)
    results = [step_result(step, generator) for step in range(7)]
    runs = {}
    for background in (False, True):
        path = tmp_path / f"{background}.h5"
        writer = writer_at(path, background, flush_every=3)
        for item in results[:3]:
            writer.submit(item)
        assert len(LCARun(path).steps["step"]) == 3  # the third step completed a flush: waited for
        for item in results[3:]:
            writer.submit(item)
        writer.close()
        runs[background] = LCARun(path)
    for name, values in runs[False].steps.items():
        np.testing.assert_array_equal(runs[True].steps[name], values, err_msg=name)
    for name, values in runs[False].totals.items():
        np.testing.assert_array_equal(runs[True].totals[name], values, err_msg=name)
    assert runs[True].totals["steps"] == 7


def test_an_error_on_the_writer_thread_reaches_the_training_thread(tmp_path):
    writer = writer_at(tmp_path / "lca.h5", background=True, flush_every=50)
    writer.submit(step_result(0, torch.Generator(), size=3))  # a vector of the wrong size: fails there
    with pytest.raises(RuntimeError, match="split_with_sizes expects split_sizes to sum exactly to 3"):
        writer.wait()
    writer.close()
    assert LCARun(tmp_path / "lca.h5").totals["steps"] == 0
