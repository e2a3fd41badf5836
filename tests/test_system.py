"""@system: parameters bound by annotation, named values, compilation, and definition errors.

Systems that a world runs are defined at module level (here or in tests/systems_common.py),
so worker processes could import them; the ones defined inside tests only exist to show that
their definition is refused.
"""

from __future__ import annotations

import math
import warnings

import numba
import numpy as np
import pytest

import ecs
from ecs import Entity, Mut, Rows, SystemDefinitionError, system
from tests import introspect
from tests.components import Frozen, Health, Position, Tint, Velocity
from tests.systems_common import (
    Counter,
    Heading,
    add_amount,
    add_amount_or_default,
    add_float32,
    add_untyped,
    bump_frozen,
    bump_unfrozen,
    copy_ids,
    fall,
    histogram_x,
    increment_n,
    integrate,
    invert_into_x,
    note_first_axis,
    plus_ten,
    record_view_shapes,
    rotate_heading,
    sum_tint,
    tint_green,
    triple,
)


def counters(world: ecs.World, ids) -> list[int]:
    return [int(world.get(int(e), Counter).n) for e in ids]


def refused(pattern: str):
    """pytest.raises(SystemDefinitionError) whose message matches `pattern`."""
    return pytest.raises(SystemDefinitionError, match=pattern)


# ---------------------------------------------------------------- systems refused at add or step
@system
def adds_text_to_numbers(pos: Mut[Position]):
    for i in range(pos.x.shape[0]):
        pos.x[i] = "text" + pos.x[i]


@system
def copies_from_table(c: Mut[Counter], table):
    for i in range(c.n.shape[0]):
        c.n[i] = table[i]


@system
def stores_an_exception(c: Mut[Counter]):
    for i in range(c.n.shape[0]):
        try:
            c.n[i] = 1
        except Exception as exc:  # noqa: F841 - numba refuses to bind the exception object
            c.n[i] = 2


@system
def takes_an_array(c: Mut[Counter], weights: np.ndarray):
    for i in range(c.n.shape[0]):
        c.n[i] = weights.shape[0]


@system(name="increment_n")
def another_increment(c: Mut[Counter]):
    for i in range(c.n.shape[0]):
        c.n[i] += 1


# ---------------------------------------------------------------- components, Mut, Entity
def test_component_param_reads_and_mut_param_writes_the_columns(world: ecs.World) -> None:
    e = world.spawn(Position(x=1.0, y=2.0), Velocity(x=3.0, y=-1.0))
    world.add_system(integrate)
    world.step(dt=0.5)
    assert (world.get(e, Position).x, world.get(e, Position).y) == (2.5, 1.5)
    assert (world.get(e, Velocity).x, world.get(e, Velocity).y) == (3.0, -1.0)


def test_system_runs_over_every_matching_table(world: ecs.World) -> None:
    plain = world.spawn_batch(3, Position(x=0.0, y=0.0), Velocity(x=1.0, y=0.0))
    frozen = world.spawn_batch(2, Position(x=0.0, y=0.0), Velocity(x=2.0, y=0.0), Frozen())
    healthy = world.spawn(Position(x=0.0, y=0.0), Velocity(x=3.0, y=0.0), Health(hp=5))
    untouched = world.spawn(Position(x=9.0, y=9.0))
    world.add_system(integrate)
    world.step(dt=1.0)
    assert [float(world.get(int(e), Position).x) for e in plain] == [1.0] * 3
    assert [float(world.get(int(e), Position).x) for e in frozen] == [2.0] * 2
    assert world.get(healthy, Position).x == 3.0
    assert world.get(untouched, Position).x == 9.0


def test_entity_param_receives_the_ids_of_the_rows(world: ecs.World) -> None:
    a = world.spawn_batch(70, Counter())
    b = world.spawn_batch(5, Counter(), Frozen())
    world.despawn(int(a[3]))
    world.add_system(copy_ids)
    world.step()
    alive = [int(e) for e in (*a[:3], *a[4:], *b)]
    assert counters(world, alive) == alive


