"""Components: typed fields in, column layout out (the typed struct compiler).

`@component` reads a class's annotations and derives, once, everything the storage needs: one
numpy dtype per field (a subarray dtype such as `np.dtype((np.uint8, (3,)))` for vector
fields, whose column has shape `(rows, 3)`), defaults, whether the component is a tag (no fields,
no columns), and the namedtuple types that systems and query batches receive. Nobody writes a
binary layout by hand.

A component class is also its value type: `Position(x=1, y=2)` checks and converts every value
to its field's dtype when it is built, so a value that does not fit (300 into `u8`, NaN into an
int, a vector of the wrong length) raises `ComponentValueError` before anything is written.
Fields may be scalars or arrays (`Position(x=xs, y=0.0)`): arrays are for batch calls and scalars
broadcast.

Only fixed-size numeric and bool fields exist. Anything else raises `SchemaError` at class
definition, naming the field; so do field names that are not identifiers or are keywords, and a
field that two base components declare with different types or defaults.

Identity. A component is named by its *stored name* `module:qualname`, with `__mp_main__` (the
name under which worker processes import the main script) read as `__main__`, so the main
script's components have one name in every process. Its *key* (ecs.component_key, command
records) is a hash of that name, and its view types are pickled (by numba's cache) by key as
`ecs.schema.VIEW_TYPES.<view|mut>_<key>`: the same in every process however the defining module
was imported, and a cache entry for a component this process lacks unpickles as a placeholder
that matches nothing instead of failing the cache index. `find_component(name)` resolves a
stored name among the classes this program has defined (load uses it; nothing is imported).
One stored name belongs to one class. A second class under a name already taken *replaces*
the first when the first is a redefinition: its module was re-executed (`importlib.reload`, a
notebook cell run again, `exec` into the module) so the name still binds the old class, or the
module was imported afresh; the newer class then owns the name and the key (commands and load
resolve to it). Any other second class (a component defined in a function called twice, two
`type()` calls with one name) raises SchemaError: it would share the first one's key.
"""

from __future__ import annotations

import collections
import hashlib
import inspect
import itertools
import keyword
import sys
import weakref
from typing import Any

import numpy as np

from .coerce import coerce, fitting_scalar, raw_bounds
from .errors import ArgumentTypeError, ComponentValueError, ReadOnlyError, SchemaError

# Names a field cannot take: `changed` is the dirty-bit member of a Mut view.
RESERVED_FIELD_NAMES = frozenset({"changed", "fields"})
MAX_VECTOR_DIMS = 32     # numpy's arrays have at most 64: a column of rows x a vector, and its slices


class FieldType:
    """A scalar field annotation (`f32`, `i64`, `bool_`...); `f32[3]` makes a vector field."""

    def __init__(self, name: str, dtype: type, shape: tuple[int, ...] = ()) -> None:
        self.name = name
        self.dtype = np.dtype((dtype, shape)) if shape else np.dtype(dtype)
        self._scalar = dtype

    def __getitem__(self, shape: int | tuple[int, ...]) -> FieldType:
        if self.dtype.shape:
            raise ArgumentTypeError(f"{self!r} is already a vector type")
        dims = shape if isinstance(shape, tuple) else (shape,)
        if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
            raise ArgumentTypeError(f"{self.name}[{shape!r}]: vector sizes must be positive ints")
        if len(dims) > MAX_VECTOR_DIMS:
            raise ArgumentTypeError(f"{self.name}[{shape!r}]: {len(dims)} dimensions; a vector field has at most "
                                    f"{MAX_VECTOR_DIMS} (its column adds one for the rows)")
        try:
            return FieldType(self.name, self._scalar, dims)
        except ValueError as exc:          # numpy's: a size past a C int
            raise ArgumentTypeError(f"{self.name}[{shape!r}]: {exc}") from None

    def __repr__(self) -> str:
        dims = ", ".join(map(str, self.dtype.shape))
        return f"{self.name}[{dims}]" if self.dtype.shape else self.name


f32 = FieldType("f32", np.float32)
f64 = FieldType("f64", np.float64)
i8 = FieldType("i8", np.int8)
i16 = FieldType("i16", np.int16)
i32 = FieldType("i32", np.int32)
i64 = FieldType("i64", np.int64)
u8 = FieldType("u8", np.uint8)
u16 = FieldType("u16", np.uint16)
u32 = FieldType("u32", np.uint32)
u64 = FieldType("u64", np.uint64)
bool_ = FieldType("bool_", np.bool_)

