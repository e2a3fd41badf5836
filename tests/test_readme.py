"""The README's code blocks run as written: the quickstart as a script, the others with the
components they mention declared first."""

from __future__ import annotations

import ast
import os
import pathlib
import re
import runpy
import subprocess
import sys

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)

PRELUDE = """
import numpy as np
import pytest
import ecs
from ecs import component, system, Mut, Rows, f32, i32

@component
class Position:
    x: f32
    y: f32

@component
class Counter:
    n: i32 = 0

@component
class Frozen:
    pass

@component
class Life:
    t: i32
"""


def test_readme_has_the_quickstart_the_system_examples_and_the_results_example() -> None:
    assert len(BLOCKS) == 4


def test_quickstart_runs_as_a_script_and_reports_bounces(tmp_path, capsys) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(BLOCKS[0])
    runpy.run_path(str(script), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    bounced = int(lines[0].split()[0])
    assert 0 < bounced < 100_000
    top, total = lines[1].split()
    assert float(top) <= 1.0 and int(total) >= bounced


def test_system_examples_compile_and_run_in_a_world(tmp_path) -> None:
    module = tmp_path / "readme_systems.py"
    react_block = BLOCKS[1].replace("...", "moved.n[i] += 1 if pos.x[i] > threshold else 0")
    module.write_text(PRELUDE + react_block + BLOCKS[2])
    namespace = runpy.run_path(str(module))
    ecs, Position, Counter, Life = (namespace[k] for k in ("ecs", "Position", "Counter", "Life"))
    with ecs.World() as world:
        ids = world.spawn_batch(4, Position(x=np.arange(4, dtype=np.float32), y=0.0), Counter())
        world.add_system(namespace["react"])
        world.step(threshold=1.5)
        assert [int(world.get(e, Counter).n) for e in ids] == [0, 0, 1, 1]
        prefab = world.spawn(Life(t=100), Position(x=9.0, y=9.0), namespace["Frozen"]())
        lives = world.spawn_batch(3, Life(t=np.array([1, 4, 9], np.int32)), Position(x=1.0, y=1.0))
        world.add_system(namespace["age"])
        world.step(threshold=1.5, prefab=prefab)
        assert not world.is_alive(int(lives[0]))
        assert world.has(int(lives[1]), namespace["Frozen"])
        assert world.query(Life, namespace["Frozen"]).count() == 3   # prefab, its copy, the frozen one


def test_results_example_runs_as_a_script_with_its_ensemble(tmp_path) -> None:
    """Run in a fresh process, as a user would: the ensemble's pool imports build from the script."""
    pytest.importorskip("pyarrow")
    pytest.importorskip("pandas")
    script = tmp_path / "results_example.py"
    script.write_text(BLOCKS[3])
    env = dict(os.environ, PYTHONPATH=str(README.parent))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    samples, non_negative, by_gravity = done.stdout.splitlines()
    assert samples == "5000 [0, 30, 60, 90, 120]"          # 1000 balls x 5 samples
    assert non_negative == "True"
    means = ast.literal_eval(by_gravity)
    assert [row["gravity"] for row in means] == [-9.81, -1.62]
    assert all(row["mean_height_mean"] > 0 for row in means)
