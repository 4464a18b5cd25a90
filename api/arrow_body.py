"""The batch body as an Arrow IPC stream (`Content-Type: application/vnd.apache.arrow.stream`) to the scorer's columns.

A row per basket, the columns named as the JSON body's basket fields, and `lines` a list of structs with the line
fields. The rules are the JSON body's, from the same definitions (`api.body`):

- a column takes the Arrow types that hold what its field's JSON value may be (`COLUMN_TYPES`: any integer width for
  an integer, any string layout or a dictionary of strings for a string, date32/date64 as well for SHOP_DATE, ...),
  and the `null` type, read as a null in every row;
- its values are checked against the field's type in `DecodedBasket` / `DecodedLine` (bounds, closed domains, nulls),
  then by `accepted_columns` (SHOP_DATE's forms, SHOP_WEEKDAY, the segment merges, the code patterns);
- a body that does not pass is validated basket by basket by the pydantic models (`validated_rows`), from the values
  JSON would have given: the same reading, or the same 422s at ("body", "baskets", i, ...), as the same baskets sent
  as JSON.

What belongs to the stream rather than to one basket's value is refused with a 422 whose `loc` holds no index,
before a batch is decoded: a body pyarrow cannot read as one stream (`arrow_invalid`, at ("body",)); from the
messages' metadata (`_scan`), a message of a metadata version before V5, compressed buffers and dictionary deltas
(`arrow_unsupported`: a few megabytes of ZSTD can declare gigabytes, where an uncompressed stream holds at most what
RETAIL_MAX_BODY_BYTES lets in; a delta keeps a grown copy of the dictionary per batch) and more record batches than
RETAIL_MAX_BATCH_BASKETS (`too_long`); and per column (at ("body", "baskets", name), or ("body", "baskets", "lines",
name) for a line field), a column of a type not accepted (`arrow_type`), one the body has no field for
(`extra_forbidden`), a name used twice (`arrow_duplicate_column`) and a required column left out (`missing`). The
batch limit (RETAIL_MAX_BATCH_BASKETS) is applied from the batches' row counts before they are read, the line limit
(RETAIL_MAX_BASKET_LINES) from the list offsets before any value is read; a null list's lines are never read, and
null lists may not cover more lines than the limits allow a batch. A column whose data is not valid Arrow (checked in
full once its batches are combined) is an `arrow_invalid` naming it. A 422 from the models repeats at most
ECHOED_CHARACTERS of a string.
"""

from __future__ import annotations

import struct
import typing
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import GenericAlias
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from fastapi.exceptions import RequestValidationError

from api.body import (
    HEADER_FIELDS,
    DecodedBasket,
    DecodedLine,
    ParsedBaskets,
    accepted_columns,
    basket_errors,
    media_type,
    validated_rows,
    within_batch_limit,
    within_line_limit,
)
from ml.compiled import LINE_FIELDS

ARROW_STREAM_CONTENT_TYPE = "application/vnd.apache.arrow.stream"
"""The IANA media type of the Arrow IPC streaming format."""
BASKETS = ("body", "baskets")
LINES = (*BASKETS, "lines")


def is_arrow_stream(content_type: str | None) -> bool:
    """Whether a Content-Type names the Arrow IPC streaming format (in any case, with any parameters)."""
    return media_type(content_type) == ARROW_STREAM_CONTENT_TYPE


# ---- which Arrow types a field's column takes ---------------------------------------------------------------------

def _is_string(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def _is_text(kind: pa.DataType) -> bool:
    return _is_string(kind) or bool(pa.types.is_dictionary(kind) and _is_string(kind.value_type))


def _is_real(kind: pa.DataType) -> bool:
    return bool(pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind))


def _is_date(kind: pa.DataType) -> bool:
    return bool(pa.types.is_date32(kind) or pa.types.is_date64(kind))


