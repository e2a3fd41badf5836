"""Flocking: the boids model of ABMFrameworksComparison on the spatial grid of kernels/spatial.py.

    python examples/flocking.py                          # 400 birds, 100 steps (the "large" variant)
    python examples/flocking.py --birds 100000 --workers 2
    python examples/flocking.py --check-determinism      # 0 and 2 workers, bit for bit

Birds fly at speed 1 in a periodic square; each step a bird looks at the birds within its
visual distance (15), steers towards their mean position (cohere_factor 0.03), away from those
closer than 1 (separate_factor 0.015) and along their mean heading (match_factor 0.05),
averages that with its own heading, renormalises it to a unit vector and moves. The square is
150 x 150 for 400 birds and grows with the number of birds, keeping the benchmark's density
(150 * sqrt(birds / 400) a side: 2,372 at 100,000 birds).

The systems (examples/flocking_systems.py) update every bird from the state at the start of
the step, so the result is bit-identical on any worker count (the benchmark's reference
implementations update birds one after another; see that module). The whole run is one
`world.run(frames=steps)`: one round trip to the workers. It prints the time per step and the
local alignment (the length of the mean heading of a bird's neighbours, averaged over birds:
low for random headings, 1 when neighbours fly together), which flocking raises; the run fails
if it does not (measured up to 5,000 birds).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time
from dataclasses import dataclass

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # `python examples/flocking.py` puts examples/ on the path, not the root
    sys.path.insert(0, str(ROOT))

import ecs  # noqa: E402
from ecs.kernels import random, spatial  # noqa: E402
from examples import cli  # noqa: E402
from examples.flocking_systems import SYSTEMS, Heading, Position  # noqa: E402

INIT_FRAME = -1
MIN_BIRDS = 16                    # 150 * sqrt(16 / 400) = 30: twice the visual distance
MAX_BIRDS = 1 << 25               # a table's rows under World's default max_rows
DETERMINISM_TIMEOUT_S = 120.0     # --check-determinism's 2-worker world: every run on the workers
X, Y, ANGLE = 10, 11, 12          # streams of the initial draws


@dataclass(frozen=True)
class Config:
    birds: int = 400
    steps: int = 100
    seed: int = 0
    workers: int | str = 0
    step_timeout: float | None = None   # with one, every run goes to the workers
    speed: float = 1.0
    visual_distance: float = 15.0
    separation: float = 1.0
    cohere_factor: float = 0.03
    separate_factor: float = 0.015
    match_factor: float = 0.05

    @property
    def extent(self) -> float:
        return 150.0 * math.sqrt(self.birds / 400)


@dataclass
class Result:
    birds: np.ndarray           # (n, 5) sorted by id: id, x, y, heading x, heading y
    alignment_before: float
    alignment_after: float
    seconds: float              # the run's wall time


def build_world(config: Config) -> ecs.World:
    world = ecs.World(workers=config.workers, step_timeout=config.step_timeout)
    n = config.birds
    ids = world.spawn_batch(n, Position(x=0.0, y=0.0), Heading(x=1.0, y=0.0))
    xs, ys, angles = np.empty(n), np.empty(n), np.empty(n)
    random.fill_uniform(config.seed, ids, INIT_FRAME, X, xs)
    random.fill_uniform(config.seed, ids, INIT_FRAME, Y, ys)
    random.fill_uniform(config.seed, ids, INIT_FRAME, ANGLE, angles)
    world.set_batch(ids, Position(x=xs * config.extent, y=ys * config.extent))
    world.set_batch(ids, Heading(x=np.cos(2 * np.pi * angles), y=np.sin(2 * np.pi * angles)))
    resources = world.resources
    geometry = spatial.make_grid((0.0, 0.0), (config.extent, config.extent), config.visual_distance, periodic=True)
    resources["geometry"] = geometry
    resources["cell_start"] = np.zeros(spatial.cell_count(geometry) + 1, np.int64)
    for name in ("cells", "order", "slot_ids"):
        resources[name] = np.zeros(n, np.int64)
    for name in ("slot_x", "slot_y", "slot_vx", "slot_vy"):
        resources[name] = np.zeros(n)
    for name in ("speed", "visual_distance", "separation", "cohere_factor", "separate_factor", "match_factor"):
        resources[name] = getattr(config, name)
    for s in SYSTEMS:
        world.add_system(s)
    return world


def birds(world: ecs.World) -> np.ndarray:
    rows = [np.column_stack([b.entities, b[Position].x, b[Position].y, b[Heading].x, b[Heading].y])
            for b in world.query(Position, Heading)]
    table = np.concatenate(rows)
    return table[np.argsort(table[:, 0], kind="stable")]


LOCAL_ALIGNMENT_MAX_BIRDS = 5_000      # its numpy oracle is O(n^2)


def alignment(table: np.ndarray, extent: float, radius: float) -> float:
    """Local alignment: the mean over birds of the length of the mean heading of the birds within
    `radius` (itself included, minimum image): ~1/sqrt(neighbours) for random headings, 1 when
    every bird flies with its neighbours. NaN above LOCAL_ALIGNMENT_MAX_BIRDS birds. O(n^2)."""
    if table.shape[0] > LOCAL_ALIGNMENT_MAX_BIRDS:
        return float("nan")
    d = table[None, :, 1:3] - table[:, None, 1:3]
    d -= extent * np.round(d / extent)
    near = (d ** 2).sum(axis=2) <= radius * radius
    counts = near.sum(axis=1)
    mean_x = near @ table[:, 3] / counts
    mean_y = near @ table[:, 4] / counts
    return float(np.hypot(mean_x, mean_y).mean())


def simulate(config: Config) -> Result:
    with build_world(config) as world:
        before = alignment(birds(world), config.extent, config.visual_distance)
        world.step()                      # compiles nothing (add_system did) but starts the workers
        started = time.perf_counter()
        world.run(frames=config.steps - 1)
        seconds = time.perf_counter() - started
        after = birds(world)
        per_step = seconds / max(config.steps - 1, 1)      # the first step (worker start-up) is not timed
        return Result(after, before, alignment(after, config.extent, config.visual_distance), per_step * config.steps)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--birds", type=int, default=400,
                        help=f"birds, {MIN_BIRDS} to {MAX_BIRDS:,} (default %(default)s)")
    parser.add_argument("--steps", type=int, default=100, help="steps, >= 2 (default %(default)s)")
    parser.add_argument("--seed", type=cli.seed, default=0, help="random seed (default %(default)s)")
    parser.add_argument("--workers", type=cli.workers, default=0, help="worker processes: an int or 'auto' (default 0)")
    parser.add_argument("--check-determinism", action="store_true",
                        help="run on 0 and 2 workers and compare every bird bit for bit")
    args = parser.parse_args(argv)
    if args.birds > MAX_BIRDS:
        parser.error(f"--birds {args.birds}: at most {MAX_BIRDS:,} (a table's default max_rows)")
    if args.birds < MIN_BIRDS or args.steps < 2:
        parser.error(f"--birds must be >= {MIN_BIRDS} (the square, 150 * sqrt(birds / 400) a side, must be at "
                     f"least twice the visual distance wide) and --steps >= 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = Config(birds=args.birds, steps=args.steps, seed=args.seed, workers=args.workers)
    if args.check_determinism:
        zero = simulate(Config(**{**config.__dict__, "workers": 0}))
        # a step_timeout sends every run to the workers: 400 birds are too few to be shared else
        two = simulate(Config(**{**config.__dict__, "workers": 2, "step_timeout": DETERMINISM_TIMEOUT_S}))
        same = np.array_equal(zero.birds, two.birds)
        print(f"{config.birds} birds, {config.steps} steps: 0 and 2 workers {'bit-identical' if same else 'DIFFER'}")
        return 0 if same else 1
    result = simulate(config)
    print(f"flocking: {config.birds:,} birds in a {config.extent:.0f} x {config.extent:.0f} periodic square, "
          f"{config.steps} steps, workers={config.workers}")
    print(f"  {result.seconds / config.steps * 1e3:.3f} ms a step "
          f"({config.birds * config.steps / result.seconds:,.0f} bird updates a second)")
    if math.isnan(result.alignment_after):
        print(f"  (local alignment not measured above {LOCAL_ALIGNMENT_MAX_BIRDS:,} birds)")
        return 0
    print(f"  alignment {result.alignment_before:.3f} -> {result.alignment_after:.3f}")
    return 0 if result.alignment_after > result.alignment_before else 1


if __name__ == "__main__":
    sys.exit(main())
