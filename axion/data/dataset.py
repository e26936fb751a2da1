"""The training dataset: tiles selected by the split their JSON declares.

Each sample is a dict (training and prediction rely on these keys)::

    s1           float32 (2, H, W)  VV, VH in dB
    opt_v2       float32 (4, H, W)  Stage 2 estimate of B2, B3, B4, B8, reflectance x 10000
    target       float32 (4, H, W)  ground truth B2, B3, B4, B8 (absent for inference tiles)
    mask         float32 (1, H, W)  1 = valid pixel, 0 = padding or invalid source pixel
    opt_v2_mask  float32 (1, H, W)  1 where opt_v2 can be trusted (clear), 0 where it cannot
                                    (clouds, shadows); all 1 unless the Stage 2 file says otherwise
    opt_v2_acquired  float32 ()     1 when opt_v2 is a real acquisition (its Stage 2 file has an
                                    opt_v2_mask; a training proxy made like one), else 0
    name         str                the tile's file stem
    size         (int, int)         the sample's (H, W) before padding

H and W are the tile's size rounded up to a multiple of 16 (TerraMind's patch size) by
reflect-padding at the bottom and right; :func:`collate_tiles` then zero-pads every
sample of a batch to the batch's largest size. In both cases the mask is 0 there.

Built with ``skip_bad=True`` (training, validation, evaluate), the dataset validates each
sample as it loads it and returns a :class:`~axion.data.badsamples.BadSample` instead of a
sample it cannot use (unreadable, NaN/inf, implausible: the judgement of ``prepare --check``);
:func:`collate_tiles` leaves those out of the batch and lists them under ``"bad"``.

A training set may be given :class:`~axion.data.augment.TrainingDraws`: indexed with
``(index, epoch)`` (see :class:`~axion.training.sampler.EpochSampler`), a tile then gets a
fresh opt_v2 proxy and a random flip, rotation and crop for that epoch.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from axion.bands import S1_KEYS, S2_KEYS
from axion.data.augment import TrainingDraws, draw_geometry
from axion.data.badsamples import UNREADABLE, BadSample, split_bad
from axion.data.check import Problem, ensure_dir, opt_v2_problem, sample_problem
from axion.data.georef import Georef, georef_from_meta
from axion.data.padding import pad_reflect, pad_zero, padded_size
from axion.data.proxy import degrade_to_proxy, prepare_proxy, synthetic_clouds, tile_seed
from axion.data.tilefile import (
    OPT_V2_KEY,
    OPT_V2_MASK_KEY,
    SPLITS,
    VALID_KEY,
    find_npz,
    is_inference_tile,
    load_arrays,
    npz_header,
    read_meta,
    sidecar,
    split_of,
)
from axion.data.units import declared_units, s1_to_db, s2_to_tile_units
from axion.errors import DataError

#: How many missing Stage 2 names an error message lists before "and N more".
_LISTED = 10


@dataclass(frozen=True)
class TileInfo:
    """What the dataset knows about a tile without loading its pixels."""

    name: str
    path: Path
    meta: dict[str, Any]
    height: int
    width: int
    #: Why its NPZ cannot be used, found while listing it (``skip_bad`` datasets only).
    problem: str | None = None
    #: The NPZ's bytes, for a tile read from a shard (``path`` is then not a file).
    data: bytes | None = None
    #: Where a tile read from a shard came from (``<shard>:<name>``), as messages name it.
    source: str | None = None
    #: The tile's arrays by NPZ key, already decoded (TerraMesh samples); ``path`` is then not a file.
    arrays: dict[str, np.ndarray] | None = None

    @property
    def where(self) -> str:
        """The file (or shard member) messages name."""
        return self.source if self.source is not None else str(self.path)

    @property
    def georef(self) -> Georef | None:
        """The tile's georeference (for writing GeoTIFF outputs), if its JSON has one."""
        return georef_from_meta(self.meta)


def empty_split_message(data_dir: Path, split: str | None, elsewhere: Counter[str]) -> str:
    """Why no tile was selected: the tiles are all in other splits, or there is no tile at all."""
    if split is None or not elsewhere:
        which = f"split {split!r}" if split else "any split"
        return f"{data_dir}: no tiles for {which} (tiles need a sidecar JSON)"
    counts = ", ".join(f"{name} {count}" for name, count in sorted(elsewhere.items()))
    return (
        f"{data_dir}: no tiles for split {split!r} (the tiles are in {counts}); prepare them again with a "
        f"{split} share in --split-ratios, and a smaller --block-size if the scenes give too few blocks"
    )