@dataclass(frozen=True)
class _ColumnType:
    """What a JSON value's type becomes as an Arrow column: the types accepted, in words and as a test."""

    words: str
    accepts: Callable[[pa.DataType], bool]


_INTEGER = _ColumnType("int8, int16, int32, int64, uint8, uint16, uint32 or uint64", pa.types.is_integer)
_REAL = _ColumnType("float16, float32, float64, any integer type or decimal", _is_real)
_TEXT = _ColumnType("string, large_string, string_view or a dictionary of one of them", _is_text)
_DATE = _ColumnType("date32 or date64", _is_date)
_OF_JSON_TYPE = {msgspec.inspect.IntType: _INTEGER, msgspec.inspect.FloatType: _REAL,
                 msgspec.inspect.StrType: _TEXT, msgspec.inspect.LiteralType: _TEXT}
_AS_DATES = {"SHOP_DATE"}
"""Fields whose model reads a date: their columns may be Arrow dates as well."""


@dataclass(frozen=True)
class _Field:
    """A field of the body as an Arrow column: the types its column may have, whether it may be left out or be
    null, and the type its values are checked against (the fast-path struct field's, as a list of them; None where
    a column of an accepted type holds nothing else: a string or integer without bounds or domain)."""

    name: str
    types: tuple[_ColumnType, ...]
    required: bool
    nullable: bool
    checked: Any

    def accepts(self, kind: pa.DataType) -> bool:
        return bool(pa.types.is_null(kind)) or any(t.accepts(kind) for t in self.types)

    def holds(self, column: pa.Array) -> bool:
        """Whether every value of a column (`_normalized`) has the field's type, bounds and domain: msgspec checks
        each distinct value against the struct's field, as it checks the JSON body's."""
        if pa.types.is_null(column.type):
            return self.nullable or len(column) == 0
        dictionary = column.dictionary if pa.types.is_dictionary(column.type) else None
        nulls = column.null_count + (0 if dictionary is None else dictionary.null_count)
        if nulls and not self.nullable:
            return False
        if self.checked is None:
            return True
        try:
            msgspec.convert(pc.unique(column).to_pylist(), self.checked, strict=True)
        except msgspec.ValidationError:
            return False
        return True

    def faults(self, column: pa.Array) -> np.ndarray:
        """Which rows of a column (`_normalized`) `holds` would refuse: each distinct value checked once."""
        if pa.types.is_null(column.type):
            return np.full(len(column), not self.nullable)
        encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
        values = encoded.dictionary.to_pylist()
        refused = [not self.nullable if value is None else not self._fits(value) for value in values]
        indices = pc.cast(encoded.indices, pa.int64()).fill_null(len(values)).to_numpy()
        rows: np.ndarray = np.asarray([*refused, not self.nullable])[indices]
        return rows

    def _fits(self, value: Any) -> bool:
        if self.checked is None:
            return True
        try:
            msgspec.convert([value], self.checked, strict=True)
        except msgspec.ValidationError:
            return False
        return True

    @property
    def words(self) -> str:
        return "; or ".join(t.words for t in self.types)

    @property
    def real(self) -> bool:
        """Whether the field is a float (any number type's column; the scorer takes its values as float64)."""
        return _REAL in self.types


def _struct_fields(struct_type: type[msgspec.Struct]) -> tuple[msgspec.inspect.Field, ...]:
    info = msgspec.inspect.type_info(struct_type)
    if not isinstance(info, msgspec.inspect.StructType):
        raise TypeError(f"{struct_type.__name__} is not a msgspec struct")
    return info.fields


def _constrained(member: msgspec.inspect.Type) -> bool:
    """Whether a JSON value of this type can be refused for more than its type: a domain, a bound or a pattern."""
    limits = ("gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length", "pattern")
    return isinstance(member, msgspec.inspect.LiteralType) or any(getattr(member, limit, None) is not None
                                                                  for limit in limits)


