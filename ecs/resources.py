"""Resources: world-wide values by name, bound to system parameters of the same name.

Numbers (and numpy scalars) are kept as given. Numpy arrays are copied into the world's shared
arena, and reading the name returns that shared array, so a kernel's writes in any process are
visible through it. Rebinding a name gives it a new array; the old one's memory is returned.

`resize(name, shape)` grows or shrinks a resource array between frames, keeping its leading
contents: a new region of the arena gets the overlap of the old array, zeros elsewhere, and the
old region is released. Its dtype, dimensions and layout stay, so kernels compiled for the
array keep working; the next run ships the new array's place to the workers (values are
resolved per run). Cost: one copy of the overlap and a zero fill of the rest, O(new bytes).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, MutableMapping
from typing import Any

import numpy as np

from .errors import ArgumentTypeError, CapacityError, InvalidArgumentError, InvalidNameError, WorldClosedError
from .memory import Arena, Region


class Resources(MutableMapping[str, Any]):
    """World-wide values by name. Numeric scalars are kept as given; numpy arrays are copied
    into the shared arena, and reading the name returns that shared array (kernel writes,
    in any process, are visible through it)."""

    def __init__(self, arena: Arena) -> None:
        self._arena = arena
        self._values: dict[str, Any] = {}
        self._regions: dict[str, Any] = {}
        self.version = 0      # bumped by every assignment, resize and deletion (keys values resolved from it)

    def __getitem__(self, name: str) -> Any:
        if self._arena.forked:   # a child forked from the world's process: the world counts as closed there
            raise WorldClosedError("resources[...]", True)
        try:
            return self._values[name]
        except KeyError:
            if self._arena.closed:
                raise WorldClosedError("resources[...]", self._arena.forked) from None
            raise InvalidNameError(f"no resource {name!r}; resources are {sorted(self._values)}") from None

    def __setitem__(self, name: str, value: Any) -> None:
        if self._arena.closed:  # its fd number may already name another file: never touch it
            raise WorldClosedError("resources.__setitem__", self._arena.forked)
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidNameError(f"resource names are identifiers (they bind system parameters), got {name!r}")
        if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind == "f" and value.dtype.itemsize > 8:
            raise ArgumentTypeError(f"resource {name!r}: a {value.dtype.name} is wider than a float64, which "
                                    f"kernels (numba) and world files cannot hold; use np.float64")
        if isinstance(value, (np.ndarray, np.generic)) and value.dtype == np.float16:
            raise ArgumentTypeError(f"resource {name!r}: numba compiles no kernel for float16 values; use np.float32")
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise ArgumentTypeError(f"resource {name!r}: arrays must be numeric or bool, got dtype {value.dtype}")
            region = self._committed_region(f"resources[{name!r}] = ...", value.nbytes)
            # in this machine's byte order: numba compiles no kernel for an array of the other
            shared = region.view(value.dtype.newbyteorder("="), value.shape)
            shared[...] = value
            self._drop(name)
            self._values[name], self._regions[name] = shared, region
        elif isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
            self._drop(name)
            self._values[name] = value
        else:
            raise ArgumentTypeError(f"resource {name!r}: expected a number, a bool or a numpy array, "
                            f"got {type(value).__name__}")

    def _committed_region(self, call: str, nbytes: int) -> Region:
        """A new region of the arena backed for `nbytes`; CapacityError naming the call where
        the arena's address space has no room for it (nothing is reserved then)."""
        try:
            region = self._arena.allocate(max(nbytes, 1))
        except CapacityError as exc:
            raise CapacityError(f"{call}: an array of {nbytes} bytes does not fit", exc.limit,
                                "use a smaller array") from None
        region.commit(nbytes)
        return region

    def resize(self, name: str, shape: int | tuple[int, ...]) -> np.ndarray:
        """Give the resource array `name` the shape `shape` (same number of dimensions), keeping
        the leading contents: entry [i, j, ...] keeps its value wherever it lies inside both
        shapes, new entries are 0. Returns the new shared array, which `self[name]` now gives;
        an array read from the name before must not be used afterwards (its memory is
        released: it reads zeros). Kernels compiled for the array keep working (same dtype,
        dimensions and layout). Call it between frames, not from a kernel. Raises
        InvalidNameError for an unknown name, ArgumentTypeError for a resource that is not an
        array, InvalidArgumentError for a shape of other dimensions or a negative extent.
        Cost O(new bytes)."""
        if self._arena.closed:
            raise WorldClosedError("resources.resize", self._arena.forked)
        old = self[name]
        if not isinstance(old, np.ndarray):
            raise ArgumentTypeError(f"resources.resize({name!r}, ...): the resource is a "
                                    f"{type(old).__name__}, not an array")
        new_shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if len(new_shape) != old.ndim or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0
                                                 for n in new_shape):
            raise InvalidArgumentError(f"resources.resize({name!r}, {shape!r}): expected {old.ndim} "
                                       f"non-negative extents (the array has shape {old.shape}); kernels are "
                                       f"compiled for its number of dimensions")
        new_shape = tuple(int(n) for n in new_shape)
        region = self._committed_region(f"resources.resize({name!r}, {shape!r})", math.prod(new_shape) * old.itemsize)
        shared = region.view(old.dtype, new_shape)
        overlap = tuple(slice(0, min(a, b)) for a, b in zip(old.shape, new_shape, strict=True))
        shared[...] = 0                       # fresh pages read 0 already; the contract should not rest on that
        shared[overlap] = old[overlap]
        self._drop(name)
        self._values[name], self._regions[name] = shared, region
        return shared

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)   # no exception per miss: systems look names up every step

    def __delitem__(self, name: str) -> None:
        if self._arena.closed:   # in a forked child, releasing its region would zero the parent's array
            raise WorldClosedError("resources.__delitem__", self._arena.forked)
        if name not in self._values:
            raise InvalidNameError(f"no resource {name!r}; resources are {sorted(self._values)}")
        self._drop(name)

    def _drop(self, name: str) -> None:
        self.version += 1
        self._values.pop(name, None)
        region = self._regions.pop(name, None)
        if region is not None:
            region.release()

    def drop_views(self) -> None:
        """Forget the shared arrays (world close): the arena unmaps only when no view of it is
        left. Scalars stay readable."""
        for name in [name for name, value in self._values.items() if isinstance(value, np.ndarray)]:
            del self._values[name]
        self._regions.clear()

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Resources({sorted(self._values)})"
