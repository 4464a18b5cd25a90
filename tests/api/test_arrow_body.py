"""The batch route's Arrow IPC stream body answers as the same baskets sent as JSON, and refuses what is not a stream.

The same 1,000 baskets as JSON and as Arrow (plain, dictionary-encoded, other widths and string layouts, dates,
several record batches, a Polars frame of lines grouped into baskets) give identical responses; a bad value (null,
out of bounds or domain, a malformed code, the header rules) gives the JSON body's 422, generated bodies included;
the stream's own problems (a column's type, a missing, unknown or repeated column, a truncated, concatenated or
compressed stream, too many baskets or lines) give a 4xx naming the column or the body, before any value is read;
crafted streams (a V4 batch compressed through its custom metadata, dictionary deltas, too many record batches, null
lists over many lines, a dictionary value repeated by every line's error, a date64 past date32's range) are refused
or read cheaply, the reviewer's reproductions bounded; past 20 refused baskets or 1,000 errors one entry counts the
rest; and the OpenAPI document lists the content type, which Schemathesis does not generate.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import struct
import tracemalloc

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pytest
import schemathesis
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, assume, given, settings
from schemathesis.generation import GenerationMode

from api import arrow_body
from api.app import create_app
from api.body import parse_batch
from api.schemas import EXAMPLE_BASKET
from bench.serve import sample_baskets
from tests.api.conftest import AUTH, api_settings
from tests.api.test_body import answer, mutated_baskets

pytestmark = pytest.mark.slow

BATCH = "/v1/predict/batch"
CODES = ("PROD_CODE", "PROD_CODE_10", "PROD_CODE_20", "PROD_CODE_30", "PROD_CODE_40")


def stream(data: pa.Table | list[pa.RecordBatch], schema: pa.Schema | None = None, **options) -> bytes:
    """An Arrow IPC stream of a table, or of record batches (of the first one's schema, or `schema`)."""
    batches = data.to_batches() if isinstance(data, pa.Table) else data
    schema = data.schema if isinstance(data, pa.Table) else schema or data[0].schema
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, schema, options=ipc.IpcWriteOptions(**options)) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def table(baskets: list[dict]) -> pa.Table:
    """The baskets as a table, a column per key any basket has (null where a basket has not: what JSON reads for
    a key left out of an optional field); pyarrow would take the first basket's keys only."""
    keys = list(dict.fromkeys(key for basket in baskets for key in basket))
    return pa.Table.from_pylist([{key: basket.get(key) for key in keys} for basket in baskets])


def with_column(data: pa.Table, name: str, column: pa.Array) -> pa.Table:
    return data.set_column(data.schema.get_field_index(name), name, column)


def with_line_field(data: pa.Table, name: str, convert) -> pa.Table:
    """The table with one field of its lines' structs replaced by `convert(field)`."""
    lines = data.column("lines").combine_chunks()
    items = lines.values
    fields = [convert(items.field(f.name)) if f.name == name else items.field(f.name) for f in items.type]
    names = [f.name for f in items.type]
    rebuilt = pa.ListArray.from_arrays(lines.offsets, pa.StructArray.from_arrays(fields, names=names))
    return with_column(data, "lines", rebuilt)


@pytest.fixture(scope="module")
def thousand() -> list[dict]:
    """bench/serve.py's 1,000 synthetic baskets, in the data set's layout (coded segments, YYYYMMDD dates)."""
    return sample_baskets(1000)


def post_json(client, baskets: list[dict]):
    return client.post(BATCH, content=json.dumps({"baskets": baskets}), headers={**AUTH,
                                                                               "Content-Type": "application/json"})


def post_arrow(client, body: bytes, content_type: str = arrow_body.ARROW_STREAM_CONTENT_TYPE):
    return client.post(BATCH, content=body, headers={**AUTH, "Content-Type": content_type})


def errors(response) -> list[dict]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]


# ---- the same baskets, the same answers ---------------------------------------------------------------------------

def test_the_same_thousand_baskets_as_json_and_arrow_get_identical_responses(client, thousand):
    by_json = post_json(client, thousand)
    by_arrow = post_arrow(client, stream(table(thousand)))
    assert by_json.status_code == by_arrow.status_code == 200
    assert by_arrow.json() == by_json.json()  # ids, classes and every probability, in request order
    assert len(by_arrow.json()["predictions"]) == 1000


