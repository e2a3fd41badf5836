"""numba kernels used by the library and the demo: loops over numpy arrays, no Python objects.

Imported as `ecs.kernels` (the repository keeps this folder at its top; installed, it is a
subpackage of ecs, so it claims no generic top-level name). It imports numpy and numba only,
never the rest of `ecs`, and its modules import each other relatively. Compile options live in
`_jit`.
"""

from . import _jit  # noqa: F401  (sets the numba cache directory before any kernel compiles)
