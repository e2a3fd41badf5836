"""Argument checks shared by the kernels: O(1) a call, compiled with them.

numba checks no bounds, so a kernel that writes `out[i]` for every input row, or indexes an
array with a value it was given, must compare lengths and indices itself: an output array
that is too short, or an integer dtype too narrow for the values it receives, would
otherwise write past its end or store wrapped values silently.
"""

from __future__ import annotations

import numpy as np
from numba.core import types
from numba.extending import overload

from ._jit import jit

_EXACT_INT_IN_DOUBLE = 2**53


def largest_storable(array):
    """The largest integer that `array`'s dtype holds exactly (compiled by the overload below:
    an integer dtype's maximum, 2**53 for a float dtype, 1 for bool)."""
    if array.dtype.kind in "iu":
        return int(np.iinfo(array.dtype).max)
    return 1 if array.dtype.kind == "b" else _EXACT_INT_IN_DOUBLE


@overload(largest_storable)
def _largest_storable_compiled(array):
    dtype = array.dtype
    if isinstance(dtype, types.Boolean):
        return lambda array: 1
    if isinstance(dtype, types.Integer):
        top = int(np.iinfo(np.dtype(str(dtype))).max)
        return lambda array: top
    return lambda array: _EXACT_INT_IN_DOUBLE


@jit
def check_length(name, array, needed):
    """ValueError naming the kernel's `name` unless `array` has at least `needed` entries."""
    if array.shape[0] < needed:
        raise ValueError(name + ": an output array has " + str(array.shape[0]) + " entries, " + str(needed)
                         + " are needed")


@jit
def check_holds(name, array, largest):
    """ValueError naming `name` unless `array`'s dtype holds every integer up to `largest`."""
    if largest > largest_storable(array):
        raise ValueError(name + ": an output array's dtype cannot hold values up to " + str(largest)
                         + " (use int64)")