def equivalent_encodings(data: pa.Table) -> dict[str, bytes]:
    """The same baskets in other Arrow types each column takes: what pandas, Polars or a query engine may send."""
    dictionary = data
    for name in ("CUST_CODE", "STORE_CODE", "STORE_REGION", "seg_1"):
        dictionary = with_column(dictionary, name, pc.dictionary_encode(dictionary.column(name)))
    for name in CODES:
        dictionary = with_line_field(dictionary, name, pc.dictionary_encode)
    narrow = with_column(data, "SHOP_HOUR", data.column("SHOP_HOUR").cast(pa.uint8()))
    narrow = with_column(narrow, "SHOP_WEEKDAY", narrow.column("SHOP_WEEKDAY").cast(pa.int8()))
    narrow = with_line_field(narrow, "QUANTITY", lambda a: a.cast(pa.int16()))
    layouts = with_column(data, "STORE_CODE", data.column("STORE_CODE").cast(pa.large_string()))
    layouts = with_column(layouts, "BASKET_TYPE", layouts.column("BASKET_TYPE").cast(pa.string_view()))
    layouts = with_line_field(layouts, "PROD_CODE", lambda a: a.cast(pa.large_string()))
    layouts = with_column(layouts, "lines", layouts.column("lines").cast(pa.large_list(
        layouts.schema.field("lines").type.value_type)))
    dates = pc.strptime(data.column("SHOP_DATE").cast(pa.string()), format="%Y%m%d", unit="s")
    parts = [data.slice(start, length) for start, length in ((0, 300), (300, 500), (800, 200))]
    own_dictionaries = [with_column(part, "STORE_CODE", pc.dictionary_encode(part.column("STORE_CODE")))
                        .combine_chunks().to_batches()[0] for part in parts]
    return {
        "dictionary-encoded strings": stream(dictionary),
        "narrower integers": stream(narrow),
        "large_string, string_view, large_list": stream(layouts),
        "date32 dates": stream(with_column(data, "SHOP_DATE", dates.cast(pa.date32()))),
        "date64 dates": stream(with_column(data, "SHOP_DATE", dates.cast(pa.date64()))),
        "SPEND as decimal(12, 2)": stream(with_line_field(
            data, "SPEND", lambda a: pc.round(a, 2).cast(pa.decimal128(12, 2), safe=False))),
        "three record batches": stream(data.to_batches(max_chunksize=334)),
        "three batches, each with its own dictionary": stream(own_dictionaries),
    }


def test_equivalent_arrow_types_read_as_the_json_body(thousand):
    expected = parse_batch(json.dumps({"baskets": thousand}).encode(), "application/json")
    for name, body in equivalent_encodings(table(thousand)).items():
        parsed = arrow_body.parse_arrow_batch(body, 1000, 500)
        if name == "SPEND as decimal(12, 2)":  # SPEND in cents; the rest identical
            spend = parsed.columns.lines.pop("SPEND")
            np.testing.assert_allclose(spend, expected.columns.lines["SPEND"], atol=0.005)
            assert parsed.columns.lines == {k: v for k, v in expected.columns.lines.items() if k != "SPEND"}
            assert (parsed.ids, parsed.weeks, parsed.columns.header) == (
                expected.ids, expected.weeks, expected.columns.header)
            continue
        assert parsed == expected, name


def test_a_polars_frame_of_lines_grouped_into_baskets_scores_as_its_json(client, thousand):
    """docs/api.md's recipe: Polars' own types (large strings or string views, i64, f64, dates, categoricals)."""
    lines = pl.DataFrame([{**{k: v for k, v in b.items() if k != "lines"}, **line} for b in thousand[:200]
                          for line in b["lines"]])
    lines = lines.with_columns(pl.col("SHOP_DATE").cast(pl.String).str.to_date("%Y%m%d"),
                               pl.col("STORE_REGION").cast(pl.Categorical))
    line_fields = ["QUANTITY", "SPEND", *CODES]
    header = [c for c in lines.columns if c not in line_fields]
    baskets = lines.group_by(header, maintain_order=True).agg(pl.struct(line_fields).alias("lines"))
    by_arrow = post_arrow(client, stream(baskets.to_arrow()))
    assert answer(by_arrow) == answer(post_json(client, thousand[:200]))


def test_valid_arrow_bodies_take_the_fast_path(thousand):
    """The fast path vouches for them, so the models' basket-by-basket validation (slow) is not what answers."""
    for name, body in {"plain": stream(table(thousand)), **equivalent_encodings(table(thousand))}.items():
        assert arrow_body._baskets(arrow_body._table(body, 1000), 1000, 500).vouched() is not None, name


# ---- bad values: the JSON body's 422 ------------------------------------------------------------------------------

def bad(baskets: list[dict], i: int, line: int | None = None, **changes) -> list[dict]:
    changed = copy.deepcopy(baskets)
    (changed[i] if line is None else changed[i]["lines"][line]).update(changes)
    return changed


@pytest.mark.parametrize("changes", [
    {"i": 3, "SHOP_HOUR": None},  # null where JSON forbids it
    {"i": 3, "SHOP_HOUR": 24},  # out of bounds
    {"i": 5, "STORE_REGION": "X01"},  # out of the closed domain
    {"i": 7, "seg_1": "ZZ"},
    {"i": 2, "line": 1, "PROD_CODE": "PRD-1"},  # malformed code
    {"i": 2, "line": 0, "PROD_CODE_40": None},
    {"i": 9, "line": 0, "QUANTITY": 0},
    {"i": 9, "line": 0, "SPEND": float("nan")},
    {"i": 4, "STORE_CODE": "STORE1"},
    {"i": 4, "CUST_CODE": "CUST-1"},
    {"i": 1, "SHOP_DATE": 20080231},  # no such date
    {"i": 1, "SHOP_WEEKDAY": 3},  # disagrees with SHOP_DATE
    {"i": 6, "seg_1": "CT", "CUST_PRICE_SENSITIVITY": "LA"},  # contradicting segments
    {"i": 8, "BASKET_ID": "x" * 65},
    {"i": 0, "lines": []},
    {"i": 0, "lines": None},
])
def test_a_bad_value_gets_the_json_bodys_422(client, thousand, changes):
    changes = dict(changes)
    baskets = bad(thousand[:20], changes.pop("i"), changes.pop("line", None), **changes)
    if any(isinstance(b["BASKET_ID"], str) for b in baskets):  # a column holds one type: every id as text
        baskets = [{**b, "BASKET_ID": str(b["BASKET_ID"])} for b in baskets]
    expected = post_json(client, baskets)
    assert expected.status_code == 422
    assert answer(post_arrow(client, stream(table(baskets)))) == answer(expected)


