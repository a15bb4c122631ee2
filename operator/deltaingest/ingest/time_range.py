"""Dates and timestamps a Delta table can hold: the years 1 to 9999, at any depth. Pure: no I/O.

Arrow holds dates and times of any 32 or 64 bit count, and an Arrow stream may send them; JSON cannot (its
ISO-8601 strings stop at 9999). delta-rs panics computing file statistics for a date past chrono's range
(the whole commit fails, other requests of its group with it), and Spark and most readers stop at 9999 too.
So the Arrow path refuses, row by row, what the JSON path could not express: the same rows, the same answer.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

_FIRST = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
_LAST = dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
OUT_OF_RANGE = "a date or time outside the years 1 to 9999"


def out_of_range(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """Per row, whether ``column`` holds a date or timestamp outside the years 1 to 9999 anywhere within it
    (struct fields, list items, map keys and values); None when no row does."""
    if not _has_times(column.type):
        return None
    mask = pa.chunked_array([_outside(chunk) for chunk in column.chunks], pa.bool_())
    return mask if pc.any(mask).as_py() else None


def _has_times(dtype: pa.DataType) -> bool:
    if pa.types.is_date32(dtype) or pa.types.is_timestamp(dtype):
        return True
    return any(_has_times(dtype.field(i).type) for i in range(dtype.num_fields))


def _outside(array: pa.Array) -> pa.Array:
    """Per slot of ``array``, whether it holds an out-of-range value (false for nulls)."""
    dtype = array.type
    if not _has_times(dtype):
        return pc.fill_null(pa.nulls(len(array), pa.bool_()), False)
    if pa.types.is_struct(dtype):
        result = pc.fill_null(pa.nulls(len(array), pa.bool_()), False)
        for child in array.flatten():  # flatten() applies the struct's own nulls to its fields
            result = pc.or_(result, _outside(child))
        return result
    if isinstance(array, pa.MapArray):
        entries = pa.struct([dtype.key_field, dtype.item_field])
        return _outside(array.cast(pa.list_(pa.field("entries", entries, nullable=False))))
    if not (pa.types.is_date32(dtype) or pa.types.is_timestamp(dtype)):  # a list: which slots hold one
        holders = pc.filter(pc.list_parent_indices(array), _outside(array.flatten()))
        return pc.is_in(pa.array(range(len(array)), pa.int64()), value_set=pc.cast(holders, pa.int64()))
    if pa.types.is_date32(dtype):
        low, high = pa.scalar(_FIRST.date(), dtype), pa.scalar(_LAST.date(), dtype)
    elif dtype.unit == "ns":  # 64-bit nanoseconds span only the years 1677 to 2262
        return pc.fill_null(pa.nulls(len(array), pa.bool_()), False)
    else:
        low, high = _bound(_FIRST, dtype), _bound(_LAST, dtype)
    return pc.fill_null(pc.or_(pc.less(array, low), pc.greater(array, high)), False)


def _bound(moment: dt.datetime, dtype: pa.TimestampType) -> pa.Scalar:
    micros = (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    return pa.scalar(micros // {"s": 10**6, "ms": 10**3, "us": 1}[dtype.unit], dtype)
