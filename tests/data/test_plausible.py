"""Plausible values: real Sentinel-1/2 windows pass; each kind of impossible value is refused, unusual ones warned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from axion.bands import S2L2A_SLOTS
from axion.data.plausible import optical_findings, s1_findings

SCENES = ("282D_485L_3_3", "609U_541L_3_0", "637U_59R_1_3")


@pytest.fixture(scope="module")
def windows(terramind_examples: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(S1 dB (2, 64, 64), optical tile units (4, 64, 64)) windows of three real scenes."""
    out = []
    for scene in SCENES:
        with rasterio.open(terramind_examples / "S1RTC" / f"{scene}.tif") as src:
            s1 = src.read()[:, 64:128, 64:128].astype(np.float32)
        with rasterio.open(terramind_examples / "S2L2A" / f"{scene}.tif") as src:
            optical = src.read([i + 1 for i in S2L2A_SLOTS])[:, 64:128, 64:128].astype(np.float32)
        out.append((s1, optical))
    return out


def test_real_windows_have_no_findings(windows) -> None:
    for s1, optical in windows:
        assert s1_findings(s1) == [] and optical_findings(optical) == []


def _only(findings, needle: str, fatal: bool = True) -> None:
    assert len(findings) == 1 and needle in str(findings[0]) and findings[0].fatal is fatal, findings


def test_s1_impossible_values_are_fatal(windows) -> None:
    s1 = windows[0][0]
    _only(s1_findings(10.0 ** (s1 / 10.0)), "linear power")  # the same scene as linear power
    spiked = s1.copy()
    spiked[0, 10:20, 10:20] = 1e30
    _only(s1_findings(spiked), "outside -100..60 dB")
    nodata = s1.copy()
    nodata[1, :5] = -9999.0
    _only(s1_findings(nodata), "outside -100..60 dB")
    flat = s1.copy()
    flat[1] = -18.0
    _only(s1_findings(flat), "S1 VH is constant")


def test_s1_unusual_values_are_warnings(windows) -> None:
    s1 = windows[0][0].copy()
    s1[0, :4] = -70.0  # 6 % of VV far below the usual floor, still a possible value
    _only(s1_findings(s1), "usual -50..30 dB", fatal=False)
    valid = np.ones(s1.shape[1:], bool)
    valid[:4] = False  # masked as invalid, so no longer counted
    assert s1_findings(s1, valid) == []


def test_optical_impossible_values_are_fatal(windows) -> None:
    optical = windows[0][1]
    _only(optical_findings(np.zeros_like(optical)), "every value is 0")
    _only(optical_findings(optical - 3000.0), "negative reflectance")
    spiked = optical.copy()
    spiked[2, 30:40, 30:40] = 1e30
    _only(optical_findings(spiked, what="opt_v2"), "opt_v2 above the reflectance ceiling")
    _only(optical_findings(optical / 10000.0), "looks like reflectance 0-1")
    flat = optical.copy()
    flat[3] = 2500.0
    _only(optical_findings(flat), "S2 B8 is constant")


def test_optical_unusual_values_are_warnings(windows) -> None:
    optical = windows[0][1].copy()
    optical[0, 0, :8] = -20.0  # slightly negative B2: atmospheric correction noise
    _only(optical_findings(optical), "slightly negative", fatal=False)
    bright = windows[0][1].copy()
    bright[:, :8] = 14000.0  # 12 % of the pixels above reflectance 1.2
    _only(optical_findings(bright), "above reflectance 1.2", fatal=False)
    holes = windows[0][1].copy()
    holes[:, :4] = 0  # unmasked no-data
    _only(optical_findings(holes), "0 in every band", fatal=False)


@pytest.mark.parametrize(
    ("shift", "scale"), [(0.0, 1.0), (-150.0, 1.0), (0.0, 3.0), (0.0, 1e-4), (-20.0, 0.01), (12500.0, 0.0)]
)
def test_float32_values_are_judged_as_in_float64(shift: float, scale: float) -> None:
    """Findings are taken in the array's float32 (no float64 copy): the same findings, numbers included."""
    rng = np.random.default_rng(5)
    optical = (rng.uniform(0.0, 9000.0, size=(4, 24, 24)) * scale + shift).astype(np.float32)
    s1 = (rng.normal(-12.0, 6.0, size=(2, 24, 24)) * scale + shift / 100).astype(np.float32)
    valid = np.ones((24, 24), np.uint8)
    valid[:5] = 0
    for mask in (None, valid):
        assert optical_findings(optical, mask) == optical_findings(optical.astype(np.float64), mask)
        assert s1_findings(s1, mask) == s1_findings(s1.astype(np.float64), mask)
    assert optical_findings(optical) or s1_findings(s1) or (shift, scale) == (0.0, 1.0)
