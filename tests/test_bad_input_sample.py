"""mmdiff.sample --out: the folder belongs to one run (issue 19: stale samples the manifest does not list,
two runs interleaving). Catalogue rows in docs/errors.md."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from studio_fixtures import tiny_checkpoint

from mmdiff import sample
from mmdiff.outdir import claim

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--num", "1", "--sampler", "ddim", "--steps", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt")


def _old_samples(out: Path) -> None:
    out.mkdir()
    (out / "sample_000007.mp4").write_bytes(b"from seed 100")
    (out / "manifest.json").write_text(json.dumps({"seed": 100, "samples": ["sample_000007"]}))


def _project(out: Path) -> None:           # somebody's code project: its manifest.json looks like ours
    (out / "src").mkdir(parents=True)
    (out / "manifest.json").write_text('{"name": "app"}')
    (out / "src" / "main.js").write_text("code")


def _favourites(out: Path) -> None:
    _old_samples(out)
    (out / "favorites").mkdir()
    (out / "favorites" / "best.mp4").write_bytes(b"kept")
    (out / "my_notes.txt").write_text("seed 100 is the one")


CASES = {   # case -> (prepare the folder, extra flags, what the user sees on stderr)
    "non-empty --out": (_old_samples, [], r"^error: .* is not empty \(manifest.json, sample_000007.mp4\); "
                                         r"choose a new --out, or add --overwrite"),
    "--out is a file": (lambda out: out.write_text("x"), [], r"^error: .* exists and is not a folder"),
    "--overwrite on a folder no run wrote": (lambda out: (out.mkdir(), (out / "notes.txt").write_text("mine")),
                                             ["--overwrite"], r"^error: .* holds files that no mmdiff run wrote"),
    "--overwrite on a project folder with a manifest.json": (
        _project, ["--overwrite"], r"^error: .* also holds files that an earlier run did not write \(src/main.js\)"),
    "--overwrite with the user's favourites beside old samples": (
        _favourites, ["--overwrite"], r"^error: .* did not write \(favorites/best.mp4, my_notes.txt\)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_catalogue(case, ckpt, tmp_path, capsys):
    make, flags, message = CASES[case]
    out = tmp_path / "out"
    make(out)
    before = sorted(map(str, out.rglob("*"))) if out.is_dir() else out.read_text()
    assert sample.main(["--ckpt", str(ckpt), "--out", str(out), *FAST, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert __import__("re").search(message, err), err
    assert (sorted(map(str, out.rglob("*"))) if out.is_dir() else out.read_text()) == before


def test_a_refused_run_keeps_the_earlier_samples_even_with_overwrite(ckpt, tmp_path, capsys):
    """--overwrite clears the earlier run only once the new one is set up: a typo in --ckpt or flags the model
    cannot take leave the old samples where they were."""
    out = tmp_path / "out"
    assert sample.main(["--ckpt", str(ckpt), "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in out.iterdir())
    for flags in (["--ckpt", str(tmp_path / "typo.pt")], ["--ckpt", str(ckpt), "--guidance", "trained", "--two-step"]):
        assert sample.main(["--out", str(out), *FAST, "--overwrite", *flags]) == 2
        assert capsys.readouterr().err.startswith("error: ")
        assert sorted(p.name for p in out.iterdir()) == before


def test_a_concurrent_run_into_the_same_folder_is_refused(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    with claim(out, "other"):                   # another run holding the folder
        assert sample.main(["--ckpt", str(ckpt), "--out", str(out), *FAST, "--overwrite"]) == 2
    assert f"in use by another run (pid {os.getpid()}" in capsys.readouterr().err


def test_overwrite_leaves_only_what_the_manifest_lists(ckpt, tmp_path):
    out = tmp_path / "out"
    _old_samples(out)
    assert sample.main(["--ckpt", str(ckpt), "--out", str(out), *FAST, "--overwrite"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["samples"] == ["sample_000000"]
    media = sorted(p.name for p in out.iterdir() if p.suffix in (".mp4", ".wav"))
    assert media == ["sample_000000.mp4", "sample_000000.wav"]


def test_the_ranks_of_one_sharded_launch_share_the_folder(ckpt, tmp_path):
    """torchrun-style: both ranks are children of one launcher, rank 0 claims, rank 1 joins."""
    out = tmp_path / "out"
    procs = []
    for rank in (1, 0):
        env = {**os.environ, "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": str(rank),
               "MASTER_PORT": "29999", "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen([sys.executable, "-m", "mmdiff.sample", "--ckpt", str(ckpt), "--out", str(out),
                                       "--num", "2", "--batch-size", "1", "--sampler", "ddim", "--steps", "1",
                                       "--device", "cpu"], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    assert sorted(p.name for p in out.glob("*.mp4")) == ["sample_000000.mp4", "sample_000001.mp4"]
    assert sorted(p.name for p in out.glob("manifest*.json")) == ["manifest.rank0.json", "manifest.rank1.json"]


def test_a_refusal_after_the_claim_does_not_block_the_next_run(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    assert sample.main(["--ckpt", str(ckpt), "--out", str(out), *FAST, "--prompt", "a dog"]) == 2   # no text model
    assert capsys.readouterr().err.startswith("error: ")
    assert not out.exists()
    assert sample.main(["--ckpt", str(ckpt), "--out", str(out), *FAST]) == 0
