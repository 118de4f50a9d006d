"""Run a sampling job in a worker thread and stream its progress and live previews to a Gradio generator."""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterator

import numpy as np

from mmdiff.viz import preview_grid

# The UI is updated at most this often while a job runs: each update costs the page and the server about
# 0.1 s (measured: 51 per-step updates added 5.2 s to a 8.1-s DDIM-50 sample on 2 cores, BENCHMARKS.md).
UPDATE_INTERVAL_S = 1.0


def progress_text(label: str, step: int, steps: int, elapsed: float) -> str:
    """"sampling: step 12/50, 3.1 s elapsed, about 9.8 s left": the estimate assumes the steps still to go
    take as long as the mean step so far."""
    text = f"{label}: step {step}/{steps}, {elapsed:.1f} s elapsed"
    if 0 < step < steps:
        text += f", about {elapsed / step * (steps - step):.1f} s left"
    return text


def collect(q: queue.Queue, last_update: float | None, min_interval: float) -> list:
    """The messages waiting in `q`: at least one, and until `min_interval` s after the last UI update (or a
    "done" / "error" message), so the UI is updated at most every `min_interval` s; the first update goes
    out at once. Stale previews are skipped when the UI lags behind."""
    msgs = [q.get()]
    while msgs[-1][0] == "step":
        wait = 0.0 if last_update is None else last_update + min_interval - time.monotonic()
        try:
            msgs.append(q.get(timeout=wait) if wait > 0 else q.get_nowait())
        except queue.Empty:
            break
    return msgs


def stream_job(ctx, request, work: Callable, progress=None, kind: str = "job", label: str = "sampling",
               clock: Callable[[], float] = time.monotonic,
               min_interval: float = UPDATE_INTERVAL_S) -> Iterator[tuple[str, object]]:
    """Yield ("progress", (text, preview image (H, W, 3) uint8 or None)) while `work(on_step, cancel)` runs,
    at most every `min_interval` seconds of wall time, then ("done", result). The text says the step, the time
    elapsed since the call by `clock` and an estimate of the time left (progress_text).

    The job stops at its next sampler step when the Cancel button of its tab (`kind`) is pressed in
    its session or when the consumer goes away (the generator is closed), so a cancelled job frees
    the model at once.
    """
    q: queue.Queue = queue.Queue()
    cancel = ctx.new_cancel(request, kind)
    start = clock()

    def on_step(step: int, steps: int, preview: np.ndarray | None) -> None:
        q.put(("step", step, steps, preview, clock() - start))

    def target() -> None:
        try:
            q.put(("done", work(on_step, cancel)))
        except BaseException as e:   # noqa: BLE001 - handed to the consumer thread
            q.put(("error", e))

    worker = threading.Thread(target=target, name="studio-job", daemon=True)
    worker.start()
    last_update = None
    try:
        while True:
            msgs = collect(q, last_update, min_interval)
            latest, text = None, None
            for msg in msgs:
                if msg[0] == "error":
                    raise msg[1]
                if msg[0] == "done":
                    yield ("done", msg[1])
                    return
                _, step, steps, preview, elapsed = msg
                text = progress_text(label, step, steps, elapsed)
                if preview is not None:
                    latest = preview
            if progress is not None:
                progress(step / steps, desc=text)
            last_update = time.monotonic()
            yield ("progress", (text, None if latest is None else preview_grid(latest)))
    finally:
        cancel.set()                         # no-op after "done"; stops an abandoned job
        ctx.drop_cancel(request, cancel, kind)
