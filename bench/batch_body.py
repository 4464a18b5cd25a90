"""Reading the 1,000-basket batch body into the scorer's columns, in one process: JSON against the Arrow IPC stream.

    uv run python -m bench.batch_body [--calls 150]

The same 1,000 synthetic baskets bench/serve.py sends, as the JSON body (`api.body.parse_batch`) and as Arrow
streams (`api.arrow_body.parse_arrow_batch`): the columns pyarrow makes of the JSON baskets (what bench/serve.py
sends), and the same with the code columns dictionary-encoded (what a client holding them as categoricals sends).
The readers are called in turn, `--calls` times each, with the garbage collector set as the service sets it
(`api.app.settle_collector`: start-up frozen, young collections every RETAIL_GC_GEN0_THRESHOLD net allocations), and
every reading is checked to equal the JSON one first. It prints each body's size and the median and p95 of its reading
in milliseconds, and the load average: the machine's other work moves these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from api.app import settle_collector
from api.arrow_body import parse_arrow_batch
from api.body import JSON_CONTENT_TYPE, parse_batch
from api.settings import ApiSettings
from bench.serve import BATCH_BASKETS, arrow_stream, sample_baskets

CODE_COLUMNS = ("CUST_CODE", "STORE_CODE")
LINE_CODE_FIELDS = ("PROD_CODE", "PROD_CODE_10", "PROD_CODE_20", "PROD_CODE_30", "PROD_CODE_40")


def with_dictionary_codes(body: bytes) -> bytes:
    """An Arrow batch body with its code columns (the baskets' and the lines') dictionary-encoded."""
    table = ipc.open_stream(body).read_all().combine_chunks()
    for name in CODE_COLUMNS:
        table = table.set_column(table.schema.get_field_index(name), name, pc.dictionary_encode(table.column(name)))
    lines = table.column("lines").chunk(0)
    items = lines.values
    fields = [pc.dictionary_encode(items.field(f.name)) if f.name in LINE_CODE_FIELDS else items.field(f.name)
              for f in items.type]
    encoded = pa.StructArray.from_arrays(fields, names=[f.name for f in items.type])
    table = table.set_column(table.schema.get_field_index("lines"), "lines",
                             pa.ListArray.from_arrays(lines.offsets, encoded))
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=150, help="calls of each reader")
    args = parser.parse_args()
    limits = ApiSettings(api_auth_disabled=True)
    baskets = sample_baskets(BATCH_BASKETS)
    json_body = json.dumps({"baskets": baskets}).encode()
    arrow_body = arrow_stream(baskets)
    readers = {
        "JSON (api.body.parse_batch)": (json_body, lambda: parse_batch(json_body, JSON_CONTENT_TYPE)),
        "Arrow, as bench/serve.py sends it": (arrow_body, lambda: parse_arrow_batch(
            arrow_body, limits.max_batch_baskets, limits.max_basket_lines)),
    }
    dictionary_body = with_dictionary_codes(arrow_body)
    readers["Arrow, code columns dictionary-encoded"] = (dictionary_body, lambda: parse_arrow_batch(
        dictionary_body, limits.max_batch_baskets, limits.max_basket_lines))
    expected = parse_batch(json_body, JSON_CONTENT_TYPE)
    for name, (_, read) in readers.items():
        if read() != expected:
            raise SystemExit(f"{name} does not read as the JSON body")
    settle_collector(limits.gc_gen0_threshold)
    load_start = os.getloadavg()
    samples: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(args.calls):
        for name, (_, read) in readers.items():
            started = time.perf_counter()
            read()
            samples[name].append(time.perf_counter() - started)
    load_end = os.getloadavg()
    lines = sum(len(b["lines"]) for b in baskets)
    print(f"{len(baskets):,} baskets, {lines:,} lines; {args.calls} calls of each reader, in turn\n")
    print(f"{'body':<42} {'bytes':>10} {'p50 ms':>8} {'p95 ms':>8}")
    for name, (body, _) in readers.items():
        p50, p95 = np.percentile(samples[name], [50, 95]) * 1000
        print(f"{name:<42} {len(body):>10,} {p50:>8.2f} {p95:>8.2f}")
    print(f"\nload average (1 min): {load_start[0]:.2f} at start, {load_end[0]:.2f} at end, on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