def _fields(struct_type: type[msgspec.Struct]) -> dict[str, _Field]:
    """The fields of a fast-path struct (but lists of structs) as Arrow columns."""
    hints = typing.get_type_hints(struct_type, include_extras=True)
    fields = {}
    for field in _struct_fields(struct_type):
        members = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        if any(isinstance(member, msgspec.inspect.ListType) for member in members):
            continue
        values = [member for member in members if not isinstance(member, msgspec.inspect.NoneType)]
        types = tuple(_OF_JSON_TYPE[type(member)] for member in values) + ((_DATE,) if field.name in _AS_DATES else ())
        checked = GenericAlias(list, (hints[field.name],)) if any(map(_constrained, values)) else None
        fields[field.name] = _Field(field.name, types, field.required, len(values) < len(members), checked)
    return fields


HEADER_COLUMNS = _fields(DecodedBasket)
LINE_COLUMNS = _fields(DecodedLine)
_LINES_TYPE = next(field.type for field in _struct_fields(DecodedBasket) if field.name == "lines")
if not isinstance(_LINES_TYPE, msgspec.inspect.ListType):
    raise TypeError("DecodedBasket.lines is not a list")
MIN_LINES, MAX_LINES = _LINES_TYPE.min_length or 0, _LINES_TYPE.max_length
COLUMN_TYPES = {**{name: field.words for name, field in HEADER_COLUMNS.items()},
                "lines": "list or large_list of struct (the line fields)",
                **{f"lines.{name}": field.words for name, field in LINE_COLUMNS.items()}}
"""The Arrow types each column takes, in words (the docs and the OpenAPI document show them); any column may also
be of the `null` type."""


def _is_lines(kind: pa.DataType) -> bool:
    return bool((pa.types.is_list(kind) or pa.types.is_large_list(kind))
                and (pa.types.is_struct(kind.value_type) or pa.types.is_null(kind.value_type)))


# ---- the stream ---------------------------------------------------------------------------------------------------

def _error(kind: str, loc: tuple[str, ...], msg: str, value: Any = None, **ctx: Any) -> dict[str, Any]:
    return {"type": kind, "loc": loc, "msg": msg, "input": value, **({"ctx": ctx} if ctx else {})}


def _unreadable(error: Exception | str) -> RequestValidationError:
    return RequestValidationError([_error("arrow_invalid", ("body",), "Arrow IPC stream decode error",
                                          error=str(error))])


_MESSAGE_HEADER_TYPE, _MESSAGE_HEADER = 1, 2  # the slots of Message.header's union (format/Message.fbs)
_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3  # MessageHeader's members
_DICTIONARY_DATA, _DICTIONARY_IS_DELTA = 1, 2  # the slots of DictionaryBatch.data and .isDelta
_RECORD_BATCH_LENGTH, _RECORD_BATCH_COMPRESSION = 0, 3  # the slots of RecordBatch.length and .compression


def _unpacked(layout: str, data: bytes, at: int) -> int:
    if at < 0:
        raise ValueError(f"flatbuffer offset {at} before the message")
    value: int = struct.unpack_from(layout, data, at)[0]
    return value


def _field_at(data: bytes, table: int, slot: int) -> int | None:
    """Where a field of a flatbuffer table is, from the slot of its vtable; None when the field is not set."""
    vtable = table - _unpacked("<i", data, table)
    if 4 + 2 * slot >= _unpacked("<H", data, vtable):
        return None
    offset = _unpacked("<H", data, vtable + 4 + 2 * slot)
    return table + offset if offset else None


def _table_at(data: bytes, table: int, slot: int) -> int | None:
    """The table a field of a flatbuffer table refers to; None when the field is not set."""
    at = _field_at(data, table, slot)
    return None if at is None else at + _unpacked("<I", data, at)


@dataclass(frozen=True)
class _BatchMessage:
    """What the metadata of a record or dictionary batch message says before pyarrow decodes its body: whether its
    buffers are compressed, whether it is a dictionary delta, and a record batch's row count."""

    dictionary: bool
    compressed: bool
    delta: bool
    rows: int


