"""Arrow export: component columns as Arrow arrays, without a copy where Arrow allows it.

A query's result becomes a `pyarrow.Table` with an "entity" column (int64 ids) and one column per
field, named "Component.field", in the order of the query's components and their fields. Tags
(components without fields) add no column. The recorder (recorder.py) builds its tables from the
same conversions.

Where copies happen, and what they cost:
- **No copy**: a plain numeric column (ints, floats) of a query that matches one table, and its
  id column. The Arrow buffer wraps the numpy view of the column (`pa.py_buffer`), so building
  the table is O(columns), whatever the row count. Vector fields (`f32[3]`) are a
  FixedSizeList over the same flat buffer, also without a copy.
- **Copy**: bool columns (Arrow packs 8 values into a byte: one pass over the column); every
  column when the query matches several tables (one concatenation per column into a fresh array,
  O(rows)); the selected rows of a `changed=`/`added=` query (a gather, O(selected rows));
  everything with `copy=True`.

A table that shares memory with the world is a live view: it shows what the columns hold when it
is read, not when it was made. A later step, `set_batch` or restore changes its values, and a
structural change (spawn, despawn, add, remove) moves other entities' rows under it, its
"entity" column included (shared too: after a despawn it may list the moved id twice). Take
`copy=True` for a table that must keep the values and ids of the moment. Reading it never
crashes: its buffers hold the numpy views, which keep the world's shared mapping alive even
after `World.close()` (memory.py); the values are then those of the moment the world was closed.

pyarrow is an optional dependency (`pip install 'columnar-ecs[arrow]'`); this module imports it
only when a conversion is asked for, and `require()` turns its absence into an ImportError that
names the extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from .schema import ComponentInfo

DISTRIBUTION = "columnar-ecs"


def require(module: str = "pyarrow", extra: str = "arrow", call: str = "to_arrow()") -> ModuleType:
    """Import an optional dependency, or raise ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = (f"{call} needs {module}, an optional dependency: "
               f"pip install '{DISTRIBUTION}[{extra}]' (or pip install {module})")
        raise ImportError(msg, name=module) from exc


def column_names(infos: Sequence[ComponentInfo]) -> list[str]:
    """"Component.field" for every field of these components, in order; a component whose class
    name another of them shares (two modules' Position) is named by its stored name instead
    ("module:Position.x"), so that no two columns share a name."""
    names = [info.name for info in infos]
    return [f"{info.qualname if names.count(info.name) > 1 else info.name}.{field}"
            for info in infos for field in info.fields]


def arrow_type(dtype: np.dtype) -> Any:
    """The Arrow type of a field dtype: the scalar type, or nested FixedSizeLists for a vector."""
    pa = require()
    base = dtype.base if dtype.shape else dtype
    kind = pa.from_numpy_dtype(base)
    for size in reversed(dtype.shape):
        kind = pa.list_(kind, size)
    return kind


def column_to_arrow(values: np.ndarray, dtype: np.dtype) -> Any:
    """One field's rows (shape (rows, *dtype.shape), the field's base dtype) as an Arrow array.

    Contiguous numeric data is wrapped without a copy, and the array keeps `values` alive for as
    long as it exists; bool data is packed into bits (a copy)."""
    pa = require()
    base = dtype.base if dtype.shape else dtype
    flat = np.ascontiguousarray(values).reshape(-1)
    if base.kind == "b":
        array = pa.array(flat, type=pa.bool_())
    else:
        array = pa.Array.from_buffers(pa.from_numpy_dtype(base), flat.shape[0], [None, pa.py_buffer(flat)])
    for size in reversed(dtype.shape):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return array


def empty_table(infos: Sequence[ComponentInfo], leading: Sequence[tuple[str, np.dtype]] = ()) -> Any:
    """A table with no rows and the schema of these components (after `leading` columns)."""
    pa = require()
    fields = [pa.field(name, arrow_type(dtype), nullable=False) for name, dtype in leading]
    fields.append(pa.field("entity", pa.int64(), nullable=False))
    fields += [pa.field(name, arrow_type(dtype), nullable=False)
               for name, dtype in zip(column_names(infos), _dtypes(infos), strict=True)]
    return pa.schema(fields).empty_table()


def query_to_arrow(infos: Sequence[ComponentInfo], batches: Iterable[Any], copy: bool = False) -> Any:
    """The rows of these batches (one per table; `batch.rows` selects rows when not None) as a
    pyarrow.Table: "entity", then "Component.field" for every field of `infos`."""
    pa = require()
    parts: list[list[np.ndarray]] = []   # per batch: entity ids, then every field's rows
    views = True                          # parts are views of the world's columns
    for batch in batches:
        columns = [batch.entities]
        for info in infos:
            if not info.is_tag:
                columns += list(batch[info.cls])
        if batch.rows is not None:
            columns, views = [column[batch.rows] for column in columns], False   # a gather: a copy
        parts.append(columns)
    if not parts:
        return empty_table(infos)
    dtypes = [np.dtype(np.int64), *_dtypes(infos)]
    names = ["entity", *column_names(infos)]
    arrays = []
    for k, dtype in enumerate(dtypes):
        if len(parts) == 1:
            values = parts[0][k].copy() if copy and views else parts[0][k]
        else:
            values = np.concatenate([part[k] for part in parts])
        arrays.append(column_to_arrow(values, dtype))
    schema = pa.schema([pa.field(name, array.type, nullable=False) for name, array in zip(names, arrays, strict=True)])
    return pa.Table.from_arrays(arrays, schema=schema)


def _dtypes(infos: Sequence[ComponentInfo]) -> list[np.dtype]:
    return [dtype for info in infos for dtype in info.fields.values()]