def _describe(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def unrecorded_s1_product(data_dir: Path, tiles: Sequence[TileInfo], product: str) -> list[Problem]:
    """One warning naming the tiles whose JSON does not record their S1 product (read as ``product``).

    GRD and RTC backscatter differ by about half a standard deviation of TerraMind's statistics, so
    a guess is worth a word.
    """
    names = [tile.path.name for tile in tiles if "s1_product" not in tile.meta]
    if not names:
        return []
    many = len(names) > 1
    reason = (
        f"{len(names)} tile{'s' if many else ''} record{'' if many else 's'} no S1 product (no 's1_product' "
        f"in the JSON); read as {product.upper()}, the model's (--s1-product): {_describe(names)}"
    )
    return [Problem(data_dir, reason, fatal=False)]


class SampleBuilder:
    """Turns a tile's arrays into a sample: units, opt_v2 (Stage 2 or proxy), draws, padding.

    Shared by the tile folder (:class:`TileDataset`) and shards
    (:class:`~axion.data.sharddata.ShardDataset`), so both give the same samples and judge
    them alike. The arguments are :class:`TileDataset`'s.
    """

    def __init__(
        self,
        *,
        stage2_dir: Path | None = None,
        with_target: bool = True,
        proxy_seed: int = 0,
        draws: TrainingDraws | None = None,
        skip_bad: bool = False,
    ) -> None:
        self.stage2_dir = Path(stage2_dir) if stage2_dir is not None else None
        self.with_target = with_target
        self.proxy_seed = proxy_seed
        self.draws = draws
        self.skip_bad = skip_bad
        if self.stage2_dir is None:
            prepare_proxy()  # here, before DataLoader workers fork

    def make(self, tile: TileInfo, epoch: int | None) -> dict[str, Any] | BadSample:
        """The sample of ``tile`` (drawn for ``epoch`` when training), or why it is bad (``skip_bad``)."""
        if tile.problem is not None:
            return BadSample(tile.where, tile.name, UNREADABLE, tile.problem)
        try:
            return self._sample(tile, epoch)
        except _Skipped as skipped:
            return skipped.sample

    def info(
        self,
        name: str,
        npz: Path,
        meta: dict[str, Any],
        *,
        data: bytes | None = None,
        source: str | None = None,
    ) -> TileInfo:
        """What is known of a tile from its NPZ's headers (``data``: the NPZ's bytes, from a shard;
        its size is then read with its arrays, which are read once).

        Raises:
            DataError: a missing key or bands of different shapes (unless ``skip_bad``: then the
                tile's :attr:`TileInfo.problem` says it).
        """
        where = source if source is not None else str(npz)
        if data is not None:
            return TileInfo(name, npz, meta, 0, 0, data=data, source=source)
        try:
            header = npz_header(npz if data is None else io.BytesIO(data))  # type: ignore[arg-type]
            keys = S1_KEYS + S2_KEYS if self.with_target else S1_KEYS
            missing = [key for key in keys if key not in header]
            if missing:
                raise ValueError(f"missing key {missing[0]!r}")
            shapes = {header[key][0] for key in keys}
            if len(shapes) != 1 or len(next(iter(shapes))) != 2:
                raise ValueError(f"bands must share one (H, W) shape, got {sorted(shapes)}")
            height, width = next(iter(shapes))
            problem = None
        except ValueError as exc:
            if not self.skip_bad:
                raise DataError(f"{where}: {exc}") from None
            height, width, problem = 0, 0, str(exc)
        return TileInfo(name, npz, meta, height, width, problem=problem, data=data, source=source)

    def _stage2_path(self, name: str) -> Path:
        assert self.stage2_dir is not None
        return self.stage2_dir / f"{name}.npz"

    def _load(self, tile: TileInfo) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """S1 (dB), target (tile units) or None, valid mask (H, W) for one tile."""
        try:
            s1_unit, s2_scale = declared_units(tile.meta)
            keys = S1_KEYS + (S2_KEYS if self.with_target else ())
            if tile.arrays is not None:
                arrays = tile.arrays
            else:
                npz = tile.path if tile.data is None else tile.data
                arrays = load_arrays(npz, keys, optional=(VALID_KEY,))
        except ValueError as exc:
            raise _skipped_or_error(self.skip_bad, tile.where, tile.name, UNREADABLE, str(exc)) from None
        shapes = sorted({array.shape for array in arrays.values()})
        # A listed file is sized by its headers; a shard member by its arrays (read once).
        expected = (tile.height, tile.width) if tile.height else shapes[0]
        if shapes != [expected] or len(expected) != 2:
            reason = f"bands must share one (H, W) shape, got {shapes}"
            raise _skipped_or_error(self.skip_bad, tile.where, tile.name, UNREADABLE, reason)
        # Converted once: the sample and its plausibility check read the same tile-unit arrays.
        s1 = s1_to_db(np.stack([arrays[k] for k in S1_KEYS]), s1_unit)
        optical = None
        if all(k in arrays for k in S2_KEYS):
            optical = s2_to_tile_units(np.stack([arrays[k] for k in S2_KEYS]), s2_scale)
        if self.skip_bad:
            problem = sample_problem(arrays, s1, optical)
            if problem is not None:
                raise _Skipped(BadSample(tile.where, tile.name, *problem))
        target = optical if self.with_target else None
        valid = arrays.get(VALID_KEY)
        mask = np.ones(expected, np.float32) if valid is None else (valid > 0).astype(np.float32)
        return s1, target, mask

    def _opt_v2(
        self, tile: TileInfo, target: np.ndarray | None, epoch: int | None
    ) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """opt_v2 (4, H, W), its validity (H, W) or None (all valid), and whether it is a real
        acquisition (a Stage 2 file with a mask) or made like one (a training proxy with cloud gaps)."""
        if self.stage2_dir is None:
            assert target is not None
            fresh = self.draws is not None and self.draws.fresh_proxy and epoch is not None
            if fresh:
                draws = self.draws
                assert draws is not None and epoch is not None
                gaps = synthetic_clouds(
                    draws.cloud_seed(epoch, tile.name), target.shape[-2:], draws.proxy_cloud_share
                )
                # A proxy with cloud gaps stands for a real cloudy acquisition: it is not blurred.
                sharp_share = 1.0 if gaps is not None else draws.proxy_sharp_share
                proxy = degrade_to_proxy(target, draws.proxy_seed(epoch, tile.name), sharp_share)
                return proxy, gaps, gaps is not None
            return degrade_to_proxy(target, tile_seed(tile.name, self.proxy_seed)), None, False
        path = self._stage2_path(tile.name)
        try:
            arrays = load_arrays(path, (OPT_V2_KEY,), optional=(OPT_V2_MASK_KEY,))
            mask = arrays.get(OPT_V2_MASK_KEY)
            if self.skip_bad and mask is not None and mask.shape != (tile.height, tile.width):
                raise ValueError(
                    f"{OPT_V2_MASK_KEY} has shape {mask.shape}, expected {(tile.height, tile.width)}"
                )
        except ValueError as exc:
            raise _skipped_or_error(self.skip_bad, path, tile.name, UNREADABLE, str(exc)) from None
        if self.skip_bad:
            problem = opt_v2_problem(arrays[OPT_V2_KEY], (len(S2_KEYS), tile.height, tile.width))
            if problem is not None:
                raise _Skipped(BadSample(str(path), tile.name, *problem))
        clear = None if mask is None else (mask > 0).astype(np.float32)
        return arrays[OPT_V2_KEY].astype(np.float32), clear, mask is not None

    def _sample(self, tile: TileInfo, epoch: int | None) -> dict[str, Any]:
        s1, target, valid = self._load(tile)
        if not tile.height:  # a shard member: now its size is known
            tile = replace(tile, height=valid.shape[0], width=valid.shape[1])
        opt_v2, opt_v2_mask, acquired = self._opt_v2(tile, target, epoch)
        arrays: dict[str, np.ndarray] = {"s1": s1, "opt_v2": opt_v2}
        if target is not None:
            arrays["target"] = target
        arrays["mask"] = valid[None]
        arrays["opt_v2_mask"] = (np.ones_like(valid) if opt_v2_mask is None else opt_v2_mask)[None]
        if self.draws is not None and epoch is not None:
            arrays = draw_geometry(arrays, self.draws, epoch, tile.name)
        height, width = (padded_size(n) for n in arrays["mask"].shape[-2:])
        sample: dict[str, Any] = {}
        for name, array in arrays.items():
            pad = pad_zero if name in ("mask", "opt_v2_mask") else pad_reflect
            sample[name] = torch.from_numpy(np.ascontiguousarray(pad(array, height, width), dtype=np.float32))
        sample["opt_v2_acquired"] = torch.tensor(float(acquired))
        sample["name"] = tile.name
        sample["size"] = tuple(arrays["mask"].shape[-2:])  # before padding
        return sample


class TileDataset(SampleBuilder, Dataset):
    """Tiles below ``data_dir`` whose JSON declares ``split``.

    Args:
        data_dir: scanned recursively for ``*.npz`` with a sidecar ``.json``; folder names
            play no role, only the JSON's ``split``.
        split: ``train``, ``val`` or ``test``; ``None`` takes every tile (inference).
        stage2_dir: Stage 2 outputs ``<stage2_dir>/<name>.npz`` with key ``opt_v2`` (4, H, W);
            every selected tile must have one. Without it, opt_v2 is the seeded
            :func:`axion.data.proxy.degrade_to_proxy` of the ground truth.
        with_target: ``False`` for inference tiles without ground truth: only S1 is read
            from the tile, ``stage2_dir`` is required and samples carry no ``"target"``.
        max_samples: keep the first N tiles by sorted name (deterministic).
        proxy_seed: base seed of the fixed opt_v2 proxy (the same in every run and epoch).
        draws: how a training tile is drawn each epoch (fresh proxy, flips, crops); None keeps
            every tile fixed (validation, test, inference).
        skip_bad: validate each sample as it is loaded and return a
            :class:`~axion.data.badsamples.BadSample` for one that cannot be used, instead of
            raising (the JSON, names and Stage 2 files' presence are still checked here).

    Raises:
        DataError: missing directory, bad JSON, duplicate names, a tile without its Stage 2
            output (all names listed), or no tile in the split; all raised here, before any epoch.
    """

    def __init__(
        self,
        data_dir: Path,
        split: str | None,
        *,
        stage2_dir: Path | None = None,
        with_target: bool = True,
        max_samples: int | None = None,
        proxy_seed: int = 0,
        draws: TrainingDraws | None = None,
        skip_bad: bool = False,
    ) -> None:
        data_dir = Path(data_dir)
        ensure_dir(data_dir)
        if split is not None and split not in SPLITS:
            raise DataError(f"unknown split {split!r} (expected train, val or test)")
        if not with_target and stage2_dir is None:
            raise DataError("tiles without ground truth need Stage 2 outputs (--stage2-dir) for opt_v2")
        super().__init__(
            stage2_dir=stage2_dir,
            with_target=with_target,
            proxy_seed=proxy_seed,
            draws=draws,
            skip_bad=skip_bad,
        )
        self.data_dir = data_dir
        self.split = split
        self.tiles = self._select(max_samples)
        if self.stage2_dir is not None:
            self._check_stage2()

    # --- building --------------------------------------------------------------------------
    def _select(self, max_samples: int | None) -> list[TileInfo]:
        chosen: dict[str, Path] = {}
        metas: dict[str, dict[str, Any]] = {}
        elsewhere: Counter[str] = Counter()  # tiles of the other splits, for the error message
        for npz in find_npz(self.data_dir):
            if not sidecar(npz).exists():
                continue  # not a tile (a Stage 2 output, or reported by --check)
            try:
                meta = read_meta(sidecar(npz))
                if self.split is not None and is_inference_tile(meta):
                    continue  # a tile without ground truth: inference only
                if self.split is not None and split_of(meta) != self.split:
                    elsewhere[split_of(meta)] += 1
                    continue
            except ValueError as exc:
                raise DataError(f"{sidecar(npz)}: {exc}") from None
            if npz.stem in chosen:
                raise DataError(f"{npz}: duplicate tile name {npz.stem!r} (also {chosen[npz.stem]})")
            chosen[npz.stem] = npz
            metas[npz.stem] = meta
        names = sorted(chosen)
        if max_samples is not None:
            names = names[:max_samples]
        if not names:
            raise DataError(empty_split_message(self.data_dir, self.split, elsewhere))
        return [self.info(name, chosen[name], metas[name]) for name in names]

    def _check_stage2(self) -> None:
        assert self.stage2_dir is not None
        ensure_dir(self.stage2_dir, "Stage 2 directory")
        missing = [t.name for t in self.tiles if not self._stage2_path(t.name).is_file()]
        if missing:
            raise DataError(
                f"{self.stage2_dir}: no Stage 2 output (<name>.npz with key opt_v2) for "
                f"{len(missing)} of {len(self.tiles)} tiles: {_describe(missing)}"
            )
        if self.skip_bad:
            return  # each output is checked as it is loaded
        for tile in self.tiles:
            path = self._stage2_path(tile.name)
            try:
                header = npz_header(path)
            except ValueError as exc:
                raise DataError(f"{path}: {exc}") from None
            expected = (len(S2_KEYS), tile.height, tile.width)
            if OPT_V2_KEY not in header:
                raise DataError(f"{path}: missing key {OPT_V2_KEY!r}")
            if header[OPT_V2_KEY][0] != expected:
                raise DataError(f"{path}: opt_v2 has shape {header[OPT_V2_KEY][0]}, expected {expected}")
            if OPT_V2_MASK_KEY in header and header[OPT_V2_MASK_KEY][0] != expected[1:]:
                raise DataError(
                    f"{path}: {OPT_V2_MASK_KEY} has shape {header[OPT_V2_MASK_KEY][0]}, expected {expected[1:]}"
                )

    # --- loading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tiles)

    @property
    def names(self) -> list[str]:
        """Tile names in dataset order."""
        return [tile.name for tile in self.tiles]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any] | BadSample:
        """The sample of tile ``key``, or of ``(index, epoch)`` drawn for that epoch (training).

        With ``skip_bad``, a :class:`~axion.data.badsamples.BadSample` when it cannot be used.
        """
        index, epoch = key if isinstance(key, tuple) else (key, None)
        return self.make(self.tiles[index], epoch)