_FIELD_TYPE_BY_SCALAR = {ft.dtype: ft for ft in (f32, f64, i8, i16, i32, i64, u8, u16, u32, u64, bool_)}
_component_ids = itertools.count()
INFO_BY_KEY: dict[int, ComponentInfo] = {}
INFO_BY_NAME: dict[str, ComponentInfo] = {}   # stored name -> the class that owns it now
_registrations = [0]   # how many times INFO_BY_KEY was written (see registry_stamp)


class ComponentInfo:
    """What the storage knows of one component class: fields, defaults, view types."""

    def __init__(self, cls: type, fields: dict[str, np.dtype], defaults: dict[str, np.ndarray]) -> None:
        self.cls = cls
        self.name = cls.__name__
        self.qualname = stored_name_of(cls)
        self.id = next(_component_ids)
        # the same in every process (ids are per process): names components in command records
        self.key = key_of(self.qualname)
        module = sys.modules.get(cls.__module__)
        self.module = weakref.ref(module) if module is not None else None   # see _check_name_free
        self.fields = fields
        self.defaults = defaults
        self.is_tag = not fields
        names = list(fields)
        self.view_type = collections.namedtuple(f"{self.name}View", names)  # type: ignore[misc]
        self.mut_view_type = collections.namedtuple(f"{self.name}MutView", [*names, "changed"])  # type: ignore[misc]
        # numba's cache keys a kernel by its signature, pickled with cloudpickle: a view type
        # that cannot be found by name is pickled by value, unpickles as a new class, and never
        # matches again, so every process (each worker too) recompiled every system and added
        # one more .nbc file. Named after the class's module (Pos.__ecs_component__.view_type),
        # they were pickled by value all the same for the main script (cloudpickle's rule for
        # __main__), under `__mp_main__` by workers, and failed every later load of the cache
        # index once the script was imported under another name. So they are named by key, in
        # this module, where every process finds them (VIEW_TYPES).
        for attribute, kind in (("view_type", "view"), ("mut_view_type", "mut")):
            view_type = getattr(self, attribute)
            view_type.__module__ = __name__
            view_type.__qualname__ = f"VIEW_TYPES.{kind}_{self.key:012x}"
        # raw fast path (see _RawValues): per field, the scalar types it takes as they are and
        # their (lo, hi) bounds; None when a field is a vector (those always go through numpy)
        self.field_bounds = tuple(raw_bounds(dtype) for dtype in fields.values())   # None: a vector
        self.raw_bounds: tuple[dict[type, Any], ...] | None = (
            None if any(b is None for b in self.field_bounds) else self.field_bounds)  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<component {self.qualname}>"


def stored_name_of(cls: type) -> str:
    """`module:qualname`, with `__mp_main__` (the main script in a worker) read as `__main__`."""
    module = "__main__" if cls.__module__ == "__mp_main__" else cls.__module__
    return f"{module}:{cls.__qualname__}"


def registry_stamp() -> int:
    """A number that changes whenever a component is registered (a class re-registered under
    its name included): caches derived from INFO_BY_KEY compare it."""
    return _registrations[0]


def key_of(stored_name: str) -> int:
    return int.from_bytes(hashlib.blake2b(stored_name.encode(), digest_size=6).digest(), "little")


def find_component(stored_name: str) -> ComponentInfo | None:
    """The component this program defined under `stored_name` (the newest definition), or None.
    Imports nothing: a name is only looked up among classes already defined."""
    return INFO_BY_NAME.get(stored_name)