def test_vector_fields_are_two_dimensional_views(world: ecs.World) -> None:
    world.spawn(Tint(rgb=[1, 2, 3]), Heading(dir=[1.0, 0.0]), Counter())
    world.resources["shapes"] = np.zeros(5, np.int64)
    world.add_system(record_view_shapes)
    world.step()
    assert world.resources["shapes"].tolist() == [2, 3, 2, 2, 1]


def test_kernel_writes_and_reads_vector_field_columns(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Tint(rgb=np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)),
                            Heading(dir=[1.0, 0.0]), Counter())
    world.add_system(tint_green)
    world.add_system(sum_tint)
    world.add_system(rotate_heading)
    world.step()
    assert [world.get(int(e), Tint).rgb.tolist() for e in ids] == [[1, 255, 3], [4, 255, 6], [7, 255, 9]]
    assert counters(world, ids) == [259, 265, 271]
    assert world.get(int(ids[0]), Heading).dir.tolist() == [0.0, 1.0]


def test_without_tag_skips_tables_that_have_the_tag(world: ecs.World) -> None:
    free = world.spawn(Counter())
    frozen = world.spawn(Counter(), Frozen())
    world.add_system(bump_unfrozen)
    world.step()
    world.step()
    assert counters(world, [free, frozen]) == [2, 0]


def test_tag_parameter_matches_only_tables_with_the_tag(world: ecs.World) -> None:
    free = world.spawn(Counter())
    frozen = world.spawn(Counter(), Frozen())
    world.add_system(bump_frozen)
    world.step()
    assert counters(world, [free, frozen]) == [0, 100]


def test_system_wraps_an_existing_njit_dispatcher(world: ecs.World) -> None:
    assert isinstance(triple.kernel, numba.core.dispatcher.Dispatcher)
    assert triple.name == "_triple_kernel"
    ids = world.spawn_batch(3, Counter(n=np.array([1, 2, 3])))
    world.add_system(triple)
    world.add_system(plus_ten)
    world.step()
    assert counters(world, ids) == [13, 16, 19]
    assert set(world.stats()) == {"_triple_kernel", "plus_ten"}


def test_system_compiles_a_function_that_has_no_source_file(world: ecs.World) -> None:
    namespace = {"ecs": ecs, "Counter": Counter, "Mut": Mut}
    exec("@ecs.system\ndef add_five(c: Mut[Counter]):\n    for i in range(c.n.shape[0]):\n"
         "        c.n[i] += 5\n", namespace)
    e = world.spawn(Counter(n=1))
    world.add_system(namespace["add_five"])
    world.step()
    assert counters(world, [e]) == [6]


# ---------------------------------------------------------------- named values
def test_named_value_comes_from_step_then_resources_then_default(world: ecs.World) -> None:
    e = world.spawn(Counter())
    world.add_system(add_amount_or_default)
    world.step()
    assert counters(world, [e]) == [7]
    world.resources["amount"] = 20
    world.step()
    assert counters(world, [e]) == [27]
    world.step(amount=300)
    assert counters(world, [e]) == [327]
    del world.resources["amount"]
    world.step()
    assert counters(world, [e]) == [334]


def test_scalar_resource_binds_a_parameter_of_that_name(world: ecs.World) -> None:
    e = world.spawn(Velocity(x=0.0, y=0.0))
    world.resources["gravity"] = -10.0
    world.add_system(fall)
    world.step(dt=0.5)
    assert world.get(e, Velocity).y == -5.0
    world.resources["gravity"] = 2.0
    world.step(dt=1.0)
    assert world.get(e, Velocity).y == -3.0


