"""The process's one pool of CPU threads, for pieces of a single request that can run side by side (the shapes of
a ghost job, the attributes of a new cut-out). OpenCV, Pillow, numpy and torch release the GIL in their heavy
loops, so two pieces take about the time of the longer one on two cores.

Shared by every request, so that many at once still use at most one thread per core. A task run here must not
submit to the pool and wait for that result: with every thread waiting, nothing would run.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

CPU_THREADS = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="cpu")
