"""Physics demo: a 2-D gas of discs in a box under gravity, fed by a fountain, all of it ECS systems.

    python examples/physics_demo.py                     # `make demo`: defaults, every core
    python examples/physics_demo.py --entities 200000 --frames 1000 --workers 2 --seed 7 --gif
    python examples/physics_demo.py --check-determinism # same seed on 0, 1 and 2 workers

Every frame runs the systems of examples/physics_systems.py (kernels in kernels/physics.py and
kernels/spatial.py): gravity, ageing, integration, wall bounces, a uniform-grid rebuild into
shared resource arrays (a parallel counting sort written as ordinary systems),
disc-disc collisions against that grid, and a change-driven tally that visits only the rows the
collision system marked. Between frames (every --emit-every frames) the emitter (this file)
despawns the particles whose lifetime ran out and respawns as many from a fountain at the bottom
of the box, so the world's structure changes while the worker processes are alive (their plan
is rebuilt after each emitter pass).

The result is the same, bit for bit, for any worker count: see physics_systems.py and
kernels/physics.py for why, and --check-determinism to see it.

Output: a progress bar, frames per second, entity-updates per second, per-system time from
world.stats(), a physics sanity line, a PNG of the last frame (colour by speed) and, with --gif,
an animation. Pillow draws the images (the `demo` extra; without it the demo runs and says so).
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import time
from dataclasses import dataclass, field

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # `python examples/physics_demo.py` puts examples/ on the path, not the root
    sys.path.insert(0, str(ROOT))

import ecs  # noqa: E402
from ecs.kernels import physics  # noqa: E402
from ecs.schedule import Progress  # noqa: E402
from examples import cli  # noqa: E402
from examples.physics_systems import (  # noqa: E402
    SYSTEMS,
    Contact,
    GridSlot,
    Lifetime,
    Position,
    Velocity,
    grid_arrays,
)

WIDTH, HEIGHT = 1.6, 1.0          # the box, in length units
PACKING = 0.08                    # area fraction the discs cover: sets the radius from --entities
THERMAL_SPEED = 1.0               # initial velocity spread per axis (length units / s)
GRAVITY = -2.0                    # scale height of the initial gas: THERMAL_SPEED**2 / |GRAVITY| = 0.5
STEP_PER_RADIUS = 0.25            # dt: a disc at THERMAL_SPEED moves this many radii per frame
JET_SPEED = 5.0                   # fountain speed, in THERMAL_SPEED
JET_SPREAD_DEG = 6.0
LIFETIME_FRAMES = 2500            # mean lifetime of a particle, in frames
CELL_PER_RADIUS = 2.0             # grid cell side; >= 2 (a diameter) so 3 x 3 cells hold every touching disc
RENDER_MAX_SPEED = 4.5            # speed at the top of the colour map, in THERMAL_SPEED
PNG_WIDTH_PX, GIF_WIDTH_PX = 960, 480


@dataclass
class Config:
    entities: int = 100_000
    frames: int = 1500
    workers: int | str = "auto"
    seed: int = 1
    restitution: float = 1.0
    wall_restitution: float = 1.0
    gif_frames: int = 0           # frames captured for the animation (0: none)
    # Frames run by one world.run() between emitter passes. Each pass changes the structure, and
    # the next run pays a new plan and a worker round trip: ~1.1 ms of main-process time at
    # 100k particles and 7 systems (measured), which every 4 frames instead of every frame made
    # 2 workers 15% faster (5.0 instead of 5.9 ms a frame). Expired particles then live <= 3 frames longer.
    emit_every: int = 4


@dataclass
class Result:
    entities: int
    frames: int
    workers: int
    seconds: float                # frames 1.. (emitter included); frame 0 starts the workers
    setup_seconds: float          # world, systems (compilation or cache load), spawn, frame 0
    stats: dict
    energy_start: float
    energy_end: float
    energy_in: float              # energy the fountain brought in (respawned particles)
    energy_out: float             # energy the despawned particles took away
    recycled: int
    outside: int
    contact_rows: int             # rows that collided, as counted by the change-driven tally
    mean_impulse: float           # their mean velocity change
    positions: np.ndarray         # final (x, y, vx, vy) in row order, for determinism checks
    frames_rgb: list = field(default_factory=list)

    @property
    def energy_drift(self) -> float:
        expected = self.energy_start + self.energy_in - self.energy_out
        return (self.energy_end - expected) / abs(expected)


class Scene:
    """Sizes derived from the particle count: radius, time step, grid."""

    def __init__(self, entities: int) -> None:
        self.radius = math.sqrt(PACKING * WIDTH * HEIGHT / (math.pi * max(entities, 1)))
        self.dt = STEP_PER_RADIUS * self.radius / THERMAL_SPEED
        self.cell_size = CELL_PER_RADIUS * self.radius
        self.ncx = math.ceil(WIDTH / self.cell_size)
        self.ncy = math.ceil(HEIGHT / self.cell_size)
        self.lifetime = LIFETIME_FRAMES * self.dt


def build_world(config: Config, scene: Scene, rng: np.random.Generator) -> ecs.World:
    world = ecs.World(workers=config.workers)
    n = config.entities
    res = world.resources
    res["gravity"] = GRAVITY
    res["dt"] = scene.dt
    res["width"] = WIDTH
    res["height"] = HEIGHT
    res["radius"] = scene.radius
    res["restitution"] = float(config.restitution)
    res["wall_restitution"] = float(config.wall_restitution)
    res["cell_size"] = scene.cell_size
    res["ncx"] = scene.ncx
    res["ncy"] = scene.ncy
    # n slots: the particle count stays n (the emitter respawns as many as expired)
    for name, array in grid_arrays(scene.ncx, scene.ncy, n).items():
        res[name] = array
    res["contact_tally"] = np.zeros(2, np.float64)
    for s in SYSTEMS:
        world.add_system(s)
    r = scene.radius
    # the initial gas: uniform in the box, Maxwellian velocities, lifetimes spread so that the
    # fountain starts at once and runs at a steady rate
    world.spawn_batch(
        n,
        Position(x=rng.uniform(r, WIDTH - r, n), y=rng.uniform(r, HEIGHT - r, n)),
        Velocity(x=rng.normal(0.0, THERMAL_SPEED, n), y=rng.normal(0.0, THERMAL_SPEED, n)),
        Lifetime(left=rng.uniform(0.0, 2.0 * scene.lifetime, n).astype(np.float32)),
        Contact(hits=0, impulse=0.0),
        GridSlot(cell=0, slot=0),
    )
    return world


def fountain(count: int, scene: Scene, rng: np.random.Generator) -> tuple:
    """Values of `count` particles leaving the fountain at the bottom centre of the box."""
    r = scene.radius
    x = WIDTH / 2 + rng.uniform(-0.01, 0.01, count)
    y = rng.uniform(r, 4 * r, count)
    angle = np.pi / 2 + np.radians(JET_SPREAD_DEG) * rng.standard_normal(count)
    speed = JET_SPEED * THERMAL_SPEED * rng.uniform(0.9, 1.1, count)
    life = scene.lifetime * rng.uniform(0.5, 1.5, count)
    return (Position(x=x, y=y), Velocity(x=speed * np.cos(angle), y=speed * np.sin(angle)),
            Lifetime(left=life.astype(np.float32)), Contact(hits=0, impulse=0.0), GridSlot(cell=0, slot=0))


class Emitter:
    """Between frames: despawn the particles whose lifetime ran out, respawn as many from the
    fountain. Keeps the energy books for the sanity line."""

    def __init__(self, world: ecs.World, scene: Scene, rng: np.random.Generator) -> None:
        self.world = world
        self.scene = scene
        self.rng = rng
        self.query = world.query(Lifetime, Position, Velocity)
        self.expired = np.empty(0, np.int64)
        self.recycled = 0
        self.energy_in = 0.0
        self.energy_out = 0.0

    def recycle(self) -> None:
        gone = []
        for batch in self.query:
            life = batch[Lifetime].left
            if self.expired.shape[0] < life.shape[0]:
                self.expired = np.empty(life.shape[0], np.int64)
            rows = self.expired[: physics.expired_rows(life, self.expired)]
            if rows.shape[0]:
                pos, vel = batch[Position], batch[Velocity]
                self.energy_out += physics.energy(pos.y[rows], vel.x[rows], vel.y[rows], GRAVITY)
                gone.append(batch.entities[rows])
        if not gone:
            return
        ids = np.concatenate(gone)
        self.world.despawn_batch(ids)
        values = fountain(ids.shape[0], self.scene, self.rng)
        self.energy_in += physics.energy(values[0].y, values[1].x, values[1].y, GRAVITY)
        self.world.spawn_batch(ids.shape[0], *values)
        self.recycled += ids.shape[0]


def columns(world: ecs.World) -> tuple[np.ndarray, ...]:
    """(x, y, vx, vy) of every particle, copied, in table order."""
    parts = [(b[Position].x.copy(), b[Position].y.copy(), b[Velocity].x.copy(), b[Velocity].y.copy())
             for b in world.query(Position, Velocity)]
    return tuple(np.concatenate(c) for c in zip(*parts, strict=True))


def total_energy(world: ecs.World) -> float:
    return sum(physics.energy(b[Position].y, b[Velocity].x, b[Velocity].y, GRAVITY)
               for b in world.query(Position, Velocity))


def simulate(config: Config, progress: bool = False) -> Result:
    """Run the demo's world for config.frames frames; returns figures and the final state."""
    if config.emit_every < 1 or config.frames < 1:
        raise ValueError(f"frames={config.frames}, emit_every={config.emit_every}: both must be >= 1")
    started = time.perf_counter()
    scene = Scene(config.entities)
    rng = np.random.default_rng(config.seed)
    world = build_world(config, scene, rng)
    try:
        emitter = Emitter(world, scene, rng)
        energy_start = total_energy(world)
        captures = capture_frames(config)
        frames_rgb = []
        world.step()                    # frame 0 pays the one-off costs (worker start): not timed
        emitter.recycle()
        setup_seconds = time.perf_counter() - started
        stats_before = world.stats()
        world.resources["contact_tally"][:] = 0
        bar = Progress(config.frames, progress)
        loop_started = time.perf_counter()
        try:
            done = 1
            while done < config.frames:
                frames = min(config.emit_every, config.frames - done)
                world.run(frames)
                emitter.recycle()
                done += frames
                bar.update(done)
                if captures and captures[0] < done:
                    frames_rgb.append(render(*columns(world), scene, width_px=GIF_WIDTH_PX))
                    while captures and captures[0] < done:
                        captures.pop(0)
        finally:
            bar.close()
        seconds = time.perf_counter() - loop_started
        x, y, vx, vy = columns(world)
        tally = world.resources["contact_tally"]
        return Result(
            entities=len(world), frames=config.frames, workers=world.workers, seconds=seconds,
            setup_seconds=setup_seconds, stats=stats_since(stats_before, world.stats()),
            energy_start=energy_start, energy_end=total_energy(world), energy_in=emitter.energy_in,
            energy_out=emitter.energy_out, recycled=emitter.recycled,
            outside=physics.count_outside(x, y, WIDTH, HEIGHT), contact_rows=int(tally[0]),
            mean_impulse=float(tally[1] / max(tally[0], 1)), positions=np.stack([x, y, vx, vy]),
            frames_rgb=frames_rgb)
    finally:
        world.close()