def test_a_keyword_no_system_takes_is_warned_about_once_and_ignored(world: ecs.World) -> None:
    e = world.spawn(Velocity(x=0.0, y=0.0))
    world.resources["gravity"] = -10.0
    world.add_system(fall)
    with pytest.warns(UserWarning, match=r"step\(gravty=...\): no system of this world has a parameter "
                                         r"'gravty', so it is ignored \(the systems' named values: dt, gravity\)"):
        world.step(dt=0.5, gravty=2.0)                 # misspelt: the resource is used
    assert world.get(e, Velocity).y == -5.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        world.step(dt=0.5, gravty=2.0)                 # said once
        world.run(2, dt=0.5)
    with pytest.warns(UserWarning, match=r"run\(wind=...\)"):
        world.run(1, dt=0.5, wind=1.0)
    world.remove_system(fall)
    with pytest.warns(UserWarning, match=r"named values: none\)"):
        world.step(dt=0.5)


@pytest.mark.parametrize("workers", [0, 2])
def test_every_step_sees_its_own_named_values_even_when_only_the_sign_of_zero_changes(workers: int) -> None:
    with ecs.World(workers=workers) as world:
        ids = world.spawn_batch(70_000, Velocity(x=0.0, y=0.0))
        world.add_system(invert_into_x)        # 70,000 rows: split among the workers
        seen = []
        for divisor in (2.0, 2.0, 0.0, -0.0, 0.0, 4.0):
            world.step(divisor=divisor)
            seen.append(float(world.get(int(ids[-1]), Velocity).x))
        world.resources["divisor"] = 8.0
        world.step()
        world.step()
        seen.append(float(world.get(int(ids[0]), Velocity).x))
        world.resources["divisor"] = -8.0          # the same type: only the value differs
        world.step()
        seen.append(float(world.get(int(ids[0]), Velocity).x))
        assert seen == [0.5, 0.5, math.inf, -math.inf, math.inf, 0.25, 0.125, -0.125]


def test_shared_array_resource_written_by_a_kernel_is_visible_through_resources(world: ecs.World) -> None:
    world.spawn_batch(6, Position(x=np.array([0, 1, 1, 3, 3, 3], np.float32), y=0.0))
    given = np.zeros(4, np.int64)
    world.resources["grid"] = given
    world.add_system(histogram_x)
    world.step()
    world.step()
    assert world.resources["grid"].tolist() == [2, 4, 0, 6]
    assert given.tolist() == [0, 0, 0, 0]  # the resource is a shared copy, not the caller's array


def test_a_resource_array_changed_in_place_is_checked_as_a_new_one_would_be(world: ecs.World) -> None:
    """Named arrays are matched to the kernel at every call (the user holds them: their
    dimensions or flags can change in place, which no version counter sees), unlike the task's
    own column views: a reshape to other dimensions is refused as such a keyword array is,
    instead of a silent second compilation, and the array as it was works again."""
    world.spawn_batch(2, Position(x=0.0, y=0.0))
    world.resources["grid"] = np.zeros(6)
    world.add_system(note_first_axis)
    world.step()
    grid = world.resources["grid"]
    assert grid.tolist() == [6, 0, 0, 0, 0, 0]
    grid.shape = (3, 2)
    with pytest.raises(SystemDefinitionError, match=r"system 'note_first_axis', parameter 'grid': was compiled "
                                                    r"for array\(float64, 1d, C\), got array\(float64, 2d, C\)"):
        world.step()
    grid.shape = (6,)
    grid.flags.writeable = False
    with pytest.raises(SystemDefinitionError, match=r"got readonly array\(float64, 1d, C\)"):
        world.step()
    grid.flags.writeable = True
    world.step()
    assert len(note_first_axis.kernel.signatures) == 1


def test_array_passed_to_step_is_written_in_place(world: ecs.World) -> None:
    world.spawn_batch(3, Position(x=np.array([0, 2, 2], np.float32), y=0.0))
    grid = np.zeros(3, np.int64)
    world.add_system(histogram_x)
    world.step(grid=grid)
    assert grid.tolist() == [1, 0, 2]


def test_annotated_float_parameter_converts_an_int_value(world: ecs.World) -> None:
    e = world.spawn(Position(x=0.0, y=0.0), Velocity(x=1.0, y=2.0))
    world.add_system(integrate)
    world.step(dt=2)
    assert (world.get(e, Position).x, world.get(e, Position).y) == (2.0, 4.0)