def _batch_message(metadata: bytes) -> _BatchMessage | None:
    """A record or dictionary batch message's fields (format/Message.fbs), read from its flatbuffer; None for another
    message. ValueError or struct.error for metadata that is no flatbuffer. pyarrow has no API for these fields."""
    message = _unpacked("<I", metadata, 0)
    kind_at = _field_at(metadata, message, _MESSAGE_HEADER_TYPE)
    kind = 0 if kind_at is None else _unpacked("<B", metadata, kind_at)
    if kind not in (_DICTIONARY_BATCH, _RECORD_BATCH):
        return None
    header = _table_at(metadata, message, _MESSAGE_HEADER)
    batch, delta = header, False
    if header is not None and kind == _DICTIONARY_BATCH:
        batch = _table_at(metadata, header, _DICTIONARY_DATA)
        delta_at = _field_at(metadata, header, _DICTIONARY_IS_DELTA)
        delta = delta_at is not None and _unpacked("<B", metadata, delta_at) != 0
    length_at = None if batch is None else _field_at(metadata, batch, _RECORD_BATCH_LENGTH)
    return _BatchMessage(
        dictionary=kind == _DICTIONARY_BATCH,
        compressed=batch is not None and _field_at(metadata, batch, _RECORD_BATCH_COMPRESSION) is not None,
        delta=delta,
        rows=0 if length_at is None else _unpacked("<q", metadata, length_at))


def compressed(metadata: bytes) -> bool:
    """Whether an IPC message is a record or dictionary batch with compressed buffers: its RecordBatch table's
    `compression` field is set (format/Message.fbs). Read from the message's flatbuffer, so before pyarrow decodes,
    and decompresses, the batch. ValueError or struct.error for metadata that is no flatbuffer."""
    batch = _batch_message(metadata)
    return batch is not None and batch.compressed


def _unsupported(msg: str) -> RequestValidationError:
    return RequestValidationError([_error("arrow_unsupported", ("body",), msg)])


def _scan(buffer: pa.Buffer, max_baskets: int) -> int:
    """The number of baskets (rows) the stream's record batches hold, from the messages' metadata alone; refused are
    a body holding a message of a metadata version before V5 (Arrow C++ decompresses a V4 batch named compressed by
    its custom metadata, which the compression field does not show), compressed batches, dictionary deltas (each
    record batch would keep its own grown copy of the dictionary), more record batches than `max_baskets`, or bytes
    after the end of its stream (a second stream, say, which a reader would silently leave unread)."""
    source = pa.BufferReader(buffer)
    rows = batches = 0
    try:
        messages = ipc.MessageReader.open_stream(source)
        while True:
            try:
                message = messages.read_next_message()
            except StopIteration:
                break
            if message.metadata_version != ipc.MetadataVersion.V5:
                raise _unsupported(f"an Arrow IPC message of metadata version {message.metadata_version.name}: "
                                   "send V5, which every writer since Arrow 1.0 writes")
            batch = _batch_message(message.metadata.to_pybytes())
            if batch is None:
                continue
            if batch.compressed:
                raise _unsupported("compressed Arrow IPC buffers (LZ4, ZSTD) are not accepted: send the stream "
                                   "uncompressed")
            if batch.delta:
                raise _unsupported("dictionary deltas are not accepted: send each batch's dictionaries whole "
                                   "(IpcWriteOptions(emit_dictionary_deltas=False), pyarrow's default)")
            if not batch.dictionary:
                batches, rows = batches + 1, rows + batch.rows
                if batches > max_baskets:
                    raise RequestValidationError([_error(
                        "too_long", BASKETS, f"more than {max_baskets} record batches; a stream holds at most "
                        f"{max_baskets} (RETAIL_MAX_BATCH_BASKETS), one basket a batch or more")])
    except (pa.ArrowException, OSError, ValueError, struct.error) as error:
        raise _unreadable(error) from error
    if source.tell() != buffer.size:
        raise _unreadable(f"{buffer.size - source.tell()} bytes after the end of the stream: send one stream")
    return rows


