"""ecs/schema.py: annotations -> dtypes, defaults, tags; SchemaError and ComponentValueError."""

from __future__ import annotations

import importlib
import itertools
import pickle
import re
import sys

import numpy as np
import pytest

import ecs
from ecs import (
    ComponentValueError,
    SchemaError,
    bool_,
    component,
    f32,
    f64,
    i8,
    i16,
    i32,
    i64,
    u8,
    u16,
    u32,
    u64,
)
from tests.components import Frozen, Health, Position, Tint

FIELD_TYPES = [
    (f32, np.float32), (f64, np.float64), (i8, np.int8), (i16, np.int16), (i32, np.int32),
    (i64, np.int64), (u8, np.uint8), (u16, np.uint16), (u32, np.uint32), (u64, np.uint64),
    (bool_, np.bool_),
]


_probes = itertools.count()


def make_component(annotations: dict, name: str = "Probe", bases: tuple = (), **defaults) -> type:
    """Build and decorate a component class from an annotations dict (as a class body would).
    Each call makes another class, so each gets its own qualified name (`Probe_3`; messages use
    the class name, `Probe`): two classes under one module and qualname are refused."""
    namespace = {"__annotations__": annotations, "__qualname__": f"{name}_{next(_probes)}", **defaults}
    return component(type(name, bases, namespace))


@component
class Frame:
    m: f32[2, 2]


# ---------------------------------------------------------------- layout
@pytest.mark.parametrize(("field_type", "scalar"), FIELD_TYPES, ids=[ft.name for ft, _ in FIELD_TYPES])
def test_every_field_type_maps_to_its_numpy_dtype(field_type, scalar) -> None:
    cls = make_component({"v": field_type})
    assert cls.fields == {"v": np.dtype(scalar)}
    value = cls(v=1)
    assert value.v == 1
    assert isinstance(value.v, scalar)


@pytest.mark.parametrize(("field_type", "scalar"), FIELD_TYPES, ids=[ft.name for ft, _ in FIELD_TYPES])
def test_every_field_type_stores_in_a_world_and_reads_back(field_type, scalar) -> None:
    cls = make_component({"v": field_type, "w": field_type[2]})
    info = np.iinfo(scalar) if np.dtype(scalar).kind in "iu" else None
    top = info.max if info else (True if scalar is np.bool_ else 0.25)
    with ecs.World() as world:
        entity = world.spawn(cls(v=top, w=[top, 0]))
        got = world.get(entity, cls)
        assert got.v == top and got.v.dtype == np.dtype(scalar)
        assert got.w.tolist() == [top, 0] and got.w.dtype == np.dtype(scalar)


def test_vector_fields_have_subarray_dtypes() -> None:
    assert Tint.fields == {"rgb": np.dtype((np.uint8, (3,)))}
    assert Frame.fields == {"m": np.dtype((np.float32, (2, 2)))}
    assert Tint(rgb=[1, 2, 3]).rgb.tolist() == [1, 2, 3]
    assert Frame(m=[[1, 2], [3, 4]]).m.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_vector_field_columns_have_the_vector_shape_per_row() -> None:
    with ecs.World() as world:
        world.spawn_batch(4, Tint(rgb=[1, 2, 3]), Frame(m=np.eye(2)))
        (batch,) = world.query(Tint, Frame)
        assert batch[Tint].rgb.shape == (4, 3)
        assert batch[Frame].m.shape == (4, 2, 2)
        assert batch[Tint].rgb.tolist() == [[1, 2, 3]] * 4


def test_fields_lists_fields_in_declaration_order() -> None:
    cls = make_component({"b": f64, "a": u8, "c": bool_[4]})
    assert list(cls.fields) == ["b", "a", "c"]


def test_defaults_fill_missing_fields() -> None:
    assert Health().hp == 100
    assert Health(hp=5).hp == 5
    assert Health(7).hp == 7
    with_vector_default = make_component({"rgb": u8[3], "k": f32}, rgb=(4, 5, 6))
    assert with_vector_default(k=1).rgb.tolist() == [4, 5, 6]