def test_numpy_scalar_annotation_fixes_the_compiled_type(world: ecs.World) -> None:
    e = world.spawn(Position(x=0.0, y=0.0))
    world.add_system(add_float32)
    world.step(nudge=0.25)
    world.step(nudge=np.float64(0.5))
    assert world.get(e, Position).x == np.float32(0.75)
    assert introspect.bound_systems(world)[0].value_types["nudge"] == numba.float32


def test_unannotated_value_is_compiled_for_its_first_type_and_converts_exact_values(world: ecs.World) -> None:
    e = world.spawn(Counter())
    world.add_system(add_untyped)
    world.step(step_size=2)
    world.step(step_size=3.0)            # held exactly by int64: converted
    world.step(step_size=np.int8(4))
    assert counters(world, [e]) == [9]
    assert introspect.bound_systems(world)[0].value_types["step_size"] == numba.int64


def test_a_refused_step_compiles_no_system_for_the_values_it_was_given(world: ecs.World) -> None:
    """A step refused for one system's missing value fixes no other system's compiled types."""
    world.spawn(Counter(), Position(x=0.0, y=0.0))
    world.add_system(add_untyped)
    world.add_system(add_float32)
    with refused(r"system 'add_float32', parameter 'nudge': no value"):
        world.step(step_size=1)                          # add_untyped's step_size would be int64
    world.step(step_size=2.5, nudge=1.0)
    assert introspect.bound_systems(world)[0].value_types["step_size"] == numba.float64


def test_a_finite_value_that_a_float32_kernel_would_hold_as_inf_is_refused(world: ecs.World) -> None:
    world.spawn(Position(x=0.0, y=0.0))
    world.add_system(add_float32)
    with refused(r"system 'add_float32', parameter 'nudge': was compiled for float32, got 1e\+40"):
        world.step(nudge=1e40)
    world.step(nudge=1e-50)                              # rounded (to 0): a float kernel takes it
    world.step(nudge=float("inf"))                       # infinite already: kept
    assert [float(x) for b in world.query(Position) for x in b[Position].x] == [float("inf")]


def test_value_that_the_compiled_type_cannot_hold_is_refused(world: ecs.World) -> None:
    e = world.spawn(Counter())
    world.add_system(add_untyped)
    world.step(step_size=1)
    with refused(r"system 'add_untyped', parameter 'step_size': was compiled for int64, got 2\.5, which "
                 r"int64 cannot hold exactly"):
        world.step(step_size=2.5)
    with refused("cannot hold exactly"):
        world.step(step_size=2 ** 70)
    assert counters(world, [e]) == [1]
    world.step(step_size=1)
    assert counters(world, [e]) == [2]


def test_int_annotated_parameter_refuses_a_fractional_value(world: ecs.World) -> None:
    e = world.spawn(Counter())
    world.add_system(add_amount)
    world.step(amount=2.0)
    with refused(r"system 'add_amount', parameter 'amount': was compiled for int64, got 0\.5, which int64 "
                 r"cannot hold exactly"):
        world.step(amount=0.5)
    with refused(r"got nan, which int64 cannot hold exactly"):
        world.step(amount=float("nan"))
    assert counters(world, [e]) == [2]


def test_array_of_another_dtype_after_compile_is_refused(world: ecs.World) -> None:
    world.spawn(Position(x=1.0, y=0.0))
    world.resources["grid"] = np.zeros(2, np.int64)
    world.add_system(histogram_x)
    world.step()
    with refused(r"system 'histogram_x', parameter 'grid': was compiled for array\(int64, 1d, C\), got "
                 r"array\(float64, 1d, C\)"):
        world.step(grid=np.zeros(2, np.float64))
    with refused(r"array\(int64, 1d, C\), got array\(int64, 2d, C\)"):
        world.step(grid=np.zeros((2, 2), np.int64))
    world.resources["grid"] = np.zeros(3, np.float32)
    with refused(r"got array\(float32, 1d, C\)"):
        world.step()
    world.resources["grid"] = np.zeros(3, np.int64)
    world.step()
    assert world.resources["grid"].tolist() == [0, 1, 0]


