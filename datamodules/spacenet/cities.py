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


def city_planes(tile_id: str, height: int, width: int) -> np.ndarray:
    """(4, height, width) float32: ones in the plane of the tile's city, zeros elsewhere."""
    planes = np.zeros((len(CITIES), height, width), dtype=np.float32)
    planes[city_index(tile_id)] = 1.0
    return planes
