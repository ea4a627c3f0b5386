"""Dynamic batching: requests that arrive within a short window and share the sampling settings
are thought in one thinker batch and drawn in one DiT batch.

One worker thread owns the pipeline. A :class:`Job` is one request (one prompt, ``n`` images that
share its reasoning). The queue is bounded: a full queue refuses at once (the server answers
429). A job whose client went away is cancelled: its slot is freed at once, and a batch whose jobs
are all cancelled stops at the next denoising step.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from ..pipeline import to_pil


class QueueFull(Exception):
    """The queue holds as many requests as it may; try again later."""


class Cancelled(Exception):
    """Every request of a batch was cancelled."""


@dataclass
class Job:
    prompt: str
    n: int
    height: int
    width: int
    steps: int
    guidance_scale: float
    seed: int
    think: bool
    negative_prompt: str | None = None
    image: Image.Image | None = None  # editing: the source image
    events: Callable[[dict[str, Any]], None] | None = None  # streaming: reasoning deltas, previews
    partial_images: int = 0
    # filled in by the worker
    done: threading.Event = field(default_factory=threading.Event)
    images: list[Image.Image] = field(default_factory=list)
    reasoning: str = ""
    rewritten: str = ""
    error: Exception | None = None
    cancelled: bool = False
    created: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple:
        """Jobs with the same key can share a batch. Edits share one only with sources of the same size:
        a conditioning may draw an edit at its source's size (``thinkgen-release``)."""
        source = None if self.image is None else self.image.size
        return (self.height, self.width, self.steps, self.guidance_scale, self.think, source)


BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass
class Stats:
    """What /metrics reports: cumulative counters and histograms (Prometheus' semantics), and the
    sizes of the most recent batches."""

    batch_sizes: deque = field(default_factory=lambda: deque(maxlen=10_000))  # recent batches, requests each
    batch_buckets: list[int] = field(default_factory=lambda: [0] * len(BATCH_BUCKETS))
    batches: int = 0
    batched_requests: int = 0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    latency_count: int = 0
    latency_sum: float = 0.0
    images: int = 0
    rejected: int = 0
    cancelled: int = 0
    retried: int = 0  # requests drawn again alone after their batch failed

    def record_batch(self, size: int) -> None:
        self.batch_sizes.append(size)
        self.batches += 1
        self.batched_requests += size
        for i, bound in enumerate(BATCH_BUCKETS):
            self.batch_buckets[i] += size <= bound

    def record_latency(self, seconds: float) -> None:
        self.latency_count += 1
        self.latency_sum += seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            self.latency_buckets[i] += seconds <= bound