def stats_since(before: dict, after: dict) -> dict:
    """world.stats() figures accumulated between two calls."""
    return {name: {key: value - before[name][key] for key, value in figures.items()}
            for name, figures in after.items()}


def capture_frames(config: Config) -> list[int]:
    """Frames after which the animation takes a picture (the first emitter pass after each)."""
    if config.gif_frames <= 0:
        return []
    return sorted({int(f) for f in np.linspace(1, config.frames - 1, config.gif_frames)})


# ---------------------------------------------------------------- images
# inferno-like colour map: (position, r, g, b)
_STOPS = np.array([
    (0.00, 0, 0, 4), (0.13, 31, 12, 72), (0.25, 85, 15, 109), (0.38, 136, 34, 106),
    (0.50, 186, 54, 85), (0.63, 227, 89, 51), (0.75, 249, 140, 10), (0.88, 249, 201, 50),
    (1.00, 252, 255, 164)], np.float64)
COLOURS = np.stack([np.interp(np.linspace(0, 1, 256), _STOPS[:, 0], _STOPS[:, c]) for c in (1, 2, 3)], axis=1)


def render(x: np.ndarray, y: np.ndarray, vx: np.ndarray, vy: np.ndarray, scene: Scene,
           width_px: int = 1280) -> np.ndarray:
    """An RGB image (uint8, height x width x 3) of the box: colour is the mean speed of the
    particles around a pixel (black-red-yellow-white), brightness their density (the mean
    density of the box at about half brightness)."""
    height_px = round(width_px * HEIGHT / WIDTH)
    scale = width_px / WIDTH
    px = np.clip((x * scale).astype(np.int64), 0, width_px - 1)
    py = np.clip(((HEIGHT - y) * scale).astype(np.int64), 0, height_px - 1)
    pixel = py * width_px + px
    count = np.bincount(pixel, minlength=width_px * height_px).reshape(height_px, width_px)
    speed = np.bincount(pixel, weights=np.hypot(vx, vy), minlength=width_px * height_px)
    count, speed = _blur(count.astype(np.float64)), _blur(speed.reshape(height_px, width_px))
    mean = np.divide(speed, count, out=np.zeros_like(speed), where=count > 1e-9)
    level = np.clip(mean / (RENDER_MAX_SPEED * THERMAL_SPEED), 0, 1) ** 0.7
    colour = COLOURS[(level * 255).astype(np.int64)]
    density = count / max(x.shape[0] / (width_px * height_px), 1e-12)
    bright = np.clip(density / 2.0, 0, 1) ** 0.5
    return (colour * bright[..., None]).astype(np.uint8)