def test_a_vector_default_cannot_be_changed_through_a_value() -> None:
    cls = make_component({"rgb": u8[3]}, rgb=(4, 5, 6))
    value = cls()
    with pytest.raises(ValueError):
        value.rgb[0] = 9
    assert cls().rgb.tolist() == [4, 5, 6]


def test_component_values_are_immutable() -> None:
    value = Position(x=1, y=2)
    with pytest.raises(AttributeError, match="immutable"):
        value.x = 3


def test_tags_have_no_fields_and_still_build_values() -> None:
    assert Frozen.fields == {}
    assert Frozen() == Frozen()
    with ecs.World() as world:
        entity = world.spawn(Position(x=1, y=2), Frozen())
        assert world.has(entity, Frozen)
        assert world.query(Frozen).count() == 1


def test_values_compare_by_field_values_and_repr_names_them() -> None:
    assert Position(x=1, y=2) == Position(x=1.0, y=2.0)
    assert Position(x=1, y=2) != Position(x=1, y=3)
    assert repr(Position(x=1, y=2)) == "Position(x=1.0, y=2.0)"
    assert repr(Tint(rgb=[1, 2, 3])) == "Tint(rgb=[1, 2, 3])"


def test_postponed_annotations_resolve_to_the_same_dtypes() -> None:
    from tests.future_components import FuturePosition, FutureTinted

    assert FuturePosition.fields == {"x": np.dtype(np.float32), "y": np.dtype(np.float32)}
    assert FuturePosition(x=2).y == np.float32(1.5)
    assert FutureTinted.fields == {"rgb": np.dtype((np.uint8, (3,))), "count": np.dtype(np.int32),
                                   "big": np.dtype(np.int64)}
    value = FutureTinted(rgb=[1, 2, 3])
    assert value.count == 7 and value.big == -(2**40)


def test_a_subclass_component_inherits_and_extends_fields() -> None:
    sub = make_component({"z": f64}, name="Position3", bases=(Position,))
    assert sub.fields == {"x": np.dtype(np.float32), "y": np.dtype(np.float32), "z": np.dtype(np.float64)}
    assert sub(x=1, y=2, z=3).z == 3.0


def test_a_subclass_gives_an_inherited_field_a_new_default_by_assignment() -> None:
    sub = make_component({}, name="Healthier", bases=(Health,), hp=250)
    assert sub().hp == 250 and Health().hp == 100
    with pytest.raises(SchemaError, match=r"invalid component Sicker\.hp: default 0\.5 does not fit: "):
        make_component({}, name="Sicker", bases=(Health,), hp=0.5)


def test_field_annotations_of_a_base_that_is_not_a_component_raise_schema_error() -> None:
    mixin = type("Mixin", (), {"__annotations__": {"z": f32, "note": str}})
    with pytest.raises(SchemaError, match=r"invalid component Probe\.z: base class Mixin declares it, but Mixin is not "
                                          r"a component"):
        make_component({"w": f32}, bases=(mixin,))
    other = type("Other", (), {"__annotations__": {"note": str}})   # not field types: not fields
    assert make_component({"w": f32}, bases=(other,)).fields == {"w": np.dtype(np.float32)}


def test_fields_may_be_named_as_builtins() -> None:
    probe = make_component({"type": f32, "len": i32, "id": f64})
    assert probe(1.0, 2, 3.0) == probe(type=1.0, len=2, id=3.0)
    assert (probe(1.0, 2, 3.0).type, probe(1.0, 2, 3.0).len) == (1.0, 2)
    with pytest.raises(ComponentValueError, match=r"Probe\.len = 2\.5: does not fit int32"):
        probe(type=1.0, len=2.5, id=3.0)


def test_a_component_of_thousands_of_fields_is_defined_and_built() -> None:
    """Its __init__ is generated linear in the fields (quadratic, 3,000 took ~22 GB)."""
    probe = make_component({f"f{k}": f32 for k in range(3000)})
    value = probe(**{f"f{k}": float(k) for k in range(3000)})
    assert value.f2999 == 2999.0
    with pytest.raises(ComponentValueError, match=r"Probe\.f1500 = 1e\+300: does not fit float32"):
        probe(**{f"f{k}": 1e300 if k == 1500 else 0.0 for k in range(3000)})


