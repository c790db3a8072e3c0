"""Run a function over many files on every core, results in order, memory bounded.

Decoding and checking images is Pillow's C code, which lets go of the GIL, so plain
threads use every core without the start-up cost (and the pickling) of processes.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def worker_count() -> int:
    """Threads for image work: one per core, at most 8.

    Returns:
        The number of threads.
    """
    return max(1, min(8, os.cpu_count() or 1))


def map_in_order(function: Callable[[Item], Result], items: Iterable[Item], workers: int | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Iterator[Result]:
    """Yield ``function(item)`` for each item, in the items' order, computed on ``workers`` threads.

    Args:
        function: Called once per item; it must not raise (return the error instead).
        items: What to work on.
        workers: Threads (default :func:`worker_count`); 1 runs in the calling thread.
        should_stop: Checked before each result is handed out; when it returns True the
            work still queued is dropped and the generator ends (the caller decides what
            a stop means).

    Yields:
        ``function(item)`` for each item, in order.

    Only a few results per worker are in flight at a time, so memory stays flat however
    many items there are.
    """
    workers = workers or worker_count()
    stop = should_stop or (lambda: False)
    if workers == 1:
        for item in items:
            if stop():
                return
            yield function(item)
        return
    pending: deque = deque()
    iterator = iter(items)
    with ThreadPoolExecutor(workers, thread_name_prefix="imgcls-images") as pool:
        try:
            for item in iterator:
                pending.append(pool.submit(function, item))
                if len(pending) >= workers * 4:
                    if stop():
                        return
                    yield pending.popleft().result()
            while pending:
                if stop():
                    return
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