def _schema_errors(schema: pa.Schema) -> list[dict[str, Any]]:
    """The columns' problems: unknown, repeated, of a type not accepted, or required and missing; lines' fields too."""
    errors = _column_errors(schema, HEADER_COLUMNS, BASKETS, extra={"lines"})
    if "lines" not in schema.names:
        return [*errors, _error("missing", LINES, "Field required")]
    kind = schema.field("lines").type if schema.names.count("lines") == 1 else pa.null()
    if pa.types.is_null(kind):
        return errors
    if not _is_lines(kind):
        return [*errors, _error("arrow_type", LINES, f"an Arrow {kind} column; lines takes {COLUMN_TYPES['lines']}",
                                str(kind), expected=COLUMN_TYPES["lines"])]
    if pa.types.is_struct(kind.value_type):
        errors += _column_errors(pa.schema(list(kind.value_type)), LINE_COLUMNS, LINES)
    return errors


def _column_errors(schema: pa.Schema, fields: Mapping[str, _Field], loc: tuple[str, ...],
                   extra: set[str] | None = None) -> list[dict[str, Any]]:
    known = {*fields, *(extra or set())}
    errors = [_error("arrow_duplicate_column", (*loc, name), f"{count} columns named {name}: send one", name)
              for name, count in Counter(schema.names).items() if count > 1]
    for column in schema:
        field = fields.get(column.name)
        if column.name not in known:
            errors.append(_error("extra_forbidden", (*loc, column.name), "Extra inputs are not permitted",
                                 str(column.type)))
        elif field is not None and not field.accepts(column.type):
            errors.append(_error("arrow_type", (*loc, column.name),
                                 f"an Arrow {column.type} column; {column.name} takes {field.words}",
                                 str(column.type), expected=field.words))
    errors += [_error("missing", (*loc, name), "Field required") for name, field in fields.items()
               if field.required and name not in schema.names]
    return errors


def _table(body: bytes, max_baskets: int) -> pa.Table:
    """The stream's batches as one table, once its schema passed and its baskets are within `max_baskets`; each
    batch checked cheaply as it is read (buffers' sizes, first and last offsets), the columns fully once combined
    (`_checked`)."""
    buffer = pa.py_buffer(body)
    rows = _scan(buffer, max_baskets)
    try:
        reader = ipc.open_stream(buffer)
    except (pa.ArrowException, OSError) as error:
        raise _unreadable(error) from error
    errors = _schema_errors(reader.schema)
    if errors:
        raise RequestValidationError(errors)
    within_batch_limit(rows, max_baskets)
    batches = []
    try:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            batch.validate()
            batches.append(batch)
    except (pa.ArrowException, OSError) as error:
        raise _unreadable(error) from error
    return pa.Table.from_batches(batches, schema=reader.schema)


# ---- values -------------------------------------------------------------------------------------------------------

def _checked(column: pa.ChunkedArray, loc: tuple[str, ...]) -> pa.Array:
    """A column's chunks as one array, fully validated (offsets in bounds and increasing, dictionary indices in
    range, strings UTF-8, date64 values whole days), once however many batches share its dictionary; else a 422
    naming the column."""
    try:
        single = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        single.validate(full=True)
    except pa.ArrowException as error:
        raise RequestValidationError([_error("arrow_invalid", loc, f"the Arrow {column.type} column {loc[-1]} "
                                             "does not hold valid data", str(column.type), error=str(error))]
                                     ) from error
    return single


