"""The SpaceNet folder layouts users download, and the pairing of image and label files by tile id.

A layout names where the label files live below an AOI folder, which image products sit beside them,
and how a tile id is read from a file name, so ``RGB-PanSharpen_AOI_2_Vegas_img12.tif`` pairs with
``buildings_AOI_2_Vegas_img12.geojson``.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from lightning_app.errors import UserInputError


@dataclass(frozen=True)
class Layout:
    """One SpaceNet layout: ``label_folder`` and the ``products`` (image folders) below an AOI folder."""

    name: str
    target: str  # 'buildings' or 'roads'
    label_folder: str
    products: tuple[str, ...]
    tile_pattern: str  # regex whose groups, joined by '_', are the tile id
    example: str

    def tile_id(self, path: Path) -> str | None:
        match = re.search(self.tile_pattern, path.stem)
        return "_".join(match.groups()) if match else None

    def describe(self) -> str:
        return f"{self.name}: {self.example}"


_AOI = r"(AOI_\d+_[A-Za-z]+)"
LAYOUTS = (
    Layout(
        name="spacenet2_buildings",
        target="buildings",
        label_folder="geojson/buildings",
        products=("RGB-PanSharpen", "MUL-PanSharpen", "PAN", "MUL"),
        tile_pattern=_AOI + r".*_(img\d+)$",
        example="AOI_*_<City>_Train/{RGB-PanSharpen,MUL-PanSharpen,PAN}/*.tif + geojson/buildings/*.geojson",
    ),
    Layout(
        name="spacenet6_buildings",
        target="buildings",
        label_folder="geojson_buildings",
        products=("PS-RGB", "PS-RGBNIR", "SAR-Intensity", "PAN", "RGBNIR"),
        tile_pattern=_AOI + r".*_(\d+_\d+_tile_\d+)$",
        example="AOI_11_Rotterdam/{PS-RGB,PS-RGBNIR,SAR-Intensity,PAN}/*.tif + geojson_buildings/*.geojson",
    ),
    Layout(
        name="spacenet3_roads",
        target="roads",
        label_folder="geojson_roads",
        products=("PS-MS", "PS-RGB", "PAN", "MS"),
        tile_pattern=_AOI + r".*_(img\d+)$",
        example="AOI_*_<City>*/{PS-MS,PS-RGB}/*.tif + geojson_roads/*.geojson",
    ),
)


@dataclass(frozen=True)
class TilePair:
    """An image file and the label file of the same tile."""

    tile_id: str
    image: Path
    label: Path


@dataclass
class Discovery:
    """What was found below ``data_dir``: the layout, the image product, the paired tiles, and the files
    that have no partner (reported, never used silently)."""

    layout: Layout
    product: str
    pairs: list[TilePair]
    images_without_label: list[Path]
    labels_without_image: list[Path]

    def unpaired_report(self) -> str | None:
        parts = [
            f"{len(files)} {kind} (first: {', '.join(path.name for path in files[:3])})"
            for kind, files in (
                (f"{self.product} images without a label file", self.images_without_label),
                ("label files without an image", self.labels_without_image),
            )
            if files
        ]
        return "; ".join(parts) if parts else None


def aoi_folders(data_dir: Path, layout: Layout) -> list[Path]:
    """``data_dir`` itself or its ``AOI_*`` sub-folders that hold this layout's label folder."""
    candidates = [data_dir, *sorted(data_dir.glob("AOI_*"))]
    return [folder for folder in candidates if (folder / layout.label_folder).is_dir()]


def find_layout(data_dir: Path) -> tuple[Layout, list[Path]]:
    """The layout of ``data_dir`` and its AOI folders; an error listing the layouts and what was found."""
    if not data_dir.is_dir():
        raise UserInputError(f"data.data_dir {data_dir} is not a folder")
    for layout in LAYOUTS:
        folders = aoi_folders(data_dir, layout)
        if folders:
            return layout, folders
    found = sorted(path.name + ("/" if path.is_dir() else "") for path in data_dir.iterdir())
    known = "; ".join(layout.describe() for layout in LAYOUTS)
    raise UserInputError(
        f"data.data_dir {data_dir} does not look like a SpaceNet layout. Known layouts: {known}. "
        f"Found: {', '.join(found[:12]) or 'nothing'}{' ...' if len(found) > 12 else ''}"
    )


def _by_tile_id(layout: Layout, files: list[Path]) -> dict[str, Path]:
    named = {}
    for path in files:
        tile_id = layout.tile_id(path)
        if tile_id is None:
            raise UserInputError(
                f"{path}: no tile id in the file name (expected a name like those of {layout.name}: "
                f"{layout.example})"
            )
        if tile_id in named:
            raise UserInputError(
                f"tile id {tile_id} names two files, {named[tile_id]} and {path}: keep one of them (their "
                "outputs and scores would overwrite each other)"
            )
        named[tile_id] = path
    return named


def discover(data_dir: str | Path, product: str | None = None) -> Discovery:
    """Find the layout below ``data_dir`` and pair its ``product`` images (default: the layout's first
    product present) with their label files by tile id."""
    layout, folders = find_layout(Path(data_dir))
    present = [name for name in layout.products if any((folder / name).is_dir() for folder in folders)]
    chosen = product or (present[0] if present else layout.products[0])
    if chosen not in present:
        raise UserInputError(
            f"data.product={chosen!r}: no such image folder in {data_dir} ({layout.name}); "
            f"found products: {present or 'none'}; known: {list(layout.products)}"
        )
    images = _by_tile_id(layout, [p for folder in folders for p in sorted((folder / chosen).glob("*.tif"))])
    labels = _by_tile_id(
        layout, [p for folder in folders for p in sorted((folder / layout.label_folder).glob("*.geojson"))]
    )
    paired = sorted(images.keys() & labels.keys())
    return Discovery(
        layout=layout,
        product=chosen,
        pairs=[TilePair(tile_id, images[tile_id], labels[tile_id]) for tile_id in paired],
        images_without_label=[images[t] for t in sorted(images.keys() - labels.keys())],
        labels_without_image=[labels[t] for t in sorted(labels.keys() - images.keys())],
    )
