"""glibc's malloc kept from handing freed memory back to the kernel after every request (mallopt(3)).

glibc returns the free top of its heap to the kernel once it exceeds the trim threshold, and serves blocks above the
mmap threshold with mmap, unmapping them on free. Both thresholds start low (128 KiB) and rise only as far as the
largest mmapped block freed so far. A 1,000-basket JSON batch allocates and frees a few MB (the body, the decoded
baskets, the columns, the feature matrix), so glibc gave that memory back after each request and the next request
faulted it in again: about 1,180 minor page faults per request in the server on the 2-core VM, and 0.3 with the
thresholds fixed as below, the one-connection p50 going from 18.5-19.6 ms to 16.0-16.5 ms (docs/serving.md).

The cost is memory: up to the trim threshold of free heap is kept, and a block below the mmap threshold is taken
from the heap, where fragmentation can hold it. So the resident size stays nearer its high-water mark, which the
pod's memory limit has to allow anyway. Setting either threshold turns off glibc's adjustment of both, which is why
they are set together. Elsewhere than glibc (musl, macOS) there is no mallopt and nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""mallopt's parameter numbers for the two thresholds (glibc's malloc.h)."""

log = logging.getLogger("retail.api")


def keep_freed_memory(trim_threshold: int, mmap_threshold: int) -> bool:
    """Set glibc's trim and mmap thresholds (bytes) for this process; whether they were set. Both 0: glibc's own,
    adaptive thresholds are left alone."""
    if trim_threshold == mmap_threshold == 0:
        return False
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        log.info("no mallopt in the C library (%s): the allocator's thresholds are left as they are", name)
        return False
    for parameter, value in ((M_MMAP_THRESHOLD, mmap_threshold), (M_TRIM_THRESHOLD, trim_threshold)):
        if mallopt(parameter, value) != 1:
            raise ValueError(f"mallopt refused {value} for parameter {parameter} (M_MMAP_THRESHOLD is at most "
                             "32 MiB on 64-bit glibc)")
    return True
