"""Binding: a system added to one world, its query, its values, its compiled signature.

A `BoundSystem` ties a declared system (system.py) to one world's store: the query of the
tables it runs over (its required components, `without=` and filters), its change reader for
`changed=`/`added=`/`removed=` filters, and the numba signature its kernel is compiled for.
Named values are resolved per run: `step()`/`run()` keywords, then the world's resources,
then the parameter's default; a value whose type differs from the compiled one is converted
(scalars it holds exactly) or refused (system.py's convert_value), so a kernel never
recompiles mid-run.

Workers find a system by (module, attribute): `address_of` names it, `check_importable`
refuses at add_system what a worker could not import, `resolve_system` imports it there.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np

from ecs.kernels.commands import empty_buffer

from .changes import Reader
from .errors import KernelError, SystemDefinitionError
from .memory import read_only
from .query import Query
from .resources import Resources
from .store import Store
from .system import (
    COMMANDS,
    ENTITY,
    FRAME,
    REMOVED,
    ROWS,
    VALUE,
    WRITE,
    System,
    annotation_type,
    convert_value,
    value_type,
)

_MISSING = object()


class BoundSystem:
    """A system added to one world: its query, its compiled signature, its figures."""

    def __init__(self, store: Store, resources: Resources, system: System, index: int) -> None:
        self.store = store
        self.resources = resources
        self.system = system
        self.index = index
        self.query = Query(store, [i.cls for i in system.required], [i.cls for i in system.without],
                           [i.cls for i in system.changed], [i.cls for i in system.added],
                           [i.cls for i in system.removed])
        self.value_types: dict[str, Any] = {}
        self.takes_values = any(p.kind == VALUE for p in system.params)
        self.compiled = False
        self.calls = 0
        self.address = address_of(system)

    @property
    def name(self) -> str:
        return self.system.name

    def raise_kernel_error(self, exc: BaseException) -> None:
        """Raise the kernel's exception `exc` as the KernelError of this system."""
        raise KernelError(self.name, exc) from exc

    def reader(self) -> Reader:
        """The change reader of the system's filters (registered at the first call)."""
        return self.query.reader()

    def array_values(self) -> list[str]:
        """Names of the value parameters compiled as arrays (resource arrays)."""
        return [name for name, t in self.value_types.items() if isinstance(t, numba.types.Array)]

    # ---------------------------------------------------------------- values and compilation
    def resolve_values(self, params: Mapping[str, object], *, required: bool = True) -> dict[str, object]:
        """Named values by parameter: step/run keywords, then world.resources, then defaults."""
        values = {}
        for p in self.system.params:
            if p.kind != VALUE:
                continue
            value = params.get(p.name, _MISSING)
            if value is _MISSING:
                value = self.resources.get(p.name, _MISSING)
            if value is _MISSING and p.default is not inspect.Parameter.empty:
                value = p.default
            if value is _MISSING:
                if required:
                    raise SystemDefinitionError(self.name, f"no value: pass step({p.name}=...) or "
                                                           f"set world.resources[{p.name!r}]", p.name)
                continue
            if p.name in self.value_types:
                value = convert_value(value, self.value_types[p.name], p, self.name)
            values[p.name] = value
        return values

    def try_compile(self, values: Mapping[str, object]) -> bool:
        """Compile the kernel for its exact signature if every value type is known."""
        if self.compiled:
            return True
        system = self.system
        types = []
        for p in system.params:
            if p.kind == VALUE:
                known = annotation_type(p)
                if known is None and p.name not in values:
                    return False
                self.value_types[p.name] = known or value_type(values[p.name], p, self.name)
                types.append(self.value_types[p.name])
            else:
                types.append(numba.typeof(_sample_argument(p)))
        try:
            system.kernel.compile(tuple(types))
        # NotImplementedError: a type numba's CPU target cannot lower (float16)
        except (numba.core.errors.NumbaError, numba.core.errors.UnsupportedBytecodeError, NotImplementedError) as exc:
            self.value_types.clear()
            described = ", ".join(f"{p.name}: {t}" for p, t in zip(system.params, types, strict=True))
            lines = [line for line in str(exc).splitlines()
                     if line.strip() and not line.startswith(("Failed in nopython", "During: Pass"))]
            detail = "\n    ".join(lines[:12])
            if "setitem(readonly" in str(exc):
                detail = (f"the kernel writes to an array it receives read-only: a component without Mut[...] and "
                          f"the Entity ids are read-only (declare Mut[C] to write C)\n    {detail}")
            raise SystemDefinitionError(self.name, f"numba could not compile the kernel for the parameter "
                                                   f"types ({described}):\n    {detail}") from exc
        self.compiled = True
        return True


def address_of(system: System) -> tuple[str, str]:
    """(module, attribute) under which workers find the system: the module-level name bound to
    it, else the kernel function's own qualified name."""
    module_name = system.py_func.__module__
    module = sys.modules.get(module_name)
    if module is not None:
        for name, obj in vars(module).items():
            if obj is system:
                return module_name, name
    return module_name, system.py_func.__qualname__


def check_importable(system: System) -> None:
    """Workers import systems by module and name; refuse what they could not find."""
    module_name, attribute = address_of(system)
    qualname = system.py_func.__qualname__
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise SystemDefinitionError(system.name, f"it is defined inside a function ({qualname}), so worker "
                                                 f"processes cannot import it; define it at module level")
    module = sys.modules.get(module_name)
    if module_name == "__main__" and not getattr(module, "__file__", None):
        raise SystemDefinitionError(system.name, "it is defined in an interactive session, which worker "
                                                 "processes cannot import; define it in a module or script")
    try:
        found = resolve_system(module_name, attribute)
    except Exception:
        found = None
    if found is not system:
        raise SystemDefinitionError(system.name, f"worker processes look it up as {module_name}.{attribute} "
                                                 f"and would not find this system there; bind it to a "
                                                 f"module-level name")


def resolve_system(module_name: str, attribute: str) -> System:
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    obj: Any = module
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def _sample_argument(p: Any) -> object:
    """A zero-row argument with exactly the types the real views will have: read-only arrays
    for a component read without Mut and for the entity ids (executor.py and the drivers pass
    them so), so that a kernel that writes one fails to compile, naming it, instead of changing
    values unseen by change tracking (or the world's ids)."""
    if p.kind == ENTITY:
        return read_only(np.empty(0, np.int64))
    if p.kind in (ROWS, REMOVED):
        return np.empty(0, np.int64)
    if p.kind == COMMANDS:
        return empty_buffer()
    if p.kind == FRAME:
        return np.int64(0)
    columns = [np.empty((0, *dtype.shape), dtype.base) for dtype in p.info.fields.values()]
    if p.kind == WRITE:
        return p.info.mut_view_type(*columns, np.empty(0, np.uint64))
    return p.info.view_type(*map(read_only, columns))