def test_scalar_for_a_parameter_compiled_as_array_is_refused(world: ecs.World) -> None:
    world.spawn(Position(x=1.0, y=0.0))
    world.add_system(histogram_x)
    world.step(grid=np.zeros(2, np.int64))
    with refused(r"parameter 'grid': was compiled for array\(int64, 1d, C\), got int"):
        world.step(grid=3)


def test_array_for_a_parameter_compiled_as_scalar_is_refused(world: ecs.World) -> None:
    world.spawn(Counter())
    world.add_system(add_untyped)
    world.step(step_size=1)
    with refused(r"parameter 'step_size': was compiled for int64, got ndarray"):
        world.step(step_size=np.ones(3, np.int64))


def test_non_numeric_value_is_refused_naming_the_parameter(world: ecs.World) -> None:
    world.spawn(Counter())
    world.add_system(add_untyped)
    with refused(r"parameter 'step_size': cannot pass str 'a'; expected a number, a bool or a numpy array"):
        world.step(step_size="a")


def test_np_ndarray_annotation_refuses_a_scalar(world: ecs.World) -> None:
    world.spawn(Counter())
    world.add_system(takes_an_array)
    with refused(r"parameter 'weights': cannot pass int 1; expected a numpy array"):
        world.step(weights=1)
    world.step(weights=np.zeros(4))


def test_missing_named_value_raises_at_step_naming_the_parameter(world: ecs.World) -> None:
    e = world.spawn(Counter())
    world.add_system(add_amount)   # adding is fine: the value may still come with step()
    with refused(r"system 'add_amount', parameter 'amount': no value: pass step\(amount=\.\.\.\) or set "
                 r"world.resources\['amount'\]"):
        world.step()
    world.step(amount=4)
    assert counters(world, [e]) == [4]


# ---------------------------------------------------------------- compile errors
def test_kernel_that_fails_typing_is_refused_at_add_naming_parameter_types(world: ecs.World) -> None:
    with refused(r"system 'adds_text_to_numbers': numba could not compile the kernel for the parameter "
                 r"types \(pos: PositionMutView\(array\(float32, 1d, C\)") as info:
        world.add_system(adds_text_to_numbers)
    assert isinstance(info.value.__cause__, numba.core.errors.TypingError)
    assert world.stats() == {}


def test_kernel_typed_by_a_step_value_fails_at_that_step_naming_parameter_types(world: ecs.World) -> None:
    world.spawn(Counter())
    world.add_system(copies_from_table)
    with refused(r"system 'copies_from_table': numba could not compile the kernel for the parameter types "
                 r"\(c: CounterMutView\(.*\), table: array\(float64, 2d, C\)\)"):
        world.step(table=np.zeros((2, 2)))
    world.step(table=np.full(1, 8.0))
    assert int(world.query(Counter).entities().shape[0]) == 1
    assert counters(world, world.query(Counter).entities()) == [8]


def test_kernel_numba_cannot_compile_at_all_is_a_definition_error(world: ecs.World) -> None:
    with refused(r"system 'stores_an_exception': numba could not compile"):
        world.add_system(stores_an_exception)


# ---------------------------------------------------------------- definition errors
def test_rows_without_a_filter_is_refused() -> None:
    with refused(r"system 'f', parameter 'rows': Rows receives the rows selected by changed=/added= "
                 r"filters, and this system has none"):
        @system
        def f(rows: Rows, pos: Position):
            pass


def test_filter_without_rows_is_refused() -> None:
    with refused(r"system 'f': a system with changed=/added= filters needs a parameter annotated Rows"):
        @system(changed=[Position])
        def f(pos: Position):
            pass
    with refused("needs a parameter annotated Rows"):
        @system(added=[Position])
        def g(pos: Position):
            pass