class _ViewTypes:
    """`VIEW_TYPES.<view|mut>_<key>`: where pickle finds a component's view types (see
    ComponentInfo). A name of no component defined here gives a placeholder type, one per name,
    so numba's cache index, which holds the signatures of every process that wrote it, still
    loads; the placeholder matches no signature of this process."""

    def __init__(self) -> None:
        self._placeholders: dict[str, type] = {}

    def __getattr__(self, name: str) -> type:
        kind, _, key = name.partition("_")
        if kind not in ("view", "mut") or len(key) != 12:
            raise AttributeError(name)
        try:
            info = INFO_BY_KEY.get(int(key, 16))
        except ValueError:
            raise AttributeError(name) from None
        if info is not None:
            return info.view_type if kind == "view" else info.mut_view_type
        placeholder: Any = self._placeholders.get(name)
        if placeholder is None:
            make: Any = collections.namedtuple
            placeholder = make(f"Unknown{kind.capitalize()}View", [])
            placeholder.__module__ = __name__
            placeholder.__qualname__ = f"VIEW_TYPES.{name}"
            self._placeholders[name] = placeholder
        return placeholder


VIEW_TYPES = _ViewTypes()


def _check_name_free(cls: type, stored_name: str, key: int) -> None:
    """SchemaError unless `cls` may own `stored_name` (see the module docstring)."""
    old = INFO_BY_NAME.get(stored_name)
    if old is None:
        other = INFO_BY_KEY.get(key)
        if other is not None:
            raise SchemaError(cls.__name__, None, f"its key {key} (a hash of {stored_name!r}) is already the key of "
                                                  f"{other.qualname}; rename one of the two classes")
        return
    if old.module is not None:
        module = old.module()
        if module is None or module is not sys.modules.get(old.cls.__module__):
            return          # its module was imported afresh (or is gone): this is the new one's class
        if _attribute_path(module, old.cls.__qualname__) is old.cls:
            return          # its module is being re-executed: this class is about to replace it there
    raise SchemaError(cls.__name__, None, f"another component class is already named {stored_name}; two classes "
                                          f"with one module and qualname would share one component key (commands "
                                          f"and load would resolve to the newer): give this one another name, or "
                                          f"define it once at module level")


def _attribute_path(obj: object, qualname: str) -> object:
    for part in qualname.split("."):
        if part == "<locals>":
            return None
        obj = getattr(obj, part, None)
    return obj


def info_of(cls: object) -> ComponentInfo:
    """The ComponentInfo of a component class; TypeError naming the object otherwise."""
    info = getattr(cls, "__ecs_component__", None)
    if not isinstance(info, ComponentInfo) or info.cls is not cls:
        raise ArgumentTypeError(f"{cls!r} is not a component class; declare it with @ecs.component")
    return info


def is_component(cls: object) -> bool:
    info = getattr(cls, "__ecs_component__", None)
    return isinstance(info, ComponentInfo) and info.cls is cls


def component(cls: type) -> type:
    """Turn an annotated class into a component: fields -> dtypes -> column layout.

    Raises SchemaError naming the field for any annotation that is not a fixed-size numeric or
    bool type, for reserved, private, keyword or non-identifier names, for a field redeclared
    from a base component or declared by two bases with different types or defaults, and for a
    default that does not fit its field; and naming the class for a second class under a stored
    name already taken, unless it redefines the first (a re-executed or re-imported module: see
    the module docstring).
    """
    if not isinstance(cls, type):
        raise SchemaError(repr(cls), None, "@component decorates a class")
    name = cls.__name__
    if not name.isidentifier() or keyword.iskeyword(name):
        raise SchemaError(repr(name), None, "a component's class name must be an identifier (it names its "
                                            "views' types)")
    fields, defaults = _base_fields(cls)
    own = _own_annotations(cls)
    for field in fields.keys() & cls.__dict__.keys() - own.keys():   # `x = 5.0` below a base's `x: f32`
        defaults[field] = _default(name, field, fields[field], cls.__dict__[field])
    for field, annotation in own.items():
        if not isinstance(field, str) or not field.isidentifier() or keyword.iskeyword(field):
            raise SchemaError(name, str(field), f"field name {field!r} is not an identifier or is a Python keyword; "
                                                f"fields are attributes of values and views, so name them as such")
        if field in fields:
            raise SchemaError(name, field, "duplicate field name: it is already declared by a base component")
        if field.startswith("_") or field in RESERVED_FIELD_NAMES:
            raise SchemaError(name, field, "field names may not start with '_' or be one of "
                                           f"{sorted(RESERVED_FIELD_NAMES)}")
        fields[field] = _field_dtype(name, field, annotation)
        if field in cls.__dict__:
            defaults[field] = _default(name, field, fields[field], cls.__dict__[field])
    stored_name = stored_name_of(cls)
    _check_name_free(cls, stored_name, key_of(stored_name))
    info = ComponentInfo(cls, fields, defaults)
    INFO_BY_KEY[info.key] = INFO_BY_NAME[stored_name] = info
    _registrations[0] += 1
    for field in fields:
        setattr(cls, field, _FieldValue(field))
    cls.__ecs_component__ = info  # type: ignore[attr-defined]
    cls.fields = dict(fields)  # type: ignore[attr-defined]
    cls.__init__ = _init if info.raw_bounds is None else _make_raw_init(info)  # type: ignore[misc]
    cls._values = _RawValues()  # type: ignore[attr-defined]
    cls._raw = None  # type: ignore[attr-defined]
    cls._batch_len = None  # type: ignore[attr-defined]
    cls.__repr__ = _repr  # type: ignore[method-assign,assignment]
    cls.__eq__ = _eq  # type: ignore[method-assign,assignment]
    cls.__hash__ = None  # type: ignore[assignment]
    return cls


