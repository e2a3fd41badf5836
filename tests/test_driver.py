"""ecs/driver.py: a unit of many tables runs in one compiled call, and computes exactly what the
one-call-per-table path computes: columns, change marks, stats, commands and errors."""

from __future__ import annotations

import importlib.util
import os
import pathlib

import numpy as np
import pytest

import ecs
from ecs import Entity, Frame, KernelError, Mut, Rows, component, f64, i64, system
from tests import introspect


@component
class DrivenPos:
    x: f64
    y: f64


@component
class DrivenVel:
    v: f64[2]


@component
class DrivenCount:
    n: i64 = 0


TAGS = [component(type(name, (), {"__module__": __name__, "__qualname__": name}))
        for name in (f"DrivenTag{k}" for k in range(7))]
for _tag in TAGS:
    globals()[_tag.__name__] = _tag
MARKED = ecs.component_key(DrivenCount)


@system
def integrate(pos: Mut[DrivenPos], vel: DrivenVel, ids: Entity, frame: Frame, dt: float, bias: np.ndarray):
    for i in range(ids.shape[0]):
        pos.x[i] += vel.v[i, 0] * dt + frame + bias[0]
        pos.y[i] = ids[i] * 0.5 + vel.v[i, 1]


@system(mark="manual")
def mark_even(pos: Mut[DrivenPos], ids: Entity):
    for i in range(ids.shape[0]):
        if ids[i] % 2 == 0:
            pos.x[i] = -pos.x[i]
            ecs.mark_changed(pos.changed, i)


@system
def fail_at(pos: Mut[DrivenPos], ids: Entity, bad: int):
    for i in range(ids.shape[0]):
        if ids[i] == bad:
            raise ValueError("this entity is bad")
        pos.x[i] = 7.0


@system(mark="manual", with_=[TAGS[3]])
def kick(vel: Mut[DrivenVel], ids: Entity):
    for i in range(ids.shape[0]):
        if ids[i] % 3 == 0:
            vel.v[i, 0] += 1.0
            ecs.mark_changed(vel.changed, i)


@system(changed=[DrivenVel])
def react(rows: Rows, vel: DrivenVel, pos: Mut[DrivenPos], ids: Entity):
    for r in rows:
        pos.y[r] = vel.v[r, 0] + ids[r]


@system(changed=[DrivenVel])
def react_or_fail(rows: Rows, pos: Mut[DrivenPos], ids: Entity, bad: int):
    for r in rows:
        if ids[r] == bad:
            raise ValueError("this entity is bad")
        pos.x[r] = 7.0


@system
def count_big(pos: DrivenPos, ids: Entity, cmd: ecs.Commands):
    for i in range(ids.shape[0]):
        if pos.y[i] > 20.0:
            ecs.cmd_add(cmd, i, ids[i], MARKED)


def build() -> tuple[ecs.World, list[int]]:
    """A world of seven tables of 0 to 60 rows each (every table of a system is one unit)."""
    world = ecs.World()
    ids: list[int] = []
    for k, tag in enumerate(TAGS):
        n = 10 * k
        if n:
            spawned = world.spawn_batch(n, DrivenPos(x=np.arange(n) + 100.0, y=0.0),
                                        DrivenVel(v=np.stack([np.full(n, k + 1.0), np.arange(n) * 0.25], axis=1)),
                                        tag())
            ids.extend(int(e) for e in spawned)
    world.resources["bias"] = np.array([0.5])
    return world, ids


def observed(world: ecs.World, changed: ecs.Query | None) -> dict[str, object]:
    out: dict[str, object] = {"x": {}, "y": {}, "counted": sorted(int(e) for b in world.query(DrivenCount)
                                                                   for e in b.entities)}
    for batch in world.query(DrivenPos):
        for e, x, y in zip(batch.entities, batch[DrivenPos].x, batch[DrivenPos].y, strict=True):
            out["x"][int(e)] = float(x)   # type: ignore[index]
            out["y"][int(e)] = float(y)   # type: ignore[index]
    if changed is not None:
        out["changed"] = sorted(int(e) for b in changed for e in b.entities[b.rows])
    out["stats"] = {name: (s["calls"], s["kernel_calls"], s["rows"]) for name, s in world.stats().items()}
    return out