def _normalized(column: pa.Array, field: _Field) -> pa.Array:
    """A column as the values JSON would give: a date as its YYYY-MM-DD text (`_iso_dates`), a floating-point or
    decimal number of a `real` field as a float64 (a decimal read from its text, correctly rounded as JSON's number is:
    Arrow's cast of a decimal to float64 is not, 0.35 becoming 0.35000000000000003); integers, a real field's included
    (JSON's integer reaches the models as one, and a 422 echoes it as sent: `_Baskets.vouched` gives the scorer
    floats), strings and dictionaries of strings as they are. (Dictionary-encoding plain strings here, for one Python
    string per distinct value, saved in the featurizer's lookups about what it cost: a 1,000-basket body read and
    encoded in 9.00 and 8.27 ms with it, 9.19 and 8.35 ms without, in two paired runs.)"""
    if _is_date(column.type):
        return _iso_dates(column)
    if field.real and pa.types.is_decimal(column.type):  # through its text: the float JSON reads for the same text
        return pc.cast(pc.cast(column, pa.string()), pa.float64())
    if field.real and pa.types.is_floating(column.type) and column.type != pa.float64():
        return pc.cast(column, pa.float64())
    return column


def _scored(columns: Mapping[str, pa.Array], fields: Mapping[str, _Field]) -> dict[str, list[Any]]:
    """The values of normalized columns that hold (`_Field.holds`) that the scorer takes otherwise than the models:
    a real field's integers, as floats, as the JSON fast path decodes them (exactly, within the field's bounds)."""
    return {name: _values(pc.cast(column, pa.float64())) for name, column in columns.items()
            if fields[name].real and pa.types.is_integer(column.type)}


_MS_PER_DAY = 86_400_000


def _iso_dates(column: pa.Array) -> pa.Array:
    """Arrow dates as YYYY-MM-DD text, a date outside years 1 to 9999 as the longer text of its true year (Arrow's
    strftime, or a cast of a date64 to date32, would wrap it round to another date): JSON's text for the same date,
    which the models refuse."""
    if pa.types.is_date64(column.type):  # whole days in milliseconds
        days = column.cast(pa.int64()).fill_null(0).to_numpy() // _MS_PER_DAY
    else:
        days = column.cast(pa.int32()).fill_null(0).to_numpy().astype(np.int64)
    text = np.datetime_as_string(days.astype("datetime64[D]"), unit="D")
    return pa.array(text, pa.string(), mask=column.is_null().to_numpy(zero_copy_only=False))


def _values(column: pa.Array) -> list[Any]:
    """A normalized column's values as Python objects (int, float, str or None). A dictionary's values are made
    once and shared by the rows that use them."""
    kind = column.type
    if pa.types.is_null(kind):
        return [None] * len(column)
    if pa.types.is_dictionary(kind):  # indices into the values, a null as one more value
        values = np.asarray([*_values(column.dictionary), None], dtype=object)
        indices = column.indices if column.null_count == 0 else pc.cast(column.indices, pa.int64()).fill_null(
            len(values) - 1)
        return values[indices.to_numpy()].tolist()  # type: ignore[no-any-return]
    if column.null_count == 0 and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return column.to_numpy().tolist()  # type: ignore[no-any-return]
    return column.to_pylist()  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Baskets:
    """A table's baskets as Python values: a list per column sent, the lines' offsets (basket i's lines at
    offsets[i]:offsets[i + 1]), which baskets' lines and which lines are not null, and whether every column holds
    only values of its field's type, bounds and domain (`_Field.holds`) with no null lines."""

    header: dict[str, list[Any]]
    lines: dict[str, list[Any]]
    scored_header: dict[str, list[Any]]
    scored_lines: dict[str, list[Any]]
    """The header and line columns the scorer takes otherwise (`_scored`); empty unless `holds`. The models, and so
    a 422's echo, see `header` and `lines`: the values as sent."""
    offsets: list[int]
    lists_valid: list[bool]
    lines_valid: list[bool]
    holds: bool
    faulty: np.ndarray | None
    """Which baskets hold a value `_Field.holds` refuses, a null list or line, or too few or many lines; None when
    `holds`."""

    def vouched(self) -> ParsedBaskets | None:
        """The scorer's reading when the columns hold and the remaining rules hold (`accepted_columns`); else None."""
        if not self.holds:
            return None
        header = {name: self.header.get(name) or [None] * len(self.lists_valid) for name in HEADER_FIELDS}
        lines = {name: self.lines[name] for name in LINE_FIELDS}
        return accepted_columns(header | self.scored_header, lines | self.scored_lines, self.offsets)

    def flagged(self) -> list[int]:
        """The baskets the fast path would not vouch for one by one: `faulty`, or refused by `accepted_columns`."""
        faulty = np.zeros(len(self.lists_valid), bool) if self.faulty is None else self.faulty
        flagged = []
        for i, fault in enumerate(faulty.tolist()):
            if not fault:
                start, end = self.offsets[i], self.offsets[i + 1]
                header = {name: [self.header[name][i]] if name in self.header else [None] for name in HEADER_FIELDS}
                lines = {name: self.lines[name][start:end] for name in LINE_FIELDS}
                fault = accepted_columns(header, lines, [0, end - start]) is None
            if fault:
                flagged.append(i)
        return flagged

    def row(self, i: int) -> dict[str, Any]:
        """Basket i as JSON would decode it (the columns not sent left out), for the models."""
        row = {name: values[i] for name, values in self.header.items()}
        lines = range(self.offsets[i], self.offsets[i + 1])
        row["lines"] = [{name: values[j] for name, values in self.lines.items()} if self.lines_valid[j] else None
                        for j in lines] if self.lists_valid[i] else None
        return row