@pytest.mark.parametrize("spend", [-1, 200_000, 2**53, 2**53 + 1, -(2**53 + 1), 2**63 - 1])
def test_an_integer_spend_out_of_bounds_gets_the_json_bodys_422_echoing_it_as_sent(client, thousand, spend):
    """An integer SPEND column, one value out of SPEND's bounds: JSON's 422 echoes the integer as sent. Hypothesis found
    the Arrow body echoing 2**53 + 1 as 9007199254740992.0, and a review -1 as -1.0, when the column was cast to
    float64 before its values were checked."""
    baskets = whole_spends(thousand[:20])
    baskets[4]["lines"][1]["SPEND"] = spend
    expected = post_json(client, baskets)
    assert [(e["loc"], e["input"]) for e in errors(expected)] == [(["body", "baskets", 4, "lines", 1, "SPEND"], spend)]
    assert answer(post_arrow(client, stream(int64_spends(baskets)))) == answer(expected)


def whole_spends(baskets: list[dict]) -> list[dict]:
    """A copy of the baskets with every SPEND rounded to a whole number (a Python int)."""
    baskets = copy.deepcopy(baskets)
    for basket in baskets:
        for line in basket["lines"]:
            line["SPEND"] = round(line["SPEND"])
    return baskets


def int64_spends(baskets: list[dict]) -> pa.Table:
    """Baskets whose SPENDs are whole numbers as a table whose SPEND column is int64."""
    return with_line_field(table(baskets), "SPEND", lambda column: pc.cast(column, pa.int64()))


@pytest.mark.parametrize("changes", [{"SHOP_WEEKDAY": 3}, {"seg_1": "CT", "CUST_PRICE_SENSITIVITY": "LA"}])
def test_integer_spends_are_echoed_as_sent_where_a_header_rule_refuses_the_basket(client, thousand, changes):
    """The 422 of a basket the header rules refuse echoes the whole basket, its lines' integer SPENDs as sent (a
    review found them echoed as 2.0 where the JSON body's 422 has 2)."""
    baskets = whole_spends(thousand[:20])
    baskets[6].update(changes)
    expected = post_json(client, baskets)
    assert [e["loc"] for e in errors(expected)] == [["body", "baskets", 6]]
    assert answer(post_arrow(client, stream(int64_spends(baskets)))) == answer(expected)


def test_integer_spends_that_hold_reach_the_scorer_as_the_json_bodys_floats(thousand):
    baskets = whole_spends(thousand[:50])
    parsed = arrow_body.parse_arrow_batch(stream(int64_spends(baskets)), 1000, 500)
    spends = parsed.columns.lines["SPEND"]
    assert {type(spend) for spend in spends} == {float}
    assert parsed == parse_batch(json.dumps({"baskets": baskets}).encode(), "application/json")


def test_null_lines_and_null_dictionary_values_are_read_as_json_nulls(client, thousand):
    baskets = copy.deepcopy(thousand[:5])
    baskets[2]["lines"][1] = None
    assert answer(post_arrow(client, stream(table(baskets)))) == answer(post_json(client, baskets))
    data = table(thousand[:5])
    regions = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0, 0, 0], pa.int8()), pa.array(["E02", None]))
    nulled = [{**b, "STORE_REGION": "E02" if i != 1 else None} for i, b in enumerate(thousand[:5])]
    assert answer(post_arrow(client, stream(with_column(data, "STORE_REGION", regions)))) == answer(
        post_json(client, nulled))


def test_a_batch_with_no_baskets_gets_the_json_bodys_422(client, thousand):
    empty = table(thousand[:1]).slice(0, 0)
    assert answer(post_arrow(client, stream(empty))) == answer(post_json(client, []))  # one batch of no rows
    assert answer(post_arrow(client, stream([], schema=empty.schema))) == answer(post_json(client, []))  # no batch


