"""ecs/schema.py, identity across processes: a component of the main script has one key and one
set of view types whether its module is imported as `__main__` (the script), `__mp_main__` (the
script in a worker) or by its own name (the script imported from another script). Run as the
scripts users write, in subprocesses, with their own numba cache."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT_S = 240

GAME = '''
import sys

import numpy as np
import ecs
from ecs import Commands, Entity, Mut, component, f32, system


@component
class Position:
    x: f32
    y: f32


@component
class Frozen:
    pass


FROZEN = ecs.component_key(Frozen)


@system
def freeze(pos: Mut[Position], ids: Entity, cmd: Commands):
    for i in range(pos.x.shape[0]):
        pos.x[i] += 1.0
        if pos.x[i] > 2.5:
            ecs.cmd_add(cmd, i, ids[i], FROZEN)


@system
def drift(pos: Mut[Position]):
    for i in range(pos.x.shape[0]):
        pos.y[i] += pos.x[i]


if __name__ == "__main__":
    with ecs.World(workers=2) as world:
        world.spawn_batch(1000, Position(x=np.arange(1000) % 4, y=0.0))
        world.add_system(freeze if sys.argv[1:] != ["drift"] else drift)
        world.run(2)
        y = sum(float(batch[Position].y.sum()) for batch in world.query(Position))
        print("frozen", world.query(Frozen).count(), "y", y)
'''

IMPORTER = '''
import numpy as np
import ecs
import game

if __name__ == "__main__":
    with ecs.World(workers=2) as world:
        world.spawn_batch(8, game.Position(x=np.arange(8) % 4, y=0.0))
        world.add_system(game.drift)
        world.run(2)
        print("y", sum(float(b[game.Position].y.sum()) for b in world.query(game.Position)))
'''


@pytest.fixture
def scripts(tmp_path) -> pathlib.Path:
    (tmp_path / "game.py").write_text(GAME)
    (tmp_path / "play.py").write_text(IMPORTER)
    return tmp_path


def run_script(folder: pathlib.Path, *command: str) -> str:
    name = command[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(folder / "numba-cache")}
    done = subprocess.run([sys.executable, *command], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{name} exited with {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def cache_files(folder: pathlib.Path, function: str) -> list[str]:
    return sorted(p.name for p in (folder / "numba-cache").rglob(f"{function}-*.nbc"))


def test_a_main_script_whose_system_adds_a_component_by_key_runs_on_workers(scripts) -> None:
    """The workers import the script as __mp_main__: the key they compute for Frozen must be the
    one the main process knows, and the kernel they load must be the one it compiled."""
    # x in 0..3, +1 a frame for 2 frames: rows starting at 1, 2 and 3 pass 2.5
    assert run_script(scripts, "game.py").startswith("frozen 750 ")
    assert run_script(scripts, "game.py").startswith("frozen 750 ")
    assert len(cache_files(scripts, "game.freeze")) == 1     # compiled once: the workers and the rerun loaded it


def test_a_script_imported_by_another_after_it_ran_as_main_still_loads_and_runs(scripts) -> None:
    """The cache index of game.drift holds the signature compiled when game.py was __main__ (and
    its workers'); loading it from play.py (game is `game` there) must neither fail nor match it."""
    # x in 0..3 (250 rows each): y gains x in each of 2 frames
    assert run_script(scripts, "game.py", "drift") == "frozen 0 y 3000.0\n"
    assert run_script(scripts, "play.py") == "y 24.0\n"
    assert run_script(scripts, "play.py") == "y 24.0\n"
    assert run_script(scripts, "game.py", "drift") == "frozen 0 y 3000.0\n"
    assert len(cache_files(scripts, "game.drift")) == 2      # one per name of the component's module