def test_a_class_name_that_is_not_an_identifier_raises_schema_error() -> None:
    with pytest.raises(SchemaError, match=r"invalid component 'my-comp': a component's class name must be an "
                                          r"identifier"):
        make_component({"x": f32}, name="my-comp")


def test_numpy_scalar_type_annotations_are_accepted() -> None:
    assert make_component({"v": np.int16}).fields == {"v": np.dtype(np.int16)}


def test_scalar_and_array_forms_mix_with_broadcast() -> None:
    value = Position(x=np.arange(3), y=0.5)
    assert value.x.tolist() == [0.0, 1.0, 2.0]
    assert value.y == np.float32(0.5)


F32_MAX = float(np.finfo(np.float32).max)
EDGE_SCALARS = [0.0, -0.0, 0.5, F32_MAX, -F32_MAX, F32_MAX * (1 + 2**-30), 1e300, float("nan"), float("inf"),
                7, -(2**53), 2**53, 2**53 + 1, 2**64, -(2**63) - 1, 2**31, -(2**31) - 1, True, np.float32(3.5),
                np.float64(1e300), np.int64(5), np.bool_(True)]


@pytest.mark.parametrize("field_type", [f32, f64, i8, i32, u32, i64, u64, bool_], ids=repr)
@pytest.mark.parametrize("scalar", EDGE_SCALARS, ids=repr)
def test_a_scalar_beside_an_array_takes_the_value_or_the_error_of_a_list_of_it(field_type, scalar) -> None:
    """Scalars that certainly fit skip the conversion's checks; each must store what the checked
    conversion of a one-element list stores, and every other one must raise its error."""
    probe = make_component({"column": f32, "v": field_type})
    try:
        expected = probe(column=np.zeros(1, np.float32), v=[scalar]).v[0]
    except ComponentValueError as error:
        message = str(error).replace(" (element 0)", "").replace(str([scalar]), repr(scalar))
        with pytest.raises(ComponentValueError, match=re.escape(message)):
            probe(column=np.zeros(3, np.float32), v=scalar)
        return
    got = probe(column=np.zeros(3, np.float32), v=scalar).v
    assert got.dtype == expected.dtype and got.shape == () and np.array_equal(got, expected, equal_nan=True)

# ---------------------------------------------------------------- SchemaError
@pytest.mark.parametrize("annotation", [str, object, list, list[int], dict, bytes, np.float16, np.complex64,
                                        np.dtype("f4"), 3, None],
                         ids=lambda a: repr(a))
def test_unsupported_annotations_raise_schema_error_naming_the_field(annotation) -> None:
    with pytest.raises(SchemaError, match=r"invalid component Probe\.weight: unsupported field type"):
        make_component({"weight": annotation})


@pytest.mark.parametrize("annotation", [float, int, bool])
def test_python_number_annotations_raise_schema_error_with_a_hint(annotation) -> None:
    with pytest.raises(SchemaError, match=r"Probe\.speed: .*Python's float/int/bool have no fixed size"):
        make_component({"speed": annotation})


def test_an_unknown_annotation_raises_schema_error_naming_the_field() -> None:
    with pytest.raises(SchemaError, match=r"Probe\.mass: cannot resolve annotation 'nosuch_type'"):
        make_component({"mass": "nosuch_type"})


def test_schema_error_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        make_component({"name": str})


@pytest.mark.parametrize("name", ["changed", "fields", "_hidden", "__dunder"])
def test_reserved_and_private_field_names_raise_schema_error(name: str) -> None:
    with pytest.raises(SchemaError, match=rf"Probe\.{name}: field names may not start with '_'"):
        make_component({name: f32})


def test_a_field_redeclared_in_a_subclass_is_a_duplicate() -> None:
    with pytest.raises(SchemaError, match=r"Position3\.x: duplicate field name"):
        make_component({"x": f64}, name="Position3", bases=(Position,))


