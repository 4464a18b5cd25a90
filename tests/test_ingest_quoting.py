"""Quotes and carriage returns the CSV readers disagree on, and hostile bytes in general.

Python's lenient `csv` reader and Polars' reader do not agree on every line (`"ab"c` is one
field to the first and unreadable to the second), and a bare carriage return is a line
break to some readers and not to others. Such a line is set aside like any other bad line;
no byte input may end ingestion with anything but the module's `InputError`.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ml.ingest import RAW_LINE, SOURCE_LINE, InputError, read
from ml.schema import CODED_COLUMNS
from ml.synth import SynthConfig, generate, write_csv
from ml.validate import validate

BASKET_TYPE = CODED_COLUMNS.index("BASKET_TYPE")
DAMAGED = 5  # the line number of the damaged line in each file below (the header is line 1)


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> list[bytes]:
    """The lines of a small clean export, header first, without line endings."""
    path = tmp_path_factory.mktemp("export") / "clean.csv"
    write_csv(generate(SynthConfig(rows=300, seed=3)), path)
    return path.read_bytes().splitlines()


def _with_field(line: bytes, position: int, value: bytes) -> bytes:
    fields = line.split(b",")
    fields[position] = value
    return b",".join(fields)


def _write(path: Path, lines: list[bytes], newline: bytes = b"\n") -> Path:
    path.write_bytes(newline.join(lines) + newline)
    return path


def _damaged(export: list[bytes], line: bytes) -> list[bytes]:
    return [*export[:DAMAGED - 1], line, *export[DAMAGED:]]


def _set_aside(path: Path) -> list[tuple[int, str, str, bytes]]:
    raw_input, raw = read(path)
    report = validate(raw, raw_input).report
    assert raw_input.rows_read[str(path)] == report.rows_in
    assert report.counts_add_up
    rejected = raw_input.rejected
    return list(zip(rejected[SOURCE_LINE], rejected["rule"], rejected["value"], rejected[RAW_LINE], strict=True))


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize(
    ("field", "problem"),
    [
        (b'"ab"c', "text after a closing quote"),
        (b'"Small Shop" ', "text after a closing quote"),
        (b'""Small Shop""', "text after a closing quote"),
    ],
)
def test_text_after_a_closing_quote_is_set_aside_as_bad_quoting(export, tmp_path, newline, field, problem):
    line = _with_field(export[DAMAGED - 1], BASKET_TYPE, field)
    path = _write(tmp_path / "quoted.csv", _damaged(export, line), newline)
    [(number, rule, value, raw)] = _set_aside(path)
    assert (number, rule, raw) == (DAMAGED, "bad_quoting", line)
    assert value.startswith(problem)


def test_a_quote_inside_an_unquoted_field_is_read_as_a_character(export, tmp_path):
    line = _with_field(export[DAMAGED - 1], BASKET_TYPE, b'Small "Shop"')
    path = _write(tmp_path / "inner.csv", _damaged(export, line))
    _, raw = read(path)
    assert raw.filter(raw[SOURCE_LINE] == DAMAGED)["BASKET_TYPE"].to_list() == ['Small "Shop"']


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize(
    "damage",
    [
        lambda r: _with_field(r, BASKET_TYPE, b'"Small\rShop"'),  # inside a quoted field
        lambda r: _with_field(r, BASKET_TYPE, b'"Small Shop"').replace(b",", b",\r", 1),  # quoted line, outside
        lambda r: _with_field(r, BASKET_TYPE, b"Small\rShop"),  # an unquoted field
        lambda r: b"\r" + r,
    ],
    ids=["in-quoted-field", "quoted-line", "unquoted-field", "line-start"],
)
def test_a_carriage_return_inside_a_line_is_set_aside(export, tmp_path, newline, damage):
    line = damage(export[DAMAGED - 1])
    path = _write(tmp_path / "cr.csv", _damaged(export, line), newline)
    [(number, rule, value, raw)] = _set_aside(path)
    assert (number, rule, raw) == (DAMAGED, "stray_carriage_return", line)
    assert value == "a carriage return (\\r) that does not end the line"


@pytest.mark.parametrize(("newline", "extra"), [(b"\n", b"\r\r"), (b"\r\n", b"\r")], ids=["lf", "crlf"])
def test_a_line_ending_in_two_carriage_returns_is_set_aside_but_one_crlf_line_is_read(
    export, tmp_path, newline, extra
):
    ends_crlf = 2  # in the LF file, this line ends \r\n: a line ending, not a stray \r
    lines = [line + extra if n == DAMAGED else line + extra[1:] if n == ends_crlf else line
             for n, line in enumerate(export, start=1)]
    path = _write(tmp_path / "crcr.csv", lines, newline)
    assert path.read_bytes().count(export[DAMAGED - 1] + b"\r\r\n") == 1
    [(number, rule, _, raw)] = _set_aside(path)
    assert (number, rule, raw) == (DAMAGED, "stray_carriage_return", export[DAMAGED - 1] + b"\r")


def test_a_file_with_cr_only_line_endings_stops_saying_so(export, tmp_path):
    path = _write(tmp_path / "mac.csv", export, b"\r")
    with pytest.raises(InputError, match=r"mac.csv: unreadable \(the file uses CR-only line endings"):
        read(path)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (lambda h: h.replace(b",", b"\r,", 1), "a carriage return"),
        (lambda h: b'"' + h.replace(b",", b'"x,', 1), "not valid CSV"),
        (lambda h: b'"' + h, "not valid CSV"),
    ],
    ids=["carriage-return", "text-after-quote", "unbalanced-quote"],
)
def test_a_header_line_that_is_not_valid_csv_stops_naming_the_problem(export, tmp_path, header, problem):
    path = _write(tmp_path / "header.csv", [header(export[0]), *export[1:]])
    with pytest.raises(InputError, match=rf"header.csv: unreadable \(the header line .*{problem}"):
        read(path)


def test_a_header_naming_a_column_twice_stops_naming_it(export, tmp_path):
    path = _write(tmp_path / "twice.csv", [export[0] + b",SHOP_WEEK,,", *(row + b",x,," for row in export[1:])])
    with pytest.raises(InputError, match=r"twice.csv: the header names column\(s\) '', 'SHOP_WEEK' more than once"):
        read(path)


# No byte input ends ingestion with anything but InputError; when it reads, counts add up.

HOSTILE = {
    "nul": b"\x00",
    "bom": b"\xef\xbb\xbf",
    "cr": b"\r",
    "lf": b"\n",
    "crlf": b"\r\n",
    "quote": b'"',
    "text-after-quote": b'"ab"c',
    "quoted-cr": b'"a\rb"',
    "quoted-lf": b'"a\nb"',
    "comma": b",",
    "invalid-utf8": b"\xff",
    "cut-utf8": b"\xc3",
    "surrogate": b"\xed\xa0\x80",
    "high-unicode": "\u00e9\U0001f600".encode(),
}


def _hostile_cases(export: list[bytes]) -> dict[str, bytes]:
    clean = b"\n".join(export[:40]) + b"\n"
    body = len(export[0]) + 1
    cases = {"no-final-newline": clean[:-1], "cr-only": clean.replace(b"\n", b"\r"),
             "header-only-no-newline": export[0], "only-a-bom": b"\xef\xbb\xbf", "only-newlines": b"\n\n\n"}
    for name, token in HOSTILE.items():
        cases[f"{name}-mid-file"] = clean[:body + 200] + token + clean[body + 200:]
        cases[f"{name}-in-header"] = clean[:20] + token + clean[20:]
        cases[f"{name}-at-end"] = clean[:-1] + token
    rng = random.Random(7)
    for n in range(40):  # several tokens at random places, header included
        data = clean
        for token in rng.choices(list(HOSTILE.values()), k=rng.randint(2, 8)):
            at = rng.randrange(len(data) + 1)
            data = data[:at] + token + data[at:]
        cases[f"random-{n}"] = data
    return cases


def test_hostile_bytes_stop_with_input_error_or_read_with_counts_that_add_up(export, tmp_path):
    for name, data in _hostile_cases(export).items():
        path = tmp_path / f"{name}.csv"
        path.write_bytes(data)
        try:
            raw_input, raw = read(path)
        except InputError:
            continue
        lines = data.split(b"\n")[1:]
        assert raw_input.rows_read == {str(path): len(lines) - (lines[-1:] == [b""])}, name
        report = validate(raw, raw_input).report
        assert report.counts_add_up, name
        assert raw.height + raw_input.rejected.height == report.rows_in, name
