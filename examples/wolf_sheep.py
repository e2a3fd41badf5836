"""WolfSheep: the predator-prey model of ABMFrameworksComparison, every rule an ECS system.

    python examples/wolf_sheep.py                        # 5 seeds, checked against the bands
    python examples/wolf_sheep.py --seeds 1 --workers 2 --plot out/wolf_sheep.png
    python examples/wolf_sheep.py --check-determinism    # same seed on 0 and 2 workers

The large variant with Mesa's rules: 1000 sheep and 500 wolves on a 100 x 100 torus of grass,
100 steps. Each step every sheep (in a random order) moves to a random one of its 8 neighbour
cells, loses 1 energy, eats the cell's grass if fully grown (+4; the grass regrows 30 steps
later), dies below 0 energy, else breeds with probability 0.04 (halving its energy with the
lamb); then every wolf moves, loses 1, eats a random sheep of its cell (+20), dies below 0,
else breeds with probability 0.05; then the grass counts down. Initial energies are integers
in [0, 2 * gain), half the grass starts grown, the rest 1..30 steps from it.

The systems, their two frames per step (every=2, offset=0/1) and how competition is resolved
are described in examples/wolf_sheep_systems.py. Births and deaths are kernel commands. The
populations are recorded with `world.record(every=2, reductions=...)`: a sample at every even
frame count, so sample s holds the sheep, wolves and grown patches at the start of step s (and
sample 100 the state after the last step).

The run is bit-identical on any worker count (--check-determinism). The result is checked
against bands (BANDS, below) over the seeds run: the populations must stay inside them.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from dataclasses import dataclass

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # `python examples/wolf_sheep.py` puts examples/ on the path, not the root
    sys.path.insert(0, str(ROOT))

import ecs  # noqa: E402
from ecs.kernels import random  # noqa: E402
from examples import cli  # noqa: E402
from examples.wolf_sheep_systems import SYSTEMS, Energy, Position, Sheep, Wolf  # noqa: E402

DETERMINISM_TIMEOUT_S = 120.0   # --check-determinism's 2-worker world: every run on the workers
INIT_FRAME = -1        # the random key's frame word for the initial state (runs use 0, 1, ...)
X, Y, ENERGY, GRASS, COUNTDOWN = 10, 11, 12, 13, 14     # streams of the initial draws


@dataclass(frozen=True)
class Config:
    sheep: int = 1000
    wolves: int = 500
    width: int = 100
    height: int = 100
    steps: int = 100
    seed: int = 0
    workers: int | str = 0
    step_timeout: float | None = None   # with one, every run goes to the workers
    sheep_gain_from_food: float = 4.0
    wolf_gain_from_food: float = 20.0
    sheep_reproduce: float = 0.04
    wolf_reproduce: float = 0.05
    grass_regrowth_time: int = 30


@dataclass
class Result:
    populations: np.ndarray     # (steps + 1, 3): sheep, wolves, grown patches at the start of each step
    sheep: np.ndarray           # (n, 4) of the sheep at the end, sorted by id: id, x, y, energy
    wolves: np.ndarray
    seconds: float              # the step loop's wall time


def spawn_agents(world: ecs.World, config: Config, tag: type, n: int, gain: float) -> None:
    ids = world.spawn_batch(n, Position(x=0, y=0), Energy(e=0.0), tag())
    drawn = np.empty(n, np.int64)
    random.fill_integers(config.seed, ids, INIT_FRAME, X, 0, config.width, drawn)
    xs = drawn.astype(np.int32)
    random.fill_integers(config.seed, ids, INIT_FRAME, Y, 0, config.height, drawn)
    world.set_batch(ids, Position(x=xs, y=drawn.astype(np.int32)))
    random.fill_integers(config.seed, ids, INIT_FRAME, ENERGY, 0, int(2 * gain), drawn)
    world.set_batch(ids, Energy(e=drawn.astype(np.float64)))


def initial_grass(config: Config) -> np.ndarray:
    """Countdowns per cell (0: fully grown): half grown, the rest 1..regrowth steps from it."""
    cells = np.arange(config.width * config.height, dtype=np.int64)
    grown = np.empty(cells.shape[0])
    random.fill_uniform(config.seed, cells, INIT_FRAME, GRASS, grown)
    countdown = np.empty(cells.shape[0], np.int64)
    random.fill_integers(config.seed, cells, INIT_FRAME, COUNTDOWN, 1, config.grass_regrowth_time + 1, countdown)
    countdown[grown < 0.5] = 0
    return countdown.reshape(config.height, config.width)


def build_world(config: Config) -> ecs.World:
    world = ecs.World(workers=config.workers, step_timeout=config.step_timeout)
    resources = world.resources
    for name in ("seed", "width", "height", "sheep_gain_from_food", "wolf_gain_from_food", "sheep_reproduce",
                 "wolf_reproduce", "grass_regrowth_time"):
        resources[name] = getattr(config, name)
    resources["sheep_prefab"] = world.spawn(Position(x=0, y=0), Energy(e=0.0))   # no tag: no system sees it
    resources["wolf_prefab"] = world.spawn(Position(x=0, y=0), Energy(e=0.0))
    spawn_agents(world, config, Sheep, config.sheep, config.sheep_gain_from_food)
    spawn_agents(world, config, Wolf, config.wolves, config.wolf_gain_from_food)
    resources["grass"] = initial_grass(config)
    resources["sheep_cell_start"] = np.zeros(config.width * config.height + 1, np.int64)
    for name in ("sheep_cells", "sheep_slots", "sheep_by_slot", "sheep_eaten"):
        resources[name] = np.zeros(1, np.int64)
    for s in SYSTEMS:
        world.add_system(s)
    return world


def ensure_sheep_capacity(world: ecs.World, sheep: int) -> None:
    """The sheep index must hold every sheep of the coming wolf phase: at most twice those
    alive now (each may have one lamb). Grows the arrays by doubling, between frames."""
    need = 2 * sheep
    if world.resources["sheep_slots"].shape[0] < need:
        size = max(need, 2 * world.resources["sheep_slots"].shape[0])
        for name in ("sheep_cells", "sheep_slots", "sheep_by_slot", "sheep_eaten"):
            world.resources.resize(name, (size,))


def agents(world: ecs.World, tag: type) -> np.ndarray:
    rows = [np.column_stack([b.entities, b[Position].x, b[Position].y, b[Energy].e])
            for b in world.query(tag, Position, Energy)]
    table = np.concatenate(rows) if rows else np.zeros((0, 4))
    return table[np.argsort(table[:, 0], kind="stable")]


def simulate(config: Config) -> Result:
    with build_world(config) as world:
        sheep = world.query(Sheep)
        recorder = world.record(every=2, reductions=POPULATIONS)
        started = time.perf_counter()
        for _ in range(config.steps):
            ensure_sheep_capacity(world, sheep.count())
            world.run(frames=2)                   # the sheep phase, then the wolf phase
        seconds = time.perf_counter() - started
        samples = recorder.reductions_to_arrow()
        populations = np.column_stack([samples[name].to_numpy() for name in POPULATIONS]).astype(np.int64)
        return Result(populations, agents(world, Sheep), agents(world, Wolf), seconds)


# what the recorder samples at the start of every step (every=2: the phases' frame counts)
POPULATIONS = {
    "sheep": lambda world: world.query(Sheep).count(),
    "wolves": lambda world: world.query(Wolf).count(),
    "grass": lambda world: int((world.resources["grass"] == 0).sum()),
}


# Bands of the default model (1000 sheep, 500 wolves, 100 x 100, 100 steps), from 20 seeds
# (0-19, this code): sheep trough 223-312, wolf peak 557-658 (around step 12), at step 100
# sheep 554-761 and wolves 22-72, grown patches 3688-7170 over the run. The bands widen each
# observed range by about a quarter to a half of its width, so a correct model stays inside on
# any seed with high probability, while broken rules leave them (measured, seed 0): grass
# that never regrows takes the sheep to 1 (four bands fail); a single wolf leaves the sheep
# near 900 (four fail); wolves that never breed never pass 500 (the wolf peak fails).
BANDS = {
    "sheep trough (steps 1-100)": (0, "min", (150, 400)),
    "wolf peak (steps 1-100)": (1, "max", (530, 760)),
    "sheep at step 100": (0, "last", (450, 900)),
    "wolves at step 100": (1, "last", (8, 110)),
    "grown patches (steps 1-100)": (2, "range", (2800, 8000)),
}


def check_bands(populations: np.ndarray) -> list[tuple[str, object, tuple[int, int], bool]]:
    """(band, value, (low, high), inside) for each band of BANDS."""
    out = []
    for name, (column, kind, (low, high)) in BANDS.items():
        series = populations[1:, column]
        if kind == "range":
            value: object = (int(series.min()), int(series.max()))
            inside = low <= series.min() and series.max() <= high
        else:
            v = int(series.min() if kind == "min" else series.max() if kind == "max" else series[-1])
            value, inside = v, low <= v <= high
        out.append((name, value, (low, high), bool(inside)))
    return out


def plot(results: list[tuple[int, Result]], path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (agents_ax, grass_ax) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for seed, result in results:
        p = result.populations
        agents_ax.plot(p[:, 0], color="tab:green", alpha=0.7, label="sheep" if seed == results[0][0] else None)
        agents_ax.plot(p[:, 1], color="tab:red", alpha=0.7, label="wolves" if seed == results[0][0] else None)
        grass_ax.plot(p[:, 2], color="tab:olive", alpha=0.7)
    agents_ax.set_ylabel("agents")
    agents_ax.legend()
    grass_ax.set_ylabel("grown patches")
    grass_ax.set_xlabel("step")
    agents_ax.set_title(f"WolfSheep, {len(results)} seed(s)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def same_result(a: Result, b: Result) -> bool:
    return (np.array_equal(a.populations, b.populations) and np.array_equal(a.sheep, b.sheep)
            and np.array_equal(a.wolves, b.wolves))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds to run (default 5)")
    parser.add_argument("--seed", type=cli.seed, default=0, help="the first seed (default 0)")
    parser.add_argument("--steps", type=int, default=100,
                        help="steps of the model, two frames each (default 100; the bands hold for 100)")
    parser.add_argument("--workers", type=cli.workers, default=0, help="worker processes: an int or 'auto' (default 0)")
    parser.add_argument("--plot", type=pathlib.Path, metavar="PNG",
                        help="write the populations to this PNG (needs matplotlib: pip install -e '.[demo]')")
    parser.add_argument("--check-determinism", action="store_true",
                        help="run the first seed on 0 and 2 workers and compare them bit for bit")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.steps < 1:
        parser.error("--seeds and --steps must be >= 1")
    if args.plot is not None and not args.check_determinism:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install -e '.[demo]'")
        cli.writable_folder(parser, "--plot", args.plot.parent)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check_determinism:
        zero = simulate(Config(seed=args.seed, steps=args.steps, workers=0))
        # a step_timeout sends every run to the workers: this model's tables are too small to be shared else
        two = simulate(Config(seed=args.seed, steps=args.steps, workers=2, step_timeout=DETERMINISM_TIMEOUT_S))
        same = same_result(zero, two)
        print(f"seed {args.seed}: 0 and 2 workers {'bit-identical' if same else 'DIFFER'} "
              f"({zero.sheep.shape[0]} sheep, {zero.wolves.shape[0]} wolves at the end)")
        return 0 if same else 1
    results, ok = [], True
    checked = args.steps == Config.steps
    for seed in range(args.seed, args.seed + args.seeds):
        result = simulate(Config(seed=seed, steps=args.steps, workers=args.workers))
        results.append((seed, result))
        p = result.populations
        print(f"seed {seed}: {args.steps} steps in {result.seconds:.2f} s "
              f"({result.seconds / args.steps * 1e3:.1f} ms a step); at the end {p[-1, 0]} sheep, "
              f"{p[-1, 1]} wolves, {p[-1, 2]} grown patches")
        if checked:
            for name, value, (low, high), inside in check_bands(p):
                ok &= inside
                print(f"    {name:30} {str(value):14} band [{low}, {high}] {'ok' if inside else 'OUTSIDE'}")
    if not checked:
        print("  (bands are for the default 100 steps: not checked)")
    if args.plot is not None:
        plot(results, args.plot)
        print(f"  wrote {args.plot}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