def _blur(image: np.ndarray, passes: int = 2) -> np.ndarray:
    """Binomial blur (1 2 1) / 4 along both axes, `passes` times; edges clamp."""
    for _ in range(passes):
        padded = np.pad(image, 1, mode="edge")
        image = (padded[:-2, 1:-1] + 2 * padded[1:-1, 1:-1] + padded[2:, 1:-1]) / 4
        padded = np.pad(image, 1, mode="edge")
        image = (padded[1:-1, :-2] + 2 * padded[1:-1, 1:-1] + padded[1:-1, 2:]) / 4
    return image


def save_images(result: Result, scene: Scene, out: pathlib.Path, gif: bool) -> list[pathlib.Path]:
    try:
        from PIL import Image
    except ImportError:
        print("images: Pillow is not installed (pip install -e '.[demo]'); no PNG written")
        return []
    out.mkdir(parents=True, exist_ok=True)
    written = []
    png = out / "physics_final.png"
    Image.fromarray(render(*result.positions, scene, width_px=PNG_WIDTH_PX)).save(png)
    written.append(png)
    if gif and result.frames_rgb:
        path = out / "physics.gif"
        # 64 colours: the speckle of single discs defeats GIF's compression (measured: 255
        # colours 180 kB a frame at 480 px, 64 colours 120 kB)
        images = [Image.fromarray(f).quantize(colors=64, method=Image.Quantize.MEDIANCUT)
                  for f in result.frames_rgb]
        images[0].save(path, save_all=True, append_images=images[1:], duration=60, loop=0, optimize=False)
        written.append(path)
    return written