@pytest.mark.parametrize(("annotation", "default", "why"), [
    (u8, 300, "default 300 does not fit"),
    (i32, 3.5, "default 3.5 does not fit"),
    (i8, float("nan"), "default nan does not fit"),
    (u8, "a", "default 'a' does not fit"),
    (u8[3], (1, 2), r"default \(1, 2\) does not fit"),
    (bool_, 2, "default 2 does not fit"),
])
def test_a_default_that_does_not_fit_raises_schema_error(annotation, default, why) -> None:
    with pytest.raises(SchemaError, match=rf"Probe\.level: {why}"):
        make_component({"level": annotation}, level=default)


def test_component_decorates_only_classes() -> None:
    with pytest.raises(SchemaError, match="@component decorates a class"):
        component(3)


def test_vector_sizes_must_be_positive_ints() -> None:
    with pytest.raises(TypeError, match="vector sizes must be positive ints"):
        f32[0]
    with pytest.raises(TypeError, match="already a vector type"):
        f32[3][2]
    with pytest.raises(TypeError, match=r"33 dimensions; a vector field has at most 32"):
        f32[(1,) * 33]
    with pytest.raises(TypeError, match=r"u8\[1099511627776\]: .*does not fit into a C int"):
        u8[2**40]


# ---------------------------------------------------------------- ComponentValueError
@pytest.mark.parametrize(("cls", "kwargs", "pattern"), [
    (Tint, {"rgb": [300, 0, 0]}, r"Tint\.rgb = 300: does not fit uint8 \(element 0\)"),
    (Tint, {"rgb": [0, -1, 0]}, r"Tint\.rgb = -1: does not fit uint8 \(element 1\)"),
    (Health, {"hp": 2**31}, r"Health\.hp = 2147483648: does not fit int32"),
    (Health, {"hp": float("nan")}, r"Health\.hp = nan: does not fit int32"),
    (Health, {"hp": float("inf")}, r"Health\.hp = inf: does not fit int32"),
    (Health, {"hp": -float("inf")}, r"Health\.hp = -inf: does not fit int32"),
    (Health, {"hp": 3.5}, r"Health\.hp = 3\.5: does not fit int32"),
    (Health, {"hp": 2**70}, r"Health\.hp = 1180591620717411303424: does not fit int32"),
    (Health, {"hp": "ten"}, r"Health\.hp = 'ten': expected a int32 value, got str"),
    (Health, {"hp": None}, r"Health\.hp = None: expected a int32 value, got object"),
    (Position, {"x": 1e300, "y": 0}, r"Position\.x = 1e\+300: does not fit float32"),
    (Tint, {"rgb": [1, 2]}, r"Tint\.rgb = \[1, 2\]: expected shape \(3,\) or \(n, 3\), got shape \(2,\)"),
    (Tint, {"rgb": 5}, r"Tint\.rgb = 5: expected shape \(3,\) or \(n, 3\), got shape \(\)"),
    (Frame, {"m": np.zeros((2, 3))},
     r"(?s)Frame\.m = .*expected shape \(2, 2\) or \(n, 2, 2\), got shape \(2, 3\)"),
    (Health, {"hp": np.zeros((2, 2))},
     r"(?s)Health\.hp = .*expected a scalar or a 1-D array, got shape \(2, 2\)"),
])
def test_values_that_do_not_fit_raise_component_value_error(cls, kwargs, pattern) -> None:
    with pytest.raises(ComponentValueError, match=pattern):
        cls(**kwargs)


@pytest.mark.parametrize(("field_type", "bad"), [
    (u8, 256), (u8, -1), (i8, 128), (i8, -129), (u16, 65536), (i16, -32769), (u32, 2**32),
    (i32, -(2**31) - 1), (u64, 2**64), (u64, -1), (i64, 2**63), (i64, -(2**63) - 1),
    (bool_, 2), (bool_, 0.5), (f32, 1e39),
])
def test_out_of_range_values_are_rejected_for_every_integer_type(field_type, bad) -> None:
    cls = make_component({"v": field_type})
    with pytest.raises(ComponentValueError, match=r"Probe\.v = .*: does not fit"):
        cls(v=bad)
    with pytest.raises(ComponentValueError, match=r"Probe\.v = .*: does not fit .* \(element 1\)"):
        cls(v=[0, bad])


