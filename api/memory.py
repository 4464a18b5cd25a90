"""glibc's malloc kept from handing freed memory back to the kernel after every request (mallopt(3)).

glibc returns the free top of its heap to the kernel once it exceeds the trim threshold, and serves blocks above the
mmap threshold with mmap, unmapping them on free. Both thresholds start low (128 KiB); each mmapped block freed
raises the mmap threshold to its size and the trim threshold to twice that, up to 32 MiB. A 1,000-basket JSON batch
allocates and frees a few MB (the body, the decoded baskets, the columns, the feature matrix), so glibc gave that
memory back after each request and the next request faulted it in again: about 1,180 minor page faults per request
in the server on the 2-core VM, and 0.3 with the thresholds fixed, the one-connection p50 1.3-3.1 ms lower
(docs/serving.md).

The cost is memory, per arena: glibc gives each thread that allocates an arena of its own (up to eight per CPU),
and each keeps up to the trim threshold of free memory at its top. The service's threads that allocate are the
event loop's, the scoring thread, the `asyncio.to_thread` workers (model loads), the prediction log's writer and the
shadow scorer, so with the 16 MiB default the kept memory is at most about 16 MiB each of those, not once per
process. A block below the mmap threshold comes from the heap, where fragmentation can hold it.

Setting either threshold turns off glibc's adjustment of both, which is why they are set together. An operator's own
glibc settings (MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_, or the thresholds in GLIBC_TUNABLES) are kept:
nothing is changed then. Elsewhere than glibc (musl, macOS) there is no mallopt and nothing changes.
"""

from __future__ import annotations

import ctypes
import logging
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""mallopt's parameter numbers for the two thresholds (glibc's malloc.h)."""
GLIBC_OWN_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
GLIBC_THRESHOLD_TUNABLES = ("glibc.malloc.trim_threshold", "glibc.malloc.mmap_threshold")

log = logging.getLogger("retail.api")


def keep_freed_memory(trim_threshold: int, mmap_threshold: int) -> bool:
    """Set glibc's trim and mmap thresholds (bytes) for this process; whether they were set. Both 0, glibc's own,
    adaptive thresholds are left alone, as are thresholds the environment gives glibc itself."""
    if trim_threshold == mmap_threshold == 0:
        return False
    given = [name for name in GLIBC_OWN_SETTINGS if name in os.environ]
    given += [name for name in GLIBC_THRESHOLD_TUNABLES if name in os.environ.get("GLIBC_TUNABLES", "")]
    if given:
        log.info("glibc's malloc thresholds come from the environment (%s): RETAIL_MALLOC_* are not applied",
                 ", ".join(given))
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the C library the interpreter is linked with
    if mallopt is None:
        log.info("no mallopt in this C library: the allocator's thresholds are left as they are")
        return False
    for parameter, value in ((M_MMAP_THRESHOLD, mmap_threshold), (M_TRIM_THRESHOLD, trim_threshold)):
        if mallopt(parameter, value) != 1:
            raise ValueError(f"mallopt refused {value} for parameter {parameter} (M_MMAP_THRESHOLD is at most "
                             "32 MiB on 64-bit glibc)")
    return True
