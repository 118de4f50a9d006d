"""The project installs as a package: the wheel carries the code, the shipped models, the study templates and the
console scripts, and every script names a real `main`. README's test command is `.ci/run` itself."""
from __future__ import annotations

import configparser
import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # Build from a copy of the tracked files, so the check sees what a clean clone has (no stray build/ folder).
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        src, dst = ROOT / name.decode(), build / name.decode()
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(build)],
                   check=True, capture_output=True)
    (whl,) = out.glob("mmdiff_studio-*.whl")
    return whl


def test_wheel_carries_code_models_and_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("app.py", "mmdiff/__init__.py", "mmdiff/nn/unet.py", "eval/run.py", "studio/app.py",
                   "mmdiff/assets/tiny-synthetic.pt", "mmdiff/assets/sr-tiny-synthetic.pt",
                   "eval/study/templates/hit.html", "studio/examples/examples.json",
                   "studio/examples/red_ball_bounces_twice.mp4", "studio/examples/blue_ball_three_low_clicks.wav"):
        assert needed in names, needed
    assert not any(n.startswith("tests/") for n in names)


def test_wheel_declares_dependencies_and_working_console_scripts(wheel):
    z = zipfile.ZipFile(wheel)
    meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = {line.split(":", 1)[1].strip().split("==")[0].lower() for line in meta.splitlines()
                if line.startswith("Requires-Dist:")}
    assert {"torch", "numpy", "gradio", "av"} <= requires
    entry = configparser.ConfigParser()
    entry.read_string(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))).decode())
    scripts = dict(entry["console_scripts"])
    assert {"mmdiff-studio", "mmdiff-train", "mmdiff-sample", "mmdiff-eval"} <= set(scripts)
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target


def test_readme_test_command_is_ci_run():
    readme = (ROOT / "README.md").read_text()
    assert "```bash\nbash .ci/run\n```" in readme
    assert "pytest" in (ROOT / ".ci" / "run").read_text()
