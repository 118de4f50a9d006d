"""The studio process's own files: one work folder (generated clips, copies of study keys, Gradio's upload
cache) that is removed however the app ends: a normal exit, Ctrl-C, SIGTERM or SIGHUP (kill, systemd,
docker stop, a closed terminal), or an exception. Imports no Gradio: `make_work_root` must run before it.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from pathlib import Path

EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def make_work_root() -> Path:
    """A fresh work folder, removed at exit; Gradio's upload cache is put inside it (GRADIO_TEMP_DIR), so it
    goes too. Call before gradio is imported: some Gradio modules read GRADIO_TEMP_DIR at import time."""
    root = Path(tempfile.mkdtemp(prefix="mmdiff-studio-")).resolve()
    os.environ["GRADIO_TEMP_DIR"] = str(root / "uploads")
    atexit.register(shutil.rmtree, root, True)
    return root


def exit_on_signals(signals=EXIT_SIGNALS) -> list[int]:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt in the main thread, as Ctrl-C: Gradio's launch() then closes
    the server and returns, and the launcher's cleanup runs. A second signal ends the process at once.
    Returns the list the received signal numbers are appended to."""
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)
        for s in signals:
            signal.signal(s, signal.SIG_DFL)
        raise KeyboardInterrupt

    for s in signals:
        signal.signal(s, handler)
    # Ctrl-C (SIGINT) raises KeyboardInterrupt even when the app was started with SIGINT ignored, which a child
    # inherits: a script's background job, or a test runner that ignores it at the time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return received
