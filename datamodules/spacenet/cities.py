"""The one-hot city channels of SpaceNet 3 (selim_sef's ``ohe_city``, used in Macura's 12-channel runs):
four planes appended to a tile's bands, 1 in the plane of the tile's city and 0 in the others, so one
network can learn all four cities' looks."""

import numpy as np

from lightning_app.errors import UserInputError

CITIES = ("AOI_2_Vegas", "AOI_3_Paris", "AOI_4_Shanghai", "AOI_5_Khartoum")


def city_index(tile_id: str) -> int:
    """The position of the tile's city in ``CITIES``; an error naming the tile when it has none."""
    for index, city in enumerate(CITIES):
        if city in tile_id:
            return index
    raise UserInputError(
        f"data.city_channels: tile {tile_id!r} names none of the SpaceNet 3 cities {', '.join(CITIES)}; "
        "set city_channels: false for other data"
    )


def write_city_planes(tile_id: str, out: np.ndarray) -> None:
    """Fill ``out`` (4, height, width): ones in the plane of the tile's city, zeros elsewhere."""
    out[...] = 0.0
    out[city_index(tile_id)] = 1.0