def _lists(column: pa.ChunkedArray, max_baskets: int, max_lines: int) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The `lines` column as its lines (the non-null lists' items; a null list's segment is left unread), the
    offsets of each basket's lines in them and which baskets' lists are not null; a 422 for a basket over `max_lines`
    lines (from the offsets), and for null lists covering more lines than `max_baskets` baskets of `max_lines` may
    hold (null-typed lines cost nothing to send; combined, they could overflow the offsets)."""
    counts, valid, span = [], [], 0
    for chunk in column.chunks:
        offsets = chunk.offsets.to_numpy().astype(np.int64)
        valid.append(chunk.is_valid().to_numpy(zero_copy_only=False))
        counts.append(np.where(valid[-1], np.diff(offsets), 0))
        span += int(offsets[-1] - offsets[0])
    lists_valid, lengths = np.concatenate(valid), np.concatenate(counts)
    within_line_limit(lengths.tolist(), max_lines, BASKETS)
    if span > max_baskets * max_lines:
        raise _unsupported(f"the lines column's lists span {span} lines, more than {max_baskets} baskets of "
                           f"{max_lines} lines hold: a null list may not cover lines")
    items = _checked(column, LINES).flatten()
    return items, np.concatenate([[0], np.cumsum(lengths)]), lists_valid


def _baskets(table: pa.Table, max_baskets: int, max_lines: int) -> _Baskets:
    """The table's values, once the line limits hold (from the list offsets alone); the batch limit held before the
    batches were read (`_table`)."""
    header = {name: _normalized(_checked(table.column(name), (*BASKETS, name)), HEADER_COLUMNS[name])
              for name in table.column_names if name != "lines"}
    holds = all(HEADER_COLUMNS[name].holds(column) for name, column in header.items())
    column = table.column("lines")
    if pa.types.is_null(column.type) or table.num_rows == 0:
        items, offsets, lists_valid = None, np.zeros(table.num_rows + 1, np.int64), np.zeros(table.num_rows, bool)
    else:
        items, offsets, lists_valid = _lists(column, max_baskets, max_lines)
    if items is None or pa.types.is_null(items.type):
        length = 0 if items is None else len(items)
        lines = {name: pa.nulls(length) for name in LINE_FIELDS}
        lines_valid = np.zeros(length, bool)
    else:
        lines = {name: _normalized(items.field(name), LINE_COLUMNS[name]) for name in LINE_FIELDS}
        lines_valid = items.is_valid().to_numpy(zero_copy_only=False)
    counts = np.diff(offsets)
    holds = (holds and bool(lists_valid.all() and lines_valid.all()) and table.num_rows > 0
             and MIN_LINES <= counts.min() and (MAX_LINES is None or counts.max() <= MAX_LINES)
             and all(LINE_COLUMNS[name].holds(column) for name, column in lines.items()))
    faulty = None if holds else _faulty(header, lines, offsets, lists_valid, lines_valid)
    return _Baskets({name: _values(column) for name, column in header.items()},
                    {name: _values(column) for name, column in lines.items()},
                    _scored(header, HEADER_COLUMNS) if holds else {}, _scored(lines, LINE_COLUMNS) if holds else {},
                    offsets.tolist(), lists_valid.tolist(), lines_valid.tolist(), holds, faulty)


def _faulty(header: Mapping[str, pa.Array], lines: Mapping[str, pa.Array], offsets: np.ndarray,
            lists_valid: np.ndarray, lines_valid: np.ndarray) -> np.ndarray:
    """Which baskets hold a value of a type, bound or domain not the field's, a null list or line, or a number of
    lines out of bounds: `_Baskets.holds`'s checks, basket by basket."""
    counts = np.diff(offsets)
    faulty = ~lists_valid | (counts < MIN_LINES) | (counts > (MAX_LINES if MAX_LINES is not None else counts.max()))
    for name, column in header.items():
        faulty |= HEADER_COLUMNS[name].faults(column)
    line_faults = ~lines_valid
    for name, column in lines.items():
        line_faults |= LINE_COLUMNS[name].faults(column)
    before = np.concatenate([[0], np.cumsum(line_faults)])  # faulty lines before each offset
    with_faulty_lines: np.ndarray = faulty | (before[offsets[1:]] > before[offsets[:-1]])
    return with_faulty_lines


