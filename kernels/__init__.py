"""numba kernels used by the library and the demo: loops over numpy arrays, no Python objects.

This package imports numpy and numba only, never `ecs`. Compile options live in `_jit`.
"""

from . import _jit  # noqa: F401  (sets the numba cache directory before any kernel compiles)
