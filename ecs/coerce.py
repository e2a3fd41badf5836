"""Values converted to a component field's dtype: exactly, or refused with ComponentValueError.

A value never truncates silently: an int past the field's range, a float for an int field that
is not integral, NaN or infinity for an int, a shape the field does not have: each names the
component, the field and the value. `raw_bounds` and `fitting_scalar` are the fast checks for a
plain scalar that certainly fits (the generated constructors of schema.py use them).
`as_int` takes an integer argument (a count, a period) as Python or numpy int, never a bool.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ComponentValueError

_EXACT_INT_IN_DOUBLE = 2 ** 53   # ints up to this size are exact doubles: int -> double -> f32 rounds once


def raw_bounds(dtype: np.dtype) -> dict[type, tuple[Any, Any] | bool] | None:
    """Python/numpy scalar types that certainly convert to this scalar field without loss or
    overflow when they lie within the bounds (NaN compares false and takes the checked path);
    True for the field's own numpy scalar type, which always fits. The first key is the common
    type, checked inline by the generated __init__."""
    if dtype.shape:
        return None
    if dtype.kind == "f":
        top = float(np.finfo(dtype).max)
        return {float: (-top, top), int: (-_EXACT_INT_IN_DOUBLE, _EXACT_INT_IN_DOUBLE), dtype.type: True}
    if dtype.kind in "iu":
        limits = np.iinfo(dtype)
        return {int: (int(limits.min), int(limits.max)), dtype.type: True}
    if dtype.kind == "b":
        return {bool: (False, True), np.bool_: True}
    return None


def fitting_scalar(value: object, dtype: np.dtype, bounds: dict[type, Any] | None) -> np.ndarray | None:
    """`value` as a 0-d array of a scalar field's dtype when it is a scalar that certainly fits
    (a type and bounds of raw_bounds), else None: what coerce returns for it, without its
    checks (~1 us against ~10 us for `y=0.0` of an f32 field, most of it errstate and masks)."""
    bound = bounds.get(type(value)) if bounds is not None else None
    if bound is True or (bound is not None and bound[0] <= value <= bound[1]):  # type: ignore[index,operator]
        return np.asarray(value, dtype)
    return None


def coerce(component_name: str, field: str, dtype: np.dtype, value: object, batch: bool) -> np.ndarray:
    """Convert `value` to the field's dtype, or raise ComponentValueError; never truncates silently.

    Scalar form has the field's shape; batch form has one more leading axis.
    """
    base, shape = (dtype.base, dtype.shape) if dtype.shape else (dtype, ())
    try:
        arr = np.asarray(value)
    except Exception:
        raise ComponentValueError(component_name, field, value, "not convertible to a numeric array") from None
    if base.kind in "iu" and arr.dtype.kind in "fO" and (arr.dtype.kind == "O" or not isinstance(value, np.ndarray)):
        # numpy rounds a list mixing ints >= 2**63 with others through float64: [2**63 + 1, 0]
        # would store 2**63. Check such Python ints exactly instead (and those of an object array).
        exact = np.asarray(value, dtype=object)
        flat = exact.reshape(-1)
        if flat.size and all(isinstance(v, (int, np.integer)) for v in flat):
            limits = np.iinfo(base)
            bad = [k for k, v in enumerate(flat) if not limits.min <= int(v) <= limits.max]
            if bad:
                at = f" (element {bad[0]})" if exact.ndim else ""
                raise ComponentValueError(component_name, field, int(flat[bad[0]]),
                                          f"does not fit {base.name}{at}")
            arr = exact.astype(base)
    if arr.dtype.kind == "O" and all(isinstance(v, int) for v in arr.reshape(-1)):
        if base.kind != "f":
            raise ComponentValueError(component_name, field, value, f"does not fit {base.name}")
        try:  # ints past 2**64 are still floats (2**64 fits f32); only past the double range they are not
            arr = np.array(arr.tolist(), dtype=np.float64)
        except OverflowError:
            raise ComponentValueError(component_name, field, value, f"does not fit {base.name}") from None
    if arr.dtype.kind not in "biuf":
        raise ComponentValueError(component_name, field, value,
                                  f"expected a {base.name} value, got {arr.dtype.name} data")
    if arr.shape[arr.ndim - len(shape):] != shape or arr.ndim not in (len(shape), len(shape) + (1 if batch else 0)):
        want = f"shape {shape}" + (f" or (n, {', '.join(map(str, shape))})" if batch else "") if shape else "a scalar"
        if batch and not shape:
            want = "a scalar or a 1-D array"
        raise ComponentValueError(component_name, field, value, f"expected {want}, got shape {arr.shape}")
    if arr.dtype == base:   # one value given as an array of its own (a row of a column?): copied
        return arr.copy() if arr is value and arr.ndim == len(shape) else arr
    misfits = _misfit_mask(arr, base)
    if misfits is not None:
        flat_bad = np.flatnonzero(misfits.reshape(-1))
        if flat_bad.size:
            first = arr.reshape(-1)[flat_bad[0]]
            at = f" (element {int(flat_bad[0])})" if arr.ndim else ""
            raise ComponentValueError(component_name, field, first.item(), f"does not fit {base.name}{at}")
    with np.errstate(all="ignore"):
        return arr.astype(base)


def _misfit_mask(arr: np.ndarray, base: np.dtype) -> np.ndarray | None:
    """Boolean mask of elements that would change value when cast to `base`; None when none can."""
    src = arr.dtype
    if base.kind == "b":
        return None if src.kind == "b" else ~((arr == 0) | (arr == 1))
    if base.kind in "iu":
        info = np.iinfo(base)
        if src.kind == "b":
            return None
        if src.kind in "iu":
            if np.can_cast(src, base, "safe"):
                return None
            lo, hi = (arr.min(), arr.max()) if arr.size else (0, 0)
            if int(lo) >= info.min and int(hi) <= info.max:
                return None
            as_obj = arr.astype(object)
            return (as_obj < info.min) | (as_obj > info.max)
        with np.errstate(invalid="ignore"):
            # float(info.max) + 1 is exact (a power of two) where float(info.max) rounds up
            return ~np.isfinite(arr) | (arr != np.floor(arr)) | (arr < float(info.min)) | (arr >= float(info.max) + 1)
    # float target: ints and bools always convert; wider floats must not overflow to inf
    if src.kind == "f" and src.itemsize > base.itemsize:
        with np.errstate(over="ignore"):
            return np.isfinite(arr) & ~np.isfinite(arr.astype(base))
    return None


def as_int(value: object) -> int | None:
    """`value` as a Python int if it is an integer (a numpy one too) and not a bool, else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return None
    return int(value)