def parse_arrow_batch(body: bytes, max_baskets: int, max_lines: int) -> ParsedBaskets:
    """The baskets of an Arrow IPC stream, the body of POST /v1/predict/batch sent as ARROW_STREAM_CONTENT_TYPE;
    a 422 for a body over `max_baskets` baskets or a basket over `max_lines` lines, as for JSON."""
    if not body:  # as FastAPI answers an empty JSON body
        raise RequestValidationError([_error("missing", ("body",), "Field required")])
    try:
        baskets = _baskets(_table(body, max_baskets), max_baskets, max_lines)
    except pa.ArrowException as error:  # what the checks above have not foreseen: the stream's, not a server error
        raise _unreadable(error) from error
    vouched = baskets.vouched()
    if vouched is not None:
        return vouched
    refused = basket_errors(baskets.flagged(), baskets.row, LISTED_BASKETS, LISTED_ERRORS)
    if refused:
        raise RequestValidationError(_shortened(refused))
    return validated_rows(map(baskets.row, range(len(baskets.lists_valid))))  # a form the fast path is stricter about


LISTED_BASKETS, LISTED_ERRORS = 20, 1_000
"""The most refused baskets a 422 lists the errors of, and the most errors it lists; where more are left out, one
`too_many_errors` entry at ("body", "baskets") says how many. A dictionary makes a value cheap to repeat in every line,
and each line's error costs the models' validation and the answer's size."""


ECHOED_CHARACTERS = 200
"""The most characters of a string a 422's `input` repeats: a dictionary value is sent once and may be referenced by
every line, where each error would repeat it."""


def _shortened(value: Any) -> Any:
    """Errors (or a part of them) with every string longer than ECHOED_CHARACTERS cut to that many and an ellipsis."""
    if isinstance(value, str):
        return value if len(value) <= ECHOED_CHARACTERS else value[:ECHOED_CHARACTERS] + "\u2026"
    if isinstance(value, dict):
        return {key: _shortened(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(map(_shortened, value))
    return value
