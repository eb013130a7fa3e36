"""SpaceNet's building metric on whole validation tiles, and image | truth | prediction panels."""

from collections.abc import Iterator

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from callbacks.inspection import display_images, tensorboard
from callbacks.mosaic import Caption, ColourBar, Panel, mosaic_figure
from callbacks.placement import Placement
from datamodules.spacenet import SpaceNetDataModule
from datamodules.spacenet.assembly import TileAssembler, building_probability
from datamodules.spacenet.building_score import MIN_AREA, Proposal, score_image
from datamodules.spacenet.dataset import SpaceNetDataset
from datamodules.spacenet.geo_output import scored_polygons
from datamodules.spacenet.tiling import whole_tile
from lightning_app.dashboard_logger import dashboard_tag
from lightning_app.errors import UserInputError, check_not_negative, check_positive
from models.segmentation_metrics import BuildingF1, probabilities

PANEL_PIXELS = 256  # panels are shown at most this wide


class FullTileEvaluation(pl.Callback):
    """What the whole-tile evaluations share: the SpaceNet data module of their ``target``, the schedule,
    and the validation tiles each process predicts and draws.

    Args:
        every_n_epochs: run every n validation epochs (never during the sanity check).
        max_tiles: score only the first tiles of the validation split; null scores all.
        panels: tiles drawn each time; 0 draws none.
        batch_size: windows predicted at once.
    """

    target = "buildings"

    def __init__(self, every_n_epochs: int, max_tiles: int | None, panels: int, batch_size: int) -> None:
        name = type(self).__name__
        check_positive(name, every_n_epochs=every_n_epochs, max_tiles=max_tiles, batch_size=batch_size)
        check_not_negative(name, panels=panels)
        self.every_n_epochs = every_n_epochs
        self.max_tiles = max_tiles
        self.panels = panels
        self.batch_size = batch_size
        self.truth: dict[int, list] = {}  # label geometries per tile (pixels), read once per run

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if not isinstance(datamodule, SpaceNetDataModule):
            raise UserInputError(
                f"{type(self).__name__} needs the SpaceNet data module (full tiles and labels)"
            )
        if datamodule.target != self.target:
            raise UserInputError(
                f"{type(self).__name__} scores {self.target}; {datamodule.data_dir} holds {datamodule.target}"
            )

    def due(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def validation_tiles(self, trainer: pl.Trainer) -> tuple[SpaceNetDataset, list[int], list[int]]:
        """The whole validation tiles, the ones scored, and the ones rank 0 draws."""
        dataset = trainer.datamodule.full_tile_dataset("val")
        tiles = list(dict.fromkeys(window.tile for window in dataset.windows))[: self.max_tiles]
        shown = tiles[:: trainer.world_size][: self.panels] if trainer.is_global_zero else []
        return dataset, tiles, shown


class SpaceNetTileEvaluation(FullTileEvaluation):
    """At the end of validation epochs, predicts every validation tile whole (stitching windows, whatever
    the validation samples are), turns the building probability into polygons and scores them against the
    tile's label polygons with SpaceNet's rule (:func:`~datamodules.spacenet.building_score.score_image`:
    greedy matching at IoU > ``miniou``, polygons under ``min_area`` pixels left out). Logs
    ``val/building_precision``, ``val/building_recall`` and ``val/building_f1`` over all tiles (summed over
    DDP processes, which share the tiles), and a TensorBoard figure ``Validation/tiles`` of image | truth |
    probability for the first ``panels`` tiles.

    Args:
        every_n_epochs: run every n validation epochs (never during the sanity check).
        max_tiles: score only the first tiles of the validation split; null scores all.
        threshold: building probability above which a pixel is building.
        min_area: minimum polygon area in pixels (80: SpaceNet 6; 20: SpaceNet 2 and 4).
        miniou: IoU a match must exceed.
        panels: tiles drawn each time; 0 draws none.
        batch_size: windows predicted at once.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        max_tiles: int | None = None,
        threshold: float = 0.5,
        min_area: float = MIN_AREA["spacenet6"],
        miniou: float = 0.5,
        panels: int = 4,
        batch_size: int = 4,
    ) -> None:
        super().__init__(every_n_epochs, max_tiles, panels, batch_size)
        self.threshold = threshold
        self.min_area = min_area
        self.miniou = miniou

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.due(trainer):
            return
        datamodule = trainer.datamodule
        dataset, tiles, shown = self.validation_tiles(trainer)
        metric = BuildingF1().to(pl_module.device)
        rows = []
        for tile, tile_probabilities in predict_full_tiles(
            trainer, pl_module, dataset, tiles, self.batch_size
        ):
            building = building_probability(tile_probabilities)
            proposals = [Proposal(p, c) for p, c in scored_polygons(building, self.threshold)]
            if tile not in self.truth:
                self.truth[tile] = datamodule.truth_geometries(tile)
            counts = score_image(self.truth[tile], proposals, self.miniou, self.min_area)
            metric.update(counts)
            if tile in shown:
                captions = [dataset.reader.tiles[tile].pair.tile_id, "truth", f"F1 {counts.f1:.2f}"]
                rgb, truth, step = tile_panels(datamodule, dataset, tile)
                panels = [rgb, truth, np.repeat(building[::step, ::step, None], 3, axis=2)]
                rows.append([Panel(p, Caption(c)) for p, c in zip(panels, captions, strict=True)])
        for name, value in metric.compute().items():  # summed over processes
            pl_module.log(f"val/{name}", value, sync_dist=True)
        self._log_figure(trainer, rows)

    @rank_zero_only
    def _log_figure(self, trainer: pl.Trainer, rows: list[list[Panel]]) -> None:
        writer = tensorboard(trainer)
        if writer is None or not rows:
            return
        bar = ColourBar("gray", 0, 1, "building probability")
        figure = mosaic_figure(
            "val tiles: image | truth (grey: ignored) | building probability", rows, colour_bar=bar
        )
        writer.add_figure(dashboard_tag("val/tiles"), figure, global_step=trainer.global_step)


def predict_full_tiles(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    dataset: SpaceNetDataset,
    tiles: list[int],
    batch_size: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """(tile, stitched probabilities (C, H, W)) for this process's share of ``tiles`` of ``dataset``
    (whole tiles or windows), predicted ``batch_size`` windows at a time."""
    mine = set(tiles[trainer.global_rank :: trainer.world_size])
    indices = [i for i, window in enumerate(dataset.windows) if window.tile in mine]
    assembler = TileAssembler(dataset)
    placement = Placement.of(pl_module)
    for start in range(0, len(indices), batch_size):
        batch = indices[start : start + batch_size]
        images = placement.cast(torch.stack([dataset[i][0] for i in batch]))
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            predictions = probabilities(pl_module(images).float()).cpu().numpy()
        for index, prediction in zip(batch, predictions, strict=True):
            tile = assembler.add(dataset.windows[index], prediction)
            if tile is not None:
                yield dataset.windows[index].tile, tile


def tile_panels(datamodule, dataset: SpaceNetDataset, tile: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The tile's image (RGB, display range) and label mask (grey where ignored) as (H', W', 3) panels
    at most ``PANEL_PIXELS`` wide, and the pixel step ``H' = H / step`` they were taken with."""
    info = dataset.reader.tiles[tile].info
    image, mask = dataset.reader.read(whole_tile(tile, info.height, info.width))
    image = display_images(datamodule, torch.from_numpy(image[None]))[0].numpy()[
        :, : info.height, : info.width
    ]
    rgb = image[:3] if len(image) >= 3 else np.repeat(image[:1], 3, axis=0)
    mask = mask[: info.height, : info.width]  # without the padding
    truth = np.where(mask == dataset.reader.ignore_index, 0.5, mask > 0)
    step = max(1, max(info.height, info.width) // PANEL_PIXELS)
    rgb = rgb.transpose(1, 2, 0)[::step, ::step].astype(np.float32)
    return rgb, np.repeat(truth[::step, ::step, None], 3, axis=2).astype(np.float32), step