@pytest.mark.parametrize(("field_type", "edge"), [
    (u8, 255), (i8, -128), (u16, 65535), (i16, 32767), (u32, 2**32 - 1), (i32, -(2**31)),
    (u64, 2**64 - 1), (i64, 2**63 - 1), (i64, -(2**63)), (bool_, 1), (bool_, 0.0), (i32, 7.0),
])
def test_values_at_the_edge_of_a_type_fit_exactly(field_type, edge) -> None:
    cls = make_component({"v": field_type})
    assert cls(v=edge).v == edge
    assert cls(v=[edge, edge]).v.tolist() == [edge, edge]


def test_large_python_ints_in_a_list_are_stored_exactly() -> None:
    big = make_component({"v": u64})
    assert big(v=[2**63 + 1, 0]).v.tolist() == [2**63 + 1, 0]
    assert big(v=[2**64 - 1, 5]).v.tolist() == [2**64 - 1, 5]
    with pytest.raises(ComponentValueError,
                       match=r"Probe\.v = 18446744073709551616: does not fit uint64 \(element 0\)"):
        big(v=[2**64, 5])
    signed = make_component({"v": i64})
    with pytest.raises(ComponentValueError,
                       match=r"Probe\.v = 9223372036854775809: does not fit int64 \(element 1\)"):
        signed(v=[0, 2**63 + 1])


def test_python_ints_past_uint64_fit_float_fields_when_in_range() -> None:
    single = make_component({"v": f32})
    double = make_component({"v": f64})
    assert single(v=2**64).v == np.float32(2.0**64)
    assert double(v=[2**70, 1]).v.tolist() == [2.0**70, 1.0]
    with pytest.raises(ComponentValueError, match=r"Probe\.v = .*: does not fit float32"):
        single(v=2**200)
    with pytest.raises(ComponentValueError, match=r"Probe\.v = .*: does not fit float64"):
        double(v=10**400)


def test_nan_and_inf_fit_float_fields() -> None:
    value = Position(x=float("nan"), y=float("inf"))
    assert np.isnan(value.x) and np.isinf(value.y)


def test_mismatched_batch_array_lengths_raise_component_value_error() -> None:
    with pytest.raises(ComponentValueError,
                       match=r"Position\.y = '<array of length 3>': length differs from field 'x' \(2\)"):
        Position(x=[1, 2], y=[1, 2, 3])


def test_an_unknown_field_keyword_raises_component_value_error() -> None:
    with pytest.raises(ComponentValueError, match=r"Position\.z = 3: no such field; Position has x, y"):
        Position(x=1, y=2, z=3)


def test_a_missing_field_without_default_raises_component_value_error() -> None:
    with pytest.raises(ComponentValueError, match=r"Position\.y = None: missing: the field has no default"):
        Position(x=1)


def test_too_many_positional_values_raise_component_value_error() -> None:
    with pytest.raises(ComponentValueError,
                       match=r"Position = \(1, 2, 3\): takes at most 2 positional values"):
        Position(1, 2, 3)


def test_a_field_given_twice_raises_component_value_error() -> None:
    with pytest.raises(ComponentValueError, match=r"Position\.x = 3: given both positionally and by keyword"):
        Position(1, 2, x=3)


def test_component_value_error_is_a_value_error_and_names_its_parts() -> None:
    with pytest.raises(ValueError) as caught:
        Health(hp=2**40)
    assert isinstance(caught.value, ComponentValueError)
    assert (caught.value.component, caught.value.field, caught.value.value) == ("Health", "hp", 2**40)


