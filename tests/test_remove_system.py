"""world.remove_system: a system leaves the frame, frees its change reader, and the others keep
their order, figures and results, in this process and on workers."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

import ecs
from ecs import Mut, component, f64, system
from tests import introspect
from tests.systems_common import Counter, add_untyped, double_n, increment_n, seen_counter


def run_with_removal(workers: int) -> tuple[list[int], dict]:
    with ecs.World(workers=workers) as world:
        ids = world.spawn_batch(70_000, Counter(n=np.arange(70_000) % 7))
        world.add_system(increment_n)
        world.add_system(double_n)
        world.step()                 # n = 2 (n + 1)
        world.remove_system(increment_n)
        world.step()                 # n = 2 n
        stats = world.stats()
        return [int(world.get(int(e), Counter).n) for e in ids[:20]], stats


@pytest.mark.parametrize("workers", [0, 2])
def test_a_removed_system_no_longer_runs_and_the_others_keep_their_figures(workers: int) -> None:
    values, stats = run_with_removal(workers)
    assert values == [4 * (n % 7 + 1) for n in range(20)]
    assert list(stats) == ["double_n"]
    assert stats["double_n"]["calls"] == 2 and stats["double_n"]["rows"] == 140_000


def test_removal_gives_the_same_result_on_workers_as_in_this_process() -> None:
    assert run_with_removal(0)[0] == run_with_removal(2)[0]


def test_a_removed_filtered_system_frees_its_change_reader() -> None:
    with ecs.World() as world:
        world.spawn_batch(10, Counter())
        world.resources["seen_counter_log"] = np.zeros(64, np.int64)
        readers = len(introspect.store(world).changes.readers)
        world.add_system(seen_counter)
        world.step()
        assert len(introspect.store(world).changes.readers) == readers + 1
        world.remove_system(seen_counter)
        assert len(introspect.store(world).changes.readers) == readers
        world.add_system(seen_counter)   # and it can come back: its first look sees every row as new
        world.step()


def test_removing_a_system_that_was_not_added_names_it() -> None:
    with ecs.World() as world, pytest.raises(ecs.InvalidArgumentError, match=r"remove_system\(<System double_n>\): "
                                                                              r"it was not added to this world"):
        world.remove_system(double_n)


def test_a_system_that_fails_at_its_first_step_can_be_removed() -> None:
    with ecs.World() as world:
        world.spawn(Counter())
        world.add_system(add_untyped)
        world.add_system(double_n)
        for _ in range(2):
            with pytest.raises(ecs.SystemDefinitionError, match="step_size"):
                world.step(step_size="three")
        world.remove_system(add_untyped)
        world.step()
        assert world.stats()["double_n"]["calls"] == 1


@component
class Amount:
    x: f64 = 0.0


@system
def add_amount(a: Mut[Amount], amount):
    for i in range(a.x.shape[0]):
        a.x[i] += amount


@pytest.mark.parametrize("workers", [0, 1])
def test_a_system_added_again_runs_with_the_types_of_its_new_values(workers: int) -> None:
    # step_timeout: this process only supervises, so the worker runs every unit
    with ecs.World(workers=workers, step_timeout=60.0 if workers else None) as world:
        ids = world.spawn_batch(3, Amount())
        world.resources["amount"] = 1            # compiled for int64
        world.add_system(add_amount)
        world.step()
        world.remove_system(add_amount)
        world.resources["amount"] = 2.5          # compiled anew for float64
        world.add_system(add_amount)
        world.step()
        world.resources["amount"] = 0.25
        world.step()
        assert [world.get(int(e), Amount).x for e in ids] == [3.75] * 3


def test_a_system_defined_again_under_its_name_runs_its_new_kernel(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "redefined_systems.py"
    body = "    for i in range(a.x.shape[0]):\n        a.x[i] += {}\n"
    path.write_text("import ecs\nfrom tests.test_remove_system import Amount\n"
                    "@ecs.system\ndef shift(a: ecs.Mut[Amount]):\n" + body.format(1.0) + "first = shift\n"
                    "@ecs.system\ndef shift(a: ecs.Mut[Amount]):\n" + body.format(100.0))
    spec = importlib.util.spec_from_file_location("redefined_systems", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with ecs.World() as world:
        entity = world.spawn(Amount())
        world.add_system(module.first)
        world.step()
        world.remove_system(module.first)
        world.add_system(module.shift)
        world.step()
        assert world.get(entity, Amount).x == 101.0
