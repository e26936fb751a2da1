"""Settings of ``prepare``, ``evaluate``, ``infer`` and ``visualize`` (``train``'s live in :mod:`.train`).

Each is one flat pydantic model; the command line, a ``--config`` file and
``AXION_*`` variables all fill it through :func:`axion.config.resolve_config`.
Settings of evaluate and infer left at ``None`` take the checkpoint's value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from axion.config.base import Settings
from axion.config.fields import Precision, Workers, max_bad_fraction_field


class PrepareConfig(Settings):
    """Real Sentinel-1/Sentinel-2 data in, tiles out."""

    output_dir: Path | None = Field(
        None, description="Where tiles go: <output-dir>/{train,val,test}/<name>.npz + .json."
    )
    check: Path | None = Field(
        None,
        description="Only check the tiles below this directory: list every bad tile and why; exit 2 if any.",
    )
    demo: bool = Field(
        False,
        description="Write the 6 real BigEarthNet example pairs shipped in bigearthnet-common (120x120 px).",
    )
    bigearthnet_s1: Path | None = Field(
        None, description="BigEarthNet-MM S1 root: patch folders with *_VV.tif, *_VH.tif (dB) and a JSON."
    )
    bigearthnet_s2: Path | None = Field(
        None,
        description="BigEarthNet-MM S2 root: L2A patch folders with *_B02.tif ... (reflectance x 10000).",
    )
    s1: list[Path] = Field(
        default_factory=list,
        description="S1 scene GeoTIFF, bands VV, VH (repeat with --s2 for several scenes).",
    )
    s2: list[Path] = Field(
        default_factory=list,
        description="S2 scene GeoTIFF (L2A or L1C, reflectance x 10000); defines the tile grid.",
    )
    s2_cloudy: list[Path] = Field(
        default_factory=list,
        description="Cloudy S2 of the same scene (one per --s2): written as real opt_v2 to <output-dir>/stage2/.",
    )
    opt_v2: list[Path] = Field(
        default_factory=list,
        description="Inference-only tiles: an opt_v2 GeoTIFF (B2, B3, B4, B8, reflectance x 10000) per --s1, "
        "no --s2; written to <output-dir>/stage2/, tiles to <output-dir>/infer/ without ground truth.",
    )
    s1_units: Literal["db", "linear"] = Field(
        "db", description="Units of the S1 scene: db, or linear power (converted to dB, floor -50 dB)."
    )
    s2_bands: str | None = Field(
        None,
        description="Band order of the S2 file, e.g. B1,B2,...,B12. Default by band count: 12 = L2A "
        "B01..B12 without B10, 13 = L1C B01..B12.",
    )
    s2_cloudy_bands: str | None = Field(
        None,
        description="Band order of the --s2-cloudy file when it differs from --s2-bands. Default: "
        "--s2-bands when the band counts agree, else by band count.",
    )
    s1_product: Literal["grd", "rtc"] = Field(
        "grd",
        description="Sentinel-1 product of the S1 scenes: grd or rtc (terrain-corrected); recorded in every tile.",
    )
    s2_level: Literal["auto", "L2A", "L1C"] = Field(
        "auto",
        description="Sentinel-2 product level: auto (L1C when the band order holds B10), L2A or L1C; "
        "recorded in every tile; L1C gives a warning.",
    )
    tile_size: int | None = Field(
        None,
        ge=1,
        description="Tile height and width in pixels (16-multiples avoid padding). Default: 256 for scenes; "
        "BigEarthNet patches (and --demo) stay whole unless given.",
    )
    stride: int | None = Field(
        None, ge=1, description="Pixels between tile origins (default: --tile-size, no overlap)."
    )
    max_nodata: float = Field(
        0.1, ge=0.0, le=1.0, description="Skip tiles with more than this fraction (0-1) of invalid pixels."
    )
    split_ratios: str = Field(
        "0.8,0.1,0.1", description="train,val,test fractions of spatial blocks; non-negative, summing to 1."
    )
    seed: int = Field(42, ge=0, description="Seed of the split assignment.")
    block_size: int = Field(
        4,
        ge=1,
        description="Spatial block side in tiles (k x k tiles, or BigEarthNet patches) kept in one split.",
    )
    overwrite: bool = Field(
        False,
        description="Replace the tiles, Stage 2 files and prepare.json an earlier prepare wrote into the "
        "output directory (other files are kept).",
    )
    format: Literal["tiles", "shards"] = Field(
        "tiles",
        description="tiles: <split>/<name>.npz + .json; shards: WebDataset shards <split>/<split>-NNNNNN.tar "
        "of the same tiles and an index shards.json (streamed by train and evaluate).",
    )
    from_tiles: Path | None = Field(
        None, description="Convert the tile folder DIR into shards (with --format shards and --output-dir)."
    )
    shard_size: int = Field(1000, ge=1, description="Samples (tiles) per shard with --format shards.")

    @field_validator("s1_units", "s1_product", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("s2_level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        if isinstance(value, str) and value.lower() != "auto":
            return value.upper()
        return value.lower() if isinstance(value, str) else value

    @field_validator("split_ratios")
    @classmethod
    def _ratios(cls, value: str) -> str:
        from axion.config.fields import parse_ratios

        parse_ratios(value)
        return value

    @field_validator("s2_bands", "s2_cloudy_bands")
    @classmethod
    def _bands(cls, value: str | None) -> str | None:
        from axion.bands import parse_band_list

        if value is not None:
            parse_band_list(value)
        return value


class PredictionSettings(Settings):
    """What evaluate and infer share: the checkpoint and how its model runs."""

    checkpoint: Path = Field(
        description="Checkpoint written by 'axion stage3 train' (best_model.pt, checkpoint_epoch_N.pt) "
        "or a folder written by 'axion stage3 export'."
    )
    timesteps: int | None = Field(None, ge=1, le=1000, description="Number of diffusion (DDIM) timesteps.")
    seed: int | None = Field(
        None, ge=0, description="Base seed of the per-tile diffusion noise (seed, 'test', tile name)."
    )
    precision: Precision = Field(
        "auto",
        description="auto (fp16 on CUDA, bf16 on a CPU with native bf16, else fp32), fp16-mixed, bf16-mixed or 32.",
    )
    pretrained: bool | None = Field(None, description="Whether the frozen TerraMind base is pretrained.")
    weights_dir: Path | None = Field(
        None, description="Local directory holding the original TerraMind files."
    )
    batch_size: int = Field(1, ge=1, description="Tiles per model call.")
    quiet: bool = Field(False, description="Plain log lines instead of live progress bars and tables.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text: lines for people; json: JSON Lines on stdout for pipelines (one object per "
        "message, progress line and summary; a failure stays one line on stderr).",
    )


class EvaluateConfig(PredictionSettings):
    """Score a checkpoint on a split: opt_v2 (input) against opt_v3 (output)."""

    data_dir: Path = Field(description="Directory of tiles (the split is read from each tile's JSON).")
    output_dir: Path = Field(description="Results directory: summary.json, per_tile.csv, tiles/<name>.npz.")
    split: Literal["train", "val", "test"] = Field(
        "test", description="Split to evaluate: train, val or test."
    )
    stage2_dir: Path | None = Field(
        None,
        description="Stage 2 outputs <name>.npz (key opt_v2). Without it opt_v2 is the training proxy of the ground truth.",
    )
    max_samples: int | None = Field(
        None, ge=1, description="Evaluate at most this many tiles (the first by name)."
    )
    max_bad_fraction: float = max_bad_fraction_field("evaluate refuses the split")
    save_arrays: int = Field(
        32,
        ge=0,
        description="Save s1/opt_v2/opt_v3/target/mask arrays of the first N tiles (by name) for 'visualize'; 0: none.",
    )
    overwrite: bool = Field(
        False, description="Replace the results of an earlier evaluation in --output-dir."
    )
    lpips_weight: float = Field(
        0.1,
        ge=0,
        description="0 skips the LPIPS metric (no AlexNet weights needed); any other value computes it (unscaled).",
    )
    lpips_weights: Path | None = Field(
        None, description="AlexNet ImageNet weights for LPIPS (else torchvision's cache)."
    )
    num_workers: Workers = Field("auto", description="DataLoader workers; auto picks from the CPU count.")


class InferConfig(PredictionSettings):
    """opt_v3 for new tiles (tile mode) or a whole scene (scene mode)."""

    input_dir: Path | None = Field(
        None, description="Tiles <name>.npz + <name>.json (S1 keys s1_vv, s1_vh in dB; any split or none)."
    )
    output_dir: Path | None = Field(
        None,
        description="Where <name>.npz (opt_v3) and <name>.tif (georeferenced tiles) go, or a STAC --scenes "
        "list's <item id>.tif; created if missing.",
    )
    stage2_dir: Path | None = Field(
        None, description="Stage 2 outputs <name>.npz (key opt_v2), one per tile: the opt_v2 of tile mode."
    )
    proxy_from_ground_truth: bool = Field(
        False,
        description="Tile mode without --stage2-dir: make opt_v2 from each tile's own ground truth (the "
        "training proxy), to evaluate the pipeline; never for real new data.",
    )
    max_samples: int | None = Field(
        None, ge=1, description="Infer at most this many tiles (the first by name)."
    )
    s1_scene: Path | None = Field(
        None, description="S1 GeoTIFF: 2 bands, VV and VH in dB; any CRS and resolution (reprojected)."
    )
    opt_v2_scene: Path | None = Field(
        None,
        description="opt_v2 GeoTIFF: 4 bands B2, B3, B4, B8 (reflectance x 10000); its grid is the output grid.",
    )
    opt_v2_mask_scene: Path | None = Field(
        None,
        description="Where the opt_v2 scene can be trusted: one band on its grid, 0 cloudy, any other value "
        "clear (nodata: clear). Each tile's cloudy pixels reach the model filled from its clear ones, as "
        "a Stage 2 file's opt_v2_mask does in tile mode.",
    )
    output_scene: Path | None = Field(
        None,
        description="opt_v3 Cloud-Optimized GeoTIFF to write; a STAC Item <stem>.json goes beside it.",
    )
    scenes: Path | None = Field(
        None,
        description="Many scenes in one job: a CSV with the header s1,opt_v2,output[,opt_v2_mask][,datetime] "
        "(paths from its folder) or a STAC ItemCollection whose Items have the assets s1 and opt_v2 (and "
        "optionally opt_v2_mask; outputs <output-dir>/<item id>.tif). Scenes whose outputs are complete are skipped.",
    )
    tile_size: int = Field(224, description="Scene tile side in pixels (multiple of 16).")
    overlap: int = Field(
        32, description="Pixels shared by neighbouring scene tiles, blended with a raised-cosine window."
    )
    samples: int = Field(
        1,
        ge=1,
        description="Seeded generations per tile: opt_v3 is their mean; with 2 or more, their per-pixel "
        "standard deviation is written too (<stem>_std.tif). Costs N x the time.",
    )
    save_generated: bool = Field(
        False,
        description="Also write TerraMind's own generated B2, B3, B4, B8 (what the fusion network was given) "
        "beside opt_v3: key 'generated' in <name>.npz and <name>_generated.tif (tile mode).",
    )
    dtype: Literal["float32", "uint16"] = Field(
        "float32",
        description="GeoTIFF sample type: float32 (reflectance x 10000, nodata NaN) or uint16 (reflectance "
        "x 10000 rounded, nodata 0, like Sentinel-2 L2A).",
    )
    datetime: str | None = Field(
        None,
        description="Acquisition time of the S1 scene for the STAC Item (ISO 8601); default: the S1 file's "
        "datetime tag, else the time of processing.",
    )
    devices: int = Field(
        1,
        ge=1,
        description="Processes per node (GPUs, or CPU processes) sharing the tiles (tile mode), strips (scene "
        "mode) or scenes (--scenes).",
    )
    num_nodes: int = Field(
        1,
        ge=1,
        description="Machines of a torchrun or SLURM job (--devices processes each); see docs/training.md.",
    )
    overwrite: bool = Field(
        False,
        description="Replace the results of an earlier run in --output-dir or at --output-scene; with "
        "--scenes, outputs made with other settings (complete ones of these settings are kept).",
    )

    @field_validator("datetime")
    @classmethod
    def _iso_datetime(cls, value: str | None) -> str | None:
        from datetime import datetime

        if value is not None:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("must be an ISO 8601 date-time, e.g. 2021-07-21T08:40:10Z") from None
        return value


class VisualizeConfig(Settings):
    """PNG figures from an ``evaluate`` results directory."""

    results: Path = Field(
        description="Results directory written by 'axion stage3 evaluate' (summary.json, per_tile.csv)."
    )
    output_dir: Path = Field(description="Where the PNG figures and index.html go; created if missing.")
    history: Path | None = Field(None, description="metrics.jsonl of the training run.")
    max_tiles: int = Field(16, ge=0, description="Draw panels for at most this many tiles (by name).")
    dpi: int = Field(110, ge=30, le=600, description="Resolution of the PNG files (dots per inch).")


class ExportConfig(Settings):
    """A checkpoint's trained weights as a shareable folder (peft's layout)."""

    checkpoint: Path = Field(description="Checkpoint written by 'axion stage3 train' (best_model.pt, ...).")
    output_dir: Path = Field(
        description="Folder for adapter_config.json, adapter_model.safetensors, fusion.safetensors, axion.json."
    )
    merge: bool = Field(
        False,
        description="Also write merged_generator.safetensors: the adapted layers with LoRA folded in (no peft needed).",
    )
    overwrite: bool = Field(False, description="Replace an earlier export in --output-dir.")