def arrow_of(baskets: list[dict]) -> bytes | None:
    """The baskets as an Arrow stream with a plain column per field (int64, float64, string, null), or
    None where that cannot say the same as the JSON: a field present in some baskets (or lines) only, a value that
    fits no accepted column (a bool, a list, a float where an integer is due), values of two JSON types in a column
    (integers and floats too: a float64 column would send 200000 as 200000.0, and a 422 echo it so)."""
    def column(values: list) -> pa.Array | None:
        kinds = {type(v) for v in values if v is not None}
        if len(kinds) > 1 or kinds - {int, float, str}:
            return None
        kind = next(iter(kinds), type(None))
        arrow_type = {int: pa.int64(), float: pa.float64(), str: pa.string(), type(None): pa.null()}[kind]
        try:
            return pa.array(values, arrow_type)
        except (pa.ArrowException, OverflowError):
            return None

    def columns(records: list[dict], fields: dict) -> dict | None:
        names = {name for record in records for name in record}
        if (any(set(record) != names for record in records) or names - {*fields, "lines"}
                or any(field.required and name not in names for name, field in fields.items())):
            return None  # a field some records lack, an unknown one or a required one: a column's problem
        made = {name: column([r[name] for r in records]) for name in names if name != "lines"}
        if None in made.values() or not all(fields[name].accepts(c.type) for name, c in made.items()):
            return None
        return made

    header = columns(baskets, arrow_body.HEADER_COLUMNS)
    lines = [line for basket in baskets for line in basket.get("lines") or []]
    line_columns = columns(lines, arrow_body.LINE_COLUMNS)
    if header is None or line_columns is None or not lines or not all(
            isinstance(b.get("lines"), list) and all(isinstance(x, dict) for x in b["lines"]) for b in baskets):
        return None
    items = pa.StructArray.from_arrays(list(line_columns.values()), names=list(line_columns))
    offsets = pa.array([0, *[sum(len(b["lines"]) for b in baskets[:i + 1]) for i in range(len(baskets))]], pa.int32())
    return stream(pa.table({**header, "lines": pa.ListArray.from_arrays(offsets, items)}))


def test_generated_bodies_get_the_json_bodys_answer_whenever_arrow_can_say_the_same(client):
    """tests/api/test_body.py's generated baskets (a valid one with a value replaced, removed or added), beside the
    example basket (or twice, where the two cannot share a column)."""
    compared = []

    # filter_too_much: Arrow holds none of about 60% of the generated bodies (a value no column of the field's type
    # takes), so the check (50 discarded before 10 kept) fired about once in 3,500 runs, by chance. A run that kept
    # none would still fail: Hypothesis raises Unsatisfiable, and `compared` must hold both answers.
    @settings(max_examples=150, suppress_health_check=[HealthCheck.filter_too_much])
    @given(mutated_baskets())
    def same_answer(body):
        baskets = [body, body] if arrow_of([EXAMPLE_BASKET, body]) is None else [EXAMPLE_BASKET, body]
        encoded = arrow_of(baskets)
        assume(encoded is not None)
        expected = answer(post_json(client, baskets))
        assert answer(post_arrow(client, encoded)) == expected
        compared.append(expected[0])

    same_answer()
    assert {200, 422} <= set(compared)  # both accepted and refused bodies were compared


# ---- the stream's own problems: a 4xx naming the column or the body -----------------------------------------------

def test_a_column_of_a_type_not_accepted_is_named(client, thousand):
    data = table(thousand[:10])
    hour_as_text = with_column(data, "SHOP_HOUR", data.column("SHOP_HOUR").cast(pa.string()))
    quantity_as_float = with_line_field(data, "QUANTITY", lambda a: a.cast(pa.float64()))
    date_as_timestamp = with_column(data, "SHOP_DATE", pc.strptime(data.column("SHOP_DATE").cast(pa.string()),
                                                                   format="%Y%m%d", unit="s"))
    for body, loc, sent in ((hour_as_text, ["body", "baskets", "SHOP_HOUR"], "string"),
                            (quantity_as_float, ["body", "baskets", "lines", "QUANTITY"], "double"),
                            (date_as_timestamp, ["body", "baskets", "SHOP_DATE"], "timestamp[s]")):
        [error] = errors(post_arrow(client, stream(body)))
        assert (error["type"], error["loc"], error["input"]) == ("arrow_type", loc, sent)
        assert loc[-1] in error["msg"] and sent in error["msg"]
    lines_as_text = with_column(data, "lines", pa.array(["x"] * 10))
    assert [(e["type"], e["loc"]) for e in errors(post_arrow(client, stream(lines_as_text)))] == [
        ("arrow_type", ["body", "baskets", "lines"])]


def test_missing_unknown_and_repeated_columns_are_named_together(client, thousand):
    data = table(thousand[:10]).drop_columns(["SHOP_HOUR"]).append_column("COLOUR", pa.array(["red"] * 10))
    data = data.append_column("STORE_CODE", data.column("STORE_CODE"))
    lines = data.column("lines").combine_chunks()
    kept = [f.name for f in lines.type.value_type if f.name != "QUANTITY"]
    items = pa.StructArray.from_arrays([lines.values.field(n) for n in kept] + [pa.array([1] * len(lines.values))],
                                       names=[*kept, "DISCOUNT"])
    data = with_column(data, "lines", pa.ListArray.from_arrays(lines.offsets, items))
    found = {(e["type"], tuple(e["loc"])) for e in errors(post_arrow(client, stream(data)))}
    assert found == {("missing", ("body", "baskets", "SHOP_HOUR")),
                     ("extra_forbidden", ("body", "baskets", "COLOUR")),
                     ("arrow_duplicate_column", ("body", "baskets", "STORE_CODE")),
                     ("missing", ("body", "baskets", "lines", "QUANTITY")),
                     ("extra_forbidden", ("body", "baskets", "lines", "DISCOUNT"))}


