"""Run a sampling job in a worker thread and stream its progress and live previews to a Gradio generator."""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

import numpy as np

from mmdiff.viz import preview_grid


def stream_job(ctx, request, work: Callable, progress=None, kind: str = "job",
               label: str = "sampling") -> Iterator[tuple[str, object]]:
    """Yield ("preview", image (H, W, 3) uint8) while `work(on_step, cancel)` runs, then ("done", result).

    The job stops at its next sampler step when the Cancel button of its tab (`kind`) is pressed in
    its session or when the consumer goes away (the generator is closed), so a cancelled job frees
    the model at once.
    """
    q: queue.Queue = queue.Queue()
    cancel = ctx.new_cancel(request, kind)

    def on_step(step: int, steps: int, preview: np.ndarray | None) -> None:
        q.put(("step", step, steps, preview))

    def target() -> None:
        try:
            q.put(("done", work(on_step, cancel)))
        except BaseException as e:   # noqa: BLE001 - handed to the consumer thread
            q.put(("error", e))

    worker = threading.Thread(target=target, name="studio-job", daemon=True)
    worker.start()
    try:
        while True:
            msgs = [q.get()]
            while not q.empty():            # skip stale previews when the UI lags behind
                msgs.append(q.get_nowait())
            latest = None
            for msg in msgs:
                if msg[0] == "error":
                    raise msg[1]
                if msg[0] == "done":
                    yield ("done", msg[1])
                    return
                _, step, steps, preview = msg
                if progress is not None:
                    progress(step / steps, desc=f"{label}: step {step}/{steps}")
                if preview is not None:
                    latest = preview
            if latest is not None:
                yield ("preview", preview_grid(latest))
    finally:
        cancel.set()                         # no-op after "done"; stops an abandoned job
        ctx.drop_cancel(request, cancel, kind)
