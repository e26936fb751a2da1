"""Pure helpers: split ratios and counts, band maps, units, georeference."""

from __future__ import annotations

import numpy as np
import pytest

from axion.bands import parse_band_list
from axion.config.fields import parse_ratios
from axion.data.georef import georef_from_meta
from axion.data.prepare.bandmap import band_indexes
from axion.data.prepare.splits import assign_blocks, crosses_split, split_counts
from axion.data.units import declared_units, linear_to_db


@pytest.mark.parametrize("text", ["0.5,0.5,0.5", "1,0", "a,b,c", "-0.2,0.6,0.6", "nan,0.5,0.5"])
def test_parse_ratios_rejects(text: str):
    with pytest.raises(ValueError):
        parse_ratios(text)


def test_split_counts_keep_val_and_test_non_empty():
    assert split_counts(6, (0.8, 0.1, 0.1)) == [4, 1, 1]
    assert split_counts(3, (0.8, 0.1, 0.1)) == [1, 1, 1]
    assert split_counts(2, (0.8, 0.1, 0.1))[0] >= 1
    assert split_counts(10, (1.0, 0.0, 0.0)) == [10, 0, 0]
    assert split_counts(100, (0.8, 0.1, 0.1)) == [80, 10, 10]


def test_assign_blocks_deterministic_and_complete():
    blocks = [f"scene:{r}:{c}" for r in range(4) for c in range(5)]
    first = assign_blocks(blocks, (0.6, 0.2, 0.2), seed=3)
    assert first == assign_blocks(list(reversed(blocks)), (0.6, 0.2, 0.2), seed=3)
    assert sorted(first) == sorted(blocks)
    assert [list(first.values()).count(s) for s in ("train", "val", "test")] == [12, 4, 4]
    assert crosses_split("a", {"a", "b"}, {"a": "train", "b": "test"})
    assert not crosses_split("a", {"a", "b"}, {"a": "train", "b": "train"})


def test_band_map_defaults_and_explicit():
    assert band_indexes(12, None)[0] == (2, 3, 4, 8)
    assert band_indexes(13, None)[0] == (2, 3, 4, 8)
    assert band_indexes(4, parse_band_list("b2,B03,b4,B8"))[0] == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="--s2-bands"):
        band_indexes(4, None)
    with pytest.raises(ValueError, match="no B08"):
        band_indexes(4, parse_band_list("B2,B3,B4,B8A"))
    with pytest.raises(ValueError, match="twice"):
        parse_band_list("B2,B02")


def test_units_and_georef():
    np.testing.assert_allclose(linear_to_db(np.array([1.0, 0.01, 0.0, -1.0])), [0.0, -20.0, -50.0, -50.0])
    assert declared_units({}) == ("dB", 1.0)
    assert declared_units({"units": {"s1": "linear", "s2": "reflectance"}}) == ("linear", 10000.0)
    with pytest.raises(ValueError, match="unknown S2 units"):
        declared_units({"units": {"s2": "DN"}})
    geo = georef_from_meta({"crs": "EPSG:32633", "transform": [10, 0, 404400, 0, -10, 5342400]})
    assert geo is not None and geo.rasterio_crs().to_epsg() == 32633 and geo.affine().c == 404400
    assert georef_from_meta({"split": "train"}) is None
    for bad in ({"crs": "EPSG:32633"}, {"crs": "not a crs", "transform": [1, 0, 0, 0, -1, 0]},
                {"crs": "EPSG:4326", "transform": [1, 0, 0, 0, 0, 0]}):  # fmt: skip
        with pytest.raises(ValueError):
            georef_from_meta(bad)