def _default(name: str, field: str, dtype: np.dtype, default: object) -> np.ndarray:
    try:
        return coerce(name, field, dtype, default, batch=False)
    except ComponentValueError as exc:
        raise SchemaError(name, field, f"default {default!r} does not fit: {exc}") from None


def _base_fields(cls: type) -> tuple[dict[str, np.dtype], dict[str, np.ndarray]]:
    """Fields and defaults inherited from base components, in MRO order; SchemaError for a field
    two bases declare with different types or defaults (one of them would be dropped silently)."""
    name = cls.__name__
    fields: dict[str, np.dtype] = {}
    defaults: dict[str, np.ndarray] = {}
    declared_by: dict[str, type] = {}
    for base in reversed(cls.__mro__[1:]):
        if not is_component(base):
            declared = [f for f, a in inspect.get_annotations(base).items() if isinstance(a, FieldType)]
            if declared:   # they would be dropped silently
                raise SchemaError(name, declared[0], f"base class {base.__name__} declares it, but {base.__name__} is "
                                                     f"not a component: decorate it with @component or declare the "
                                                     f"field here")
            continue
        base_info = info_of(base)
        for field, dtype in base_info.fields.items():
            default = base_info.defaults.get(field)
            if field in fields:
                first = declared_by[field]
                # named in MRO order: `base` comes before `first` there (the loop walks it reversed)
                if fields[field] != dtype:
                    raise SchemaError(name, field, f"base components {base.__name__} and {first.__name__} declare it "
                                                   f"as {type_name(dtype)} and {type_name(fields[field])}; rename "
                                                   f"one of them")
                kept = defaults.get(field)
                if (kept is None) != (default is None) or (default is not None and not np.array_equal(
                        kept, default, equal_nan=dtype.base.kind == "f")):  # type: ignore[arg-type]
                    raise SchemaError(name, field, f"base components {base.__name__} and {first.__name__} give it "
                                                   f"different defaults ({_default_text(default)} and "
                                                   f"{_default_text(kept)}); declare it in one of them only")
                continue
            fields[field], declared_by[field] = dtype, base
            if default is not None:
                defaults[field] = default
    return fields, defaults


def type_name(dtype: np.dtype) -> str:
    """The field type of a field dtype as it is written in a class body: f32, u8[3]."""
    if dtype.shape:
        return f"{_FIELD_TYPE_BY_SCALAR[dtype.base].name}[{', '.join(map(str, dtype.shape))}]"
    return _FIELD_TYPE_BY_SCALAR[dtype].name


def _default_text(default: np.ndarray | None) -> str:
    return "no default" if default is None else repr(default.tolist())


def _own_annotations(cls: type) -> dict[str, Any]:
    raw = inspect.get_annotations(cls)
    module = inspect.getmodule(cls)
    namespace = {**_FIELD_TYPE_NAMESPACE, **(vars(module) if module else {})}
    out = {}
    for field, annotation in raw.items():
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace, dict(vars(cls)))  # noqa: S307 - the class's own text
            except Exception as exc:
                raise SchemaError(cls.__name__, field, f"cannot resolve annotation {annotation!r}: {exc}") from None
        out[field] = annotation
    return out


