"""`MicroBatcher`: the items of concurrent requests (texts to embed, actions to score) run together
in one call: one forward pass, one index search.

One worker thread owns the model (or the index). Requests put jobs (a kind and some items) on a
queue and get a `concurrent.futures.Future`. The worker takes the first waiting job, waits up to ``max_wait``
seconds for more while the batch holds fewer than ``max_batch`` texts, then runs each kind's texts
in one call of ``run(kind, texts)`` and hands every job its slice of the results. A job never waits
more than ``max_wait`` for company, and jobs of one kind are never split.

The queue is bounded: with ``max_queue`` set, a job that would bring the items waiting above it
is refused at once with `QueueFull` (the server answers 429 with ``Retry-After``), and a job larger
than the whole queue with `JobTooLarge` (413: it could never be taken). Latency and memory stay
bounded under any load instead of growing with the backlog.

``call(fn)`` runs any function on the worker thread between batches: servers load their model and
build their index there, so that all of a process's torch work runs on one thread. On a CPU this
matters: PyTorch's OpenMP threads (libgomp) belong to the thread that started them, and once two
threads have started teams there are more OpenMP threads than cores, their waits turn to sleeps,
and every operator of the worker ran 1.5-2x slower than the same work on one thread
(``benchmarks/bench_serve_load.py``, docs/serving.md "Under load").

``close()`` stops new jobs, runs those already queued, and joins the worker (graceful shutdown).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

_STOP = object()
_CALL = object()  # the kind of a `call` job: its one item is the function to run


class BatcherClosed(RuntimeError):
    """The batcher no longer takes jobs (the server is shutting down)."""


class QueueFull(RuntimeError):
    """The queue holds too many items to take this job now; ``retry_after`` is a whole number of seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JobTooLarge(ValueError):
    """A job of more items than the whole queue holds: it can never be taken, so it is refused at once."""


@dataclass
class _Job:
    kind: Hashable
    texts: list[Any]  # the items: texts to embed, or anything ``run`` takes
    future: Future = field(default_factory=Future)


@dataclass
class BatcherStats:
    """Counts since start: batches run, items (texts), jobs, the largest batch, seconds spent running."""

    batches: int = 0
    texts: int = 0
    jobs: int = 0
    largest: int = 0
    seconds: float = 0.0


