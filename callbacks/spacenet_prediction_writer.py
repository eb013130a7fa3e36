"""SpaceNetPredictionWriter: ``python train.py predict`` output on the tiles' own georeference."""

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter
from typing_extensions import override

from datamodules.spacenet import SpaceNetDataModule
from datamodules.spacenet.assembly import TileAssembler, building_probability
from datamodules.spacenet.building_score import PROPOSAL_COLUMNS
from datamodules.spacenet.dataset import SpaceNetDataset, Tile
from datamodules.spacenet.geo_output import (
    proposal_rows,
    road_rows,
    scored_polygons,
    write_features_geojson,
    write_geotiff,
    write_polygons_geojson,
    write_proposal_csv,
)
from datamodules.spacenet.rasters import RasterInfo
from datamodules.spacenet.roads import MetricFrame, RoadExtraction
from datamodules.spacenet.roads.road_score import ROAD_COLUMNS
from lightning_app.errors import UserInputError


class SpaceNetPredictionWriter(BasePredictionWriter):
    """Writes, for every tile ``predict`` sees (the data module's ``predict_files``, or its test split),
    stitched from its windows:

    - ``probabilities/<tile id>.tif``: float32 probabilities (one band for a binary network, one per class
      otherwise) with the tile's CRS and transform;

    for buildings:

    - ``buildings/<tile id>.geojson``: polygons of the pixels whose building probability exceeds
      ``threshold`` (at least ``min_area`` pixels), in the tile's CRS, each with its ``PolygonWKT_Pix``;
    - ``proposals.csv``: every tile's polygons in SpaceNet's submission format (``ImageId,BuildingId,
      PolygonWKT_Pix,Confidence``; the confidence is the polygon's mean probability), ready for
      ``python -m lightning_app.evaluate spacenet-buildings --truth TRUTH.csv --proposal proposals.csv``;

    for roads (SpaceNet 3 data), with ``extraction`` (threshold, small objects, skeleton, sknw graph):

    - ``masks/<tile id>.tif``: the cleaned road mask (uint8, 1 road) the skeleton is taken from;
    - ``graphs/<tile id>.geojson``: the road graph's edges as LineStrings in the tile's CRS, each with its
      ``WKT_Pix`` and ``length_m``;
    - ``proposals.csv``: SpaceNet 3's submission format (``ImageId,WKT_Pix``, ``LINESTRING EMPTY`` for a
      tile without roads), ready for ``python -m lightning_app.evaluate spacenet-roads``.

    Args:
        output_dir: folder of the outputs; default ``predictions/`` in the run's log folder.
        threshold: building probability above which a pixel is building.
        min_area: smallest building polygon written, in pixels (the evaluator applies each challenge's own
            limit).
        extraction: how road probabilities become road lines (:class:`RoadExtraction`; its defaults when
            not given).
    """

    def __init__(
        self,
        output_dir: str | None = None,
        threshold: float = 0.5,
        min_area: float = 0.0,
        extraction: RoadExtraction | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.threshold = threshold
        self.min_area = min_area
        self.extraction = extraction or RoadExtraction()
        # per predict run
        self.folder: Path | None = None
        self.target = "buildings"
        self.dataset: SpaceNetDataset | None = None
        self.assembler: TileAssembler | None = None
        self.rows: dict[str, list[tuple]] = {}

    @override
    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(trainer.datamodule, SpaceNetDataModule):
            raise UserInputError("SpaceNetPredictionWriter needs the SpaceNet data module's predict data")
        self.folder = Path(self.output_dir or Path(trainer.log_dir or ".") / "predictions")
        self.target = trainer.datamodule.target
        self.dataset = trainer.predict_dataloaders.dataset
        self.assembler = TileAssembler(self.dataset)
        self.rows: dict[str, list[tuple]] = {}

    @override
    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        for index, window_prediction in zip(batch_indices, prediction.float().cpu().numpy(), strict=True):
            window = self.dataset.windows[index]
            stitched = self.assembler.add(window, window_prediction)
            if stitched is not None:
                self._write_tile(self.dataset.reader.tiles[window.tile], stitched)

    def _write_tile(self, tile: Tile, probabilities) -> None:
        tile_id, info = tile.pair.tile_id, tile.info
        write_geotiff(self.folder / "probabilities" / f"{tile_id}.tif", probabilities, info)
        foreground = building_probability(probabilities)
        if self.target == "roads":
            self.rows[tile_id] = self._write_roads(tile_id, info, foreground)
            return
        polygons = scored_polygons(foreground, self.threshold, self.min_area)
        write_polygons_geojson(
            self.folder / "buildings" / f"{tile_id}.geojson", [p for p, _ in polygons], info
        )
        self.rows[tile_id] = proposal_rows(tile_id, polygons)

    def _write_roads(self, tile_id: str, info: RasterInfo, road: np.ndarray) -> list[tuple]:
        mask = self.extraction.mask(road)
        write_geotiff(self.folder / "masks" / f"{tile_id}.tif", mask.astype(np.uint8), info)
        lines = self.extraction.mask_lines(mask)
        lengths = [line.length for line in MetricFrame.of_tile(info).pixels_to_metres(lines)]
        properties = [{"id": i, "WKT_Pix": line.wkt, "length_m": length}
                      for i, (line, length) in enumerate(zip(lines, lengths, strict=True))]  # fmt: skip
        write_features_geojson(self.folder / "graphs" / f"{tile_id}.geojson", lines, info, properties)
        return road_rows(tile_id, lines)

    @override
    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.assembler.incomplete:
            raise UserInputError(
                f"tiles {self.assembler.incomplete[:5]} were only partly predicted: with several processes, "
                "predict with data.eval_tiling=pad (one window per tile)"
            )
        rows = self.rows
        if dist.is_available() and dist.is_initialized():
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, rows)
            rows = {tile_id: r for part in gathered for tile_id, r in part.items()}  # DDP repeats pad samples
        if trainer.is_global_zero:
            columns = ROAD_COLUMNS if self.target == "roads" else PROPOSAL_COLUMNS
            write_proposal_csv(
                self.folder / "proposals.csv", [row for t in sorted(rows) for row in rows[t]], columns
            )