class Batcher:
    """Runs jobs on ``pipe`` from one worker thread, batching those that arrive within ``window_s``."""

    def __init__(self, pipe, capacity: int = 64, window_s: float = 0.02, max_batch_images: int = 32,
                 batching: bool = True) -> None:
        self.pipe, self.capacity, self.window_s = pipe, capacity, window_s
        self.max_batch_images, self.batching = max_batch_images, batching
        self.queue: queue.Queue[Job] = queue.Queue()
        self.slots = threading.BoundedSemaphore(capacity)
        self.stats = Stats()
        self._held: set[int] = set()  # ids of jobs holding a slot
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="thinkgen-batcher", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ the request side
    @property
    def depth(self) -> int:
        with self._lock:
            return len(self._held)

    def submit(self, job: Job) -> Job:
        """Queue a job, or raise :class:`QueueFull` at once."""
        if not self.slots.acquire(blocking=False):
            self.stats.rejected += 1
            raise QueueFull(f"the queue holds {self.capacity} requests")
        with self._lock:
            self._held.add(id(job))
        self.queue.put(job)
        return job

    def cancel(self, job: Job) -> None:
        """The client went away: free its slot now; the worker skips or stops its work. Counted
        once, whether it was waiting or being drawn."""
        with self._lock:
            counted = job.cancelled or job.done.is_set()
            job.cancelled = True
        if not counted:
            self.stats.cancelled += 1
        self._release(job)

    def _release(self, job: Job) -> None:
        with self._lock:
            if id(job) not in self._held:
                return
            self._held.discard(id(job))
        self.slots.release()

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5)

    # ------------------------------------------------------------------ the worker
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            if self.batching:
                deadline = time.monotonic() + self.window_s
                held_back: list[Job] = []
                while sum(j.n for j in batch) < self.max_batch_images:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        job = self.queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                    fits = job.key == first.key and sum(j.n for j in batch) + job.n <= self.max_batch_images
                    (batch if fits else held_back).append(job)
                for job in held_back:  # they belong to another batch: back in the queue (at its end)
                    self.queue.put(job)
            for job in batch:  # a cancelled job that never ran: its waiter is told, its slot is free
                if job.cancelled:
                    job.error = Cancelled("cancelled")
                    job.done.set()
            batch = [job for job in batch if not job.cancelled]
            if batch:
                self._draw(batch)

    def _draw(self, batch: list[Job]) -> None:
        """Draw a batch; when it fails, each of its requests alone, so that one bad request (one
        that passed validation but fails inside the pipeline) fails nobody else."""
        error = self._draw_together(batch)
        if error is None or isinstance(error, Cancelled):
            self._finish(batch)
        elif len(batch) == 1:
            batch[0].error = error
            self._finish(batch)
        else:
            self.stats.retried += len(batch)
            for job in batch:
                job.error = Cancelled("cancelled") if job.cancelled else self._draw_together([job])
                self._finish([job])

    def _finish(self, batch: list[Job]) -> None:
        self.stats.record_batch(len(batch))
        now = time.monotonic()
        for job in batch:
            self.stats.record_latency(now - job.created)
            self._release(job)
            job.done.set()

    def _draw_together(self, batch: list[Job]) -> Exception | None:
        """One pipeline call for the batch; its images go to the jobs. Returns the error, if any."""
        pipe, first = self.pipe, batch[0]
        seeds = [job.seed + k for job in batch for k in range(job.n)]
        streams = [job for job in batch if job.events is not None]
        sent = {id(job): "" for job in streams}

        def on_tokens(completions: torch.Tensor) -> None:  # reasoning deltas while the thinker writes
            if all(job.cancelled for job in batch):  # every client left: stop thinking now
                raise Cancelled
            for row, job in enumerate(batch):
                if job.events is None:
                    continue
                text = pipe.thinker.tokenizer.decode(completions[row].tolist(), skip_special_tokens=True)
                if text.startswith(sent[id(job)]) and len(text) > len(sent[id(job)]):
                    job.events({"type": "reasoning.delta", "delta": text[len(sent[id(job)]):]})
                    sent[id(job)] = text

        def on_step(step: int, latents: torch.Tensor) -> None:
            if all(job.cancelled for job in batch):
                raise Cancelled
            for job in streams:
                points = partial_steps(first.steps, job.partial_images)
                if step + 1 in points:
                    start = sum(j.n for j in batch[: batch.index(job)])
                    pixels = pipe.decode(latents[start : start + job.n], first.height, first.width)
                    job.events({"type": "partial_image", "images": to_pil(pixels), "index": points.index(step + 1)})

        pipe.thinker.token_callback = on_tokens
        try:
            out = pipe([job.prompt for job in batch], think=first.think, seeds=seeds,
                       num_images_per_prompt=[job.n for job in batch], height=first.height, width=first.width,
                       num_inference_steps=first.steps, guidance_scale=first.guidance_scale,
                       negative_prompt=[job.negative_prompt or "" for job in batch]
                       if any(job.negative_prompt for job in batch) else None,
                       images=[[job.image] for job in batch] if first.image is not None else None,
                       step_callback=on_step)
            position = 0
            for job in batch:
                job.images = out.images[position : position + job.n]
                job.reasoning, job.rewritten = out.reasoning[position], out.rewritten[position]
                position += job.n
            self.stats.images += position
            return None
        except Cancelled as error:  # every client left (each was counted when it left)
            for job in batch:
                job.error = error
            return error
        except Exception as error:  # a bad request that passed validation must not stop the worker
            return error
        finally:
            pipe.thinker.token_callback = None


def partial_steps(steps: int, partial_images: int) -> list[int]:
    """The steps (counted from 1) after which a stream gets its ``partial_images`` previews: evenly
    spread, before the last step, as many as asked where the steps allow."""
    points = sorted({round(steps * (i + 1) / (partial_images + 1)) for i in range(partial_images)})
    return [p for p in points if 1 <= p < steps]

