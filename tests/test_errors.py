"""ecs/errors.py: every error class the library raises, triggered through the public API and
checked by its message; and no builtin exception raised anywhere in ecs/ outside that tree."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

import ecs
from tests.components import Health, Position

ROOT = Path(__file__).resolve().parent.parent
# raised on purpose as themselves: I/O failures are the OS's; a missing optional extra is an
# ImportError naming it (the import machinery's own error, with the extra to install)
# KeyboardInterrupt: the user's own Ctrl-C, raised once a structural change it arrived in is whole (interrupts.py)
ALLOWED_BUILTINS = {"OSError", "AssertionError", "NotImplementedError", "StopIteration", "ImportError",
                    "KeyboardInterrupt"}


def test_capacity_error_names_the_entity_limit_and_the_fix() -> None:
    with ecs.World(max_entities=64) as world:
        world.spawn_batch(64, Health())                  # max_entities entities, not one less
        with pytest.raises(ecs.CapacityError, match=r"cannot spawn 1 entities: World\(max_entities=64\) slots "
                                                     r"are all in use; create the world with a larger max_entities"):
            world.spawn(Health(hp=1))
        assert len(world) == 64


def test_capacity_error_names_the_change_tracking_slot_limit() -> None:
    with ecs.World() as world:
        world.spawn(Health())
        queries = []
        with pytest.raises(ecs.CapacityError, match=r"table 0 has no free change-tracking slot: all 64 for change "
                                                     r"readers are in use \(1 per live changed= or added= query "
                                                     r"or system that reads the table\)"):
            for _ in range(300):
                query = world.query(Health, changed=[Health])
                query.count()
                queries.append(query)
        assert len(queries) == 64


def test_capacity_error_is_a_memory_error() -> None:
    assert issubclass(ecs.CapacityError, MemoryError)


def test_command_error_names_the_placeholder_and_the_queue() -> None:
    pattern = r"despawn: -5 is not a placeholder of this queue \(it has 0 spawns\)"
    with ecs.World() as world, pytest.raises(ecs.CommandError, match=pattern), world.defer() as deferred:
        deferred.despawn(-5)


def test_invalid_argument_error_names_the_call_and_the_value() -> None:
    with pytest.raises(ecs.InvalidArgumentError, match=r"World\(workers=-1\): expected an int >= 0 or 'auto'"):
        ecs.World(workers=-1)
    with pytest.raises(ecs.InvalidArgumentError, match=r"World\(workers=20000\): at most 1024"):
        ecs.World(workers=20000)          # refused before any command buffer is reserved for them
    with ecs.World() as world, pytest.raises(ecs.InvalidArgumentError, match=r"run\(frames=-3\)"):
        world.run(frames=-3)


def test_argument_type_error_names_what_it_got() -> None:
    with ecs.World() as world, pytest.raises(ecs.ArgumentTypeError, match=r"an entity id is an int, got 'x'"):
        world.get("x", Position)
    with ecs.World() as world, pytest.raises(ecs.ArgumentTypeError, match=r"without= takes a list of component "
                                                                                    r"classes, got <class"):
        world.query(Position, without=Health)


def test_invalid_name_error_reads_as_its_message_not_a_quoted_key() -> None:
    with ecs.World() as world:
        with pytest.raises(ecs.InvalidNameError) as caught:
            world.resources["nope"]
        assert str(caught.value) == "no resource 'nope'; resources are []"
        with pytest.raises(ecs.InvalidNameError, match="resource names are identifiers"):
            world.resources["not a name"] = 1.0
    with pytest.raises(ecs.InvalidNameError, match=r"Position has no field 'z'; it has x, y"):
        ecs.field_key(Position, "z")


def test_read_only_error_says_values_are_immutable() -> None:
    value = Position(x=1.0, y=2.0)
    with pytest.raises(ecs.ReadOnlyError, match=r"component values are immutable; build a new Position"):
        value.x = 3.0  # type: ignore[misc]


def raised_builtins(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every builtin exception raised, except AttributeError in __getattr__
    (the attribute protocol itself)."""
    tree = ast.parse(path.read_text())
    protocol = {id(node) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) and fn.name == "__getattr__"
                for node in ast.walk(fn)}
    found = []
    for node in ast.walk(tree):
        if id(node) in protocol:
            continue
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = target.id if isinstance(target, ast.Name) else None
            if name and isinstance(getattr(builtins, name, None), type) and \
                    issubclass(getattr(builtins, name), BaseException) and name not in ALLOWED_BUILTINS:
                found.append((node.lineno, name))
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "ecs").glob("*.py")), ids=lambda p: p.name)
def test_the_library_raises_only_errors_of_its_own_tree(path: Path) -> None:
    assert raised_builtins(path) == []