def test_a_missing_lines_column_is_named(client, thousand):
    assert [(e["type"], e["loc"]) for e in errors(post_arrow(client, stream(table(thousand[:3]).drop_columns(
        ["lines"]))))] == [("missing", ["body", "baskets", "lines"])]


def stream_error(response) -> dict:
    [error] = errors(response)
    assert error["loc"] == ["body"], error
    return error


def test_unreadable_streams_are_a_422_at_the_body(client, thousand):
    body = stream(table(thousand[:50]))
    second = stream(table(thousand[50:60]))
    for broken in (body[: len(body) // 2], body[:-20], b"not an arrow stream", json.dumps({"baskets": []}).encode(),
                   body + second,  # two streams: two schemas
                   body[:-8] + second):  # a second schema where a batch may follow
        error = stream_error(post_arrow(client, broken))
        assert error["type"] == "arrow_invalid" and error["msg"] == "Arrow IPC stream decode error", error
        assert error["ctx"]["error"]
    assert "after the end of the stream" in stream_error(post_arrow(client, body + second))["ctx"]["error"]
    assert stream_error(post_arrow(client, b""))["type"] == "missing"  # as FastAPI answers an empty JSON body


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressed_streams_are_refused_before_they_are_decompressed(client, thousand, codec):
    data = table(thousand[:10])
    data = with_column(data, "STORE_CODE", pc.dictionary_encode(data.column("STORE_CODE")))  # a dictionary batch
    body = stream(data, compression=codec)
    assert arrow_body.parse_arrow_batch(stream(data), 1000, 500).ids  # the same stream uncompressed is read
    error = stream_error(post_arrow(client, body))
    assert error["type"] == "arrow_unsupported" and "uncompressed" in error["msg"]
    bomb = stream(pa.table({"SHOP_HOUR": np.zeros(10_000_000, np.int64)}), compression=codec)
    assert len(bomb) < 1_000_000  # 80 MB of zeros
    assert stream_error(post_arrow(client, bomb))["type"] == "arrow_unsupported"


def test_the_compression_flag_is_read_from_each_batch_message():
    data = pa.table({"a": pa.array(["x", "y"]).dictionary_encode(), "b": [1, 2]})
    for codec, expected in ((None, False), ("zstd", True), ("lz4", True)):
        reader = ipc.MessageReader.open_stream(stream(data, compression=codec))
        kinds = {}
        for message in iter(reader.read_next_message, None):  # ends with StopIteration
            kinds[message.type] = arrow_body.compressed(message.metadata.to_pybytes())
        assert kinds == {"schema": False, "dictionary": expected, "record batch": expected}, codec


def test_too_many_baskets_or_lines_are_refused_from_the_counts_before_the_values(client, thousand):
    too_many = thousand * 2
    assert answer(post_arrow(client, stream(table(too_many[:1001])))) == answer(post_json(client, too_many[:1001]))
    long = copy.deepcopy(thousand[:3])
    long[1]["lines"] = long[1]["lines"] * 501
    [error] = errors(post_arrow(client, stream(table(long))))
    assert (error["type"], error["loc"]) == ("too_long", ["body", "baskets", 1, "lines"])
    # a billion lines of null-typed fields cost the client nothing to send: refused from the offsets alone
    items = pa.StructArray.from_arrays([pa.nulls(10**9)] * 7, names=["QUANTITY", "SPEND", *CODES])
    huge = table(thousand[:2]).drop_columns(["lines"]).append_column(
        "lines", pa.ListArray.from_arrays(pa.array([0, 1, 10**9], pa.int32()), items))
    body = stream(huge)
    assert len(body) < 4_000
    [error] = errors(post_arrow(client, body))  # a billion Python objects later, this would not be answered
    assert (error["type"], error["loc"]) == ("too_long", ["body", "baskets", 1, "lines"])


def test_the_limits_are_the_services_settings(thousand):
    data = table(thousand[:3])
    with pytest.raises(RequestValidationError) as refused:
        arrow_body.parse_arrow_batch(stream(data), 2, 500)
    assert refused.value.errors()[0]["loc"] == ("body", "baskets")
    most = max(data.column("lines").combine_chunks().value_lengths().to_pylist())
    with pytest.raises(RequestValidationError) as refused:
        arrow_body.parse_arrow_batch(stream(data), 3, most - 1)
    assert refused.value.errors()[0]["type"] == "too_long"


# ---- content types and the document -------------------------------------------------------------------------------

def test_the_arrow_media_type_is_matched_in_any_case_with_parameters(client, thousand):
    body = stream(table(thousand[:5]))
    for content_type in ("application/vnd.apache.arrow.stream", "Application/VND.Apache.Arrow.Stream",
                         "application/vnd.apache.arrow.stream; charset=binary"):
        assert post_arrow(client, body, content_type).status_code == 200, content_type


def test_other_content_types_are_answered_as_before(client, thousand):
    """As FastAPI answers a body parameter sent as another type (a 422 at ["body"]), whatever the bytes hold."""
    for content_type in ("application/octet-stream", "application/vnd.apache.arrow.file"):
        [error] = errors(post_arrow(client, stream(table(thousand[:5])), content_type))
        assert (error["type"], error["loc"]) == ("model_attributes_type", ["body"])


def test_the_document_lists_the_arrow_body_and_its_column_types():
    document = create_app(api_settings(), source=object()).openapi()
    body = document["paths"][BATCH]["post"]["requestBody"]
    assert set(body["content"]) == {"application/json", arrow_body.ARROW_STREAM_CONTENT_TYPE}
    arrow = body["content"][arrow_body.ARROW_STREAM_CONTENT_TYPE]
    assert "schema" not in arrow  # OpenAPI 3.1: binary content is its media type alone
    assert arrow["x-arrow-columns"] == arrow_body.COLUMN_TYPES
    fields = set(document["components"]["schemas"]["Basket"]["properties"])
    assert {c for c in arrow["x-arrow-columns"] if "." not in c} == fields
    assert "Arrow" not in json.dumps(document["paths"]["/v1/predict"])  # the single route takes JSON only


def test_schemathesis_generates_only_json_bodies_for_the_batch_route():
    """tests/api/test_openapi_fuzz.py drives the service from its document: the Arrow type has no schema and no
    serializer, and is left out, so the fuzz run sends JSON bodies; the Arrow body is checked here, from the same
    generated baskets."""
    document = json.loads(json.dumps(create_app(api_settings(), source=object()).openapi()))
    operation = schemathesis.openapi.from_dict(document)[BATCH]["POST"]
    def media_types(mode: GenerationMode) -> set[str]:
        drawn = set()

        @given(case=operation.as_strategy(generation_mode=mode))  # too_slow: as in test_openapi_fuzz.SUPPRESSED
        @settings(max_examples=10, suppress_health_check=[HealthCheck.too_slow])
        def draw(case):
            drawn.add(case.media_type)

        draw()
        return drawn

    assert media_types(GenerationMode.POSITIVE) == media_types(GenerationMode.NEGATIVE) == {"application/json"}


def outcome(parse, *args) -> tuple[str, object]:
    try:
        return "read", parse(*args)
    except RequestValidationError as error:
        return "refused", jsonable_encoder(error.errors())


def test_arrow_dates_are_read_as_json_reads_their_iso_text(thousand):
    """Dates the YYYY-MM-DD form cannot hold (before year 1000, after 9999, as far as date32 goes) included: the
    models decide, as for the same text sent as JSON."""
    for date, iso in ((dt.date(2008, 4, 12), "2008-04-12"), (dt.date(999, 1, 1), "0999-01-01"),
                      (2**31 - 1, "5881580-07-11"), (-(2**31), "-5877641-06-23")):
        dates = pa.array([date, 14_000], pa.date32())
        text = [iso, "2008-05-01"]
        baskets = [{k: v for k, v in b.items() if k != "SHOP_WEEKDAY"} for b in thousand[:2]]
        as_json = json.dumps({"baskets": [{**b, "SHOP_DATE": d} for b, d in zip(baskets, text, strict=True)]})
        assert outcome(arrow_body.parse_arrow_batch, stream(with_column(table(baskets), "SHOP_DATE", dates)),
                       10, 500) == outcome(parse_batch, as_json.encode(), "application/json"), text


# ---- crafted streams: what a small body must not make the service allocate or answer -----------------------------

def with_metadata_version_4(body: bytes) -> bytes:
    """The stream with its record batch messages relabelled metadata version V4 and their `compression` field
    dropped: Arrow C++ then decompresses the buffers named by the batch's custom metadata instead
    (ARROW:experimental_compression), which the compression field alone does not show."""
    patched = bytearray(body)
    at = 0
    while at < len(patched):
        continuation, size = struct.unpack_from("<Ii", patched, at)
        assert continuation == 0xFFFFFFFF
        if size == 0:
            break
        metadata = bytes(patched[at + 8: at + 8 + size])
        message = struct.unpack_from("<I", metadata, 0)[0]
        kind_at = arrow_body._field_at(metadata, message, 1)
        length_at = arrow_body._field_at(metadata, message, 3)
        body_length = struct.unpack_from("<q", metadata, length_at)[0] if length_at else 0
        if kind_at is not None and metadata[kind_at] == 3:  # a record batch
            version_at = arrow_body._field_at(metadata, message, 0)
            struct.pack_into("<h", patched, at + 8 + version_at, 3)  # MetadataVersion V5 (4) -> V4 (3)
            batch = arrow_body._table_at(metadata, message, 2)
            vtable = batch - struct.unpack_from("<i", metadata, batch)[0]
            struct.pack_into("<H", patched, at + 8 + vtable + 4 + 2 * 3, 0)  # RecordBatch.compression unset
        at += 8 + size + body_length
    return bytes(patched)


def test_a_v4_stream_compressed_through_its_custom_metadata_is_refused(client, thousand):
    data = with_column(table(thousand[:1]), "CUST_CODE", pa.array(["A" * 5_000_000]))
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, data.schema, options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        for batch in data.to_batches():
            writer.write_batch(batch, custom_metadata={"ARROW:experimental_compression": "zstd"})
    bomb = with_metadata_version_4(sink.getvalue().to_pybytes())
    assert len(bomb) < 10_000
    assert len(ipc.open_stream(bomb).read_all().column("CUST_CODE")[0].as_py()) == 5_000_000  # pyarrow inflates it
    response = post_arrow(client, bomb)
    assert len(response.content) < 2_000  # not the 5 MB code echoed back
    error = stream_error(response)
    assert error["type"] == "arrow_unsupported" and "V4" in error["msg"], error


def dictionary_stream(batches: int, *, deltas: bool, rows: int = 0) -> bytes:
    """`batches` record batches of `rows` baskets (null-typed required columns), STORE_CODE a dictionary: one grown
    batch by batch and sent as deltas, or one dictionary shared by every batch."""
    required = ["SHOP_DATE", "SHOP_HOUR", "BASKET_SIZE", "BASKET_TYPE", "BASKET_DOMINANT_MISSION", "STORE_FORMAT",
                "STORE_REGION", "lines"]
    schema = pa.schema([pa.field(n, pa.null()) for n in required]
                       + [pa.field("STORE_CODE", pa.dictionary(pa.int32(), pa.string()))])
    codes = pa.array([f"STORE{i:05d}" for i in range(batches)])
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, schema, options=ipc.IpcWriteOptions(emit_dictionary_deltas=deltas)) as writer:
        for i in range(batches):
            dictionary = codes.slice(0, i + 1) if deltas else codes
            column = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), dictionary)
            writer.write_batch(pa.record_batch([pa.nulls(rows)] * len(required) + [column], schema=schema))
    return sink.getvalue().to_pybytes()