def test_mut_of_a_non_component_is_refused() -> None:
    with refused(r"system 'f', parameter 'pos': Mut\[\.\.\.\] takes a component class, got <class 'int'>"):
        @system
        def f(pos: Mut[int]):
            pass
    with refused(r"parameter 'pos': Mut\[\.\.\.\] takes a component class"):
        @system
        def g(pos: Mut[Position(x=1.0, y=2.0)]):
            pass


class NotAComponent:
    pass


@pytest.mark.parametrize("annotation", [str, dict, list, NotAComponent, np.dtype])
def test_unknown_annotation_class_is_refused_naming_the_parameter(annotation: type) -> None:
    def f(pos: Position, thing):
        pass
    f.__annotations__["thing"] = annotation
    with refused(rf"system 'f', parameter 'thing': cannot bind annotation {annotation!r}: expected a "
                 rf"component class, Mut\[C\], Entity, Rows"):
        system(f)


def test_unresolvable_annotation_is_refused() -> None:
    with refused(r"system 'f': cannot resolve annotations: name 'Undefined' is not defined"):
        @system
        def f(pos: Undefined):  # noqa: F821
            pass


def test_star_args_and_keyword_parameters_are_refused() -> None:
    with refused(r"system 'f', parameter 'args': kernels take plain positional parameters"):
        @system
        def f(pos: Position, *args):
            pass
    with refused(r"parameter 'options': kernels take plain positional"):
        @system
        def g(pos: Position, **options):
            pass
    with refused(r"parameter 'dt': kernels take plain positional"):
        @system
        def h(pos: Position, *, dt):
            pass


def test_one_component_bound_to_two_parameters_is_refused() -> None:
    with refused(r"system 'f', parameter 'b': Position is already bound to parameter 'a'"):
        @system
        def f(a: Position, b: Mut[Position]):
            pass
    with refused(r"parameter 'b': Velocity is already bound to parameter 'a'"):
        @system
        def g(a: Velocity, b: Velocity):
            pass


def test_two_entity_or_two_rows_parameters_are_refused() -> None:
    with refused(r"system 'f': more than one parameter is annotated Entity"):
        @system
        def f(a: Entity, b: Entity):
            pass
    with refused(r"more than one parameter is annotated Rows"):
        @system(changed=[Position])
        def g(a: Rows, b: Rows, pos: Position):
            pass


@pytest.mark.parametrize(("options", "message"), [
    ({"every": 0}, r"every=0: expected an int >= 1"),
    ({"every": True}, r"every=True: expected an int >= 1"),
    ({"every": 2.0}, r"every=2\.0: expected an int >= 1"),
    ({"mark": "sometimes"}, r"mark='sometimes': expected 'auto' or 'manual'"),
    ({"changed": Position}, r"changed= takes a list of component classes, got <class "),
    ({"without": [int]}, r"without= lists <class 'int'>, which is not a component class"),
    ({"added": [Health()]}, r"added= lists .*, which is not a component class"),
    ({"without": [Position]}, r"without=Position excludes a component the system requires \(a parameter, "
                              r"a changed=/added= or with_= filter\): it would never run"),
    ({"with_": [Health], "without": [Health]}, r"without=Health excludes a component the system requires"),
    ({"split": "no"}, r"split='no': expected True or False"),
    ({"name": 3}, r"name=3: expected a non-empty str"),
    ({"colour": "red"}, r"@system has no option 'colour'; its options are added, changed, every, mark, name, "
                        r"offset, removed, split, with_, without"),
])
def test_invalid_system_options_are_refused(options: dict, message: str) -> None:
    def f(pos: Position):
        pass
    with refused(rf"system 'f': {message}"):
        system(f, **options)


def test_system_of_something_that_is_not_a_function_is_refused() -> None:
    with refused(r"system '3': @system takes a plain function or a numba\.njit dispatcher"):
        system(3)
    with refused("@system takes a plain function"):
        system(print)


def test_add_system_of_a_plain_function_is_refused(world: ecs.World) -> None:
    def move(pos: Mut[Position]):
        pass
    with refused(r"system 'move': add_system\(\) takes a system: decorate the function with @ecs\.system"):
        world.add_system(move)
    with refused(r"add_system\(\) takes a system"):
        world.add_system(triple.kernel)


