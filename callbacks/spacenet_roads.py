"""APLS on whole validation tiles during training, with image | truth graph | predicted graph panels."""

import lightning.pytorch as pl
import networkx as nx
import numpy as np
import rasterio.features
import shapely
import torch
from affine import Affine
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torchmetrics.aggregation import MeanMetric
from typing_extensions import override

from callbacks.inspection import tensorboard
from callbacks.mosaic import Caption, Panel, mosaic_figure
from callbacks.spacenet_tiles import FullTileEvaluation, predict_full_tiles, tile_panels
from datamodules.spacenet.assembly import building_probability
from datamodules.spacenet.roads import AplsSettings, MetricFrame, RoadExtraction, apls
from datamodules.spacenet.roads.tile_graphs import geojson_file_graph, pixel_graph
from lightning_app.dashboard_logger import dashboard_tag
from lightning_app.errors import UserInputError

TRUTH_COLOUR = (0.0, 1.0, 1.0)
PROPOSAL_COLOUR = (1.0, 0.2, 0.2)
NODE_COLOUR = (1.0, 1.0, 0.0)


def draw_lines(panel: np.ndarray, lines: list, step: int, colour: tuple, nodes: bool = False) -> np.ndarray:
    """``panel`` (H', W', 3) with ``lines`` (full-tile pixel coordinates) drawn on it, one panel pixel wide,
    and their ends as dots when ``nodes``."""
    shapes = [(line, 1) for line in lines]
    if nodes:
        shapes += [(shapely.Point(line.coords[i]).buffer(1.5 * step), 2) for line in lines for i in (0, -1)]
    if not shapes:
        return panel
    drawn = rasterio.features.rasterize(
        shapes, out_shape=panel.shape[:2], transform=Affine.scale(step), all_touched=True, dtype=np.uint8
    )
    out = panel.copy()
    out[drawn == 1] = colour
    out[drawn == 2] = NODE_COLOUR
    return out


class SpaceNetRoadEvaluation(FullTileEvaluation):
    """At the end of validation epochs, predicts every validation tile whole (stitching windows, whatever
    the validation samples are), extracts the road graph from the road probability (``extraction``:
    threshold, small objects, skeleton, sknw) and scores it against the tile's label file with APLS
    (:mod:`datamodules.spacenet.roads.apls`, CosmiQ's rules; ``scoring``), building both graphs as
    ``python -m lightning_app.evaluate spacenet-roads`` does from the prediction writer's CSV, so the two
    agree. Logs ``val/apls`` and its two directions ``val/apls_truth_onto_proposal`` and
    ``val/apls_proposal_onto_truth``: the mean over the tiles with truth roads (of every DDP process),
    and a TensorBoard figure ``Validation/road_graphs`` of image | truth graph | probability with the
    predicted graph, for the first ``panels`` tiles.

    Args:
        every_n_epochs: run every n validation epochs (never during the sanity check).
        max_tiles: score only the first tiles of the validation split; null scores all.
        extraction: how a probability map becomes road lines (:class:`RoadExtraction`).
        scoring: the APLS parameters (:class:`AplsSettings`: ``linestring_delta``, ``max_snap_dist``,
            ``min_path_length``, ``rules``; ``weight`` must be ``length``: predicted lines carry no
            speeds).
        panels: tiles drawn each time; 0 draws none.
        batch_size: windows predicted at once.
    """

    target = "roads"

    def __init__(
        self,
        every_n_epochs: int = 1,
        max_tiles: int | None = None,
        extraction: RoadExtraction | None = None,
        scoring: AplsSettings | None = None,
        panels: int = 4,
        batch_size: int = 4,
    ) -> None:
        super().__init__(every_n_epochs, max_tiles, panels, batch_size)
        self.extraction = extraction or RoadExtraction()
        self.scoring = scoring or AplsSettings()
        if self.scoring.weight != "length":
            raise UserInputError(
                f"SpaceNetRoadEvaluation: scoring.weight={self.scoring.weight!r}, but predicted road lines "
                "carry no speeds; use weight: length (score travel times with python -m "
                "lightning_app.evaluate spacenet-roads --weight travel_time)"
            )
        self.truth_graphs: dict[int, nx.MultiGraph] = {}  # built once per run, with self.truth

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.due(trainer):
            return
        datamodule = trainer.datamodule
        dataset, tiles, shown = self.validation_tiles(trainer)
        means = {name: MeanMetric().to(pl_module.device) for name in ("apls", "truth_onto_proposal",
                                                                          "proposal_onto_truth")}  # fmt: skip
        rows = []
        for tile, tile_probabilities in predict_full_tiles(
            trainer, pl_module, dataset, tiles, self.batch_size
        ):
            road = building_probability(tile_probabilities)
            frame = MetricFrame.of_tile(dataset.reader.tiles[tile].info)
            if tile not in self.truth:
                self.truth[tile] = datamodule.truth_geometries(tile)
                self.truth_graphs[tile] = geojson_file_graph(
                    dataset.reader.tiles[tile].pair.label, frame, self.scoring.corrected
                )
            lines = self.extraction.lines(road)
            score = apls(self.truth_graphs[tile], pixel_graph(lines, frame), self.scoring)
            if score is not None:
                for name, value in (("apls", score.total), ("truth_onto_proposal", score.truth_onto_proposal),
                                    ("proposal_onto_truth", score.proposal_onto_truth)):  # fmt: skip
                    means[name].update(value)
            if tile in shown:
                rows.append(self._panels(datamodule, dataset, tile, road, lines, score))
        values = {name: metric.compute() for name, metric in means.items()}  # over the tiles of every process
        if torch.isnan(values["apls"]):
            rank_zero_warn("SpaceNetRoadEvaluation: no validation tile has a truth road; no APLS logged")
        else:
            for name, value in values.items():
                pl_module.log("val/apls" if name == "apls" else f"val/apls_{name}", value, sync_dist=True)
        self._log_figure(trainer, rows)

    def _panels(self, datamodule, dataset, tile: int, road: np.ndarray, lines: list, score) -> list[Panel]:
        rgb, _, step = tile_panels(datamodule, dataset, tile)
        truth = draw_lines(rgb * 0.6, self.truth[tile], step, TRUTH_COLOUR, nodes=True)
        probability = np.repeat(road[::step, ::step, None], 3, axis=2).astype(np.float32)
        predicted = draw_lines(probability * 0.7, lines, step, PROPOSAL_COLOUR, nodes=True)
        result = "no truth road" if score is None else f"APLS {score.total:.2f}"
        captions = [dataset.reader.tiles[tile].pair.tile_id, "truth graph", f"predicted graph, {result}"]
        return [Panel(p, Caption(c)) for p, c in zip((rgb, truth, predicted), captions, strict=True)]

    @rank_zero_only
    def _log_figure(self, trainer: pl.Trainer, rows: list[list[Panel]]) -> None:
        writer = tensorboard(trainer)
        if writer is None or not rows:
            return
        title = "val tiles: image | truth graph (cyan) | road probability with the predicted graph (red)"
        writer.add_figure(
            dashboard_tag("val/road_graphs"), mosaic_figure(title, rows), global_step=trainer.global_step
        )
