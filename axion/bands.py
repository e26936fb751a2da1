"""Band order, units and normalisation statistics: the one source of truth.

Tiles store Sentinel-1 backscatter in dB and Sentinel-2 L2A as reflectance x 10000
("tile units", the units TerraMind was pretrained on). The model sees both
standardised with TerraMind's pretraining statistics; everything outside the
model (losses, metrics, files) works in tile units.
"""

from __future__ import annotations

import re

# --- Tile schema -------------------------------------------------------------
#: NPZ keys of the two SAR channels, in model channel order (VV, VH).
S1_KEYS: tuple[str, ...] = ("s1_vv", "s1_vh")
#: NPZ keys of the four optical channels, in model channel order (B, G, R, NIR).
S2_KEYS: tuple[str, ...] = ("s2_b2", "s2_b3", "s2_b4", "s2_b8")
#: Every key a training tile carries.
TILE_KEYS: tuple[str, ...] = S1_KEYS + S2_KEYS
#: Human names of the optical channels, for tables and plots.
OPTICAL_BANDS: tuple[str, ...] = ("B2", "B3", "B4", "B8")
#: Indices of red, green, blue inside the four optical channels (true colour).
RGB_INDICES: tuple[int, int, int] = (2, 1, 0)

#: Sentinel-2 reflectance is stored as integers scaled by this factor.
REFLECTANCE_SCALE: float = 10000.0
#: Units a tile's JSON may declare; anything else is refused.
S1_UNITS = "dB"
S2_UNITS = "reflectance*10000"

# --- TerraMind's view of the bands -------------------------------------------
#: TerraMind's S2L2A modality: 12 bands in this order.
S2L2A_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06",
    "B07", "B08", "B8A", "B09", "B11", "B12",
)  # fmt: skip
#: Where B2, B3, B4, B8 sit inside S2L2A.
S2L2A_SLOTS: tuple[int, ...] = (1, 2, 3, 7)
#: Their S2L2A names (B02, B03, B04, B08): what a tile keeps from a Sentinel-2 product.
KEPT_S2_BANDS: tuple[str, ...] = tuple(S2L2A_BANDS[i] for i in S2L2A_SLOTS)

#: Pretraining statistics (terratorch's ``standardize=True`` values).
S2L2A_MEAN: tuple[float, ...] = (
    1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975,
    2987.011, 3083.234, 3132.22, 3162.988, 2424.884, 1857.648,
)  # fmt: skip
S2L2A_STD: tuple[float, ...] = (
    2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926,
    1820.257, 1871.918, 1753.829, 1797.379, 1434.261, 1334.311,
)  # fmt: skip
S1GRD_MEAN: tuple[float, ...] = (-12.599, -20.293)
S1GRD_STD: tuple[float, ...] = (5.195, 5.890)
S1RTC_MEAN: tuple[float, ...] = (-10.93, -17.329)
S1RTC_STD: tuple[float, ...] = (4.391, 4.459)

#: Sentinel-1 products TerraMind knows: ground range detected, radiometrically terrain corrected.
S1_PRODUCTS: tuple[str, ...] = ("grd", "rtc")
#: TerraMind's modality name and pretraining statistics (mean, std) of each S1 product.
S1_MODALITY: dict[str, str] = {"grd": "S1GRD", "rtc": "S1RTC"}
S1_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "grd": (S1GRD_MEAN, S1GRD_STD),
    "rtc": (S1RTC_MEAN, S1RTC_STD),
}

#: Statistics of the four optical channels we carry, in channel order.
OPTICAL_MEAN: tuple[float, ...] = tuple(S2L2A_MEAN[i] for i in S2L2A_SLOTS)
OPTICAL_STD: tuple[float, ...] = tuple(S2L2A_STD[i] for i in S2L2A_SLOTS)

#: Height and width must be multiples of TerraMind's patch size.
PATCH_SIZE: int = 16


def to_reflectance(optical):  # noqa: ANN001, ANN201 - numpy arrays and torch tensors alike
    """Tile units (reflectance x 10000) -> reflectance."""
    return optical / REFLECTANCE_SCALE


# --- Spectral description of the optical channels (STAC eo:bands) --------------
#: Common names of B2, B3, B4, B8 (STAC ``eo:common_name``).
OPTICAL_COMMON_NAMES: tuple[str, ...] = ("blue", "green", "red", "nir")
#: Sentinel-2 centre wavelengths and full widths at half maximum of B2, B3, B4, B8, micrometres.
OPTICAL_WAVELENGTHS_UM: tuple[float, ...] = (0.49, 0.56, 0.665, 0.842)
OPTICAL_FWHM_UM: tuple[float, ...] = (0.098, 0.045, 0.038, 0.145)


# --- Band names as users type them ---------------------------------------------
_BAND = re.compile(r"^B?(\d{1,2})(A?)$")


def normalise_band(name: str) -> str:
    """``b2``, ``B2`` and ``B02`` all become ``B02``; ``B8A`` stays ``B8A``; ``ValueError`` otherwise."""
    match = _BAND.match(name.strip().upper())
    if (
        not match
        or not 1 <= int(match.group(1)) <= 12
        or (match.group(2) and match.group(1).lstrip("0") != "8")
    ):
        raise ValueError(f"{name.strip()!r} is not a Sentinel-2 band name (B01..B12, B8A)")
    return f"B{int(match.group(1)):02d}{match.group(2)}"


def parse_band_list(text: str) -> tuple[str, ...]:
    """``"B1,B2,..."`` to normalised names; ``ValueError`` on a bad or repeated name."""
    names = tuple(normalise_band(part) for part in text.split(",") if part.strip())
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"band {repeated[0]} is listed twice")
    return names