# ---------------------------------------------------------------- report
def report(result: Result, config: Config, scene: Scene) -> None:
    timed = result.frames - 1
    fps = timed / result.seconds
    print(f"{result.entities:,} particles, {result.frames:,} frames on {describe_workers(result.workers)}: "
          f"{result.seconds:.2f} s for frames 1-{timed} ({result.setup_seconds:.2f} s set-up and frame 0 "
          f"before that)")
    print(f"  {fps:,.1f} frames/s, {fps * result.entities / 1e6:,.1f} M entity-updates/s "
          f"(particles x frames / s, {len(SYSTEMS)} systems a frame)")
    print(f"  per system (world.stats() over frames 1-{timed}; seconds summed over workers):")
    for name, s in result.stats.items():
        per_frame = s["seconds"] / max(s["calls"], 1) * 1e3
        print(f"    {name:<16} {s['seconds']:8.3f} s  {per_frame:7.3f} ms/frame  {s['rows']:>14,} rows")
    tally = result.stats["tally_contacts"]
    all_rows = result.entities * timed
    print(f"  change tracking: tally_contacts (changed=[Contact]) touched {tally['rows']:,} rows "
          f"({tally['rows'] / all_rows:.2%} of {all_rows:,} row-frames) in {tally['seconds']:.3f} s: "
          f"{result.contact_rows:,} of them had collided (both discs of a collision are marked), "
          f"mean velocity change {result.mean_impulse:.3f}")
    elastic = config.restitution == 1.0 and config.wall_restitution == 1.0
    note = ("elastic, so only the time step's error should remain" if elastic else
            f"restitution {config.restitution}, walls {config.wall_restitution}: energy is lost by design")
    print(f"  sanity: {result.entities:,} particles ({result.recycled:,} recycled by the fountain), "
          f"energy drift {result.energy_drift:+.4%} with the fountain's in/out accounted ({note}), "
          f"{result.outside} outside the box")


