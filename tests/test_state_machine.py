"""World invariants: a hypothesis state machine against a plain-dict model.

The model is `{entity_id: {ComponentClass: plain values}}` plus the ids that died. After every
step each live entity's values and has() match, len(world) matches and no dead id is alive.
Two change readers are modelled too: a `changed=[Position]` query and an `added=[Position]`
query keep a model set of "changed/added since my last look", compared when they look.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import ecs
from tests.components import Frozen, Health, Position, Tint

COMPONENTS = (Position, Health, Tint, Frozen)

small = st.integers(-1000, 1000)   # exact in f32, fits i32
byte = st.integers(0, 255)


def value_strategy(cls: type) -> st.SearchStrategy:
    if cls is Position:
        return st.builds(lambda x, y: {"x": float(x), "y": float(y)}, small, small)
    if cls is Health:
        return st.builds(lambda hp: {"hp": hp}, small)
    if cls is Tint:
        return st.builds(lambda a, b, c: {"rgb": [a, b, c]}, byte, byte, byte)
    return st.just({})


component_sets = st.sets(st.sampled_from(COMPONENTS), max_size=len(COMPONENTS))


@st.composite
def component_values(draw, classes=None) -> dict:
    classes = draw(component_sets) if classes is None else classes
    return {cls: draw(value_strategy(cls)) for cls in classes}


def batch_value(cls: type, rows: list[dict], broadcast: bool):
    """One component value for a batch call: arrays of the rows, or the first row broadcast."""
    if not rows:
        return cls(**{f: np.zeros((0, *dtype.shape), dtype.base) for f, dtype in cls.fields.items()})
    if broadcast or not cls.fields:
        return cls(**rows[0])
    return cls(**{f: np.array([r[f] for r in rows]) for f in cls.fields})


class WorldMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = ecs.World()
        self.model: dict[int, dict[type, dict]] = {}
        self.dead: list[int] = []
        self.changed_query = self.world.query(Position, changed=[Position])
        self.added_query = self.world.query(Position, added=[Position])
        self.changed_pending: set[int] = set()
        self.added_pending: set[int] = set()

    def teardown(self) -> None:
        self.world.close()

    # ------------------------------------------------------------ helpers
    def note_written(self, entity: int, classes, newly_added=()) -> None:
        if Position in classes:
            self.changed_pending.add(entity)
        if Position in newly_added:
            self.added_pending.add(entity)

    def forget(self, entity: int) -> None:
        self.changed_pending.discard(entity)
        self.added_pending.discard(entity)

    def live(self) -> list[int]:
        return sorted(self.model)

    # ------------------------------------------------------------ rules
    @rule(values=component_values())
    def spawn(self, values: dict) -> None:
        entity = self.world.spawn(*(cls(**v) for cls, v in values.items()))
        assert entity not in self.model and entity not in self.dead and entity > 0
        self.model[entity] = values
        self.note_written(entity, values, values)

    @rule(data=st.data(), n=st.integers(0, 12), broadcast=st.booleans())
    def spawn_batch(self, data, n: int, broadcast: bool) -> None:
        classes = data.draw(component_sets)
        rows = [data.draw(component_values(classes)) for _ in range(1 if broadcast else n)]
        args = [batch_value(cls, [r[cls] for r in rows], broadcast) for cls in classes]
        ids = self.world.spawn_batch(n, *args)
        assert ids.shape == (n,) and len(set(ids.tolist()) | set(self.model)) == len(self.model) + n
        for k, entity in enumerate(ids.tolist()):
            self.model[entity] = dict(rows[0 if broadcast else k])
            self.note_written(entity, classes, classes)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def despawn(self, data) -> None:
        entity = data.draw(st.sampled_from(self.live()))
        self.world.despawn(entity)
        del self.model[entity]
        self.dead.append(entity)
        self.forget(entity)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), with_dead=st.booleans())
    def despawn_batch(self, data, with_dead: bool) -> None:
        doomed = data.draw(st.lists(st.sampled_from(self.live()), unique=True))
        if with_dead and self.dead:
            bad = [*doomed, data.draw(st.sampled_from(self.dead))]
            try:
                self.world.despawn_batch(bad)
            except ecs.DeadEntityError:
                pass
            else:
                raise AssertionError("despawn_batch with a dead id did not raise")
            return
        self.world.despawn_batch(np.array(doomed, np.int64))
        for entity in doomed:
            del self.model[entity]
            self.dead.append(entity)
            self.forget(entity)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def add(self, data) -> None:
        entity = data.draw(st.sampled_from(self.live()))
        values = data.draw(component_values())
        self.world.add(entity, *(cls(**v) for cls, v in values.items()))
        newly = [cls for cls in values if cls not in self.model[entity]]
        self.model[entity].update(values)
        self.note_written(entity, values, newly)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove(self, data) -> None:
        entity = data.draw(st.sampled_from(self.live()))
        classes = data.draw(st.lists(st.sampled_from(COMPONENTS), max_size=3))
        if all(cls in self.model[entity] for cls in classes):
            self.world.remove(entity, *classes)
            for cls in set(classes):
                del self.model[entity][cls]
                if cls is Position:
                    self.forget(entity)
        else:
            try:
                self.world.remove(entity, *classes)
            except ecs.MissingComponentError:
                pass
            else:
                raise AssertionError("remove of a missing component did not raise")

    @precondition(lambda self: self.model)
    @rule(data=st.data(), cls=st.sampled_from(COMPONENTS))
    def set(self, data, cls: type) -> None:
        entity = data.draw(st.sampled_from(self.live()))
        values = data.draw(value_strategy(cls))
        if cls in self.model[entity]:
            self.world.set(entity, cls(**values))
            self.model[entity][cls] = values
            self.note_written(entity, [cls])
        else:
            try:
                self.world.set(entity, cls(**values))
            except ecs.MissingComponentError:
                pass
            else:
                raise AssertionError("set of a missing component did not raise")

    @precondition(lambda self: self.model)
    @rule(data=st.data(), cls=st.sampled_from(COMPONENTS), broadcast=st.booleans(), foreign=st.booleans())
    def set_batch(self, data, cls: type, broadcast: bool, foreign: bool) -> None:
        having = [e for e in self.live() if cls in self.model[e]]
        lacking = [e for e in self.live() if cls not in self.model[e]]
        targets = data.draw(st.lists(st.sampled_from(having), unique=True)) if having else []
        data.draw(st.randoms()).shuffle(targets)
        rows = [data.draw(value_strategy(cls)) for _ in range(1 if broadcast else len(targets))]
        if foreign and lacking:
            bad = [*targets, data.draw(st.sampled_from(lacking))]
            try:
                self.world.set_batch(bad, batch_value(cls, [data.draw(value_strategy(cls))], broadcast=True))
            except ecs.MissingComponentError:
                pass
            else:
                raise AssertionError("set_batch onto an entity lacking the component did not raise")
            return
        self.world.set_batch(targets, batch_value(cls, rows, broadcast))
        for k, entity in enumerate(targets):
            self.model[entity][cls] = rows[0 if broadcast else k]
            self.note_written(entity, [cls])

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def get(self, data) -> None:
        entity = data.draw(st.sampled_from(self.live()))
        for cls, values in self.model[entity].items():
            got = self.world.get(entity, cls)
            assert {f: getattr(got, f).tolist() for f in cls.fields} == values

    @rule()
    def look_for_changes(self) -> None:
        reported = []
        for batch in self.changed_query:
            reported += batch.entities[batch.rows].tolist()
        assert sorted(reported) == sorted(self.changed_pending)
        self.changed_pending.clear()

    @rule()
    def look_for_additions(self) -> None:
        assert sorted(self.added_query.entities().tolist()) == sorted(self.added_pending)  # a peek
        reported = []
        for batch in self.added_query:
            reported += batch.entities[batch.rows].tolist()
        assert sorted(reported) == sorted(self.added_pending)
        self.added_pending.clear()

    # ------------------------------------------------------------ invariants
    @invariant()
    def every_live_entity_matches_the_model(self) -> None:
        assert len(self.world) == len(self.model)
        for entity, components in self.model.items():
            assert self.world.is_alive(entity)
            for cls in COMPONENTS:
                assert self.world.has(entity, cls) == (cls in components)
            for cls, values in components.items():
                got = self.world.get(entity, cls)
                assert {f: getattr(got, f).tolist() for f in cls.fields} == values

    @invariant()
    def no_dead_id_is_alive(self) -> None:
        for entity in self.dead:
            assert not self.world.is_alive(entity)

    @invariant()
    def queries_see_exactly_the_live_entities(self) -> None:
        assert sorted(self.world.query().entities().tolist()) == self.live()
        with_position = sorted(e for e, c in self.model.items() if Position in c)
        assert sorted(self.world.query(Position).entities().tolist()) == with_position


WorldMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=30, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
TestWorldMachine = WorldMachine.TestCase
