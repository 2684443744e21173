"""Micro-batching: images of concurrent requests scored together, off the event loop.

One network call on eight images costs far less than eight calls on one (the engine's fixed
cost per call, and its threads kept busy), so the batcher waits up to `wait_ms` after the first
image for others, up to `max_batch`, and scores them in its own thread while the event loop
goes on accepting requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_POLL_S = 0.0005


class MicroBatcher:
    """Collects preprocessed images (3, H, W) and returns each one's P(fake).

    `score_batch` takes an (N, 3, H, W) array and returns N scores; it runs in one thread, so
    the engine's own threads have the cores to themselves. `max_batch=1` scores every image
    alone (micro-batching off), for comparison.
    """

    def __init__(self, score_batch: Callable[[np.ndarray], np.ndarray], max_batch: int = 8,
                 wait_ms: float = 5.0) -> None:  # fmt: skip
        self.score_batch = score_batch
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000
        self.batches = 0  # calls made, for tests and the load test
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="scoring")

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def score(self, image: np.ndarray) -> float:
        if self._queue is None:
            raise RuntimeError("the batcher has not been started")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((image, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                # polled, not awaited with a timeout: a get() cancelled by a timeout at the
                # moment it receives an image would lose that image
                await asyncio.sleep(min(remaining, _POLL_S))
            await self._score(loop, batch)

    async def _score(self, loop, batch) -> None:
        live = [(image, future) for image, future in batch if not future.cancelled()]
        if not live:
            return
        try:
            stacked = np.stack([image for image, _ in live])
            scores = await loop.run_in_executor(self._executor, self.score_batch, stacked)
            self.batches += 1
        except Exception as exc:  # one failed call fails its own requests, not the server
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), score in zip(live, scores, strict=True):
            if not future.done():
                future.set_result(float(score))
