"""``axion stage3 visualize`` turns evaluation results into readable PNG figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.commands.conftest import run_cli

pytestmark = pytest.mark.slow


def _image(path: Path) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    return mpimg.imread(path)


def test_writes_panels_curves_and_distributions(evaluation, tmp_path: Path) -> None:
    results, _ = evaluation
    out = tmp_path / "viz"
    result = run_cli(f"stage3 visualize --results {results} --output-dir {out}")
    assert result.exit_code == 0, result.output
    tiles = sorted(p.stem for p in (results / "tiles").glob("*.npz"))
    panels = [out / "tiles" / f"{name}.png" for name in tiles]
    charts = [out / "training_curves.png", out / "metric_distributions.png"]
    for png in panels + charts:
        assert png.is_file(), png
        assert png.stat().st_size > 20_000, f"{png} is suspiciously small"
        image = _image(png)[..., :3]
        assert image.shape[0] > 300 and image.shape[1] > 300
        # Real content, not a blank canvas: contrast, and many colours (imagery) or some (line charts).
        colours = len(np.unique(image.reshape(-1, 3), axis=0))
        assert image.std() > 0.05 and colours > (2000 if png in panels else 100), (png, colours)


def test_not_a_results_directory_is_one_line(tmp_path: Path) -> None:
    result = run_cli(f"stage3 visualize --results {tmp_path} --output-dir {tmp_path / 'viz'}")
    assert result.exit_code == 2
    assert "summary.json: missing" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "viz").exists()


def test_leftovers_of_a_killed_visualize_are_removed(evaluation, tmp_path: Path) -> None:
    from tests.conftest import killed_staging_folder, killed_writer_leftover

    results, _ = evaluation
    out = tmp_path / "viz"
    leftovers = [killed_staging_folder(out, "visualize"), killed_writer_leftover(out / "training_curves.png")]
    result = run_cli(f"stage3 visualize --results {results} --output-dir {out} --max-tiles 1")
    assert result.exit_code == 0, result.output
    assert not any(path.exists() for path in leftovers)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert (out / "training_curves.png").stat().st_size > 20_000


def test_writes_a_results_page_that_a_browser_shows_whole(evaluation, tmp_path: Path) -> None:
    from axion.records.results import load_results
    from tests.browser import probe_page

    results, _ = evaluation
    out = tmp_path / "viz"
    result = run_cli(f"stage3 visualize --results {results} --output-dir {out} --max-tiles 1")
    assert result.exit_code == 0, result.output
    assert f"Results page: {out / 'index.html'}" in result.output
    loaded = load_results(results)
    rows = loaded.rows
    assert len(rows) >= 2  # with --max-tiles 1, one tile has a panel and the others only their scores
    seen = probe_page(out / "index.html")
    assert seen["errors"] == []
    gains = {r["name"]: r["opt_v3_psnr"] - r["opt_v2_psnr"] for r in rows}
    assert sorted(seen["initial"]) == sorted(gains)  # every tile, panel or not
    assert seen["initial"] == sorted(gains, key=lambda name: (-gains[name], name))
    assert seen["ascending"] == sorted(gains, key=lambda name: (gains[name], name))
    assert seen["worse"] == sorted(name for name, gain in gains.items() if gain < 0)
    srcs = {i["src"] for i in seen["images"]}
    panels = {f"tiles/{npz.stem}.png" for npz in loaded.tiles[:1]}
    assert srcs == panels | {"training_curves.png", "metric_distributions.png"}
    assert all(i["loaded"] for i in seen["images"])
