"""``axion.Stage3Pipeline`` on real windows: forms in and out, tiling as scene mode, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from axion.errors import ConfigError, DataError
from tests.conftest import REPO, fusion_checkpoint
from tests.pipeline.conftest import COLS, ROWS
from tests.scenes import read, write_raster


def test_import_axion_does_not_import_torch() -> None:
    code = (
        "import sys, axion\n"
        "assert 'torch' not in sys.modules, 'import axion imported torch'\n"
        "from axion import Stage3Pipeline\n"
        "assert 'torch' not in sys.modules, 'from axion import Stage3Pipeline imported torch'\n"
        "assert 'Stage3Pipeline' in dir(axion)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_unknown_attribute_is_an_attribute_error() -> None:
    import axion

    with pytest.raises(AttributeError, match="Stage4Pipeline"):
        axion.Stage4Pipeline  # noqa: B018


def test_numpy_window_of_any_size_gives_numpy_opt_v3(pipe, window) -> None:
    s1, opt_v2 = window["s1"].copy(), window["opt_v2"]
    s1[:, 5:9, 60:70] = np.nan  # invalid S1 pixels are invalid in the output
    opt_v3 = pipe(s1, opt_v2)
    assert isinstance(opt_v3, np.ndarray) and opt_v3.dtype == np.float32
    assert opt_v3.shape == (4, ROWS, COLS)
    hole = np.zeros((ROWS, COLS), bool)
    hole[5:9, 60:70] = True
    assert np.isnan(opt_v3[:, hole]).all() and np.isfinite(opt_v3[:, ~hole]).all()
    # The model changes its input, but keeps it recognisable.
    gap = np.abs(opt_v3[:, ~hole] - opt_v2[:, ~hole]).mean()
    assert 0 < gap < 0.5 * np.abs(opt_v2).mean()


def test_arrays_give_what_scene_mode_writes(pipe, window, tmp_path: Path) -> None:
    s1_path = write_raster(tmp_path / "win.tif", window["s1"], window["crs"], window["transform"])
    opt_path = write_raster(tmp_path / "opt.tif", window["opt_v2"], window["crs"], window["transform"])
    written = pipe.predict_scene(s1_path, opt_path, tmp_path / "out" / "opt_v3.tif")
    assert [p.name for p in written] == ["opt_v3.tif", "opt_v3.json"]
    from_file, profile = read(written[0])
    assert profile["crs"] == window["crs"] and profile["transform"] == window["transform"]
    # Same tiles, seeds (from the S1 file's stem) and blending as scene mode.
    np.testing.assert_array_equal(pipe(window["s1"], window["opt_v2"], name="win"), from_file)
    other = pipe(window["s1"], window["opt_v2"], name="elsewhere")
    assert other.shape == from_file.shape


def test_torch_batch_gives_tensors_item_by_item(pipe, window) -> None:
    import torch

    s1 = torch.from_numpy(np.stack([window["s1"], window["s1"][:, ::-1].copy()]))
    opt_v2 = torch.from_numpy(np.stack([window["opt_v2"], window["opt_v2"][:, ::-1].copy()]))
    out = pipe(s1.double(), opt_v2.to(torch.int32), name="pair")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device == opt_v2.device
    assert out.shape == (2, 4, ROWS, COLS)
    first = pipe(window["s1"], window["opt_v2"], name="pair_0")
    np.testing.assert_allclose(out[0].numpy(), first, rtol=0, atol=1e-3)
    assert not torch.equal(out[0], out[1])


def test_samples_give_the_mean_and_the_spread(pipe, window) -> None:
    from axion import Sampled

    result = pipe(window["s1"], window["opt_v2"], samples=2)
    assert isinstance(result, Sampled)
    mean, std = result
    assert mean.shape == std.shape == (4, ROWS, COLS)
    assert np.isfinite(mean).all() and (std >= 0).all()


def test_xarray_keeps_coordinates_crs_and_band_names(pipe, window) -> None:
    xr = pytest.importorskip("xarray")
    transform, crs = window["transform"], window["crs"]
    coords = {
        "band": ["B2", "B3", "B4", "B8"],
        "y": transform.f + transform.e * (np.arange(ROWS) + 0.5),
        "x": transform.c + transform.a * (np.arange(COLS) + 0.5),
        # how rioxarray records the CRS
        "spatial_ref": xr.DataArray(0, attrs={"crs_wkt": crs.to_wkt(), "spatial_ref": crs.to_wkt()}),
    }
    opt_v2 = window["opt_v2"].astype(np.int16)
    opt_v2[:, 0:4, 0:4] = -1  # the file's no-data value
    opt_da = xr.DataArray(
        opt_v2, dims=("band", "y", "x"), coords=coords, attrs={"_FillValue": -1, "units": "reflectance*10000"}
    )
    s1_da = xr.DataArray(window["s1"], dims=("band", "y", "x"), coords={**coords, "band": ["VV", "VH"]})
    out = pipe(s1_da, opt_da)
    assert isinstance(out, xr.DataArray) and out.name == "opt_v3" and out.dims == ("band", "y", "x")
    assert list(out["band"].values) == ["B2", "B3", "B4", "B8"]
    np.testing.assert_array_equal(out["x"], coords["x"])
    np.testing.assert_array_equal(out["y"], coords["y"])
    assert out["spatial_ref"].attrs["crs_wkt"] == crs.to_wkt()
    assert out.dtype == np.float32 and out.attrs["units"] == "reflectance*10000"
    assert np.isnan(out.attrs["_FillValue"])
    assert np.isnan(out.values[:, 0:4, 0:4]).all() and np.isfinite(out.values[:, 4:, 4:]).all()


def test_cloudy_pixels_reach_the_model_filled_from_the_clear_ones(pipe, window) -> None:
    import torch

    from axion.cloudfill import fill_cloudy_arrays

    s1, opt_v2 = window["s1"], window["opt_v2"].copy()
    clear = np.ones(opt_v2.shape[1:], np.uint8)
    clear[20:50, 10:40] = 0
    opt_v2[:, 20:50, 10:40] = 9000.0  # a cloud
    opt_v2[:, 0, 0] = np.nan  # an invalid pixel: neither filled nor used
    out = pipe(s1, opt_v2, opt_v2_mask=clear)
    filled = fill_cloudy_arrays(opt_v2[None], clear[None, None] > 0)[0]
    assert filled[:, 20:50, 10:40].max() < 5000 and np.isnan(filled[:, 0, 0]).all()
    np.testing.assert_array_equal(filled[:, clear > 0], opt_v2[:, clear > 0])
    # The filled image given as an acquisition with nothing left to fill: the same prediction.
    np.testing.assert_allclose(out, pipe(s1, filled, opt_v2_mask=np.ones_like(clear)), rtol=1e-6, atol=1e-3)
    assert np.abs(out - pipe(s1, opt_v2))[:, 20:50, 10:40].mean() > 1000  # the cloud itself was not used
    assert np.isnan(out[:, 0, 0]).all()
    batched = pipe(
        torch.from_numpy(s1)[None], torch.from_numpy(opt_v2)[None], opt_v2_mask=torch.from_numpy(clear) > 0
    )
    np.testing.assert_allclose(batched[0].numpy(), out, rtol=1e-6, atol=1e-3)
    for mask, message in (
        (clear[:40], r"^opt_v2_mask: array has shape \(40, 72\), expected opt_v2's pixel grid \(80, 72\)$"),
        (clear * 3, r"^opt_v2_mask: values must be 0 \(cloudy\) or 1 \(clear\), found 3$"),
    ):
        with pytest.raises(DataError, match=message):
            pipe(s1, opt_v2, opt_v2_mask=mask)


def _bad(window: dict, what: str) -> tuple[object, object]:
    s1, opt_v2 = window["s1"], window["opt_v2"]
    return {
        "three S1 bands": (np.concatenate([s1, s1[:1]]), opt_v2),
        "linear S1": (10 ** (s1 / 10), opt_v2),
        "reflectance 0-1": (s1, opt_v2 / 10000),
        "no-data value": (s1, np.where(np.arange(COLS) < 3, -9999.0, opt_v2).astype(np.float32)),
        "text dtype": (s1.astype(str), opt_v2),
        "sizes differ": (s1[:, :40], opt_v2),
        "two dims": (s1[0], opt_v2),
        "a list": (s1.tolist(), opt_v2),
    }[what]


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("three S1 bands", r"^s1: S1 array has 3 band\(s\), expected 2 \(VV, VH in dB\)$"),
        ("linear S1", r"^s1: S1 looks like linear power, not dB"),
        ("reflectance 0-1", r"^opt_v2: opt_v2 looks like reflectance 0-1, not reflectance x 10000"),
        ("no-data value", r"^opt_v2: opt_v2 has negative reflectance"),
        ("text dtype", r"^s1: array has non-numeric dtype <U"),
        ("sizes differ", r"^s1: shape mismatch: s1 \(2, 40, 72\), opt_v2 \(4, 80, 72\)"),
        ("two dims", r"^s1: array has shape \(80, 72\), expected \(2, H, W\) or \(batch, 2, H, W\)$"),
        ("a list", r"^s1: expected a numpy array, a torch tensor or an xarray DataArray, got list$"),
    ],
)
def test_bad_input_is_one_clear_line(pipe, window, what: str, message: str) -> None:
    s1, opt_v2 = _bad(window, what)
    with pytest.raises(DataError, match=message) as caught:
        pipe(s1, opt_v2)
    assert "\n" not in str(caught.value)


def test_band_counts_are_refused_as_scene_mode_refuses_them(pipe, window, tmp_path: Path) -> None:
    s1 = np.concatenate([window["s1"], window["s1"][:1]])
    s1_path = write_raster(tmp_path / "s1.tif", s1, window["crs"], window["transform"])
    opt_path = write_raster(tmp_path / "opt.tif", window["opt_v2"], window["crs"], window["transform"])
    with pytest.raises(DataError) as from_scene:
        pipe.predict_scene(s1_path, opt_path, tmp_path / "out.tif")
    with pytest.raises(DataError) as from_arrays:
        pipe(s1, window["opt_v2"])
    assert str(from_scene.value) == f"{s1_path}: S1 scene has 3 band(s), expected 2 (VV, VH in dB)"
    assert str(from_arrays.value) == str(from_scene.value).replace(f"{s1_path}", "s1").replace(
        "scene", "array"
    )
    assert not (tmp_path / "out.tif").exists()


def test_suspicious_values_warn(pipe, window) -> None:
    opt_v2 = window["opt_v2"].copy()
    opt_v2[:, :10] = 15000.0  # bright: cloud or saturation, possible but rare
    with pytest.warns(UserWarning, match=r"^opt_v2: opt_v2 often above reflectance 1.2"):
        pipe(window["s1"], opt_v2)


def test_bad_settings_are_config_errors(pipe, run_dir: Path, window) -> None:
    from axion import Stage3Pipeline

    with pytest.raises(ConfigError, match="invalid samples = 0"):
        pipe(window["s1"], window["opt_v2"], samples=0)
    with pytest.raises(ConfigError, match="invalid tile_size"):
        Stage3Pipeline(pipe.predictor, tile_size=40)
    with pytest.raises(ConfigError, match=r"invalid precision \(--precision\) = 'half'"):
        Stage3Pipeline.from_pretrained(run_dir, device="cpu", precision="half")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="invalid device = 'tpu'"):
        Stage3Pipeline.from_pretrained(run_dir, device="tpu")


def test_loads_a_checkpoint_a_run_folder_or_an_export(pipe, run_dir: Path, window, tmp_path: Path) -> None:
    from axion import Stage3Pipeline
    from axion.writers.export import export

    assert pipe.predictor.checkpoint == run_dir / "best_model.pt" and pipe.predictor.epoch == 3
    export(run_dir / "best_model.pt", tmp_path / "export")
    exported = Stage3Pipeline.from_pretrained(
        tmp_path / "export", device="cpu", precision="32", tile_size=pipe.tile_size, overlap=pipe.overlap
    )
    assert "epoch=3" in repr(exported)
    np.testing.assert_allclose(
        exported(window["s1"], window["opt_v2"]), pipe(window["s1"], window["opt_v2"]), rtol=0, atol=1e-2
    )


@pytest.mark.parametrize(
    ("kind", "message"),
    [("missing", "checkpoint not found"), ("empty folder", "neither a training run (no best_model.pt)")],
)
def test_nothing_to_load_is_one_clear_line(tmp_path: Path, kind: str, message: str) -> None:
    from axion import Stage3Pipeline

    path = tmp_path / "nothing"
    if kind == "empty folder":
        path.mkdir()
    with pytest.raises(DataError, match=f"^{path}: .*{message}".replace("(", r"\(").replace(")", r"\)")):
        Stage3Pipeline.from_pretrained(path)


def test_samples_of_a_deterministic_model_warn(window, tmp_path: Path) -> None:
    from axion import Stage3Pipeline

    path = fusion_checkpoint(tmp_path / "fusion_only.pt", trained=False)
    pipe = Stage3Pipeline.from_pretrained(path, device="cpu", precision="32", tile_size=48, overlap=16)
    with pytest.warns(UserWarning, match="--generator none .* the 2 samples are equal"):
        _, std = pipe(window["s1"], window["opt_v2"], samples=2)
    assert (std == 0).all()


def test_a_checkpoint_from_before_the_acquisition_input_still_loads(window, tmp_path: Path) -> None:
    """Its model settings have no ``acquisition_input``: it is rebuilt as it was (6 fusion inputs)
    and predicts, with and without a cloud mask."""
    from axion import Stage3Pipeline
    from axion.config import ModelConfig
    from axion.model import build_stage3_model
    from axion.training.checkpoint import Checkpoint

    cfg = ModelConfig(generator="none", pretrained=False, acquisition_input=False)
    settings = cfg.model_dump(mode="json")
    del settings["acquisition_input"]
    path = tmp_path / "older.pt"
    Checkpoint(
        epoch=1,
        model_state_dict=build_stage3_model(cfg).trainable_state_dict(),
        config={"model": settings, "other": {"seed": 0}},
    ).write(path)
    assert Checkpoint.read(path).model_settings["acquisition_input"] is False
    pipe = Stage3Pipeline.from_pretrained(path, device="cpu", precision="32", tile_size=48, overlap=16)
    assert pipe.predictor.model.fusion.in_channels == 6
    opt_v3 = pipe(window["s1"], window["opt_v2"])
    clear = np.ones(window["opt_v2"].shape[-2:], np.uint8)
    np.testing.assert_array_equal(pipe(window["s1"], window["opt_v2"], opt_v2_mask=clear), opt_v3)


def test_a_checkpoint_with_the_plane_from_before_the_modulation_still_loads(window, tmp_path: Path) -> None:
    """Its model settings have ``acquisition_input`` but no ``acquisition_modulation``: it is
    rebuilt unmodulated, as it was written, and the flag still reaches it through its plane."""
    from axion import Stage3Pipeline
    from axion.config import ModelConfig
    from axion.model import build_stage3_model
    from axion.training.checkpoint import Checkpoint

    cfg = ModelConfig(generator="none", pretrained=False, acquisition_modulation=False)
    settings = cfg.model_dump(mode="json")
    del settings["acquisition_modulation"]
    model = build_stage3_model(cfg)
    with torch.no_grad():
        model.fusion.out.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))  # trained
    path = tmp_path / "plane-only.pt"
    Checkpoint(
        epoch=1,
        model_state_dict=model.trainable_state_dict(),
        config={"model": settings, "other": {"seed": 0}},
    ).write(path)
    assert Checkpoint.read(path).model_settings["acquisition_modulation"] is False
    pipe = Stage3Pipeline.from_pretrained(path, device="cpu", precision="32", tile_size=48, overlap=16)
    fusion = pipe.predictor.model.fusion
    assert fusion.in_channels == 7 and fusion.modulations is None
    clear = np.ones(window["opt_v2"].shape[-2:], np.uint8)
    estimate = pipe(window["s1"], window["opt_v2"])
    assert np.abs(estimate - pipe(window["s1"], window["opt_v2"], opt_v2_mask=clear)).mean() > 1.0


def test_a_cloud_mask_tells_the_model_its_opt_v2_is_a_real_acquisition(window, tmp_path: Path) -> None:
    """With ``opt_v2_mask`` (even all clear: nothing to fill) the model is told opt_v2 is a real
    acquisition; a trained network then answers differently than for a Stage 2 estimate."""
    from axion import Stage3Pipeline

    path = fusion_checkpoint(tmp_path / "trained.pt")
    pipe = Stage3Pipeline.from_pretrained(path, device="cpu", precision="32", tile_size=48, overlap=16)
    clear = np.ones(window["opt_v2"].shape[-2:], np.uint8)
    estimate, acquisition = (
        pipe(window["s1"], window["opt_v2"]),
        pipe(window["s1"], window["opt_v2"], opt_v2_mask=clear),
    )
    assert np.abs(estimate - acquisition).mean() > 1.0
