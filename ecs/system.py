"""Systems: numba kernels whose parameters are bound by their annotations.

    @system
    def integrate(pos: Mut[Position], vel: Velocity, dt: float): ...

Binding, per parameter:
- `C` (a component class): read it. The kernel gets a namedtuple of column views (`pos.x`, ...;
  2-D for vector fields) over the rows of one table (or a worker's slice of one).
- `Mut[C]`: write it. Same, plus `pos.changed`, the slice's dirty bits (uint64 words).
- `Entity`: the int64 ids of those rows.
- `Rows`: the int64 rows selected by the system's `changed=`/`added=` filters (required when a
  filter is given, refused otherwise).
- `Removed`: the int64 ids of entities that lost a `removed=` component since the system last
  ran. Such a system runs once per due frame (not per table; skipped when no id is pending) and
  takes only `Removed`, `Commands` and named values: its entities are no longer in the tables.
- `Commands`: this process's command buffer, for structural changes (ecs/commands.py).
- `Frame`: the number of the frame being run, int64, the same in every call of that frame.
- anything else: looked up by name in the keyword arguments of `step`/`run`, then in
  `world.resources`, then the parameter's default.

The library owns compilation: when a system is added to a world, its exact numba signature is
derived from the column dtypes (and the types of its named values) and compiled once, eagerly,
with the options of kernels/_jit.py; every table with the same dtypes reuses it. A parameter
whose value later arrives with another type is converted to the first type (scalars that type
holds exactly) or refused (arrays, and scalars such as 2.5 for an int64), so a kernel never
recompiles mid-run.

Marks: with `mark="auto"` every row given to the kernel is marked changed for each `Mut`
component after the call (whole words filled for contiguous rows). With `mark="manual"` the
kernel marks rows itself with `ecs.mark_changed(pos.changed, i)`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np
from numba.core.dispatcher import Dispatcher

from ecs.kernels._jit import OPTIONS

from .coerce import as_int
from .commands import Commands
from .errors import SystemDefinitionError
from .schema import ComponentInfo, info_of, is_component

READ, WRITE, ENTITY, ROWS, VALUE, REMOVED, COMMANDS, FRAME = (
    "read", "write", "entity", "rows", "value", "removed", "commands", "frame")
MARK_MODES = ("auto", "manual")
_SCALAR_ANNOTATIONS = {float: np.float64, int: np.int64, bool: np.bool_}
_FLOAT64 = numba.types.float64


class Mut:
    """`Mut[C]` annotates a parameter that writes component C."""

    __slots__ = ("component",)

    def __init__(self, component: type) -> None:
        self.component = component

    def __class_getitem__(cls, component: type) -> Mut:
        return cls(component)

    def __repr__(self) -> str:
        return f"Mut[{getattr(self.component, '__name__', self.component)!r}]"


class Entity:
    """Annotates a parameter that receives the entity ids (int64) of the rows."""


class Rows:
    """Annotates a parameter that receives the rows selected by changed=/added= filters."""


class Removed:
    """Annotates a parameter that receives the ids removed= filters report."""


class Frame:
    """Annotates a parameter that receives the number of the frame being run (int64): the same
    value in every call of that frame, on every worker, whatever rows each call was given.
    Frames count from 0 at the world's first step (restore and load set the counter back)."""


class Param:
    """One kernel parameter and how it is bound."""

    __slots__ = ("name", "kind", "info", "annotation", "default")

    def __init__(self, name: str, kind: str, info: ComponentInfo | None, annotation: object,
                 default: object) -> None:
        self.name = name
        self.kind = kind
        self.info = info
        self.annotation = annotation
        self.default = default

    def __repr__(self) -> str:
        return f"<Param {self.name}: {self.kind}{' ' + self.info.name if self.info else ''}>"


