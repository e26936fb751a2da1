"""``Stage3Pipeline``: a trained Stage 3 model loaded once, then called on arrays or scene files.

::

    from axion import Stage3Pipeline

    pipe = Stage3Pipeline.from_pretrained("runs/stage3")      # a run folder, checkpoint or export
    opt_v3 = pipe(s1, opt_v2)                                  # (2, H, W) dB, (4, H, W) -> (4, H, W)
    mean, std = pipe(s1, opt_v2, samples=4)
    pipe.predict_scene("s1.tif", "opt_v2.tif", "opt_v3.tif")   # what 'axion stage3 infer' does

Arrays of any size are cut into tiles and blended exactly as ``infer`` scene mode does
(:mod:`axion.prediction.arrays`), with the same per-tile noise: the same arrays under the
name of a scene file's stem give the values ``infer`` writes for that scene.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from axion.bands import OPTICAL_BANDS, S1_KEYS
from axion.config import InferConfig, field_default, resolve_config
from axion.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

    from axion.pipeline.convert import Batch
    from axion.prediction.predict import Predictor


class Sampled(NamedTuple):
    """What a call with ``samples`` >= 2 returns, each in the form of the opt_v2 input.

    Attributes:
        mean: opt_v3, the mean of the samples.
        std: the per-pixel standard deviation of the samples.
    """

    mean: Any
    std: Any


class Stage3Pipeline:
    """opt_v3 from Sentinel-1 (VV, VH in dB) and a Stage 2 optical estimate (B2, B3, B4, B8).

    Build one with :meth:`from_pretrained`. Calls predict arrays in memory; :meth:`predict_scene`
    predicts two raster files into a Cloud-Optimized GeoTIFF.

    Attributes:
        predictor: the model and the settings it predicts with (timesteps, seed, precision, device).
        tile_size: side of the tiles arrays are cut into (pixels, a multiple of 16).
        overlap: pixels neighbouring tiles share, blended with a raised cosine.
        batch_size: tiles per model call.
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        precision: str = "auto",
        overrides: dict[str, Any] | None = None,
        tile_size: int | None = None,
        overlap: int | None = None,
        batch_size: int = 1,
    ) -> None:
        from axion.prediction.scene import make_grid

        self.predictor = predictor
        self.tile_size = field_default(InferConfig, "tile_size") if tile_size is None else int(tile_size)
        self.overlap = field_default(InferConfig, "overlap") if overlap is None else int(overlap)
        make_grid(self.tile_size, self.tile_size, self.tile_size, self.overlap)  # refuses bad values now
        if batch_size < 1:
            raise ConfigError(f"invalid batch_size = {batch_size}: must be >= 1")
        self.batch_size = int(batch_size)
        self._precision = precision
        self._overrides = dict(overrides or {})

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        precision: Literal["auto", "fp16-mixed", "bf16-mixed", "32"] = "auto",
        *,
        timesteps: int | None = None,
        seed: int | None = None,
        pretrained: bool | None = None,
        weights_dir: str | Path | None = None,
        tile_size: int | None = None,
        overlap: int | None = None,
        batch_size: int = 1,
    ) -> Stage3Pipeline:
        """Load a trained model.

        Args:
            path: a checkpoint file (``best_model.pt``, ``checkpoint_epoch_N.pt``), a training run's
                folder (its ``best_model.pt``) or a folder written by ``axion stage3 export``.
            device: ``cpu``, ``cuda``, ``cuda:1``... (default: the GPU when one is visible).
            precision: ``auto`` (fp16 on CUDA, bf16 on a CPU with native bf16, else fp32), ``fp16-mixed``, ``bf16-mixed`` or ``32``.
            timesteps: DDIM steps (default: the checkpoint's).
            seed: base seed of the per-tile noise (default: the training run's).
            pretrained, weights_dir: where the frozen TerraMind base comes from (default: as trained).
            tile_size, overlap: how arrays are tiled (default: ``infer``'s, 224 and 32).
            batch_size: tiles per model call.

        Raises:
            DataError: nothing readable at ``path``. WeightsError: the base weights are missing or
            the adapters do not fit. ConfigError: a bad device, precision or tiling setting.
        """
        from axion.prediction.predict import load_predictor
        from axion.training.trained import find_trained, read_trained

        source = find_trained(Path(path))
        checkpoint = read_trained(source)
        overrides = {
            "pretrained": pretrained,
            "weights_dir": None if weights_dir is None else Path(weights_dir),
        }
        predictor = load_predictor(
            checkpoint, timesteps=timesteps, seed=seed, precision=precision, device=device, **overrides
        )
        return cls(
            predictor,
            precision=precision,
            overrides=overrides,
            tile_size=tile_size,
            overlap=overlap,
            batch_size=batch_size,
        )

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.predictor.device

    def __repr__(self) -> str:
        p = self.predictor
        return (
            f"Stage3Pipeline({str(p.checkpoint)!r}, epoch={p.epoch}, device={p.device.type!r}, "
            f"precision={p.precision.fabric!r}, timesteps={p.timesteps}, seed={p.seed}, "
            f"tile_size={self.tile_size}, overlap={self.overlap})"
        )

    def __call__(
        self, s1: Any, opt_v2: Any, *, opt_v2_mask: Any = None, samples: int = 1, name: str = "scene"
    ) -> Any:
        """opt_v3 for S1 and opt_v2 held in memory.

        Args:
            s1: VV, VH backscatter in dB, (2, H, W) or (B, 2, H, W): numpy, torch or xarray.
            opt_v2: B2, B3, B4, B8 in tile units (L2A reflectance x 10000), (4, H, W) or (B, 4, H, W),
                on the same pixel grid. NaN/inf pixels (and a DataArray's ``_FillValue``) are invalid.
            opt_v2_mask: where opt_v2 can be trusted, (H, W) (or (B, H, W)): 1 clear, 0 cloudy. The
                model is given the cloudy pixels filled from the clear ones, as ``train``,
                ``evaluate`` and tile-mode ``infer`` give it a Stage 2 file's ``opt_v2_mask``
                (:mod:`axion.cloudfill`; here over the whole array, not per tile).
            samples: seeded generations per tile; with 2 or more the result is a :class:`Sampled`
                (mean, per-pixel std).
            name: what the noise of each tile derives from, as a scene file's stem does in
                ``infer`` (the b-th item of a batch is ``<name>_<b>``).

        Returns:
            opt_v3 (4, H, W) (or (B, 4, H, W)) float32 tile units, NaN where an input pixel is
            invalid, in the form of ``opt_v2``: numpy, a tensor on opt_v2's device, or a DataArray
            with opt_v2's coordinates, CRS, band names and attributes. A :class:`Sampled` of two
            of them for ``samples`` >= 2.

        Raises:
            DataError: a wrong type, dtype, band count or size, or values that cannot be in these
                units (linear S1, reflectance 0-1, unmasked no-data); suspicious values only warn.
            ConfigError: ``samples`` < 1.
        """
        from axion.pipeline.convert import like, to_batch, to_clear_mask

        if samples < 1:
            raise ConfigError(f"invalid samples = {samples}: must be >= 1")
        s1_in = to_batch(s1, "s1", len(S1_KEYS))
        opt_in = to_batch(opt_v2, "opt_v2", len(OPTICAL_BANDS))
        if s1_in.batched != opt_in.batched or len(s1_in.arrays) != len(opt_in.arrays):
            raise DataError(
                f"s1: shape mismatch: s1 {tuple(s1_in.arrays.shape)}, opt_v2 {tuple(opt_in.arrays.shape)} "
                "(batch sizes differ)"
            )
        if opt_v2_mask is not None:
            from axion.cloudfill import fill_cloudy_arrays

            clear = to_clear_mask(opt_v2_mask, opt_in)
            opt_in = replace(opt_in, arrays=fill_cloudy_arrays(opt_in.arrays, clear, opt_in.nodata))
        if samples > 1 and self.predictor.config.get("model", {}).get("generator") == "none":
            warnings.warn(
                f"{self.predictor.checkpoint} was trained with --generator none (the fusion network alone, "
                f"deterministic): the {samples} samples are equal and their std is 0 everywhere",
                UserWarning,
                stacklevel=2,
            )
        means, stds = self._predict(s1_in, opt_in, samples, name, acquired=opt_v2_mask is not None)
        if stds is None:
            return like(means, opt_in, "opt_v3")
        return Sampled(like(means, opt_in, "opt_v3"), like(stds, opt_in, "opt_v3_std"))

    def _predict(
        self, s1: Batch, opt_v2: Batch, samples: int, name: str, acquired: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        from axion.prediction.arrays import check_scene_arrays, predict_arrays

        nodata = (s1.nodata, opt_v2.nodata)
        names = [name] if not opt_v2.batched else [f"{name}_{b}" for b in range(len(opt_v2.arrays))]
        for b in range(len(names)):  # every item checked before the first is predicted
            for message in check_scene_arrays(s1.arrays[b], opt_v2.arrays[b], nodata=nodata):
                warnings.warn(message, UserWarning, stacklevel=3)
        predict_fn = self.predictor.tiles_fn(samples, acquired=acquired)
        results = [
            predict_arrays(
                s1.arrays[b],
                opt_v2.arrays[b],
                predict_fn,
                tile_size=self.tile_size,
                overlap=self.overlap,
                batch_size=self.batch_size,
                with_std=samples > 1,
                name=item,
                nodata=nodata,
            )
            for b, item in enumerate(names)
        ]
        means = np.stack([r.mean for r in results])
        stds = np.stack([r.std for r in results]) if samples > 1 else None  # type: ignore[misc]
        return means, stds

    def predict_scene(
        self,
        s1_path: str | Path,
        opt_v2_path: str | Path,
        output_path: str | Path,
        *,
        samples: int = 1,
        dtype: Literal["float32", "uint16"] = "float32",
        datetime: str | None = None,
        overwrite: bool = False,
        opt_v2_mask_path: str | Path | None = None,
        log: bool = False,
    ) -> list[Path]:
        """``axion stage3 infer --s1-scene ... --opt-v2-scene ... --output-scene ...`` with this model.

        The S1 scene may be on another grid (it is reprojected onto opt_v2's); the output is a
        COG on opt_v2's grid, ``<stem>_std.tif`` with ``samples`` >= 2, and a STAC Item
        ``<stem>.json``. Tiling, batch size and model settings are the pipeline's.

        Args:
            s1_path, opt_v2_path: the input rasters (VV, VH in dB; B2, B3, B4, B8 in tile units).
            output_path: the ``.tif`` to write.
            samples, dtype, datetime, overwrite: as ``infer --samples/--dtype/--datetime/--overwrite``.
            opt_v2_mask_path: opt_v2's cloud mask, as ``infer --opt-v2-mask-scene`` (one band on
                opt_v2's grid, 0 cloudy).
            log: print what ``infer`` prints (progress included).

        Returns:
            The files written, the STAC Item last.

        Raises:
            DataError, ConfigError: what ``infer`` refuses, before anything is written.
        """
        from axion.prediction.infer import infer_scene, mode_of
        from axion.runtime.reporter import Reporter

        p = self.predictor
        flags = {
            "checkpoint": p.checkpoint,
            "timesteps": p.timesteps,
            "seed": p.seed,
            "precision": self._precision,
            **self._overrides,
            "s1_scene": Path(s1_path),
            "opt_v2_scene": Path(opt_v2_path),
            "opt_v2_mask_scene": None if opt_v2_mask_path is None else Path(opt_v2_mask_path),
            "output_scene": Path(output_path),
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "batch_size": self.batch_size,
            "samples": samples,
            "dtype": dtype,
            "datetime": datetime,
            "overwrite": overwrite,
        }
        settings = resolve_config(InferConfig, environ={}, flags=flags)
        mode_of(settings)
        reporter = Reporter.for_terminal() if log else Reporter.silent()
        return infer_scene(settings, reporter, p).outputs