def _field_dtype(component_name: str, field: str, annotation: object) -> np.dtype:
    if isinstance(annotation, FieldType):
        return annotation.dtype
    if isinstance(annotation, type) and issubclass(annotation, np.generic):
        dtype = np.dtype(annotation)
        if dtype in _FIELD_TYPE_BY_SCALAR:
            return dtype
    hint = ""
    if annotation in (float, int, bool):
        hint = "; Python's float/int/bool have no fixed size: use f64/f32, i64/i32..., bool_"
    elif annotation in (str, bytes, list, tuple, dict, object) or getattr(annotation, "__origin__", None):
        hint = "; only fixed-size numeric and bool fields are stored in columns"
    raise SchemaError(component_name, field, f"unsupported field type {annotation!r}; expected one of "
                                             f"f32 f64 i8 i16 i32 i64 u8 u16 u32 u64 bool_ or a vector "
                                             f"such as f32[3]{hint}")


_FIELD_TYPE_NAMESPACE = {ft.name: ft for ft in _FIELD_TYPE_BY_SCALAR.values()}


class _FieldValue:
    """Descriptor: reading a field of a component value gives a numpy scalar (or array)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> object:
        if obj is None:
            return self
        value = obj._values[self.name]  # type: ignore[attr-defined]
        if value.ndim == 0:
            return value[()]
        view = value.view()  # read-only: a value (and a shared default) must not change under its users
        view.flags.writeable = False
        return view

    def __set__(self, obj: object, value: object) -> None:
        raise ReadOnlyError(f"component values are immutable; build a new {type(obj).__name__}(...)")


def _init(self: Any, *args: object, **kwargs: object) -> None:
    info: ComponentInfo = type(self).__ecs_component__
    names = list(info.fields)
    if len(args) > len(names):
        raise ComponentValueError(info.name, None, args,
                                  f"takes at most {len(names)} positional values ({', '.join(names) or 'none'})")
    given = dict(zip(names, args, strict=False))  # fewer args than fields: the rest by keyword
    for key, value in kwargs.items():
        if key not in info.fields:
            raise ComponentValueError(info.name, key, value,
                                      f"no such field; {info.name} has {', '.join(names) or 'no fields'}")
        if key in given:
            raise ComponentValueError(info.name, key, value, "given both positionally and by keyword")
        given[key] = value
    values: dict[str, np.ndarray] = {}
    batch_len: int | None = None
    batch_field = ""
    for bounds, (field, dtype) in zip(info.field_bounds, info.fields.items(), strict=True):
        if field in given:
            value = fitting_scalar(given[field], dtype, bounds)
            if value is None:
                value = coerce(info.name, field, dtype, given[field], batch=True)
        elif field in info.defaults:
            value = info.defaults[field]
        else:
            raise ComponentValueError(info.name, field, None, "missing: the field has no default")
        if value.ndim > len(dtype.shape):
            if batch_len is not None and value.shape[0] != batch_len:
                raise ComponentValueError(info.name, field, f"<array of length {value.shape[0]}>",
                                          f"length differs from field {batch_field!r} ({batch_len})")
            batch_len, batch_field = value.shape[0], field
        values[field] = value
    object.__setattr__(self, "_values", values)
    object.__setattr__(self, "_batch_len", batch_len)


# ---------------------------------------------------------------- raw fast path
# `Position(1.0, 2.0)` from plain scalars that certainly fit is the common case of one-entity
# calls (spawn, set). Such a value keeps the scalars as given in `_raw` (a tuple in field order)
# and builds the numpy `_values` only when something reads them; World.spawn/set write `_raw`
# straight into the columns through memoryviews, World.get reads it the same way. Anything else
# (arrays, vectors, defaults, NaN, values near a bound, other types) takes the checked numpy path
# in _init, unchanged. Measured for Position(1.0, 2.0): 14.8 us -> 0.27 us.
class _RawValues:
    """`value._values` of a raw value: numpy 0-d arrays built from `_raw` on first read."""

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        info: ComponentInfo = type(obj).__ecs_component__
        values = {field: np.asarray(v, dtype=dtype)
                  for (field, dtype), v in zip(info.fields.items(), obj._raw, strict=True)}
        obj.__dict__["_values"] = values
        return values


def _make_raw_init(info: ComponentInfo) -> Any:
    """The class's __init__: the raw fast path, generated for its fields (as dataclasses does),
    falling back to _init with the call's own arguments, so every error is _init's. The fields
    are keyword-only parameters, so a call by keyword binds them without a dict: Position(x=1.0,
    y=2.0) ~0.36 us (~0.5 us through **kwargs), Position(1.0, 2.0) ~0.3 us, against ~0.7 us for
    a generic loop over the fields."""
    names = tuple(info.fields)
    # builtins under names no field can have (fields never start with "_"): a field named `type`
    # or `len` would shadow the builtin inside the generated function
    namespace: dict[str, Any] = {"_init": _init, "_MISSING": _MISSING, "_mixed": _mixed_call, "_names": names,
                                 "_type_of": type, "_len": len}
    fields = "".join(f"{name}, " for name in names)
    lines = [f"def __init__(_self, *_args, {''.join(f'{name}=_MISSING, ' for name in names)}**_kwargs):"]
    if not names:
        lines += ["    if _args or _kwargs:",
                  "        return _init(_self, *_args, **_kwargs)"]
    else:
        mixed = f"return _mixed(_self, _args, _kwargs, _names, ({fields}))"
        lines += ["    if _args:",
                  f"        if _len(_args) != {len(names)} or _kwargs or "
                  + " or ".join(f"{name} is not _MISSING" for name in names) + ":",
                  f"            {mixed}",
                  f"        {fields}= _args",
                  "    elif _kwargs or " + " or ".join(f"{name} is _MISSING" for name in names) + ":",
                  f"        {mixed}"]
    # past here the call gave every field exactly once: all by position or all by keyword. Each
    # check only notes a value out of its fast bounds (source linear in the fields: a 600-field
    # component's was 8 MB when every check carried the fallback call)
    lines.append("    _slow = False")
    for k, (name, bounds) in enumerate(zip(names, info.raw_bounds or (), strict=True)):
        common = next(iter(bounds))  # float for float fields, int for ints, bool for bools
        lo, hi = bounds[common]  # type: ignore[misc]
        namespace.update({f"_type{k}": common, f"_lo{k}": lo, f"_hi{k}": hi, f"_bounds{k}": bounds})
        lines += [f"    if _type_of({name}) is _type{k}:",
                  f"        if not _lo{k} <= {name} <= _hi{k}:",
                  "            _slow = True",
                  "    else:",
                  f"        _bound = _bounds{k}.get(_type_of({name}))",
                  f"        if _bound is not True and (_bound is None or not _bound[0] <= {name} <= _bound[1]):",
                  "            _slow = True"]
    lines += ["    if _slow:",
              f"        return _init(_self, *_args) if _args else _init(_self, {''.join(f'{n}={n}, ' for n in names)})"]
    lines.append(f"    _self._raw = ({fields})")
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from field names only
    init = namespace["__init__"]
    init.__qualname__ = f"{info.cls.__qualname__}.__init__"
    return init


_MISSING = object()   # a field the call did not give (the generated __init__'s default)


def _mixed_call(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any], names: tuple[str, ...],
                named: tuple[Any, ...]) -> None:
    """_init with the arguments of a call the generated __init__ does not take whole (some
    fields by position and some by keyword, missing or unknown fields): the fields it bound by
    keyword go back with the other keywords."""
    given = {name: value for name, value in zip(names, named, strict=True) if value is not _MISSING}
    _init(self, *args, **given, **kwargs)


def _repr(self: Any) -> str:
    info: ComponentInfo = type(self).__ecs_component__
    parts = []
    for field in info.fields:
        value = self._values[field]
        parts.append(f"{field}={value[()]}" if value.ndim == 0 else f"{field}={value.tolist()!r}")
    return f"{info.name}({', '.join(parts)})"


def _eq(self: Any, other: object) -> bool:
    if type(other) is not type(self):
        return NotImplemented
    return all(np.array_equal(self._values[f], other._values[f]) for f in self._values)  # type: ignore[attr-defined]


def coerce_batch(info: ComponentInfo, field: str, values: np.ndarray) -> np.ndarray:
    """Values (one per entity) converted to a field's dtype, or ComponentValueError naming it."""
    return coerce(info.name, field, info.fields[field], values, batch=True)
