"""The TensorBoard logger of every run: the module's own curves are the first thing TensorBoard shows."""

from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from typing_extensions import override

STAGE_GROUPS = {"train": "Training", "val": "Validation", "test": "Test"}


def dashboard_tag(key: str) -> str:
    """The TensorBoard tag of a metric key: ``val/acc`` -> ``Validation/acc``. TensorBoard sorts its
    groups by code point, capitals first, so the training, validation and test curves come before every
    callback's lower-case group (attribution, dead_channels, lca, ...)."""
    group, slash, rest = key.partition("/")
    return f"{STAGE_GROUPS[group]}/{rest}" if slash and group in STAGE_GROUPS else key


class DashboardLogger(TensorBoardLogger):
    """A TensorBoardLogger that files the metrics ``train/*``, ``val/*`` and ``test/*`` under the
    TensorBoard groups ``Training``, ``Validation`` and ``Test`` (see :func:`dashboard_tag`). The metric
    keys themselves, which ``ModelCheckpoint(monitor=...)`` and the progress bar use, stay as logged."""

    @override
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log_metrics({dashboard_tag(key): value for key, value in metrics.items()}, step)