# ---------------------------------------------------------------- field names and base components
@pytest.mark.parametrize("name", ["class", "lambda", "None", "my field", "1x", "x-y", "a.b", ""])
def test_a_field_name_that_is_a_keyword_or_not_an_identifier_raises_schema_error(name: str) -> None:
    where = rf"Probe\.{re.escape(name)}" if name else "Probe"
    with pytest.raises(SchemaError, match=rf"invalid component {where}: field name {re.escape(repr(name))} is not an "
                                          r"identifier or is a Python keyword"):
        make_component({name: f32})


def test_a_field_name_that_is_not_a_string_raises_schema_error() -> None:
    with pytest.raises(SchemaError, match=r"invalid component Probe\.1: field name 1 is not an identifier"):
        make_component({1: f32})


def test_two_bases_that_declare_one_field_with_different_types_raise_schema_error() -> None:
    first = make_component({"x": f32}, name="First")
    second = make_component({"x": i32[2], "y": f32}, name="Second")
    with pytest.raises(SchemaError, match=r"invalid component Both\.x: base components First and Second declare it "
                                          r"as f32 and i32\[2\]; rename one of them"):
        make_component({}, name="Both", bases=(first, second))
    with pytest.raises(SchemaError, match=r"Both\.x: base components Second and First declare it as i32\[2\] and f32"):
        make_component({}, name="Both", bases=(second, first))


def test_two_bases_that_give_one_field_different_defaults_raise_schema_error() -> None:
    low = make_component({"hp": i32}, name="Low", hp=1)
    high = make_component({"hp": i32}, name="High", hp=2)
    bare = make_component({"hp": i32}, name="Bare")
    with pytest.raises(SchemaError, match=r"Both\.hp: base components Low and High give it different defaults "
                                          r"\(1 and 2\); declare it in one of them only"):
        make_component({}, name="Both", bases=(low, high))
    with pytest.raises(SchemaError, match=r"Both\.hp: base components Low and Bare give it different defaults "
                                          r"\(1 and no default\)"):
        make_component({}, name="Both", bases=(low, bare))


def test_a_field_that_bases_share_alike_is_one_field() -> None:
    root = make_component({"x": f32, "w": f64[2]}, name="Root", x=0.5, w=(np.nan, 1))
    left = make_component({"a": u8}, name="Left", bases=(root,))
    right = make_component({"b": u8}, name="Right", bases=(root,))
    twin = make_component({"x": f32, "w": f64[2]}, name="Twin", x=0.5, w=(np.nan, 1))
    diamond = make_component({"c": u8}, name="Diamond", bases=(left, right, twin))
    assert sorted(diamond.fields) == ["a", "b", "c", "w", "x"]
    value = diamond(a=1, b=2, c=3)
    assert value.x == np.float32(0.5) and np.isnan(value.w[0])


# ---------------------------------------------------------------- one class per module and qualname
def define_in_a_function() -> type:
    @component
    class Local:
        x: f32
    return Local


def test_a_component_defined_in_a_function_called_twice_raises_schema_error() -> None:
    first = define_in_a_function()
    with pytest.raises(SchemaError, match=r"invalid component Local: another component class is already named "
                                          r"tests\.test_schema:define_in_a_function\.<locals>\.Local; two classes "
                                          r"with one module and qualname would share one component key"):
        define_in_a_function()
    with ecs.World() as world:
        assert world.get(world.spawn(first(x=2)), first).x == 2


def test_a_second_class_made_under_one_module_and_qualname_raises_schema_error() -> None:
    qualname = f"Made_{next(_probes)}"
    first = component(type("Made", (), {"__annotations__": {"x": f32}, "__qualname__": qualname}))
    with pytest.raises(SchemaError, match=rf"another component class is already named tests\.test_schema:{qualname}"):
        component(type("Made", (), {"__annotations__": {"x": f32}, "__qualname__": qualname}))
    assert first(x=1).x == 1


def test_a_component_whose_key_is_another_ones_raises_schema_error(monkeypatch) -> None:
    """Keys are 48-bit hashes of stored names; a collision (forced here) would merge two components
    in command records."""
    taken = ecs.component_key(Position)
    monkeypatch.setattr(ecs.schema, "key_of", lambda name: taken)
    with pytest.raises(SchemaError, match=rf"invalid component Clash: its key {taken} \(a hash of "
                                          rf"'tests\.test_schema:Clash_\d+'\) is already the key of "
                                          rf"tests\.components:Position; rename one of the two classes"):
        make_component({"x": f32}, name="Clash")