class System:
    """A kernel plus its bindings and options; add it to a world with `world.add_system`."""

    def __init__(self, fn: Callable[..., Any], *, changed: Sequence[type] = (), added: Sequence[type] = (),
                 removed: Sequence[type] = (), without: Sequence[type] = (), with_: Sequence[type] = (),
                 every: int = 1, offset: int = 0, mark: str = "auto", split: bool = False,
                 name: str | None = None) -> None:
        if isinstance(fn, Dispatcher):
            self.kernel, self.py_func = fn, fn.py_func
            if not getattr(fn, "_can_compile", True):
                # njit(["void(float64)"]) compiles its signatures only, and the world compiles for
                # the columns' exact types: the function again, with the same options
                self.kernel = _recompilable(fn)
        elif inspect.isfunction(fn):
            self.py_func = fn
            try:
                self.kernel = numba.njit(**OPTIONS)(fn)
            except RuntimeError as exc:  # no source file to key numba's disk cache (exec, python -c)
                if "cannot cache" not in str(exc):
                    raise
                self.kernel = numba.njit(**{**OPTIONS, "cache": False})(fn)
        else:
            raise SystemDefinitionError(repr(fn), "@system takes a plain function or a numba.njit dispatcher")
        if name is not None and (not isinstance(name, str) or not name):
            raise SystemDefinitionError(self.py_func.__name__, f"name={name!r}: expected a non-empty str")
        self.name = name or self.py_func.__name__
        if not isinstance(split, (bool, np.bool_)):
            raise SystemDefinitionError(self.name, f"split={split!r}: expected True or False")
        self.changed = _filter_infos(self.name, "changed", changed)
        self.added = _filter_infos(self.name, "added", added)
        self.removed = _filter_infos(self.name, "removed", removed)
        self.without = _filter_infos(self.name, "without", without)
        self.with_ = _filter_infos(self.name, "with_", with_)
        every_n, offset_n = as_int(every), as_int(offset)    # numpy integers too
        if every_n is None or every_n < 1:
            raise SystemDefinitionError(self.name, f"every={every!r}: expected an int >= 1")
        if offset_n is None or not 0 <= offset_n < every_n:
            raise SystemDefinitionError(self.name, f"offset={offset!r}: expected an int with 0 <= offset < "
                                                   f"every (every={every})")
        if mark not in MARK_MODES:
            raise SystemDefinitionError(self.name, f"mark={mark!r}: expected 'auto' or 'manual'")
        self.every = every_n
        self.offset = offset_n
        self.mark = mark
        self.split = bool(split)
        self.params = tuple(self._bind_params())
        excluded = {info.id for info in self.without} & {info.id for info in self.required}
        if excluded:
            name = next(info.name for info in self.without if info.id in excluded)
            raise SystemDefinitionError(self.name, f"without={name} excludes a component the system requires (a "
                                                   f"parameter, a changed=/added= or with_= filter): it would never "
                                                   f"run")

    def is_due(self, frame: int) -> bool:
        """Whether the system runs in `frame`: frame = offset + k * every for some k >= 0."""
        return frame >= self.offset and (frame - self.offset) % self.every == 0

    def due_frames(self, first: int, frames: int) -> int:
        """How many of the frames first .. first + frames - 1 the system runs in. O(1)."""
        return _due_before(first + frames, self.every, self.offset) - _due_before(first, self.every, self.offset)

    def first_due(self, first: int, frames: int) -> int | None:
        """The first frame from `first` (of `frames`) in which the system runs; None if none."""
        start = max(first, self.offset)
        frame = start + (self.offset - start) % self.every
        return frame if frame < first + frames else None

    @property
    def filtered(self) -> bool:
        return bool(self.changed or self.added)

    def components(self, kind: str) -> tuple[ComponentInfo, ...]:
        return tuple(p.info for p in self.params if p.kind == kind and p.info is not None)

    @property
    def required(self) -> tuple[ComponentInfo, ...]:
        """Components a table must have: every component parameter, every changed=/added=
        filter component and every with_= component."""
        seen: dict[int, ComponentInfo] = {}
        for info in (*self.components(READ), *self.components(WRITE), *self.changed, *self.added, *self.with_):
            seen.setdefault(info.id, info)
        return tuple(seen.values())

    def _bind_params(self) -> list[Param]:
        signature = inspect.signature(self.py_func)
        try:
            hints = inspect.get_annotations(self.py_func, eval_str=True)
        except Exception as exc:
            raise SystemDefinitionError(self.name, f"cannot resolve annotations: {exc}") from None
        params = []
        for name, parameter in signature.parameters.items():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.KEYWORD_ONLY):
                raise SystemDefinitionError(self.name, "kernels take plain positional parameters", name)
            annotation = hints.get(name, inspect.Parameter.empty)
            default = parameter.default
            params.append(self._bind_one(name, annotation, default))
        kinds = [p.kind for p in params]
        if self.removed:
            if REMOVED not in kinds:
                raise SystemDefinitionError(self.name, "a system with removed= filters needs a parameter "
                                                       "annotated Removed to receive the ids")
            if self.filtered or self.without or self.with_:
                raise SystemDefinitionError(self.name, "removed= cannot be combined with changed=/added=/without=/"
                                                       "with_= in one system: removed entities have left the tables")
            for p in params:
                if p.kind in (READ, WRITE, ENTITY, ROWS):
                    raise SystemDefinitionError(self.name, "a removed= system takes only Removed, Commands and "
                                                           "named values: the removed entities are no longer in "
                                                           "the tables", p.name)
        if (self.with_ or self.without) and not self.removed and not {READ, WRITE, ENTITY, ROWS} & set(kinds):
            which = "with_=" if self.with_ else "without="
            raise SystemDefinitionError(self.name, f"{which} selects tables, and this system takes none (its "
                                                   f"parameters are named values only, so it runs once a frame "
                                                   f"whatever the tables): take a component, Entity or Rows "
                                                   f"parameter, or drop the filter")
        if self.filtered and ROWS not in kinds:
            raise SystemDefinitionError(self.name, "a system with changed=/added= filters needs a parameter "
                                                   "annotated Rows to receive the selected rows")
        for kind in (ENTITY, ROWS, REMOVED, COMMANDS, FRAME):
            if kinds.count(kind) > 1:
                raise SystemDefinitionError(self.name, f"more than one parameter is annotated {kind.title()}")
        by_component: dict[int, str] = {}
        for p in params:
            if p.info is not None:
                if p.info.id in by_component:
                    raise SystemDefinitionError(self.name, f"{p.info.name} is already bound to parameter "
                                                           f"{by_component[p.info.id]!r}", p.name)
                by_component[p.info.id] = p.name
        return params

    def _bind_one(self, name: str, annotation: object, default: object) -> Param:
        if isinstance(annotation, Mut):
            if not is_component(annotation.component):
                raise SystemDefinitionError(self.name, f"Mut[...] takes a component class, got "
                                                       f"{annotation.component!r}", name)
            return Param(name, WRITE, info_of(annotation.component), annotation, default)
        if is_component(annotation):
            return Param(name, READ, info_of(annotation), annotation, default)
        if annotation is Entity:
            return Param(name, ENTITY, None, annotation, default)
        if annotation is Commands:
            return Param(name, COMMANDS, None, annotation, default)
        if annotation is Frame:
            return Param(name, FRAME, None, annotation, default)
        if annotation is Removed:
            if not self.removed:
                raise SystemDefinitionError(self.name, "Removed receives the ids reported by removed= filters, "
                                                       "and this system has none", name)
            return Param(name, REMOVED, None, annotation, default)
        if annotation is Rows:
            if not self.filtered:
                raise SystemDefinitionError(self.name, "Rows receives the rows selected by changed=/added= "
                                                       "filters, and this system has none", name)
            return Param(name, ROWS, None, annotation, default)
        if annotation is inspect.Parameter.empty or annotation in _SCALAR_ANNOTATIONS \
                or annotation is np.ndarray or (isinstance(annotation, type) and issubclass(annotation, np.generic)):
            return Param(name, VALUE, None, annotation, default)
        raise SystemDefinitionError(self.name, f"cannot bind annotation {annotation!r}: expected a component "
                                               f"class, Mut[C], Entity, Rows, Removed, Commands, Frame, or a value "
                                               f"type (float, int, "
                                               f"bool, a numpy scalar type, np.ndarray)", name)

    def __call__(self, *args: Any) -> Any:
        """Call the kernel directly (outside any world), e.g. in a unit test."""
        return self.kernel(*args)

    def __repr__(self) -> str:
        return f"<System {self.name}>"


