"""The report's malloc settings: freed blocks stay in the process, so passes stop faulting pages in."""

from __future__ import annotations

import subprocess
import sys

import pytest

# allocates and frees a 64 MB tensor 40 times and prints the page faults that cost; ``keep`` first
# applies the report's settings, and ``kept()`` must say so (in a child process: mallopt lasts for
# the process)
CHILD = """
import resource, sys, torch
from gradcam_tutorial.evaluation import allocator
if sys.argv[1] == "keep":
    assert allocator.keep_freed_memory() and allocator.kept()
else:
    assert not allocator.kept()
torch.ones(16 << 20)  # the first allocation faults in either case
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    torch.ones(16 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the settings are glibc's")
def test_kept_memory_is_reused_instead_of_faulted_in_again():
    default, kept = faults("default"), faults("keep")
    assert default > 40 * 10_000  # glibc as shipped: each 64 MB block (16 384 pages) faulted in again
    assert kept < default / 4  # a few blocks at first (1-6 seen), then none
