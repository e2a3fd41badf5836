"""The one place compile options live.

Every kernel of the library and every user system is compiled with `OPTIONS`: cached on disk,
GIL released, no `parallel=True` (processes are our parallelism; a forked child of a process that
ran an `omp` parallel kernel dies), numpy's error model (a division by zero gives
inf/nan as in numpy, not an exception inside a kernel).

The cache directory folds in a hash of this package's sources: numba does not notice that a
helper in another file changed (numba #1833, #9483; a stale result was measured), so a
change to any kernel here starts a fresh cache. It defaults to a per-user directory so that a
read-only install still imports; NUMBA_CACHE_DIR set by the user wins.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import sys
from collections.abc import Callable
from typing import Any

_PACKAGE = pathlib.Path(__file__).resolve().parent


def _sources_digest() -> str:
    digest = hashlib.blake2s(digest_size=6)
    for path in sorted(_PACKAGE.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    tag = f"py{sys.version_info[0]}{sys.version_info[1]}-{_sources_digest()}"
    return os.path.join(base, "ecs", "numba", tag)


CACHE_DIR = os.environ.setdefault("NUMBA_CACHE_DIR", _default_cache_dir())

import numba  # noqa: E402  (after NUMBA_CACHE_DIR is set)
import numpy as np  # noqa: E402

if numba.config.CACHE_DIR != CACHE_DIR:  # type: ignore[attr-defined]  # numba was imported before us: tell it
    numba.config.CACHE_DIR = CACHE_DIR  # type: ignore[attr-defined]

OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}


def jit(fn=None, **overrides):
    """`numba.njit` with the library's options; usable bare (`@jit`) or with overrides."""
    options = {**OPTIONS, **overrides}
    if fn is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(fn)


def compiled_entry(kernel: Any, *args: Any) -> Callable[..., Any]:
    """`kernel`'s compiled entry for exactly the numba types of `args` (compiled, or loaded from
    the cache, now if needed): a call that skips the dispatcher's matching of argument types,
    ~0.14 us against ~0.25 us for two arrays and four ints, ~1.6 against ~3.0 us for a system's
    two namedtuples of column views and a float. The entry unboxes arrays without checking
    their dtype, dimensions or layout: callers pass arguments of these very types in every later
    call (the same arrays, arrays they make themselves, scalars, which unbox by value). The
    dispatcher itself where a numba version offers no entry."""
    try:
        signature = tuple(map(argument_type, args))
        if signature not in kernel.overloads:
            kernel.compile(signature)
        return kernel.overloads[signature].entry_point  # type: ignore[no-any-return]
    except AttributeError:
        return kernel  # type: ignore[no-any-return]


_TYPE_BY_KEY: dict[tuple[Any, ...], Any] = {}
_INT64_RANGE = range(-(2**63), 2**63)


def _type_key(arg: Any) -> tuple[Any, ...] | None:
    """What numba's type of `arg` depends on, for the arguments compiled_entry's callers pass:
    an ndarray's type is its dtype, ndim, layout (C when C-contiguous, else F when
    F-contiguous, else A) and writeability (numba's _typeof_ndarray); an int's is int64 within
    int64's range; a tuple's is its class and its items' types. None for anything else (a
    structured dtype, a numpy scalar, a subclass), which numba.typeof types itself."""
    kind = type(arg)
    if kind is np.ndarray:
        if arg.dtype.fields is not None:
            return None
        flags = arg.flags
        return (arg.dtype, arg.ndim, flags.c_contiguous, flags.f_contiguous, flags.writeable)
    if kind is int:
        return (int,) if arg in _INT64_RANGE else None
    if kind is float:
        return (float,)
    if isinstance(arg, tuple):
        keys = tuple(map(_type_key, arg))
        return None if None in keys else (kind, keys)
    return None


def argument_type(arg: Any) -> Any:
    """numba.typeof(arg), remembered by _type_key: numba.typeof takes ~4.7 us for an array and
    ~14 us for a namedtuple of two (a plan rebuilt every frame, as structural changes make it,
    typed each task's arguments again), the key ~0.5 us."""
    key = _type_key(arg)
    if key is None:
        return numba.typeof(arg)
    found = _TYPE_BY_KEY.get(key)
    if found is None:
        found = _TYPE_BY_KEY[key] = numba.typeof(arg)
    return found