def system(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Declare a system: `@system` or `@system(option=..., ...)` over a plain function (or a
    numba.njit dispatcher). Returns a `System`; add it with `world.add_system`.

    Options (all keyword; a bad value raises SystemDefinitionError naming the option):
      changed=[C, ...]  run only on rows whose C changed (or were added) since this system last
                        looked; tables must have C; needs a `Rows` parameter. Union of the list.
      added=[C, ...]    run only on rows that got C since it last looked; needs `Rows`.
      removed=[C, ...]  receive, in a `Removed` parameter, the ids that lost C (remove or
                        despawn) since it last ran; runs once per due frame, not per table, and
                        takes no component, Entity or Rows parameter.
      without=[C, ...]  skip tables that have any of these components.
      with_=[C, ...]    run only on tables that have all of these components, without binding
                        them to a parameter (a tag such as Sheep). Both select tables: a system
                        whose parameters are named values only (it takes no table) refuses them.
      every=N           run on frames offset, offset + N, offset + 2N, ... (default 1: every frame).
      offset=K          the first frame for every=N, 0 <= K < N (default 0): every=2, offset=1
                        runs on frames 1, 3, 5... Calls, stats() and removed= hand-over follow it.
      mark="auto"|"manual"  auto (default): every row given is marked changed for each Mut
                        component after the call; manual: the kernel marks rows itself with
                        ecs.mark_changed(view.changed, i).
      split=True        with workers, let a system that takes resource arrays be cut into chunks
                        of rows that any process may run, like any other (default: it is one
                        unit, all its tables in one process, since its writes to the arrays
                        cannot be seen); its kernel must then write only what its own rows own.
      name="..."        the name in stats() and errors (default: the function's name); names
                        are unique within a world.

    Parameter annotations: C (read), Mut[C] (write), ecs.Entity (ids), ecs.Rows (filtered rows),
    ecs.Removed (removed ids), ecs.Commands (structural changes), ecs.Frame (the frame number,
    int64), and values (float, int, bool, numpy scalar types, np.ndarray, or none) found by
    name in step()/run() keywords, then world.resources, then the default.

    Cost: compiling happens once per world at add_system (or at the first step that knows
    every value's type). A unit of several tables runs in one compiled call (driver.py: ~0.8 us
    plus ~0.15 us per table; the driver compiles at its first run, cached on disk); a single
    table or chunk, or a filtered system's table, costs ~2 us of dispatch per call.
    """
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise SystemDefinitionError(getattr(fn, "__name__", "?"), f"@system has no option {unknown[0]!r}; its options "
                                                                  f"are {', '.join(sorted(_OPTIONS))}")
    if fn is None:
        return lambda f: System(f, **options)
    return System(fn, **options)


_OPTIONS = frozenset(inspect.signature(System.__init__).parameters) - {"self", "fn"}   # System's keywords


def _due_before(frame: int, every: int, offset: int) -> int:
    """How many frames offset, offset + every, ... are below `frame`."""
    return max(0, -(-(frame - offset) // every))


def _filter_infos(system_name: str, option: str, components: Sequence[type]) -> tuple[ComponentInfo, ...]:
    if isinstance(components, type) or not isinstance(components, (list, tuple, set, frozenset)):
        raise SystemDefinitionError(system_name, f"{option}= takes a list of component classes, "
                                                 f"got {components!r}")
    out = []
    for c in components:
        if not is_component(c):
            raise SystemDefinitionError(system_name, f"{option}= lists {c!r}, which is not a component class")
        out.append(info_of(c))
    return tuple(out)


def annotation_type(param: Param) -> Any:
    """The numba type a value parameter's annotation fixes (float, int, bool, a numpy scalar
    type), or None when the type comes from the first value."""
    annotation = param.annotation
    if annotation in _SCALAR_ANNOTATIONS:
        return numba.from_dtype(np.dtype(_SCALAR_ANNOTATIONS[annotation]))
    if isinstance(annotation, type) and issubclass(annotation, np.generic):
        return numba.from_dtype(np.dtype(annotation))
    return None


def value_type(value: object, param: Param, system_name: str) -> Any:
    """The numba type a named value is compiled for: the annotation's if it fixes one, else the
    value's own (Python int -> int64, float -> float64, bool -> bool; arrays as they are)."""
    annotation = param.annotation
    known = annotation_type(param)
    if known is not None:
        return known
    dtype = value.dtype if isinstance(value, (np.ndarray, np.generic)) else None
    if dtype == np.float16:
        raise SystemDefinitionError(system_name, "numba compiles no kernel for float16 values: use np.float32",
                                    param.name)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise SystemDefinitionError(system_name, f"arrays passed to kernels must be numeric or bool, "
                                                     f"got dtype {value.dtype}", param.name)
        return numba.typeof(value)
    if annotation is np.ndarray or not isinstance(value, (bool, int, float, np.bool_, np.number)):
        expected = "a numpy array" if annotation is np.ndarray else "a number, a bool or a numpy array"
        raise SystemDefinitionError(system_name, f"cannot pass {type(value).__name__} {value!r}; expected {expected}",
                                    param.name)
    return numba.from_dtype(np.asarray(value).dtype)


_ARRAY_TYPE_KEYS: dict[Any, tuple[object, ...]] = {}
_SCALAR_DTYPES: dict[Any, np.dtype] = {}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _array_type_key(numba_type: Any) -> tuple[object, ...]:
    """What numba.typeof() of an ndarray decides, for a compiled Array type (cached per type)."""
    key = _ARRAY_TYPE_KEYS.get(numba_type)
    if key is None:
        key = _ARRAY_TYPE_KEYS[numba_type] = (
            numba.np.numpy_support.as_dtype(numba_type.dtype), numba_type.ndim, numba_type.layout,
            numba_type.mutable, numba_type.aligned)
    return key


def _recompilable(fn: Dispatcher) -> Dispatcher:
    """A dispatcher of fn's function that compiles on demand, with fn's options, locals and disk
    cache (locals and cache are not among numba's targetoptions)."""
    options = {key: value for key, value in fn.targetoptions.items() if key != "nopython"}
    if options.pop("forceobj", False):
        raise SystemDefinitionError(fn.py_func.__name__, "an object-mode dispatcher (forceobj) cannot run as a "
                                                         "kernel: use numba.njit")
    cached = type(getattr(fn, "_cache", None)).__name__ != "NullCache"
    return numba.njit(locals=dict(getattr(fn, "locals", {})), cache=cached, **options)(fn.py_func)


def array_key(value: np.ndarray) -> tuple[object, ...]:
    """What numba.typeof() of an ndarray decides: dtype, dimensions, layout, writeable, aligned."""
    flags = value.flags
    layout = "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"
    return value.dtype, value.ndim, layout, flags.writeable, flags.aligned


def convert_value(value: object, numba_type: Any, param: Param, system_name: str) -> object:
    """Convert a named value to the type its kernel was compiled for, or refuse it."""
    if numba_type is _FLOAT64 and type(value) is float:   # dt and friends: numba types it float64 as is
        return value       # (the checks and np.float64() below cost ~1 us per system per step)
    if isinstance(numba_type, numba.types.Array):
        if type(value) is np.ndarray and array_key(value) == _array_type_key(numba_type):
            return value   # numba.typeof() took 6 us per array per step; this 0.6 us
        got = numba.typeof(value) if isinstance(value, np.ndarray) else type(value).__name__
        if got != numba_type:
            raise SystemDefinitionError(system_name, f"was compiled for {numba_type}, got {got}; "
                                                     f"pass arrays of one dtype, dimension and layout", param.name)
        return value
    if isinstance(value, np.ndarray) or not isinstance(value, (bool, int, float, np.bool_, np.number)):
        raise SystemDefinitionError(system_name, f"was compiled for {numba_type}, got {type(value).__name__}",
                                    param.name)
    dtype = _SCALAR_DTYPES.get(numba_type)
    if dtype is None:   # numba's as_dtype took ~1 us per value per step
        dtype = _SCALAR_DTYPES[numba_type] = numba.np.numpy_support.as_dtype(numba_type)
    try:
        if dtype.kind == "f":   # any float, rounded, but not a finite one that a float32 would hold as inf
            magnitude = abs(float(value))   # type: ignore[arg-type]
            exact = not (dtype == np.float32 and math.isfinite(magnitude) and magnitude > _FLOAT32_MAX)
            converted = dtype.type(value) if exact else None
        else:
            converted = dtype.type(value)
            exact = converted == value
    except (OverflowError, ValueError, TypeError):
        exact = False
    if not exact:  # 2.5 into an int64 kernel would silently become 2
        raise SystemDefinitionError(system_name, f"was compiled for {numba_type}, got {value!r}, which "
                                                 f"{numba_type} cannot hold exactly; pass values of one type",
                                    param.name)
    return converted
