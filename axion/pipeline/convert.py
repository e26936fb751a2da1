"""What :class:`~axion.pipeline.stage3.Stage3Pipeline` accepts and gives back.

Inputs (numpy arrays, torch tensors, xarray DataArrays, with or without a batch dimension)
become float32 numpy arrays (B, C, H, W); outputs go back in the form of the opt_v2 input:
numpy for numpy, a float32 tensor on the input's device for a tensor, and for a DataArray
a DataArray with opt_v2's dimensions, coordinates (the CRS's ``spatial_ref`` included),
band names and attributes. xarray is never imported here: a DataArray can only be given
when the caller has imported it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from axion.errors import DataError

#: The attributes a no-data value is read from (rioxarray keeps it in ``_FillValue``).
_FILL = "_FillValue"
#: Attributes that describe how the input's values were stored, not what the output holds.
_PACKING = (_FILL, "scale_factor", "add_offset", "dtype")


@dataclass(frozen=True)
class Batch:
    """One input as arrays the prediction code reads.

    Attributes:
        arrays: (B, C, H, W) float32.
        nodata: the value marking invalid pixels besides NaN/inf (a DataArray's ``_FillValue``).
        batched: the input had a batch dimension.
        template: the input itself (outputs are given its form).
    """

    arrays: np.ndarray
    nodata: float | None
    batched: bool
    template: Any


def _xarray_type() -> type | None:
    module = sys.modules.get("xarray")
    return None if module is None else module.DataArray


def _numeric(dtype: Any) -> bool:
    return np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)


def _as_numpy(value: Any, name: str) -> tuple[np.ndarray, float | None]:
    import torch

    data_array = _xarray_type()
    if data_array is not None and isinstance(value, data_array):
        fill = value.attrs.get(_FILL, value.encoding.get(_FILL))
        return np.asarray(value.values), None if fill is None else float(fill)
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise DataError(f"{name}: array has non-numeric dtype {value.dtype}")
        return value.detach().to("cpu", torch.float32).numpy(), None
    if isinstance(value, np.ndarray):
        return value, None
    raise DataError(
        f"{name}: expected a numpy array, a torch tensor or an xarray DataArray, got {type(value).__name__}"
    )


def to_batch(value: Any, name: str, bands: int) -> Batch:
    """Check an input's type, dtype and rank; return it as (B, C, H, W) float32.

    Args:
        value: (C, H, W) or (B, C, H, W).
        name: how messages name it (``s1``, ``opt_v2``).
        bands: how many bands it must have (for the message of a wrong rank).

    Raises:
        DataError: ``<name>: <problem>`` for an unknown type, a non-numeric dtype or a wrong rank.
    """
    array, nodata = _as_numpy(value, name)
    if not _numeric(array.dtype):
        raise DataError(f"{name}: array has non-numeric dtype {array.dtype}")
    if array.ndim not in (3, 4):
        raise DataError(
            f"{name}: array has shape {tuple(array.shape)}, expected ({bands}, H, W) or (batch, {bands}, H, W)"
        )
    batched = array.ndim == 4
    arrays = (array if batched else array[None]).astype(np.float32, copy=False)
    return Batch(arrays=arrays, nodata=nodata, batched=batched, template=value)


def to_clear_mask(value: Any, opt_v2: Batch) -> np.ndarray:
    """``opt_v2_mask`` (1 where opt_v2 is clear, 0 where it is cloudy) as (B, 1, H, W) bool.

    Accepts (H, W), (1, H, W) or, for a batched opt_v2, (B, H, W) or (B, 1, H, W), in any numeric
    or bool dtype, as numpy, torch or xarray.

    Raises:
        DataError: ``opt_v2_mask: <problem>`` for a wrong type, shape or value.
    """
    import torch

    if isinstance(value, torch.Tensor) and value.dtype == torch.bool:
        value = value.to(torch.uint8)
    array, _ = _as_numpy(value, "opt_v2_mask")
    if not (_numeric(array.dtype) or array.dtype == bool):
        raise DataError(f"opt_v2_mask: array has non-numeric dtype {array.dtype}")
    count, _, height, width = opt_v2.arrays.shape
    shapes = {(height, width), (1, height, width)} | (
        {(count, height, width), (count, 1, height, width)} if opt_v2.batched else set()
    )
    if array.shape not in shapes:
        raise DataError(
            f"opt_v2_mask: array has shape {tuple(array.shape)}, expected opt_v2's pixel grid "
            f"({height}, {width}){f' or ({count}, {height}, {width})' if opt_v2.batched else ''}"
        )
    other = (array != 0) & (array != 1)  # one pass; no sort of a whole scene's pixels
    if other.any():
        raise DataError(f"opt_v2_mask: values must be 0 (cloudy) or 1 (clear), found {array[other].min():g}")
    return np.broadcast_to(array.reshape(-1, 1, height, width) > 0, (count, 1, height, width))


def like(values: np.ndarray, batch: Batch, name: str) -> Any:
    """(B, 4, H, W) float32 results in the form of ``batch``'s input (its batch dimension too)."""
    import torch

    values = values if batch.batched else values[0]
    template = batch.template
    if isinstance(template, torch.Tensor):
        return torch.from_numpy(values).to(template.device)
    data_array = _xarray_type()
    if data_array is not None and isinstance(template, data_array):
        out = template.copy(data=values)
        out.name = name
        # The values are float32 tile units, NaN where invalid: no packing or fill value of the input holds.
        out.attrs = {k: v for k, v in template.attrs.items() if k not in _PACKING}
        if _FILL in template.attrs:
            out.attrs[_FILL] = np.nan
        out.encoding = {k: v for k, v in template.encoding.items() if k == "grid_mapping"}
        return out
    return values
