"""``axion stage3 prepare`` as a library call: :func:`prepare` writes tiles, :func:`check` inspects them."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axion.config import PrepareConfig
from axion.data.prepare.run import PrepareReport, SplitSettings, TileSource, run_prepare
from axion.errors import ConfigError

#: Tile side of scenes when --tile-size is not given.
SCENE_TILE_SIZE = 256
#: Flags that only scenes (--s1/--s2) use.
SCENE_ONLY = ("s1_units", "s2_bands", "s2_cloudy_bands", "s1_product", "s2_level")
#: What the L1C warning says: L1C is top-of-atmosphere, the model was pretrained on L2A.
L1C_WARNING = (
    "S2 is L1C (top of atmosphere), not L2A: tiles are recorded as s2_level L1C; measured on real "
    "scenes, L1C minus L2A is about +414 tile units in B2 and -276 in B8, so opt_v3 will carry that "
    "bias; use L2A where you can"
)


def source_of(settings: PrepareConfig) -> str:
    """Which source the settings pick: ``check``, ``demo``, ``bigearthnet`` or ``scenes``.

    Raises:
        ConfigError: no source, several sources, or --check mixed with a source.
    """
    scene_mode = bool(settings.s1 or settings.s2 or settings.s2_cloudy or settings.opt_v2)
    ben_mode = settings.bigearthnet_s1 is not None or settings.bigearthnet_s2 is not None
    chosen = [
        name
        for name, on in (
            ("--demo", settings.demo),
            ("--bigearthnet-s1/-s2", ben_mode),
            ("--s1/--s2", scene_mode),
            ("--from-tiles", settings.from_tiles is not None),
        )
        if on
    ]
    if settings.check is not None:
        if chosen or settings.output_dir is not None:
            raise ConfigError("--check takes no source and no --output-dir")
        return "check"
    if len(chosen) != 1:
        raise ConfigError(
            "pick one source: --demo, --bigearthnet-s1/--bigearthnet-s2, --s1/--s2 or --from-tiles"
            + (f" (got {' and '.join(chosen)})" if chosen else "")
        )
    if settings.output_dir is None:
        raise ConfigError("missing --output-dir")
    if chosen[0] == "--from-tiles" and settings.format != "shards":
        raise ConfigError("--from-tiles converts a tile folder into shards: add --format shards")
    names = {"--demo": "demo", "--bigearthnet-s1/-s2": "bigearthnet", "--s1/--s2": "scenes"}
    return names.get(chosen[0], "from_tiles")


@dataclass(frozen=True)
class CheckReport:
    """What ``--check`` found."""

    total: int
    problems: list[Any]
    warnings: list[Any]

    @property
    def bad_files(self) -> int:
        return len({p.path for p in self.problems})


def check(data_dir: Path) -> CheckReport:
    """Check every tile below ``data_dir`` (see :func:`axion.data.check.inspect_tiles`), or every
    sample of the shards it names (:func:`axion.data.shardcheck.inspect_shards`)."""
    from axion.data.check import inspect_tiles
    from axion.data.sharddata import is_streamed

    if is_streamed(data_dir):
        from axion.data.shardcheck import inspect_shards

        found = inspect_shards(data_dir)
    else:
        found = inspect_tiles(data_dir)
    return CheckReport(total=found.total, problems=found.problems, warnings=found.warnings)


def prepare(
    settings: PrepareConfig,
    on_candidate: Callable[[], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> PrepareReport:
    """Write tiles from the source the settings pick (not ``--check``: see :func:`check`).

    Args:
        settings: the command's settings.
        on_candidate: called once per candidate tile (progress).
        on_total: called once with the number of candidate tiles, before the first.
    """
    from axion.config.fields import parse_ratios
    from axion.data.prepare.output import check_prepare_dir

    source = source_of(settings)
    if source == "check":
        raise ConfigError("--check only checks tiles; call check() instead")
    output_dir = Path(settings.output_dir)  # type: ignore[arg-type]
    splits = SplitSettings(
        ratios=parse_ratios(settings.split_ratios), seed=settings.seed, block_size=settings.block_size
    )
    manifest: dict[str, Any] = {"max_nodata": settings.max_nodata, "block_size": settings.block_size}
    check_prepare_dir(output_dir, settings.overwrite)
    if settings.format == "shards":
        from axion.data.prepare.shards import prepare_shards

        return prepare_shards(settings, source, lambda tiles: prepare(tiles, on_candidate, on_total))
    if source == "scenes":
        sources, record, warnings = _scene_sources(settings)
        return _run(
            sources, output_dir, splits, settings, {**manifest, **record}, on_candidate, on_total, warnings
        )
    from axion.data.prepare.bigearthnet import S1_PRODUCT, S2_LEVEL

    manifest |= {"s1_product": S1_PRODUCT, "s2_level": S2_LEVEL}
    if source == "demo":
        from axion.data.prepare.bigearthnet import DEMO_PACKAGE, extracted_demo

        record = {**manifest, "source": f"demo: BigEarthNet-MM examples from {DEMO_PACKAGE}"}
        with (
            tempfile.TemporaryDirectory(prefix="axion-demo-") as tmp,
            extracted_demo(Path(tmp)) as (s1_root, s2_root),
        ):
            sources = _bigearthnet(s1_root, s2_root, settings)
            return _run(sources, output_dir, splits, settings, record, on_candidate, on_total)
    if settings.bigearthnet_s1 is None or settings.bigearthnet_s2 is None:
        raise ConfigError("BigEarthNet needs both --bigearthnet-s1 and --bigearthnet-s2")
    record = {
        **manifest,
        "source": {
            "bigearthnet_s1": str(settings.bigearthnet_s1),
            "bigearthnet_s2": str(settings.bigearthnet_s2),
        },
    }
    sources = _bigearthnet(settings.bigearthnet_s1, settings.bigearthnet_s2, settings)
    return _run(sources, output_dir, splits, settings, record, on_candidate, on_total)


def _run(
    sources: list[TileSource],
    output_dir: Path,
    splits: SplitSettings,
    settings: PrepareConfig,
    manifest: dict[str, Any],
    on_candidate: Callable[[], None] | None,
    on_total: Callable[[int], None] | None,
    warnings: list[str] | None = None,
) -> PrepareReport:
    if on_total is not None:
        on_total(sum(source.total for source in sources))
    return run_prepare(
        sources,
        output_dir,
        splits,
        overwrite=settings.overwrite,
        manifest=manifest,
        on_candidate=on_candidate,
        warnings=warnings or [],
    )


def _bigearthnet(s1_root: Path, s2_root: Path, settings: PrepareConfig) -> list[TileSource]:
    from axion.data.prepare.bigearthnet import BigEarthNetSource

    if settings.stride is not None and settings.tile_size is None:
        raise ConfigError("--stride needs --tile-size for BigEarthNet patches (they stay whole without it)")
    windows = None
    if settings.tile_size is not None:
        windows = (settings.tile_size, settings.stride or settings.tile_size)
    return [
        BigEarthNetSource(
            s1_root, s2_root, max_nodata=settings.max_nodata, block_size=settings.block_size, windows=windows
        )
    ]


def _scene_sources(settings: PrepareConfig) -> tuple[list[TileSource], dict[str, Any], list[str]]:
    """The scene sources, what prepare.json records about them, and their warnings (L1C)."""
    from axion.bands import parse_band_list
    from axion.data.prepare.scene import SceneOptions, ScenePair, SceneSource

    s1, s2, s2_cloudy = settings.s1, settings.s2, settings.s2_cloudy
    if s1 and not s2 and not s2_cloudy:
        return _inference_sources(settings)
    if settings.opt_v2:
        raise ConfigError("--opt-v2 makes tiles for inference only: give it with --s1 alone, not with --s2")
    if len(s1) != len(s2):
        raise ConfigError(f"give one --s1 per --s2 (got {len(s1)} --s1 and {len(s2)} --s2)")
    if s2_cloudy and len(s2_cloudy) != len(s2):
        raise ConfigError(f"give one --s2-cloudy per --s2 (got {len(s2_cloudy)} and {len(s2)})")
    size = settings.tile_size or SCENE_TILE_SIZE
    stride = size if settings.stride is None else settings.stride
    bands = parse_band_list(settings.s2_bands) if settings.s2_bands is not None else None
    cloudy_bands = parse_band_list(settings.s2_cloudy_bands) if settings.s2_cloudy_bands else None
    if cloudy_bands is not None and not s2_cloudy:
        raise ConfigError("--s2-cloudy-bands needs --s2-cloudy")
    options = SceneOptions(
        tile_size=size,
        stride=stride,
        max_nodata=settings.max_nodata,
        s1_linear=settings.s1_units == "linear",
        s2_bands=bands,
        block_size=settings.block_size,
        s1_product=settings.s1_product,
        s2_level=None if settings.s2_level == "auto" else settings.s2_level,
        s2_cloudy_bands=cloudy_bands,
    )
    cloudy: list[Path | None] = list(s2_cloudy) if s2_cloudy else [None] * len(s2)
    scenes = [SceneSource(ScenePair(a, b, c), options) for a, b, c in zip(s1, s2, cloudy, strict=True)]
    levels = {scene.s2_level for scene in scenes}
    if len(levels) > 1:
        listed = ", ".join(f"{scene.pair.s2.name} {scene.s2_level}" for scene in scenes)
        raise ConfigError(
            f"the S2 scenes mix product levels ({listed}); prepare L2A and L1C scenes into separate "
            "output directories"
        )
    level = levels.pop()
    warnings = [f"{', '.join(str(p) for p in s2)}: {L1C_WARNING}"] if level == "L1C" else []
    record = {
        "source": {
            "s1": [str(p) for p in s1],
            "s2": [str(p) for p in s2],
            "s2_cloudy": [str(p) for p in s2_cloudy],
        },
        "s1_product": settings.s1_product,
        "s2_level": level,
        "tile_size": size,
        "stride": stride,
        "s1_units": settings.s1_units,
        "s2_bands": list(bands) if bands else "by band count",
        "s2_cloudy_bands": list(cloudy_bands) if cloudy_bands else None,
    }
    return list(scenes), record, warnings


def _inference_sources(settings: PrepareConfig) -> tuple[list[TileSource], dict[str, Any], list[str]]:
    """Tiles without ground truth: ``--s1`` alone, or one ``--opt-v2`` per ``--s1``."""
    from axion.data.prepare.inference import InferencePair, InferenceSceneSource
    from axion.data.prepare.scene import SceneOptions
    from axion.data.tilefile import GROUND_TRUTH_KEY

    s1, opt_v2 = settings.s1, settings.opt_v2
    if opt_v2 and len(opt_v2) != len(s1):
        raise ConfigError(f"give one --opt-v2 per --s1 (got {len(opt_v2)} --opt-v2 and {len(s1)} --s1)")
    if settings.s2_bands is not None:
        raise ConfigError("--s2-bands applies to --s2 scenes; inference-only tiles (--s1 alone) have none")
    size = settings.tile_size or SCENE_TILE_SIZE
    stride = size if settings.stride is None else settings.stride
    options = SceneOptions(
        tile_size=size,
        stride=stride,
        max_nodata=settings.max_nodata,
        s1_linear=settings.s1_units == "linear",
        s1_product=settings.s1_product,
    )
    pairs: list[Path | None] = list(opt_v2) if opt_v2 else [None] * len(s1)
    sources: list[TileSource] = [
        InferenceSceneSource(InferencePair(a, b), options) for a, b in zip(s1, pairs, strict=True)
    ]
    record = {
        "source": {"s1": [str(p) for p in s1], "opt_v2": [str(p) for p in opt_v2]},
        GROUND_TRUTH_KEY: False,
        "tile_size": size,
        "stride": stride,
        "s1_product": settings.s1_product,
        "s1_units": settings.s1_units,
    }
    return sources, record, []
