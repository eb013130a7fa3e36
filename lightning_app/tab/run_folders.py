"""The run folders under TensorBoard's logdir, named as TensorBoard names runs (the path relative to the
logdir, '.' for the logdir itself), and resolved from a request's name inside the logdir only."""

from dataclasses import dataclass
from pathlib import Path

from callbacks.attribution.records import FOLDER as ATTRIBUTION_FOLDER
from callbacks.feature_vis.records import FOLDER as FEATURE_VIS_FOLDER
from lightning_app.errors import UserInputError

LCA_STORE = "lca.h5"
CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
MAX_DEPTH = 6  # how deep under the logdir run folders are looked for


@dataclass(frozen=True)
class RunFolder:
    """A run folder and which of our records it holds."""

    name: str
    path: Path

    @property
    def has_lca(self) -> bool:
        return (self.path / LCA_STORE).is_file()

    @property
    def has_attributions(self) -> bool:
        return (self.path / ATTRIBUTION_FOLDER).is_dir()

    @property
    def has_feature_vis(self) -> bool:
        return (self.path / FEATURE_VIS_FOLDER).is_dir()

    @property
    def checkpoints(self) -> list[str]:
        """Checkpoint file names, newest first."""
        files = sorted(
            (self.path / CHECKPOINTS).glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        return [path.name for path in files]

    @property
    def has_records(self) -> bool:
        return self.has_lca or self.has_attributions or self.has_feature_vis or self.explorable

    @property
    def explorable(self) -> bool:
        return (self.path / CONFIG).is_file() and bool(self.checkpoints)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "lca": self.has_lca,
            "attributions": self.has_attributions,
            "feature_vis": self.has_feature_vis,
            "checkpoints": self.checkpoints if (self.path / CONFIG).is_file() else [],
        }


class RunFolders:
    """The run folders of a logdir. A run folder holds an LCA store, attribution records or a config
    with checkpoints; names come from requests and are checked to stay inside the logdir."""

    def __init__(self, logdir: str | Path) -> None:
        self.logdir = Path(logdir).resolve()

    def all(self) -> list[RunFolder]:
        if not self.logdir.is_dir():
            return []
        found = []
        for folder in sorted(self._folders(self.logdir, 0)):
            run = RunFolder(self._name(folder), folder)
            if run.has_records:
                found.append(run)
        return found

    def get(self, name: str | None) -> RunFolder:
        """The run called ``name``; a name outside the logdir or without our records is refused."""
        if not name:
            raise UserInputError("run: missing; give one of the names /runs lists")
        path = (self.logdir / name).resolve()
        if path != self.logdir and self.logdir not in path.parents:
            raise UserInputError(f"run {name!r} is outside the logdir")
        run = RunFolder(self._name(path), path)
        if not path.is_dir() or not run.has_records:
            raise UserInputError(f"run {name!r}: no such run with our records under the logdir")
        return run

    def checkpoint(self, run: RunFolder, name: str | None) -> Path:
        """A checkpoint of ``run`` by file name (default: the newest)."""
        names = run.checkpoints
        if not names:
            raise UserInputError(f"run {run.name!r} has no checkpoints/*.ckpt")
        if name is None:
            return run.path / CHECKPOINTS / names[0]
        if name not in names:
            raise UserInputError(f"checkpoint {name!r} is not one of run {run.name!r}'s: {names}")
        return run.path / CHECKPOINTS / name

    def _name(self, folder: Path) -> str:
        return folder.relative_to(self.logdir).as_posix() if folder != self.logdir else "."

    def _folders(self, folder: Path, depth: int):
        yield folder
        if depth >= MAX_DEPTH:
            return
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink() and not child.name.startswith("."):
                yield from self._folders(child, depth + 1)