MODULE_SOURCE = "from ecs import component, f32\n\n\n@component\nclass Pos:\n    x: f32\n    y: f32 = {y}\n"


def test_a_module_that_is_reloaded_or_imported_afresh_redefines_its_components(tmp_path, monkeypatch) -> None:
    """A re-executed module (importlib.reload, a notebook cell run twice, exec into the module)
    replaces its component classes: the newer owns the name and the key."""
    name = f"reloaded_components_{next(_probes)}"
    (tmp_path / f"{name}.py").write_text(MODULE_SOURCE.format(y=1.0))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = importlib.import_module(name)
        first = module.Pos
        (tmp_path / f"{name}.py").write_text(MODULE_SOURCE.format(y=2.5))
        importlib.invalidate_caches()
        importlib.reload(module)
        assert module.Pos is not first and module.Pos(x=0).y == 2.5
        exec(MODULE_SOURCE.format(y=3.5), module.__dict__)           # a notebook cell run again
        del sys.modules[name]
        fresh = importlib.import_module(name)                         # imported afresh
        keys = {ecs.component_key(c) for c in (first, module.Pos, fresh.Pos)}
        assert len(keys) == 1 and fresh.Pos(x=0).y == 2.5
        with ecs.World() as world:
            entity = world.spawn(fresh.Pos(x=1))
            assert world.get(entity, fresh.Pos).y == 2.5
    finally:
        sys.modules.pop(name, None)


def test_view_types_pickle_by_reference_to_themselves() -> None:
    """numba's cache pickles kernel signatures, which hold the view types of query batches and
    system parameters: they must unpickle as the same classes, in every process."""
    with ecs.World() as world:
        world.spawn_batch(2, Tint(rgb=[1, 2, 3]))
        (batch,) = world.query(Tint)
        view_type = type(batch[Tint])
    assert pickle.loads(pickle.dumps(view_type)) is view_type
    assert view_type.__module__ == "ecs.schema"
    orphan = pickle.loads(pickle.dumps(view_type).replace(view_type.__qualname__.encode()[-12:], b"0" * 12))
    assert orphan is not view_type and orphan._fields == ()     # a component this process lacks: a placeholder


def test_every_way_of_giving_the_fields_builds_the_same_value() -> None:
    """The generated __init__ takes a call that gives every field once, all by position or all
    by keyword; any other call (mixed, defaults, values it cannot vouch for) goes to the checked
    path, with the call's own arguments."""
    @component
    class Sample:
        a: f32
        b: i32 = 7
        c: bool_ = False

    expected = {"a": 1.5, "b": 7, "c": True}
    calls = [lambda: Sample(1.5, 7, True), lambda: Sample(a=1.5, b=7, c=True), lambda: Sample(c=True, b=7, a=1.5),
             lambda: Sample(1.5, c=True), lambda: Sample(1.5, 7, c=True), lambda: Sample(a=1.5, c=True),
             lambda: Sample(np.float32(1.5), np.int8(7), np.bool_(True))]
    for call in calls:
        value = call()
        assert {f: getattr(value, f).item() for f in expected} == expected
    for bad, message in ((lambda: Sample(1.5, b=2**40), r"Sample\.b = 1099511627776: does not fit int32"),
                         (lambda: Sample(a=1.5, b=2**40, c=True), r"Sample\.b = 1099511627776: does not fit int32"),
                         (lambda: Sample(1.5, 2**40, True), r"Sample\.b = 1099511627776: does not fit int32"),
                         (lambda: Sample(1.5, a=2.0), r"Sample\.a = 2.0: given both positionally and by keyword"),
                         (lambda: Sample(1.5, 7, True, d=1), r"Sample\.d = 1: no such field"),
                         (lambda: Sample(b=1), r"Sample\.a = None: missing: the field has no default")):
        with pytest.raises(ComponentValueError, match=message):
            bad()
