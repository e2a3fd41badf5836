"""Resources: world-wide values by name, bound to system parameters of the same name.

Numbers (and numpy scalars) are kept as given. Numpy arrays are copied into the world's shared
arena, and reading the name returns that shared array, so a kernel's writes in any process are
visible through it. Rebinding a name gives it a new array; the old one's memory is returned.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import numpy as np

from .errors import ArgumentTypeError, InvalidNameError, WorldClosedError
from .memory import Arena


class Resources(MutableMapping[str, Any]):
    """World-wide values by name. Numeric scalars are kept as given; numpy arrays are copied
    into the shared arena, and reading the name returns that shared array (kernel writes,
    in any process, are visible through it)."""

    def __init__(self, arena: Arena) -> None:
        self._arena = arena
        self._values: dict[str, Any] = {}
        self._regions: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise InvalidNameError(f"no resource {name!r}; resources are {sorted(self._values)}") from None

    def __setitem__(self, name: str, value: Any) -> None:
        if self._arena.closed:  # its fd number may already name another file: never touch it
            raise WorldClosedError("resources.__setitem__")
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidNameError(f"resource names are identifiers (they bind system parameters), got {name!r}")
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise ArgumentTypeError(f"resource {name!r}: arrays must be numeric or bool, got dtype {value.dtype}")
            region = self._arena.allocate(max(value.nbytes, 1))
            region.commit(value.nbytes)
            shared = region.view(value.dtype, value.shape)
            shared[...] = value
            self._drop(name)
            self._values[name], self._regions[name] = shared, region
        elif isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
            self._drop(name)
            self._values[name] = value
        else:
            raise ArgumentTypeError(f"resource {name!r}: expected a number, a bool or a numpy array, "
                            f"got {type(value).__name__}")

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)   # no exception per miss: systems look names up every step

    def __delitem__(self, name: str) -> None:
        if name not in self._values:
            raise InvalidNameError(f"no resource {name!r}; resources are {sorted(self._values)}")
        self._drop(name)

    def _drop(self, name: str) -> None:
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