def test_adding_the_same_system_twice_is_refused(world: ecs.World) -> None:
    e = world.spawn(Counter(n=1))
    world.add_system(triple)
    with refused(r"system '_triple_kernel': this system was already added to the world"):
        world.add_system(triple)
    world.step()
    assert counters(world, [e]) == [3]


def test_two_systems_of_one_name_are_refused_since_names_key_stats(world: ecs.World) -> None:
    world.add_system(increment_n)
    with refused(r"system 'increment_n': another system of this name is already in the world; give one of "
                 r"them another name with @system\(name=\.\.\.\)"):
        world.add_system(another_increment)
    assert list(world.stats()) == ["increment_n"]


def test_one_system_can_be_added_to_two_worlds() -> None:
    with ecs.World() as first, ecs.World() as second:
        a = first.spawn(Counter(n=1))
        b = second.spawn(Counter(n=2))
        first.add_system(triple)
        second.add_system(triple)
        first.step()
        second.step()
        assert counters(first, [a]) == [3]
        assert counters(second, [b]) == [6]


def test_system_definition_error_is_a_type_error_and_names_the_system() -> None:
    def f(rows: Rows):
        pass
    with pytest.raises(TypeError) as info:
        system(f)
    assert isinstance(info.value, ecs.EcsError)
    assert info.value.system == "f"
    assert info.value.parameter == "rows"


def test_add_system_after_close_raises_world_closed() -> None:
    world = ecs.World()
    world.close()
    with pytest.raises(ecs.WorldClosedError, match=r"world\.add_system\(\) called after world\.close\(\)"):
        world.add_system(triple)
    with pytest.raises(ecs.WorldClosedError, match=r"world\.step\(\) called after world\.close\(\)"):
        world.step()


def test_system_is_callable_as_its_kernel() -> None:
    ids = np.array([5, 6], np.int64)
    out = np.zeros(2, np.int64)

    @numba.njit
    def run_copy(ids, out):
        for i in range(ids.shape[0]):
            out[i] = ids[i] * 2

    wrapped = system(run_copy)
    wrapped(ids, out)
    assert out.tolist() == [10, 12]


def test_float16_values_are_refused_by_name(world: ecs.World) -> None:
    """numba's CPU target lowers no float16: the parameter, the value or the resource is named."""
    def annotated(c: Mut[Counter], k: np.float16):
        pass
    with refused(r"system 'annotated': numba could not compile the kernel for the parameter types \(.*k: float16"):
        world.add_system(system(annotated))
    world.spawn(Counter())
    world.add_system(add_untyped)
    with refused(r"system 'add_untyped', parameter 'step_size': numba compiles no kernel for float16 values: "
                 r"use np\.float32"):
        world.step(step_size=np.float16(1.5))
    with pytest.raises(ecs.ArgumentTypeError, match=r"resource 'k': numba compiles no kernel for float16 values; "
                                                    r"use np\.float32"):
        world.resources["k"] = np.zeros(3, np.float16)
    world.step(step_size=1)                               # nothing was compiled for the refused value


def test_a_kernel_that_writes_a_component_read_without_mut_or_the_ids_is_refused(world: ecs.World) -> None:
    """Read-only views: a write would change values no change reader sees (or the world's ids)."""
    def writes_read_view(pos: Position, c: Mut[Counter]):
        for i in range(pos.x.shape[0]):
            pos.x[i] = 0.0

    def writes_ids(ids: Entity, c: Mut[Counter]):
        for i in range(ids.shape[0]):
            ids[i] = 0

    world.spawn_batch(3, Position(x=1.0, y=1.0), Counter())
    world.spawn_batch(2, Position(x=1.0, y=1.0), Counter(), Frozen())     # two tables: a driven unit
    for kernel in (writes_read_view, writes_ids):
        with refused(rf"system '{kernel.__name__}': numba could not compile the kernel for the parameter types "
                     rf"\(.*readonly array.*\):\n    the kernel writes to an array it receives read-only: a "
                     rf"component without Mut\[\.\.\.\] and the Entity ids are read-only"):
            world.add_system(system(kernel))
    assert [float(x) for b in world.query(Position) for x in b[Position].x] == [1.0] * 5
    ids = world.query(Counter).entities().tolist()
    world.add_system(increment_n)                                     # reads and writes as declared: runs
    world.step()
    assert world.query(Counter).entities().tolist() == ids


