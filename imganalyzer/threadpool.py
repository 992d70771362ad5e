"""``map`` on a bounded thread pool, in order: the decode job's pool and the model jobs'
loaders use it. Kept apart from the decode job so that a model job imports no decoder."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

# Images kept decoding ahead of the writer, per thread: enough to hide one slow
# RAW behind the others without holding a whole shard of pixels in memory.
LOOKAHEAD_PER_THREAD = 4

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool, in order, with a bounded number in flight."""
    items = iter(items)
    lookahead = max(1, threads) * LOOKAHEAD_PER_THREAD
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        pending = deque(pool.submit(fn, item) for item in itertools.islice(items, lookahead))
        while pending:
            result = pending.popleft().result()
            for item in itertools.islice(items, 1):
                pending.append(pool.submit(fn, item))
            yield result
