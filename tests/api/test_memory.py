"""The service's allocator settings (api/memory.py): freed memory kept between requests, not faulted in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.settings import ApiSettings

ROOT = Path(__file__).resolve().parents[2]
CHURN = """
import resource, sys, threading
from api.memory import keep_freed_memory

kept = keep_freed_memory(int(sys.argv[1]), int(sys.argv[2]))

def request():
    # a request's transient blocks: eight of 1 MiB, each written through (as a body or a matrix is), then freed
    blocks = [b"x" * 2**20 for _ in range(8)]
    del blocks

def twenty_requests():
    request()  # the first one maps its pages under either setting
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(20):
        request()
    faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

faults = []
twenty_requests()  # the main thread's arena
worker = threading.Thread(target=twenty_requests)  # a thread's own arena, as the scoring thread's
worker.start()
worker.join()
print(kept, *faults)
"""
PAGES = 20 * 8 * 2**20 // os.sysconf("SC_PAGE_SIZE")
"""The pages 20 requests write through."""
SERVICE = {name: ApiSettings.model_fields[name].default
           for name in ("malloc_trim_threshold_bytes", "malloc_mmap_threshold_bytes")}


def churn(trim: int, mmap: int, **env: str) -> tuple[bool, int, int]:
    """Whether the thresholds were set, and the minor page faults of 20 requests after the first on the main thread
    and on another, in a fresh interpreter (the thresholds are the process's) whose environment gives glibc no
    settings of its own but `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", CHURN, str(trim), str(mmap)], cwd=ROOT, check=True,
                         env={**clean, **env}, capture_output=True, text=True).stdout.split()
    return out[0] == "True", int(out[1]), int(out[2])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_with_the_services_thresholds_a_request_s_freed_memory_is_not_faulted_in_again_on_any_thread():
    adaptive, *glibc_faults = churn(0, 0)
    if min(glibc_faults) < PAGES // 4:  # transparent huge pages (enabled=always) map the blocks without them
        pytest.skip(f"this kernel faulted only {glibc_faults} pages in with glibc's own thresholds, of {PAGES}")
    kept, *kept_faults = churn(SERVICE["malloc_trim_threshold_bytes"], SERVICE["malloc_mmap_threshold_bytes"])
    assert kept and not adaptive
    assert max(kept_faults) < PAGES // 50, (kept_faults, glibc_faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "131072"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"}])
def test_glibc_s_own_settings_in_the_environment_are_kept(env):
    kept, *_ = churn(SERVICE["malloc_trim_threshold_bytes"], SERVICE["malloc_mmap_threshold_bytes"], **env)
    assert not kept


def test_the_thresholds_are_set_both_or_neither_and_the_mmap_one_within_glibc_s_range():
    with pytest.raises(ValidationError, match="RETAIL_MALLOC_TRIM_THRESHOLD_BYTES and RETAIL_MALLOC_MMAP_THRESHOLD"):
        ApiSettings(malloc_trim_threshold_bytes=0)
    with pytest.raises(ValidationError, match="malloc_mmap_threshold_bytes"):
        ApiSettings(malloc_mmap_threshold_bytes=32 * 2**20 + 1)
    neither = ApiSettings(malloc_trim_threshold_bytes=0, malloc_mmap_threshold_bytes=0)
    assert neither.malloc_trim_threshold_bytes == neither.malloc_mmap_threshold_bytes == 0
