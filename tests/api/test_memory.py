"""The service's allocator settings (api/memory.py): freed memory kept between requests, not faulted in again."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.settings import ApiSettings

ROOT = Path(__file__).resolve().parents[2]
CHURN = """
import resource, sys
from api.memory import keep_freed_memory

kept = keep_freed_memory(int(sys.argv[1]), int(sys.argv[2]))

def request():
    # a request's transient blocks: eight of 1 MiB, each written through (as a body or a matrix is), then freed
    blocks = [b"x" * 2**20 for _ in range(8)]
    del blocks

request()  # the first one maps its pages under either setting
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    request()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults_of_twenty_requests(trim: int, mmap: int) -> tuple[bool, int]:
    """Whether the thresholds were set, and the minor page faults of 20 requests after the first, in a fresh
    interpreter (the thresholds are the process's)."""
    out = subprocess.run([sys.executable, "-c", CHURN, str(trim), str(mmap)], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_with_the_services_thresholds_a_request_s_freed_memory_is_not_faulted_in_again():
    settings = ApiSettings()
    kept, kept_faults = faults_of_twenty_requests(settings.malloc_trim_threshold_bytes,
                                                  settings.malloc_mmap_threshold_bytes)
    adaptive, glibc_faults = faults_of_twenty_requests(0, 0)
    pages = 20 * 8 * 2**20 // 4096
    assert kept and not adaptive
    assert glibc_faults > pages // 2, glibc_faults  # glibc's own thresholds hand the 8 MiB back each time
    assert kept_faults < pages // 50, kept_faults


def test_the_thresholds_are_set_both_or_neither_and_the_mmap_one_within_glibc_s_range():
    with pytest.raises(ValidationError, match="RETAIL_MALLOC_TRIM_THRESHOLD_BYTES and RETAIL_MALLOC_MMAP_THRESHOLD"):
        ApiSettings(malloc_trim_threshold_bytes=0)
    with pytest.raises(ValidationError, match="malloc_mmap_threshold_bytes"):
        ApiSettings(malloc_mmap_threshold_bytes=32 * 2**20 + 1)
    neither = ApiSettings(malloc_trim_threshold_bytes=0, malloc_mmap_threshold_bytes=0)
    assert neither.malloc_trim_threshold_bytes == neither.malloc_mmap_threshold_bytes == 0
