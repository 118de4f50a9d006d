"""mmdiff.data.prepare: bad input is refused in one line, exit 2, before anything is written (issue 19:
--segment-seconds -1 wrote index.json first, which then blocked every valid run). Rows in docs/errors.md."""
from __future__ import annotations

import re
from fractions import Fraction

import pytest
from data_media import pattern_frames, tone_signal, write_source

from mmdiff.data import prepare as prep
from mmdiff.outdir import FolderLock

FLAGS = ["--fps", "10", "--size", "32", "--audio-rate", "8000", "--quiet"]


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    write_source(d / "a.mp4", pattern_frames(40, 32, 32), Fraction(10), tone_signal(32000, 8000, 1), 8000)
    return d


def _file(out):
    out.write_text("my notes")


def _foreign(out):
    out.mkdir()
    (out / "thesis.tex").write_text("mine")


CASES = {   # case -> (extra flags, prepare --out, what the user sees)
    "--segment-seconds -1": (["--segment-seconds", "-1"], None, "--segment-seconds must be > 0, got -1"),
    "--segment-seconds 0": (["--segment-seconds", "0"], None, "--segment-seconds must be > 0, got 0"),
    "segment shorter than --min-seconds": (["--segment-seconds", "0.5"], None,
                                           "--segment-seconds 0.5 is shorter than --min-seconds 1.6"),
    "--skip-head -2": (["--skip-head", "-2"], None, "--skip-head must be >= 0, got -2"),
    "--min-seconds 0": (["--min-seconds", "0"], None, "--min-seconds must be > 0, got 0"),
    "--workers 0": (["--workers", "0"], None, "--workers must be >= 1, got 0"),
    "--skip-head inf": (["--skip-head", "inf"], None, "--skip-head must be a finite number of seconds, got inf"),
    "--segment-seconds inf": (["--segment-seconds", "inf"], None, "--segment-seconds must be a finite number"),
    "--min-seconds nan": (["--min-seconds", "nan"], None, "--min-seconds must be a finite number"),
    "--out is a file": ([], _file, "exists and is not a folder"),
    "--out holds other files": ([], _foreign, "holds other files (thesis.tex) and no index.json"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_catalogue(case, src, tmp_path, capsys):
    flags, make, message = CASES[case]
    out = tmp_path / "cache"
    if make:
        make(out)
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else None
    assert prep.main(["--src", str(src), "--out", str(out), *FLAGS, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else None) == before   # nothing written
    if make is None:                                                          # a valid run is not blocked
        assert prep.main(["--src", str(src), "--out", str(out), *FLAGS]) == 0


def test_a_concurrent_prepare_into_the_same_cache_is_refused(src, tmp_path, capsys):
    out = tmp_path / "cache"
    out.mkdir()
    with FolderLock(out):
        assert prep.main(["--src", str(src), "--out", str(out), *FLAGS]) == 2
    assert re.search(r"^error: .* is in use by another run \(pid \d+ ", capsys.readouterr().err)
    assert prep.main(["--src", str(src), "--out", str(out), *FLAGS]) == 0