class MicroBatcher:
    """Batch the texts of concurrent jobs (see the module docstring).

    Args:
        run: ``run(kind, items) -> results``, one result per item, in order; called on the worker thread only.
        max_batch: most items gathered before running (a single larger job still runs whole).
        max_wait: seconds the first job of a batch may wait for others.
        max_queue: most items waiting (None: unbounded); see the module docstring.
        on_batch: ``on_batch(size, seconds)`` after each batch run (metrics), on the worker thread.
        unit: what an item is called in error messages ("texts", "steps").
    """

    def __init__(self, run: Callable[[Hashable, list[Any]], Sequence[Any]], *, max_batch: int = 32,
                 max_wait: float = 0.005, max_queue: int | None = None,
                 on_batch: Callable[[int, float], None] | None = None, unit: str = "texts",
                 name: str = "sr3-batcher") -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait >= 0, got {max_batch} and {max_wait}.")
        if max_queue is not None and max_queue < 1:
            raise ValueError(f"max_queue must be >= 1 (or None for no bound), got {max_queue}.")
        self._run = run
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait)
        self.max_queue = None if max_queue is None else int(max_queue)
        self.unit = unit
        self._on_batch = on_batch
        self._waiting = 0  # items queued and not yet taken by the worker
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self.stats = BatcherStats()

    def start(self) -> "MicroBatcher":
        if not self._thread.is_alive() and not self._closed.is_set():
            self._thread.start()
        return self

    @property
    def pending(self) -> int:
        """Jobs waiting in the queue (not counting the batch being run)."""
        return self._queue.qsize()

    @property
    def waiting(self) -> int:
        """Items (texts) waiting in the queue (not counting the batch being run)."""
        return self._waiting

    def retry_after(self) -> int:
        """Seconds until the items waiting now have likely run (at the rate measured so far), 1 to 60."""
        stats = self.stats
        per_item = stats.seconds / stats.texts if stats.texts else 0.1
        return int(min(60, max(1, math.ceil(self._waiting * per_item))))

    def submit(self, kind: Hashable, texts: Sequence[Any]) -> Future:
        """Queue a job; its future resolves to ``run``'s results for ``texts`` (or its exception).

        Raises `BatcherClosed` while shutting down, `JobTooLarge` or `QueueFull` past ``max_queue``."""
        job = _Job(kind, list(texts))
        size = len(job.texts)
        with self._lock:  # no job may slip in after close() queued the stop marker
            if self._closed.is_set():
                raise BatcherClosed("The server is shutting down and takes no new requests.")
            if self.max_queue is not None:
                if size > self.max_queue:
                    raise JobTooLarge(f"The request holds {size} {self.unit}; this server queues at most {self.max_queue} "
                                      f"(--max-queue). Split it into requests of at most {self.max_queue}.")
                if self._waiting + size > self.max_queue:
                    wait = self.retry_after()
                    raise QueueFull(f"The server is at capacity: {self._waiting} {self.unit} are waiting and it queues at "
                                    f"most {self.max_queue} (--max-queue). Retry in {wait} s.", wait)
            self._waiting += size
            self._queue.put(job)
        return job.future

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn()`` on the worker thread (between batches); the future holds its result or exception.

        It counts as no item against ``max_queue``. Raises `BatcherClosed` while shutting down."""
        job = _Job(_CALL, [fn])
        with self._lock:
            if self._closed.is_set():
                raise BatcherClosed("The server is shutting down and takes no new requests.")
            self._queue.put(job)
        return job.future

    def _taken(self, job: _Job) -> None:
        if job.kind is _CALL:
            return
        with self._lock:
            self._waiting -= len(job.texts)

    def close(self, timeout: float | None = None) -> None:
        """Take no new jobs, finish the queued ones, stop the worker."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the worker ---------------------------------------------------------------------------

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job plus those arriving within ``max_wait`` (up to ``max_batch`` texts); True when
        the stop marker was seen."""
        jobs, count = [first], len(first.texts)
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return jobs, True
            self._taken(item)
            jobs.append(item)
            count += 0 if item.kind is _CALL else len(item.texts)
        return jobs, False

    def _work(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            self._taken(item)
            jobs, stopping = self._gather(item)
            self._run_jobs([job for job in jobs if job.future.set_running_or_notify_cancel()])
        while True:  # close(): jobs queued before the stop marker still run
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                self._taken(item)
                if item.future.set_running_or_notify_cancel():
                    self._run_jobs([item])

    def _run_jobs(self, jobs: list[_Job]) -> None:
        kinds: dict[Hashable, list[_Job]] = {}
        for job in jobs:
            kinds.setdefault(job.kind, []).append(job)
        for kind, group in kinds.items():
            if kind is _CALL:
                for job in group:
                    self._call(job)
                continue
            texts = [text for job in group for text in job.texts]
            started = time.perf_counter()
            try:
                results = list(self._run(kind, texts))
                if len(results) != len(texts):
                    raise RuntimeError(f"run({kind!r}, ...) returned {len(results)} results for {len(texts)} texts.")
            except Exception as error:  # handed to every waiting request, which reports it
                logger.exception("batch of %d texts (%r) failed", len(texts), kind)
                for job in group:
                    job.future.set_exception(error)
                continue
            seconds = time.perf_counter() - started
            self.stats.batches += 1
            self.stats.seconds += seconds
            self.stats.texts += len(texts)
            self.stats.jobs += len(group)
            self.stats.largest = max(self.stats.largest, len(texts))
            if self._on_batch is not None:
                self._on_batch(len(texts), seconds)
            start = 0
            for job in group:
                job.future.set_result(results[start:start + len(job.texts)])
                start += len(job.texts)

    @staticmethod
    def _call(job: _Job) -> None:
        try:
            result = job.texts[0]()
        except Exception as error:  # handed to the caller, which raises it
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
