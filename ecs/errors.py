"""Every exception the library raises.

    EcsError
     ├── SchemaError            (TypeError)     a component declaration is invalid
     ├── ComponentValueError    (ValueError)    a value does not fit its field
     ├── DeadEntityError        (LookupError)   an id is not alive
     ├── MissingComponentError  (LookupError)   the entity lacks the component
     ├── SystemDefinitionError  (TypeError)     a system cannot be bound or shipped to workers
     ├── KernelError            (RuntimeError)  a kernel raised; __cause__ is its exception
     ├── WorkerCrashedError     (RuntimeError)  a worker process died
     ├── WorldClosedError       (RuntimeError)  the world was used after close(), or in a forked child
     ├── ConcurrentUseError     (RuntimeError)  step()/run() of one world from two threads, or from its frames
     ├── SnapshotError          (ValueError)    a saved world is corrupt, truncated, foreign or newer
     ├── CapacityError          (MemoryError)   a fixed limit is reached: rows, entities, slots, arena
     ├── CommandError           (ValueError)    a queued structural command cannot be applied
     ├── InvalidArgumentError   (ValueError)    an argument of a call has a value it cannot take
     ├── ArgumentTypeError      (TypeError)     an argument of a call has the wrong type
     ├── InvalidNameError       (KeyError)      a name that is not there or cannot be one: a field, a resource
     └── ReadOnlyError          (AttributeError) a component value's field was assigned (values are immutable)

Each error also subclasses the builtin a caller would naturally catch. Messages are built first,
name the object and the values involved, and say what to do; tests check them by text.
"""

from __future__ import annotations


class EcsError(Exception):
    """Base of every error raised by the library."""


class SchemaError(EcsError, TypeError):
    """A component declaration is invalid; raised at class definition, naming the field."""

    def __init__(self, component: str, field: str | None, reason: str) -> None:
        where = f"{component}.{field}" if field else component
        super().__init__(f"invalid component {where}: {reason}")
        self.component = component
        self.field = field


class ComponentValueError(EcsError, ValueError):
    """A value does not fit its field (range, NaN into an int, shape, batch length)."""

    def __init__(self, component: str, field: str | None, value: object, reason: str) -> None:
        where = f"{component}.{field}" if field else component
        super().__init__(f"{where} = {_short(value)}: {reason}")
        self.component = component
        self.field = field
        self.value = value


class DeadEntityError(EcsError, LookupError):
    """An id refers to an entity that was despawned or never existed."""

    def __init__(self, entity: int, reason: str) -> None:
        super().__init__(f"entity {entity} is not alive: {reason}")
        self.entity = entity


class MissingComponentError(EcsError, LookupError):
    """The entity is alive but does not have the component."""

    def __init__(self, entity: int, component: str, has: list[str]) -> None:
        listed = ", ".join(has) if has else "no components"
        super().__init__(f"entity {entity} has no {component} component (it has {listed}); "
                         f"add it with world.add(entity, {component}(...)) first")
        self.entity = entity
        self.component = component


class SystemDefinitionError(EcsError, TypeError):
    """A system's parameters cannot be bound, or it cannot be shipped to workers."""

    def __init__(self, system: str, reason: str, parameter: str | None = None) -> None:
        where = f"system {system!r}, parameter {parameter!r}" if parameter else f"system {system!r}"
        super().__init__(f"{where}: {reason}")
        self.system = system
        self.parameter = parameter


class KernelError(EcsError, RuntimeError):
    """A system's kernel raised; `__cause__` holds the kernel's own exception."""

    def __init__(self, system: str, cause: BaseException) -> None:
        super().__init__(f"system {system!r} raised {type(cause).__name__}: {cause}")
        self.system = system


class WorkerCrashedError(EcsError, RuntimeError):
    """A worker process died while running a system; it has been replaced."""

    def __init__(self, system: str | None, worker: int, exitcode: int | None, reason: str = "",
                 hint: str = "") -> None:
        """`system` None: the worker died while starting, before it ran anything."""
        if reason:
            how = f"{reason} and was killed"
        elif exitcode is not None and exitcode < 0:
            how = f"was killed by signal {-exitcode} ({_signal_name(-exitcode)})"
        elif exitcode is None:
            how = "stopped responding and was killed"
        else:
            how = f"exited with status {exitcode}"
        doing = "while starting" if system is None else f"while running system {system!r}"
        super().__init__(f"worker {worker} {how} {doing}; "
                         f"it was replaced and the world is usable" + (f"; {hint}" if hint else ""))
        self.system = system
        self.worker = worker
        self.exitcode = exitcode


class WorldClosedError(EcsError, RuntimeError):
    """The world was used after close(), or in a process forked from the one that made it."""

    def __init__(self, operation: str, forked: bool = False) -> None:
        call = f"world.{operation}" if "[" in operation else f"world.{operation}()"   # resources[...]
        if forked:
            super().__init__(f"{call} called in a process forked from the one that made the world; "
                             f"a world belongs to its process (its workers and shared memory are the parent's): "
                             f"make a new World in the child, or load a saved one")
        else:
            super().__init__(f"{call} called after world.close(); the world's memory is released")


class ConcurrentUseError(EcsError, RuntimeError):
    """step() or run() was called while another thread was running frames of the same world, or
    step(), run(), close() or remove_system() from inside the running frames (`inside`: a
    recorder's reduction or another callback of step()/run())."""

    def __init__(self, operation: str, inside: bool = False) -> None:
        if inside:
            super().__init__(f"world.{operation}() called from inside this world's running step()/run() (a "
                             f"recorder reduction or another callback of its frames); call it once step()/run() "
                             f"has returned")
        else:
            super().__init__(f"world.{operation}() called while another thread is running this world's frames; "
                             f"a world runs one step()/run() at a time: use one thread per world, or a lock")


class SnapshotError(EcsError, ValueError):
    """A saved world cannot be loaded: corrupt, truncated, not ours, or from a newer version."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot load {path!r}: {reason}")
        self.path = path


class CapacityError(EcsError, MemoryError):
    """A fixed limit is reached: a table's max_rows, the world's max_entities, a table's
    change-tracking slots, a command buffer, or the arena's address space. Names the limit."""

    def __init__(self, what: str, limit: str, fix: str) -> None:
        super().__init__(f"{what}: {limit}; {fix}")
        self.limit = limit


class CommandError(EcsError, ValueError):
    """A structural command (from a kernel or `defer()`) cannot be applied; names who issued it.
    The commands of that frame or block are not applied."""


class InvalidArgumentError(EcsError, ValueError):
    """An argument of a call has a value it cannot take; names the call, the argument and the value."""


class ArgumentTypeError(EcsError, TypeError):
    """An argument of a call has the wrong type; names the call and what it got."""


class InvalidNameError(EcsError, KeyError):
    """A name that is not there or cannot be one: a component's field, a resource, a component
    that a query batch lacks."""

    def __str__(self) -> str:   # KeyError's own str() would quote the message
        return str(self.args[0]) if self.args else ""


class ReadOnlyError(EcsError, AttributeError):
    """A field of a component value was assigned: values are immutable (build a new one)."""


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return "unknown signal"
