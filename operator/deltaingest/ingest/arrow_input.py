"""An Arrow IPC stream from a client, read and checked before any of its strings is used. Pure: no I/O.

Arrow's reader takes names and metadata as bytes and checks neither, and pyarrow decodes them as UTF-8 only
when asked: a stream whose field name is not UTF-8 reads fine and fails wherever the name is first used (a
500, before). So every name and metadata entry is checked here, at every depth, before anything else reads
the schema; the buffers are validated fully (invalid UTF-8 in values, dictionary indices, offsets), and
dictionary-encoded columns are decoded, so the rest of the decoder sees plain columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from deltaingest.ingest.errors import BadRequest

# Every error Arrow raises for bad data, including OSError ("Invalid IPC stream") and out-of-memory for
# absurd declared lengths: all of them mean the body is wrong, not the writer.
ARROW_ERRORS = (pa.ArrowException, OSError, MemoryError)


def read_arrow_stream(data: bytes) -> pa.Table:
    """The stream's table, checked; ``BadRequest`` naming the field path for what the Arrow format forbids."""
    try:
        reader = pa.ipc.open_stream(data)
        check_schema(reader.schema)
        table = reader.read_all()
        # The IPC reader trusts the buffers: full validation catches invalid UTF-8 in strings (dictionaries
        # included) and offsets or indices out of bounds, which would otherwise be committed and break every
        # reader of the table.
        table.validate(full=True)
    except ARROW_ERRORS as err:
        raise BadRequest(f"body is not an Arrow IPC stream: {err}") from None
    return _decode_dictionaries(table.replace_schema_metadata(None))


def check_schema(schema: pa.Schema) -> None:
    """Refuse a schema with a name or a metadata entry that is not UTF-8, as the Arrow format requires."""
    _check_metadata(schema.metadata, "the schema's metadata")
    for index in range(len(schema)):
        _check_field(schema.field(index), prefix="")


def _check_field(field: pa.Field, *, prefix: str) -> None:
    try:
        name = field.name
    except UnicodeDecodeError as err:
        path = prefix + _shown(err.object)
        raise BadRequest(f"field '{path}': the name is not UTF-8", field=path) from None
    path = prefix + name
    _check_metadata(field.metadata, f"field '{path}': its metadata")
    if isinstance(field.type, pa.TimestampType) and field.type.tz is not None:
        _check_time_zone(field.type, path)
    for child in _children(field.type):
        _check_field(child, prefix=f"{path}.")


def _children(dtype: pa.DataType) -> Iterator[pa.Field]:
    """The fields inside a type: struct and union members, list items, a map's entries (key and value
    within), run-end encoding's parts, and those of a dictionary's values or an extension's storage."""
    if isinstance(dtype, pa.DictionaryType):
        dtype = dtype.value_type
    elif isinstance(dtype, pa.BaseExtensionType):
        dtype = dtype.storage_type
    for index in range(dtype.num_fields):
        yield dtype.field(index)


def _check_time_zone(dtype: pa.TimestampType, path: str) -> None:
    """Refuse a time zone Arrow cannot resolve: it fails only where a value is first shown or converted."""
    try:
        pc.cast(pa.array([0], dtype), pa.string())
    except ARROW_ERRORS as err:
        raise BadRequest(f"field '{path}': {err}", field=path) from None


def _check_metadata(metadata: Mapping[bytes, bytes] | None, where: str) -> None:
    for key, value in (metadata or {}).items():
        for part in (key, value):
            try:
                part.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"{where}: '{_shown(part)}' is not UTF-8") from None


def _shown(raw: bytes) -> str:
    """Bytes that are not UTF-8 as text a JSON error can carry: the bad bytes as ``\\xe9`` escapes."""
    return raw.decode("utf-8", "backslashreplace")


def _decode_dictionaries(table: pa.Table) -> pa.Table:
    """Top-level dictionary-encoded columns (pandas categoricals, say) as plain columns of their values."""
    for index, field in enumerate(table.schema):
        if isinstance(field.type, pa.DictionaryType):
            column = table.column(index)
            plain = pa.chunked_array([c.dictionary_decode() for c in column.chunks], field.type.value_type)
            table = table.set_column(index, field.with_type(field.type.value_type), plain)
    return table