def test_dictionary_deltas_are_refused(client):
    """A delta keeps every earlier version of the dictionary alive, one per batch: quadratic memory."""
    body = dictionary_stream(50, deltas=True)
    assert ipc.open_stream(body).read_all() is not None  # pyarrow reads the deltas
    error = stream_error(post_arrow(client, body))
    assert error["type"] == "arrow_unsupported" and "delta" in error["msg"], error


def test_more_record_batches_than_baskets_allowed_are_refused_before_they_are_read():
    body = dictionary_stream(11, deltas=False)  # zero-row batches: no basket to count
    with pytest.raises(RequestValidationError) as refused:
        arrow_body.parse_arrow_batch(body, 10, 500)
    [error] = refused.value.errors()
    assert (error["type"], error["loc"]) == ("too_long", ("body", "baskets")) and "record batches" in error["msg"]
    with pytest.raises(RequestValidationError) as ten:  # ten batches are read: their baskets' errors
        arrow_body.parse_arrow_batch(dictionary_stream(10, deltas=False, rows=1), 10, 500)
    assert {e["loc"][:2] for e in ten.value.errors()} == {("body", "baskets")}
    assert all(isinstance(e["loc"][2], int) for e in ten.value.errors())


def null_list_over(lines: int, baskets: list[dict], chunks: int = 1) -> bytes:
    """One basket per record batch whose `lines` is a null list covering `lines` lines of null-typed fields: the
    lines cost no bytes to send."""
    items = pa.StructArray.from_arrays([pa.nulls(lines)] * 7, names=["QUANTITY", "SPEND", *CODES])
    null_list = pa.ListArray.from_arrays(pa.array([0, lines], pa.int32()), items, mask=pa.array([True]))
    data = table(baskets[:1]).drop_columns(["lines"]).append_column("lines", null_list)
    return stream(data.to_batches() * chunks)


