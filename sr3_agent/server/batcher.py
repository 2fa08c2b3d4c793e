"""`MicroBatcher`: texts of concurrent requests run together in one forward pass.

One worker thread owns the model. Requests put jobs (a kind and some texts) on a queue and get a
`concurrent.futures.Future`. The worker takes the first waiting job, waits up to ``max_wait``
seconds for more while the batch holds fewer than ``max_batch`` texts, then runs each kind's texts
in one call of ``run(kind, texts)`` and hands every job its slice of the results. A job never waits
more than ``max_wait`` for company, and jobs of one kind are never split.

``close()`` stops new jobs, runs those already queued, and joins the worker (graceful shutdown).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

_STOP = object()


class BatcherClosed(RuntimeError):
    """The batcher no longer takes jobs (the server is shutting down)."""


@dataclass
class _Job:
    kind: Hashable
    texts: list[str]
    future: Future = field(default_factory=Future)


@dataclass
class BatcherStats:
    """Counts since start: batches run, texts, jobs, and the largest batch (texts)."""

    batches: int = 0
    texts: int = 0
    jobs: int = 0
    largest: int = 0


class MicroBatcher:
    """Batch the texts of concurrent jobs (see the module docstring).

    Args:
        run: ``run(kind, texts) -> results``, one result per text, in order; called on the worker thread only.
        max_batch: most texts gathered before running (a single larger job still runs whole).
        max_wait: seconds the first job of a batch may wait for others.
    """

    def __init__(self, run: Callable[[Hashable, list[str]], Sequence[Any]], *, max_batch: int = 32,
                 max_wait: float = 0.005, name: str = "sr3-batcher") -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait >= 0, got {max_batch} and {max_wait}.")
        self._run = run
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait)
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

    def submit(self, kind: Hashable, texts: Sequence[str]) -> Future:
        """Queue a job; its future resolves to ``run``'s results for ``texts`` (or its exception)."""
        job = _Job(kind, list(texts))
        with self._lock:  # no job may slip in after close() queued the stop marker
            if self._closed.is_set():
                raise BatcherClosed("The server is shutting down and takes no new requests.")
            self._queue.put(job)
        return job.future

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
            jobs.append(item)
            count += len(item.texts)
        return jobs, False

    def _work(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            jobs, stopping = self._gather(item)
            self._run_jobs([job for job in jobs if job.future.set_running_or_notify_cancel()])
        while True:  # close(): jobs queued before the stop marker still run
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP and item.future.set_running_or_notify_cancel():
                self._run_jobs([item])

    def _run_jobs(self, jobs: list[_Job]) -> None:
        kinds: dict[Hashable, list[_Job]] = {}
        for job in jobs:
            kinds.setdefault(job.kind, []).append(job)
        for kind, group in kinds.items():
            texts = [text for job in group for text in job.texts]
            try:
                results = list(self._run(kind, texts))
                if len(results) != len(texts):
                    raise RuntimeError(f"run({kind!r}, ...) returned {len(results)} results for {len(texts)} texts.")
            except Exception as error:  # handed to every waiting request, which reports it
                logger.exception("batch of %d texts (%r) failed", len(texts), kind)
                for job in group:
                    job.future.set_exception(error)
                continue
            self.stats.batches += 1
            self.stats.texts += len(texts)
            self.stats.jobs += len(group)
            self.stats.largest = max(self.stats.largest, len(texts))
            start = 0
            for job in group:
                job.future.set_result(results[start:start + len(job.texts)])
                start += len(job.texts)