def describe_workers(workers: int) -> str:
    if workers == 0:
        return "the main process (workers=0)"
    # the world sends a stage to its workers only where that runs faster (README, Workers)
    return f"World(workers={workers}): {workers} worker process{'es' * (workers > 1)} and this one, where sharing pays"


def check_determinism(config: Config) -> bool:
    """Run the same seed on 0, 1 and 2 workers and compare final states bit for bit."""
    states = {}
    for workers in (0, 1, 2):
        result = simulate(Config(**{**config.__dict__, "workers": workers, "gif_frames": 0}))
        states[workers] = result.positions
        print(f"  workers={workers}: {result.entities:,} particles after {result.frames:,} frames "
              f"({result.recycled:,} recycled), {result.seconds:.2f} s")
    same = all(np.array_equal(states[0], s) for s in states.values())
    print(f"determinism: final positions and velocities {'bit-identical' if same else 'DIFFER'} "
          f"for workers 0, 1 and 2 (seed {config.seed})")
    return same


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=defaults.entities,
                        help="particles (default %(default)s)")
    parser.add_argument("--frames", type=int, default=defaults.frames, help="frames (default %(default)s)")
    parser.add_argument("--workers", type=cli.workers, default="auto",
                        help="worker processes; 0 runs the systems in this process (default: auto, one "
                             "working process per core, this one among them)")
    parser.add_argument("--seed", type=cli.seed, default=defaults.seed, help="random seed (default %(default)s)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "out", metavar="DIR",
                        help="folder for the images (default out/)")
    parser.add_argument("--gif", action="store_true", help="also write an animation, DIR/physics.gif")
    parser.add_argument("--gif-frames", type=int, default=60, help="frames in the animation (default 60)")
    parser.add_argument("--restitution", type=cli.fraction, default=defaults.restitution,
                        help="disc-disc restitution; 1.0 is elastic (default %(default)s)")
    parser.add_argument("--wall-restitution", type=cli.fraction, default=defaults.wall_restitution,
                        help="wall restitution (default %(default)s)")
    parser.add_argument("--emit-every", type=int, default=defaults.emit_every, metavar="K",
                        help="frames between emitter passes (default %(default)s)")
    parser.add_argument("--check-determinism", action="store_true",
                        help="run the seed on 0, 1 and 2 workers and compare the final states")
    args = parser.parse_args(argv)
    if args.entities < 1 or args.frames < 2 or args.emit_every < 1:
        parser.error("--entities and --emit-every must be >= 1 and --frames >= 2")
    if not args.check_determinism:
        cli.writable_folder(parser, "--out", args.out)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = Config(entities=args.entities, frames=args.frames, workers=args.workers, seed=args.seed,
                    restitution=args.restitution, wall_restitution=args.wall_restitution,
                    gif_frames=args.gif_frames if args.gif else 0, emit_every=args.emit_every)
    if args.check_determinism:
        return 0 if check_determinism(config) else 1
    scene = Scene(config.entities)
    print(f"physics demo: {config.entities:,} discs of radius {scene.radius:.2e} in a {WIDTH} x {HEIGHT} "
          f"box, grid {scene.ncx} x {scene.ncy}, dt {scene.dt:.2e} s, seed {config.seed}, "
          f"workers={config.workers} ({len(os.sched_getaffinity(0))} cores)")
    wall_started = time.perf_counter()
    result = simulate(config, progress=True)
    report(result, config, scene)
    for path in save_images(result, scene, args.out, args.gif):
        print(f"  wrote {path}")
    print(f"  wall time {time.perf_counter() - wall_started:.1f} s (compilation or cache load included)")
    return 0 if result.outside == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