def scenario(*systems: ecs.System, frames: int = 3, **params: object) -> dict[str, object]:
    world, _ = build()
    with world:
        for s in systems:
            world.add_system(s)
        changed = world.query(DrivenPos, changed=[DrivenPos])
        list(changed)     # the first look sees everything; later ones see what the frames wrote
        world.run(frames, **params)
        return observed(world, changed)


@pytest.mark.parametrize("systems", [(integrate,), (integrate, mark_even), (integrate, count_big), (kick, react)],
                         ids=["auto marks", "manual marks", "commands", "changed= filter"])
def test_a_driven_unit_computes_what_one_call_per_table_computes(systems: tuple,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    params = {"dt": 0.1} if integrate in systems else {}
    driven = scenario(*systems, **params)
    introspect.without_drivers(monkeypatch)
    assert driven == scenario(*systems, **params)
    if systems == (integrate,):
        assert driven["stats"]["integrate"] == (3, 3 * 6, 3 * 210)   # six non-empty tables a frame
        assert len(driven["changed"]) == 210
    if systems == (kick, react):    # every row in the first frame (added), then the kicked third of one table
        calls, kernel_calls, rows = driven["stats"]["react"]
        assert (calls, kernel_calls) == (3, 6 + 2 * 1) and 210 < rows < 210 + 2 * 30


def test_a_kernel_error_in_a_driven_filtered_unit_marks_the_rows_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    def run() -> tuple[int, dict[str, object]]:
        world, ids = build()
        with world:
            world.add_system(kick)
            world.add_system(react_or_fail)
            changed = world.query(DrivenPos, changed=[DrivenPos])
            world.step(bad=-1)
            list(changed)
            bad = next(e for e in ids[30:60] if e % 3 == 0)      # a kicked row of DrivenTag3's table
            with pytest.raises(KernelError, match="react_or_fail"):
                world.step(bad=bad)
            return bad, observed(world, changed)
    bad, driven = run()
    introspect.without_drivers(monkeypatch)
    assert run() == (bad, driven)
    assert driven["changed"] and all(e % 3 == 0 for e in driven["changed"])   # only rows it was given
    assert bad in driven["changed"]                                          # the failing table's too


def test_commands_from_a_driven_unit_name_their_own_table_and_row(monkeypatch: pytest.MonkeyPatch) -> None:
    result = scenario(integrate, count_big, dt=0.1, frames=1)
    big = sorted(e for e, y in result["y"].items() if y > 20.0)
    assert big and result["counted"] == big


def test_a_kernel_error_in_a_driven_unit_stops_there_and_marks_what_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    def run() -> tuple[str, dict[str, object], list[int]]:
        world, ids = build()
        with world:
            world.add_system(fail_at)
            changed = world.query(DrivenPos, changed=[DrivenPos])
            list(changed)
            with pytest.raises(KernelError, match="fail_at") as raised:
                world.step(bad=ids[75])    # in the fourth non-empty table
            return str(raised.value), observed(world, changed), ids
    message, driven, ids = run()
    introspect.without_drivers(monkeypatch)
    assert run() == (message, driven, ids)
    assert "this entity is bad" in message
    assert all(driven["x"][e] == 7.0 for e in ids[:60])            # the tables before ran
    assert all(driven["x"][e] != 7.0 for e in ids[100:])           # the tables after did not
    assert driven["changed"] == sorted(ids[:100])                  # the failing table is marked too
    assert driven["stats"]["fail_at"][1:] == (4, 100)


def test_a_driver_that_cannot_compile_leaves_the_python_path_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    driven = scenario(integrate, dt=0.1)
    introspect.break_driver_compile(monkeypatch)
    assert scenario(integrate, dt=0.1) == driven


def test_driver_sources_are_written_once_and_a_tampered_one_is_rewritten(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    introspect.driver_files_in(monkeypatch, str(tmp_path))
    expected = scenario(integrate, dt=0.1)
    files = sorted(p for p in os.listdir(tmp_path) if p.endswith(".py"))
    assert len(files) == 1 and files[0].startswith("ecs_driver_")
    path = tmp_path / files[0]
    assert "def driver(arena, ro, offsets, bounds, progress" in path.read_text()
    path.write_text("raise SystemExit('tampered')\n")
    introspect.driver_files_in(monkeypatch, str(tmp_path))     # a new process, as far as modules go
    assert scenario(integrate, dt=0.1) == expected
    assert "def driver(" in path.read_text()


def test_a_kernel_without_a_source_file_is_driven_from_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    scope = {"Mut": Mut, "DrivenPos": DrivenPos, "Entity": Entity}
    exec("def from_memory(pos: Mut[DrivenPos], ids: Entity):\n"          # noqa: S102
         "    for i in range(ids.shape[0]):\n"
         "        pos.y[i] = ids[i] + 1.0\n", scope)
    kernel = system(scope["from_memory"])
    world, ids = build()
    with world:
        world.add_system(kernel)
        world.step()
        result = observed(world, None)
    assert result["y"] == {e: e + 1.0 for e in ids}
    assert result["stats"]["from_memory"] == (1, 6, 210)


def test_drivers_are_compiled_here_before_workers_meet_them() -> None:
    # with a step_timeout this process runs no kernel: only the preparation can have compiled it
    with ecs.World(workers=1, step_timeout=60.0) as world:
        for k, tag in enumerate(TAGS[1:], start=1):
            world.spawn_batch(10 * k, DrivenPos(x=0.0, y=0.0), DrivenVel(v=np.zeros((10 * k, 2))), tag())
        world.add_system(mark_even)
        world.step()
        assert introspect.driver_compiled_here(world, mark_even)
        assert world.stats()["mark_even"]["kernel_calls"] == 6


def _shifter(amount: float) -> ecs.System:
    """Systems made by one factory: one name, one source line, different captured values."""
    @system
    def shift(pos: Mut[DrivenPos]):
        for i in range(pos.x.shape[0]):
            pos.x[i] += amount
    return shift


@pytest.mark.parametrize("from_disk", [False, True])
def test_systems_made_by_one_factory_each_drive_their_own_kernel(
        from_disk: bool, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    introspect.driver_files_in(monkeypatch, str(tmp_path))
    for amount in (1.0, 100.0, 1.0):
        if from_disk:   # every world as if in a new process: drivers come from the files only
            introspect.driver_files_in(monkeypatch, str(tmp_path))
        world, ids = build()
        with world:
            before = observed(world, None)["x"]
            world.add_system(_shifter(amount))
            world.step()
            assert observed(world, None)["x"] == {e: before[e] + amount for e in ids}  # type: ignore[index]


def test_a_kernel_defined_again_under_its_name_drives_the_new_code(tmp_path: pathlib.Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    introspect.driver_files_in(monkeypatch, str(tmp_path))
    path = tmp_path / "kernels_of_one_name.py"
    path.write_text("import ecs\n"
                    "from tests.test_driver import DrivenPos\n"
                    "@ecs.system\n"
                    "def shift(pos: ecs.Mut[DrivenPos]):\n"
                    "    for i in range(pos.x.shape[0]):\n"
                    "        pos.x[i] += 1.0\n"
                    "first = shift\n"
                    "@ecs.system\n"
                    "def shift(pos: ecs.Mut[DrivenPos]):\n"
                    "    for i in range(pos.x.shape[0]):\n"
                    "        pos.x[i] += 100.0\n")
    spec = importlib.util.spec_from_file_location("kernels_of_one_name", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for kernel, amount in ((module.first, 1.0), (module.shift, 100.0)):
        world, ids = build()
        with world:
            before = observed(world, None)["x"]
            world.add_system(kernel)
            world.step()
            assert observed(world, None)["x"] == {e: before[e] + amount for e in ids}  # type: ignore[index]