class _Skipped(Exception):
    """A sample a ``skip_bad`` dataset does not use (internal: becomes its return value)."""

    def __init__(self, sample: BadSample) -> None:
        super().__init__(str(sample))
        self.sample = sample


def _skipped_or_error(skip: bool, where: str | Path, name: str, kind: str, reason: str) -> Exception:
    """What to raise for a sample that cannot be read: skip it, or the one-line error."""
    return _Skipped(BadSample(str(where), name, kind, reason)) if skip else DataError(f"{where}: {reason}")


def collate_tiles(samples: Sequence[dict[str, Any] | BadSample]) -> dict[str, Any]:
    """Stack samples of different sizes: zero-pad each to the batch's largest H and W.

    The padding gets mask 0, so losses and metrics ignore it. ``"name"`` and ``"size"`` (each
    sample's (H, W) before padding) become lists; per-sample scalars (``"opt_v2_acquired"``) a (B,) tensor.
    Bad samples (:class:`~axion.data.badsamples.BadSample`) are left out and listed under
    ``"bad"``; a batch of bad samples only has no other key but an empty ``"name"``.
    """
    samples, bad = split_bad(samples)
    if not samples:
        return {"name": [], "bad": bad}
    height = max(sample["mask"].shape[-2] for sample in samples)
    width = max(sample["mask"].shape[-1] for sample in samples)
    batch: dict[str, Any] = {}
    for key in samples[0]:
        if key in ("name", "size"):
            batch[key] = [sample[key] for sample in samples]
            continue
        if samples[0][key].dim() == 0:
            batch[key] = torch.stack([sample[key] for sample in samples])
            continue
        padded = [
            s[key]
            if s[key].shape[-2:] == (height, width)  # already the batch's size: stacked without a copy first
            else torch.nn.functional.pad(s[key], (0, width - s[key].shape[-1], 0, height - s[key].shape[-2]))
            for s in samples
        ]
        batch[key] = torch.stack(padded)
    batch["bad"] = bad
    return batch