def test_a_null_list_covering_many_lines_is_not_read(thousand):
    """JSON's 422 for a null `lines`, with none of the lines under it made into Python values."""
    body = null_list_over(400_000, thousand)
    assert len(body) < 4_000
    tracemalloc.start()
    try:
        refused = outcome(arrow_body.parse_arrow_batch, body, 1000, 500)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    no_lines = json.dumps({"baskets": [{**thousand[0], "lines": None}]}).encode()
    assert refused == outcome(parse_batch, no_lines, "application/json")
    assert peak < 2_000_000, peak  # a Python None per line and field would be over 20 MB


def test_null_lists_spanning_more_lines_than_a_batch_holds_are_refused(client, thousand):
    body = null_list_over(1_500_000_000, thousand, chunks=2)  # offsets past int32 once the batches are combined
    assert len(body) < 6_000
    error = stream_error(post_arrow(client, body))
    assert error["type"] == "arrow_unsupported" and "null list" in error["msg"], error
    with pytest.raises(RequestValidationError):
        arrow_body.parse_arrow_batch(null_list_over(5_001, thousand), 10, 500)  # over 10 baskets of 500 lines


def test_an_echoed_input_is_cut_short_where_a_dictionary_repeats_it(client, thousand):
    """A dictionary value is sent once and may be referenced by every line: each error would repeat it."""
    data = table(thousand[:1])
    lines = 500
    items = data.column("lines").combine_chunks().values
    codes = pa.DictionaryArray.from_arrays(pa.array(np.zeros(lines, np.int8)), pa.array(["P" * 20_000]))
    fields = {f.name: codes if f.name == "PROD_CODE" else items.field(f.name).take(np.zeros(lines, np.int64))
              for f in items.type}
    data = with_column(data, "lines", pa.ListArray.from_arrays(
        pa.array([0, lines], pa.int32()), pa.StructArray.from_arrays(list(fields.values()), names=list(fields))))
    body = stream(data)
    assert len(body) < 60_000
    response = post_arrow(client, body)
    found = errors(response)
    assert {e["loc"][-1] for e in found} == {"PROD_CODE"}
    assert all(len(e["input"]) <= 201 for e in found)
    assert len(response.content) < 200_000, len(response.content)  # 500 echoes of 20 KB would be 10 MB


