"""The results page of ``visualize`` in a real browser (headless Chromium): sorting and the filter."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from axion.viz.page import results_page
from tests.browser import probe_page

#: PSNR of opt_v2 and opt_v3 per tile: c improves most, a got worse, d has no finite score.
PSNR = {"a": (30.0, 29.5), "b": (25.0, 26.0), "c": (20.0, 24.0), "d": (22.0, math.nan), "e": (28.0, 27.0)}


def _rows() -> list[dict]:
    return [
        {"name": name, "opt_v2_psnr": v2, "opt_v3_psnr": v3, "opt_v2_ssim": 0.8, "opt_v3_ssim": 0.82}
        for name, (v2, v3) in PSNR.items()
    ]


def _summary() -> dict:
    return {
        "checkpoint": "run/best_model.pt",
        "epoch": 4,
        "split": "test",
        "tiles": len(PSNR),
        "metrics": {
            "opt_v2": {"psnr": {"mean": 25.0}, "ssim": {"mean": 0.8}},
            "opt_v3": {"psnr": {"mean": 26.6}, "ssim": {"mean": 0.82}},
        },
    }


def _write(folder: Path, terramind_examples: Path) -> Path:
    """The page with a real true-colour window as the panel of tiles a and c (b, d, e have none)."""
    import matplotlib.image as mpimg
    import rasterio

    with rasterio.open(terramind_examples / "S2L2A" / "282D_485L_3_3.tif") as src:
        rgb = src.read([4, 3, 2], window=((0, 64), (0, 64))).astype(np.float32).transpose(1, 2, 0)
    (folder / "tiles").mkdir()
    for name in ("a", "c"):
        mpimg.imsave(folder / "tiles" / f"{name}.png", np.clip(rgb / 3000, 0, 1))
    panels = {"a": "tiles/a.png", "c": "tiles/c.png"}
    page = folder / "index.html"
    page.write_text(results_page(_summary(), _rows(), panels, []), encoding="utf-8")
    return page


def test_tiles_sort_by_gain_and_filter_to_the_worse(tmp_path: Path, terramind_examples: Path) -> None:
    seen = probe_page(_write(tmp_path, terramind_examples))
    assert seen["errors"] == []
    assert seen["initial"] == ["c", "b", "a", "e", "d"]  # largest gain first, no score last
    assert seen["ascending"] == ["e", "a", "b", "c", "d"]
    assert seen["by_name"] == ["a", "b", "c", "d", "e"]
    assert seen["worse"] == ["a", "e"] and seen["worse_count"] == "2 of 5 tiles shown"
    assert seen["count"] == "5 of 5 tiles shown"
    assert sorted(i["src"] for i in seen["images"]) == ["tiles/a.png", "tiles/c.png"]
    assert all(i["loaded"] for i in seen["images"])


def test_the_address_chooses_the_first_order_and_filter(tmp_path: Path, terramind_examples: Path) -> None:
    seen = probe_page(_write(tmp_path, terramind_examples), "sort=gain-asc&worse=1")
    assert seen["errors"] == [] and seen["initial"] == ["e", "a"]


def test_a_missing_panel_is_reported_as_an_error(tmp_path: Path, terramind_examples: Path) -> None:
    page = _write(tmp_path, terramind_examples)
    (tmp_path / "tiles" / "c.png").unlink()
    seen = probe_page(page)
    assert any("c.png" in error for error in seen["errors"]), seen["errors"]


def test_the_page_loads_nothing_from_the_network(tmp_path: Path, terramind_examples: Path) -> None:
    text = _write(tmp_path, terramind_examples).read_text()
    assert "http://" not in text and "https://" not in text
    assert re.findall(r'(?:src|href)="([^"]*)"', text) == ["tiles/c.png", "tiles/a.png"]
    assert "<style>" in text and "<script>" in text


def test_the_summary_says_on_how_many_tiles_opt_v3_wins() -> None:
    text = results_page(_summary(), _rows(), {}, [])
    psnr_row = re.search(r"<tr><td>PSNR</td>.*?</tr>", text).group(0)
    assert "25.0000" in psnr_row and "26.6000" in psnr_row and 'class="num better">1.6000' in psnr_row
    assert "2 of 4 tiles" in psnr_row  # a and e got worse; d has no finite score
    assert "5 of 5 tiles" in re.search(r"<tr><td>SSIM</td>.*?</tr>", text).group(0)
    assert text.count('class="tile"') == 5 and text.count("no panel") == 5