@system
def write_out(pos: Position, out: np.ndarray):
    for i in range(pos.x.shape[0]):
        out[i % out.shape[0]] = pos.x[i]


@system
def read_grid(c: Mut[Counter], grid: np.ndarray):
    for i in range(c.n.shape[0]):
        c.n[i] += np.int64(grid[i % grid.shape[0]])


def test_one_array_under_two_names_is_refused_on_every_worker_count(world: ecs.World) -> None:
    """Systems are ordered by the names of the arrays they take: a resource passed again under
    another name would let a writer and a reader of it run side by side."""
    world.spawn_batch(4, Position(x=1.0, y=0.0), Counter())
    world.resources["grid"] = np.zeros(4)
    world.add_system(write_out)
    world.add_system(read_grid)
    message = (r"^system 'write_out' gets 'out' and system 'read_grid' gets 'grid', one memory under two names: "
               r"systems are ordered by the names of the arrays they take, so pass it under one name")
    for alias in (world.resources["grid"], world.resources["grid"][1:]):
        with pytest.raises(ecs.InvalidArgumentError, match=message):
            world.step(out=alias)
    world.step(out=np.zeros(4))                           # an array of its own: runs
    assert world.stats()["write_out"]["calls"] == 1


def _halve_by_zero(pos: Mut[Position]):
    for i in range(pos.x.shape[0]):
        pos.x[i] = pos.x[i] / np.float32(0.0)


def test_one_function_wrapped_with_other_options_is_two_kernels_also_over_many_tables() -> None:
    """The compiled driver that visits several tables is built per kernel: a function wrapped
    with another error model (or boundscheck) does not run the first wrapping's code."""
    lenient = system(numba.njit(error_model="numpy")(_halve_by_zero), name="halve")
    strict = system(numba.njit(error_model="python")(_halve_by_zero), name="halve")   # one name: one source
    for kernel_system, raises in ((lenient, False), (strict, True), (lenient, False)):
        with ecs.World() as world:
            for tag in (Frozen, Health, Tint):    # three tables: the driver path
                world.spawn_batch(2, Position(x=1.0, y=0.0), tag(**({"rgb": [0, 0, 0]} if tag is Tint else {})))
            world.add_system(kernel_system)
            if raises:
                with pytest.raises(ecs.KernelError, match="ZeroDivisionError"):
                    world.step()
            else:
                world.step()
                assert all(np.isinf(batch[Position].x).all() for batch in world.query(Position))


def test_a_dispatcher_compiled_for_given_signatures_is_compiled_again_for_the_world() -> None:
    """njit([...]) with explicit signatures compiles nothing more; the world needs the columns'
    and values' exact types: the function is compiled again with the same options."""
    @numba.njit(["void(float64)"])
    def eager(k):
        pass
    with ecs.World() as world:
        world.add_system(system(eager))
        world.step(k=0.5)
        assert world.stats()["eager"]["calls"] == 1


def test_a_dispatcher_compiled_again_keeps_its_locals() -> None:
    """locals= (and cache=) are not among numba's targetoptions: the compiled-again kernel keeps
    them, so an int8 local still wraps as the user's dispatcher has it."""
    def narrow(out: np.ndarray):
        t = 200
        out[0] = t
    eager = numba.njit(["void(float64[::1])"], locals={"t": numba.int8})(narrow)
    with ecs.World() as world:
        world.resources["out"] = np.zeros(1)
        world.add_system(system(eager))
        world.step()
        assert world.resources["out"][0] == -56.0