def test_a_date64_beyond_date32s_range_is_read_as_its_true_date(thousand):
    """Not wrapped round to a date 2**32 days earlier: JSON's answer for the ISO text of the true date."""
    day = (dt.date(2008, 4, 14) - dt.date(1970, 1, 1)).days
    far = (2**32 + day) * 86_400_000
    baskets = [{k: v for k, v in b.items() if k != "SHOP_WEEKDAY"} for b in thousand[:2]]
    iso = str(np.datetime64(2**32 + day, "D"))
    as_json = json.dumps({"baskets": [{**b, "SHOP_DATE": iso} for b in baskets]}).encode()
    sent = stream(with_column(table(baskets), "SHOP_DATE", pa.array([far, far], pa.date64())))
    read = outcome(arrow_body.parse_arrow_batch, sent, 10, 500)
    assert read[0] == "refused" and read == outcome(parse_batch, as_json, "application/json")


def test_a_date64_not_at_midnight_is_refused_naming_the_column(client, thousand):
    midnight = (dt.date(2008, 4, 14) - dt.date(1970, 1, 1)).days * 86_400_000
    data = with_column(table(thousand[:2]), "SHOP_DATE", pa.array([midnight + 3_600_000] * 2, pa.date64()))
    [error] = errors(post_arrow(client, stream(data)))
    assert (error["type"], error["loc"]) == ("arrow_invalid", ["body", "baskets", "SHOP_DATE"]), error


def test_the_first_baskets_errors_are_listed_and_the_rest_counted(client, thousand):
    """Past LISTED_BASKETS refused baskets, the JSON body's errors of the first ones and one entry counting the rest;
    the baskets the checks do not flag are not validated by the models."""
    baskets = copy.deepcopy(thousand[:60])
    for i in range(5, 60, 2):  # 28 bad baskets
        baskets[i]["SHOP_HOUR"] = 24
    baskets[40]["lines"][0]["QUANTITY"] = 0
    expected = errors(post_json(client, baskets))
    found = errors(post_arrow(client, stream(table(baskets))))
    refused = list(dict.fromkeys(e["loc"][2] for e in expected))  # 29 baskets, in order
    listed = refused[:arrow_body.LISTED_BASKETS]
    assert found[:-1] == [e for e in expected if e["loc"][2] in listed]
    summary = found[-1]
    assert (summary["type"], summary["loc"]) == ("too_many_errors", ["body", "baskets"])
    assert summary["ctx"] == {"errors_left_out": 0, "baskets_not_validated": len(refused) - len(listed)}


def test_errors_past_the_most_listed_are_counted(thousand):
    data = table(thousand[:3])
    lines = data.column("lines").combine_chunks()
    many = pa.ListArray.from_arrays(pa.array([0, 400, 800, 1200], pa.int32()), lines.values.take(
        np.zeros(1200, np.int64)))
    data = with_line_field(with_column(data, "lines", many), "QUANTITY", lambda a: pa.array(np.zeros(len(a), np.int8)))
    with pytest.raises(RequestValidationError) as refused:
        arrow_body.parse_arrow_batch(stream(data), 10, 500)
    found = refused.value.errors()
    assert len(found) == arrow_body.LISTED_ERRORS + 1
    assert {e["loc"][2] for e in found[:-1]} == {0, 1, 2}
    assert found[-1]["ctx"] == {"errors_left_out": 200, "baskets_not_validated": 0}


def test_a_decimal_spend_is_read_as_json_reads_its_text(thousand):
    """The nearest float64 to the decimal, as JSON's parser gives for the same digits (Arrow's own cast of a decimal
    to float64 is off by one unit in the last place for many two-decimal prices: 0.35 read as 0.35000000000000003)."""
    prices = [f"{cents // 100}.{cents % 100:02d}" for cents in range(1, 20_001)]
    decimals = pa.array([__import__("decimal").Decimal(p) for p in prices], pa.decimal128(12, 2))
    items = pa.StructArray.from_arrays(
        [pa.array(np.ones(len(prices), np.int64)), decimals]
        + [pa.array([EXAMPLE_BASKET["lines"][0][c]] * len(prices)) for c in CODES], names=["QUANTITY", "SPEND", *CODES])
    data = table(thousand[:40]).drop_columns(["lines"]).append_column(
        "lines", pa.ListArray.from_arrays(pa.array(np.arange(0, len(prices) + 1, 500), pa.int32()), items))
    parsed = arrow_body.parse_arrow_batch(stream(data), 40, 500)
    assert parsed.columns.lines["SPEND"] == [json.loads(p) for p in prices]
