"""python -m mmdiff.data.synthetic: bad input and output folders (issue 19). Rows in docs/errors.md."""
from __future__ import annotations

import json

import pytest

from mmdiff.data import synthetic as syn
from mmdiff.outdir import claim

FAST = ["--num", "2", "--seed", "0", "--size", "32", "--quiet"]


def _earlier_run(out):
    assert syn.main(["--out", str(out), *FAST, "--cache"]) == 0


def _file(out):
    out.write_text("notes")


def _foreign(out):
    out.mkdir()
    (out / "holiday.mp4").write_bytes(b"mine")


def _study(out):
    with claim(out, "eval.study build"):
        (out / "private").mkdir()


def _events_and_data(out):                  # an events.jsonl of the user's own, and their data
    (out / "sub").mkdir(parents=True)
    (out / "events.jsonl").write_text("{}\n")
    (out / "sub" / "data.bin").write_bytes(b"mine")


CASES = {   # case -> (prepare --out, extra flags, what the user sees)
    "--out holds an earlier run": (_earlier_run, [], "is not empty (.mmdiff-run.json, events.jsonl, index.json and 1 "
                                                     "more); choose a new --out, or add --overwrite"),
    "--out holds an earlier run, mp4 mode": (_earlier_run, ["--wav"], "is not empty"),
    "--out is a file": (_file, [], "exists and is not a folder"),
    "--overwrite on the user's own files": (_foreign, ["--overwrite"], "holds files that no mmdiff run wrote "
                                                                       "(holiday.mp4)"),
    "--overwrite on another command's folder": (_study, ["--overwrite"], "holds outputs of eval.study build"),
    "--overwrite with the user's data beside events.jsonl": (
        _events_and_data, ["--overwrite"], "also holds files that an earlier run did not write (sub/data.bin)"),
    "--audio-rate AAC cannot store": (None, ["--audio-rate", "100"], "--audio-rate 100: audio at 100 Hz cannot be "
                                                                      "written to an mp4"),
    "--seconds inf": (None, ["--seconds", "inf"], "--seconds and --fps must be finite numbers > 0, got inf"),
    "--seconds nan": (None, ["--seconds", "nan"], "--seconds and --fps must be finite numbers > 0, got nan"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_catalogue(case, tmp_path, capsys):
    make, flags, message = CASES[case]
    out = tmp_path / "out"
    if make:
        make(out)
    capsys.readouterr()
    snap = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.is_dir() else None
    assert syn.main(["--out", str(out), *FAST, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert (sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.is_dir() else None) == snap


def test_two_concurrent_runs_into_one_folder(tmp_path, capsys):
    out = tmp_path / "out"
    with claim(out, "mmdiff.data.synthetic"):                       # the first run, still writing
        assert syn.main(["--out", str(out), *FAST, "--overwrite"]) == 2
    assert "is in use by another run (pid" in capsys.readouterr().err
    assert syn.main(["--out", str(out), *FAST, "--overwrite"]) == 0
    records = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert sorted(p.name for p in out.glob("*.mp4")) == [r["file"] for r in records]
