"""`python app.py` removes its work folder and Gradio's upload cache however it is stopped (issue 19: SIGTERM
left the work folder, with copies of private study keys, and every upload stayed in Gradio's cache)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from studio_fixtures import free_port

ROOT = Path(__file__).resolve().parents[1]


def _wait_up(proc: subprocess.Popen, url: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail("the app did not start")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_app_removes_its_work_folder_and_uploads(tmp_path, sig):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    env.pop("GRADIO_TEMP_DIR", None)
    proc = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--threads", "1"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(proc, url)
        r = httpx.post(f"{url}/gradio_api/upload", files={"files": ("key.json", b'{"secret": 1}')}, timeout=30)
        r.raise_for_status()
        upload = Path(r.json()[0])
        (work,) = tmp.glob("mmdiff-studio-*")
        assert upload.is_file() and work in upload.parents          # Gradio's cache lives in the work folder
        (work / "session" / "study").mkdir(parents=True)              # what a session leaves, e.g. a study key
        (work / "session" / "study" / "key.json").write_text("{}")
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sorted(p.name for p in tmp.iterdir()) == []               # nothing of the app is left
