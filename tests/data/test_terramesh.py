"""TerraMesh read natively: the layout built from the five terramind-examples scenes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from axion.data.badsamples import BadSample
from axion.data.sharddata import ShardDataset, is_streamed, open_source
from axion.errors import DataError
from tests.terramesh import write_tar, write_terramesh, zarr_zip

SCENES = ("282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3")


@pytest.fixture(scope="module")
def terramesh(terramind_examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("terramesh") / "TerraMesh"
    return write_terramesh(terramind_examples, root, {"train": list(SCENES[:3]), "val": list(SCENES[3:])})


def test_samples_are_the_scenes_bands_with_the_cloud_mask_as_invalid_pixels(
    terramesh: Path, terramind_examples: Path
) -> None:
    assert is_streamed(terramesh) and not is_streamed(terramind_examples)
    dataset = ShardDataset(open_source(terramesh, "rtc"), "val", s1_product="rtc")
    assert len(dataset) == 2
    samples = list(dataset)
    assert [s["name"] for s in samples] == [f"majortom_{scene}" for scene in SCENES[3:]]
    for sample, scene in zip(samples, SCENES[3:], strict=True):
        with rasterio.open(terramind_examples / "S2L2A" / f"{scene}.tif") as src:
            assert src.count == 12
            b2348 = np.stack([src.read(i) for i in (2, 3, 4, 8)]).astype(np.float32)
        with rasterio.open(terramind_examples / "S1RTC" / f"{scene}.tif") as src:
            s1 = src.read().astype(np.float32)
        assert sample["size"] == (224, 224)  # smaller than the 256 px crop: whole
        np.testing.assert_array_equal(sample["target"][:, :224, :224].numpy(), b2348)
        np.testing.assert_allclose(sample["s1"][:, :224, :224].numpy(), s1, rtol=1e-6)
        mask = sample["mask"][0].numpy()
        assert (mask[:32, :32] == 0).all() and mask[32:224, 32:224].all()  # cloud: invalid target pixels


def test_the_s1_product_picks_the_folder_and_a_missing_one_is_refused(terramesh: Path) -> None:
    with pytest.raises(DataError, match="no S1GRD shard beside the S2L2A shards .found S1RTC.; --s1-product"):
        open_source(terramesh, "grd")
    (sample,) = [s for s in ShardDataset(open_source(terramesh, "rtc"), "val", max_samples=1)]
    assert not isinstance(sample, BadSample)


def test_broken_and_misaligned_samples_are_bad_samples(terramesh: Path, tmp_path: Path) -> None:
    root = tmp_path / "TerraMesh"
    shutil.copytree(terramesh, root)
    s1 = root / "val" / "S1RTC" / "majortom_shard_000001.tar"
    write_tar(
        s1,
        {
            f"majortom_{SCENES[3]}.zarr.zip": b"not a zip",
            "majortom_other.zarr.zip": zarr_zip(np.zeros((2, 8, 8), np.float32), ["vv", "vh"]),
        },
    )
    items = list(ShardDataset(open_source(root, "rtc"), "val"))
    assert [type(i) for i in items] == [BadSample, BadSample]
    assert items[0].sample == f"majortom_{SCENES[3]}" and "TerraMesh sample" in items[0].reason
    assert f"holds majortom_other where S2L2A holds majortom_{SCENES[4]}" in items[1].reason


def test_check_reads_every_terramesh_sample(terramesh: Path, prepare_cli) -> None:  # noqa: ANN001
    result = prepare_cli("--check", terramesh)
    assert result.exit_code == 0, result.output
    assert f"5 tiles checked under {terramesh}: all good" in result.output


@pytest.mark.slow
def test_train_and_evaluate_on_the_terramesh_layout(terramesh: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from axion.cli import app
    from tests.engine.conftest import FAST

    runner, run = CliRunner(), tmp_path / "run"
    args = ["stage3", "train", "--data-dir", str(terramesh), "--output-dir", str(run), "--s1-product", "rtc"]
    result = runner.invoke(app, [*args, *FAST, "--epochs", "1", "--grad-accum", "1", "--crop-size", "64"])
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert row["train_samples"] == 3 and row["train_bad_samples"] == 0 and row["val_bad_samples"] == 0
    out = tmp_path / "results"
    args = [
        "stage3",
        "evaluate",
        "--checkpoint",
        str(run / "checkpoint_epoch_1.pt"),
        "--data-dir",
        str(terramesh),
    ]
    result = runner.invoke(
        app, [*args, "--split", "val", "--lpips-weight", "0", "--output-dir", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["tiles"] == 2
