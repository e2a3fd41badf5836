"""ecs: a structure-of-arrays archetype ECS whose shared-memory numpy columns are the world.

Components are typed fields (`@component`), stored per archetype table as one numpy column per
field in shared memory. Queries hand out zero-copy views; change tracking is exact per reader
through dirty bits. Systems (`@system`) are numba kernels bound to columns by their parameters'
annotations, run in this process or on worker processes (`World(workers=N)`).

Start from `help(ecs.World)`, `help(ecs.component)` and `help(ecs.system)` (every option of a
system and every parameter annotation); `__all__` lists the public names.
"""

def _attach_source_kernels() -> None:
    """`ecs.kernels` is the repository's kernels/ folder, installed as a subpackage of ecs (so it
    claims no top-level name). In a source checkout that was never installed, map it here."""
    import importlib.util
    import pathlib
    import sys

    if "ecs.kernels" in sys.modules or importlib.util.find_spec("ecs.kernels") is not None:
        return
    folder = pathlib.Path(__file__).resolve().parent.parent / "kernels"
    spec = importlib.util.spec_from_file_location("ecs.kernels", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise ImportError("ecs.kernels is missing: install the package (pip install -e .) or run from a checkout")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ecs.kernels"] = module
    spec.loader.exec_module(module)


_attach_source_kernels()


from ecs.kernels.bits import mark_changed
from ecs.kernels.commands import add_tag as cmd_add
from ecs.kernels.commands import despawn as cmd_despawn
from ecs.kernels.commands import remove_tag as cmd_remove
from ecs.kernels.commands import set_field as cmd_set
from ecs.kernels.commands import spawn as cmd_spawn

from .commands import Commands, component_key, field_key
from .deferred import Deferred
from .ensemble import ensemble
from .errors import (
    ArgumentTypeError,
    CapacityError,
    CommandError,
    ComponentValueError,
    ConcurrentUseError,
    DeadEntityError,
    EcsError,
    InvalidArgumentError,
    InvalidNameError,
    KernelError,
    MissingComponentError,
    ReadOnlyError,
    SchemaError,
    SnapshotError,
    SystemDefinitionError,
    WorkerCrashedError,
    WorldClosedError,
)
from .query import Batch, Query
from .recorder import Recorder
from .schema import bool_, component, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64
from .system import Entity, Frame, Mut, Removed, Rows, System, system
from .world import World

__version__ = "0.1.0"

__all__ = [
    "ArgumentTypeError",
    "Batch",
    "CapacityError",
    "CommandError",
    "Commands",
    "ComponentValueError",
    "ConcurrentUseError",
    "DeadEntityError",
    "Deferred",
    "EcsError",
    "Entity",
    "Frame",
    "InvalidArgumentError",
    "InvalidNameError",
    "KernelError",
    "MissingComponentError",
    "Mut",
    "Query",
    "ReadOnlyError",
    "Recorder",
    "Removed",
    "Rows",
    "SchemaError",
    "SnapshotError",
    "System",
    "SystemDefinitionError",
    "WorkerCrashedError",
    "World",
    "WorldClosedError",
    "bool_",
    "cmd_add",
    "cmd_despawn",
    "cmd_remove",
    "cmd_set",
    "cmd_spawn",
    "component",
    "component_key",
    "ensemble",
    "f32",
    "f64",
    "field_key",
    "i16",
    "i32",
    "i64",
    "i8",
    "mark_changed",
    "system",
    "u16",
    "u32",
    "u64",
    "u8",
]
