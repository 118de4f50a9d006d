"""Round trip build -> simulated MTurk workers (real results CSV format) -> analyze; QC; bad input."""
import csv
import json
import math
import random
import statistics

import pytest
from scipy import stats as sps
from study_fixtures import make_clips_dir, read_batch_csv, results_rows, write_csv

from eval.study.__main__ import main
from eval.study.analyze import analyze_results
from eval.study.build import GOLD, StudyConfig, build_study
from eval.study.qc import QCConfig

# 5 assignments per HIT; BADGOLD fails gold items, FLAT answers "1" to everything (passes gold).
HIT_WORKERS = [["G1", "G2", "G3", "BADGOLD", "FLAT"], ["G1", "G2", "G3", "G4", "G5"],
               ["G2", "G3", "G4", "G5", "BADGOLD"]]
GOOD = {"G1", "G2", "G3", "G4", "G5"}
TRUE_MOS = {"real": 4.2, "ours": 3.6, "base": 1.8}
PASS_P = {"real": 0.9, "ours": 0.6, "base": 0.2}


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("an")
    real = make_clips_dir(root, "real", 4)
    ours = make_clips_dir(root, "ours", 4, ".avi", 10)
    base = make_clips_dir(root, "base", 4, ".mkv", 20)
    out = {}
    for kind in ("mos", "turing"):
        cfg = StudyConfig(kind=kind, systems={"ours": str(ours), "base": str(base)}, real=str(real), num=4,
                          base_url="https://x.example/m", items_per_hit=5, seed=11, gold=1, max_hits_per_worker=10)
        res = build_study(cfg, root / kind, progress=None)
        out[kind] = (res, json.loads((res.study_dir / "private" / "key.json").read_text()))
    return out


def _answer(kind, worker, system, gold_expected, rng):
    if worker == "FLAT":
        return "1" if kind == "mos" else "generated"
    if system == GOLD:
        if worker == "BADGOLD":
            return "5" if kind == "mos" else "real"
        return rng.choice(gold_expected)
    if kind == "mos":
        return str(min(5, max(1, round(TRUE_MOS[system] + rng.gauss(0, 0.8)))))
    return "real" if rng.random() < PASS_P[system] else rng.choice(["generated", "generated", "cannot_tell"])


def simulate(res, key, tmp_path, encodings, seed=0):
    """Write one results CSV per task; return (paths, {task: [(system, worker, answer, status)]})."""
    rng = random.Random(seed)
    kind = key["config"]["kind"]
    paths, truth = [], {}
    for k, (task, files) in enumerate(res.tasks.items()):
        header, brows = read_batch_csv(files["batch_csv"])
        answers, statuses, truth[task] = [], [], []
        for h, row in enumerate(brows):
            workers = HIT_WORKERS[h % len(HIT_WORKERS)] + (["G6"] if h == 1 else [])
            for w in workers:
                ans, systems = {}, {}
                for i in range(1, key["slots_per_hit"] + 1):
                    item = key["items"][row[f"item_id_{i}"]]
                    expected = (item["gold"] or {}).get(task, [])
                    ans[i] = _answer(kind, w, item["system"], expected, rng)
                    systems[i] = item["system"]
                # an honest worker may happen to give one answer to all clips; QC rejects that too
                straight = len(set(ans.values())) == 1
                status = "Rejected" if w == "G6" else "Submitted"
                truth[task] += [(systems[i], w, ans[i], status, straight) for i in ans]
                answers.append((h, w, ans))
                statuses.append("Rejected" if w == "G6" else "Submitted")
        field = "rating" if kind == "mos" else "vote"
        hdr, rows = results_rows(header, brows, answers, field, encodings[k % len(encodings)], start=1000 * k)
        for r, st in zip(rows, statuses):
            r["AssignmentStatus"] = st
        paths.append(write_csv(tmp_path / f"Batch_{k}_batch_results.csv", hdr, rows, bom=(k == 0)))
    return paths, truth


def expected_votes(truth, task, system):
    return [a for s, w, a, st, straight in truth[task]
            if s == system and w in GOOD and st == "Submitted" and not straight]


def test_mos_round_trip_recovers_simulated_scores(studies, tmp_path):
    res, key = studies["mos"]
    paths, truth = simulate(res, key, tmp_path, ["fields", "json", "radio"])
    out = analyze_results(paths, res.study_dir, tmp_path / "out")
    assert out.problems == []
    rows = {r["system"]: r for r in out.mos}
    assert [r["label"] for r in out.mos] == ["Ground truth", "ours", "base"]
    for task in ("mos_vq", "mos_aq", "mos_av"):
        for system in ("real", "ours", "base"):
            votes = [float(a) for a in expected_votes(truth, task, system)]
            r = rows[system]
            m = statistics.mean(votes)
            half = sps.t.ppf(0.975, len(votes) - 1) * statistics.stdev(votes) / math.sqrt(len(votes))
            assert r[f"{task}_n"] == len(votes)
            assert r[f"{task}_mean"] == pytest.approx(m, abs=1e-12)
            assert (r[f"{task}_low"], r[f"{task}_high"]) == pytest.approx((m - half, m + half), abs=1e-9)
    # the simulated ordering of systems is recovered
    for task in ("mos_vq", "mos_aq", "mos_av"):
        assert rows["real"][f"{task}_mean"] > rows["ours"][f"{task}_mean"] > rows["base"][f"{task}_mean"]
    # QC: BADGOLD dropped for gold, FLAT for straight-lining, in every task; G6's Rejected row ignored
    dropped = {(d["task"], d["id"]): d["reason"] for d in out.dropped if d["what"] == "worker"}
    for task in ("mos_vq", "mos_aq", "mos_av"):
        assert "gold" in dropped[(task, "BADGOLD")] and "straight" in dropped[(task, "FLAT")]
    assert out.counts["rejected_ignored"] == 3
    assert out.counts["assignments_counted"] == 3 * (15 - 3)   # per task: 15 submitted, 2 BADGOLD + 1 FLAT
    assert all(math.isfinite(a) for a in out.agreement.values())
    # per-worker statistics
    w = {(r["task"], r["worker_id"]): r for r in out.workers}
    g2 = [float(a) for s, wk, a, st, straight in truth["mos_av"] if wk == "G2" and s != GOLD]
    assert w[("mos_av", "G2")]["votes_used"] == len(g2) == 12     # 3 HITs, 12 study clips in all
    assert w[("mos_av", "G2")]["mean_answer"] == pytest.approx(statistics.mean(g2))
    bad_gold = sum(1 for s, wk, *_ in truth["mos_av"] if wk == "BADGOLD" and s == GOLD)
    assert bad_gold == 5                                           # 1 + (1 gold + 3 padding) in HIT 3
    assert (w[("mos_av", "BADGOLD")]["gold_passed"], w[("mos_av", "BADGOLD")]["gold_total"]) == (0, bad_gold)
    assert w[("mos_av", "BADGOLD")]["votes_used"] == 0
    assert w[("mos_aq", "G1")]["played_fraction"] == 1.0          # the JSON encoding carries played_<i>
    assert math.isnan(w[("mos_av", "G1")]["played_fraction"])      # the radio encoding does not
    assert -1 <= w[("mos_av", "G3")]["r_with_others"] <= 1
    md = (tmp_path / "out" / "mos_table.md").read_text()
    assert "| Ground truth |" in md and "VQ ↑" in md and "A-V ↑" in md
    for png in ("mos.png",):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "out" / "mos_table.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert float(csv_rows[1]["mos_aq_mean"]) == pytest.approx(rows["ours"]["mos_aq_mean"])


def test_approve_reject_csv(studies, tmp_path):
    res, key = studies["mos"]
    paths, _ = simulate(res, key, tmp_path, ["fields"])
    out = analyze_results(paths, res.study_dir, tmp_path / "out")
    for p in paths:
        with open(p, newline="", encoding="utf-8-sig") as f:
            original = csv.DictReader(f)
            orig_header, orig_rows = original.fieldnames, list(original)
        with open(out.paths[f"approve_reject:{p.name}"], newline="", encoding="utf-8") as f:
            r = csv.DictReader(f)
            assert r.fieldnames == orig_header
            decided = list(r)
        assert [d["AssignmentId"] for d in decided] == [o["AssignmentId"] for o in orig_rows]
        for d in decided:
            if d["AssignmentStatus"] == "Rejected":
                assert d["Approve"] == d["Reject"] == ""
            elif d["WorkerId"] == "BADGOLD":
                assert d["Approve"] == "" and d["Reject"].startswith("Failed an attention check")
            elif d["WorkerId"] == "FLAT":
                assert d["Approve"] == "" and "same answer to every clip" in d["Reject"]
            else:
                assert d["Approve"] == "x" and d["Reject"] == ""


def test_turing_round_trip_pass_rates_with_wilson(studies, tmp_path):
    res, key = studies["turing"]
    paths, truth = simulate(res, key, tmp_path, ["json"], seed=5)
    out = analyze_results(paths, res.study_dir, tmp_path / "out")
    assert out.mos is None and out.problems == []
    z = 1.959963985
    for r in out.turing:
        votes = expected_votes(truth, "turing", r["system"])
        k, n = sum(v in ("real", "cannot_tell") for v in votes), len(votes)
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        assert (r["n"], r["passes"]) == (n, k)
        assert (r["pass_rate"], r["low"], r["high"]) == pytest.approx((p, centre - half, centre + half), abs=1e-9)
    gt = out.turing[0]
    assert gt["label"] == "Ground truth" and gt["relative_to_gt"] == 1.0
    assert out.turing[1]["relative_to_gt"] == pytest.approx(out.turing[1]["pass_rate"] / gt["pass_rate"])
    assert "Ground truth" in (tmp_path / "out" / "turing_table.md").read_text()
    assert (tmp_path / "out" / "turing.png").read_bytes()[:4] == b"\x89PNG"


def test_per_worker_cap(studies, tmp_path):
    res, key = studies["mos"]
    paths, truth = simulate(res, key, tmp_path, ["fields"])
    out = analyze_results(paths, res.study_dir, tmp_path / "out", QCConfig(max_hits_per_worker=1))
    # G2 and G3 did 3 HITs per task, G1/G4/G5 did 2: only each one's first counts -> 5 per task
    assert out.counts["assignments_counted"] == 3 * 5
    w = {(r["task"], r["worker_id"]): r for r in out.workers}
    assert w[("mos_vq", "G2")]["over_cap"] == 2 and w[("mos_vq", "G1")]["over_cap"] == 1
    reasons = [d["reason"] for d in out.dropped if d["what"] == "assignment"]
    assert sum("per-worker limit" in r for r in reasons) == 3 * 7
    # by default the cap written into the study key at build time applies
    capped = dict(key, config={**key["config"], "max_hits_per_worker": 1})
    (tmp_path / "k" / "private").mkdir(parents=True)
    (tmp_path / "k" / "private" / "key.json").write_text(json.dumps(capped))
    assert analyze_results(paths, tmp_path / "k").counts["assignments_counted"] == 3 * 5
    assert analyze_results(paths, res.study_dir, tmp_path / "o2").counts["assignments_counted"] == 3 * 12


def _rewrite(path, edit):
    with open(path, newline="", encoding="utf-8-sig") as f:
        r = csv.DictReader(f)
        header, rows = list(r.fieldnames), list(r)
    header, rows = edit(header, rows)
    return write_csv(path, header, rows)


def test_malformed_results_keep_every_valid_row(studies, tmp_path):
    res, key = studies["mos"]
    paths, truth = simulate(res, key, tmp_path, ["fields", "json", "fields"])
    clean = analyze_results(paths, res.study_dir, tmp_path / "clean")
    base_votes = clean.counts["votes_used"]

    def vq_edit(header, rows):       # unknown id, empty answer, invalid answer in G1's first HIT
        r = next(r for r in rows if r["WorkerId"] == "G1")
        r["Input.item_id_2"] = "deadbeef0000"
        r["Answer.rating_3"] = ""
        r["Answer.rating_4"] = "7"
        return header, rows

    def aq_edit(header, rows):       # bad JSON in one row; no Input.study_task column at all
        r = next(r for r in rows if r["WorkerId"] == "G4")
        r["Answer.taskAnswers"] = "[{not json"
        header = [h for h in header if h != "Input.study_task"]
        return header, [{k: v for k, v in r.items() if k != "Input.study_task"} for r in rows]

    # votes these edits remove: the non-gold ones among G1's slots 2-4 and all of G4's JSON row
    lost = _nongold_in_slots(paths[0], key, "G1", [2, 3, 4]) + \
        _nongold_in_slots(paths[1], key, "G4", range(1, key["slots_per_hit"] + 1))
    _rewrite(paths[0], vq_edit)
    _rewrite(paths[1], aq_edit)
    dup = write_csv(tmp_path / "dup.csv", *_rows_of(paths[2], lambda rows: rows[:2]))
    broken = write_csv(tmp_path / "broken.csv", *_rows_of(paths[2], lambda rows: rows, drop="AssignmentId"))
    out = analyze_results([*paths, dup, broken], res.study_dir, tmp_path / "out")
    text = "\n".join(out.problems)
    assert "broken.csv: missing column(s) AssignmentId" in text
    assert "dup.csv line 2" in text and "duplicate of Batch_2_batch_results.csv line 2" in text
    assert "unknown item id 'deadbeef0000'" in text and "answer rating_3 is empty" in text
    assert "rating_4='7' is not one of" in text and "Answer.taskAnswers unreadable" in text
    assert out.counts["duplicates"] == 2 and out.counts["files_skipped"] == 1
    assert lost >= 3 and out.counts["votes_used"] == base_votes - lost
    # G4's unreadable row gets no decision and is listed for manual review
    g4 = next(d for d in out.dropped if d["what"] == "assignment" and "no readable answer (worker G4)" in d["reason"])
    with open(out.paths[f"approve_reject:{paths[1].name}"], newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["AssignmentId"] == g4["id"])
    assert row["Approve"] == row["Reject"] == ""
    assert (tmp_path / "out" / "problems.txt").read_text().count("\n") == len(out.problems)


def _rows_of(path, pick, drop=None):
    with open(path, newline="", encoding="utf-8-sig") as f:
        r = csv.DictReader(f)
        header, rows = list(r.fieldnames), pick(list(r))
    if drop:
        header = [h for h in header if h != drop]
        rows = [{k: v for k, v in r.items() if k != drop} for r in rows]
    return header, rows


def _nongold_in_slots(path, key, worker, slots):
    with open(path, newline="", encoding="utf-8-sig") as f:
        row = next(r for r in csv.DictReader(f) if r["WorkerId"] == worker)
    return sum(key["items"][row[f"Input.item_id_{i}"]]["system"] != GOLD for i in slots)


def test_unusable_inputs_raise_clear_errors(studies, tmp_path):
    res, _ = studies["mos"]
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"no usable results file: .*junk.csv: missing column"):
        analyze_results([junk], res.study_dir)
    with pytest.raises(FileNotFoundError, match="private/key.json not found"):
        analyze_results([junk], tmp_path)


def test_cli_analyze(studies, tmp_path, capsys):
    res, key = studies["turing"]
    paths, _ = simulate(res, key, tmp_path, ["fields"])
    assert main(["analyze", "--results", *map(str, paths), "--key", str(res.study_dir),
                 "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "Turing test" in printed and "| Ground truth |" in printed
    assert main(["analyze", "--results", str(paths[0]), "--key", str(tmp_path / "nope")]) == 2
    assert "key.json not found" in capsys.readouterr().err
    missing = tmp_path / "nofile.csv"
    assert main(["analyze", "--results", str(missing), "--key", str(res.study_dir), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no usable results file: ") and "nofile.csv" in err, err


def test_parse_answers_encodings_and_times():
    from datetime import datetime

    from eval.study.results import parse_answers, parse_mturk_time
    row = {"Answer.rating_1.label": "4", "Answer.vote_2.real": "true", "Answer.vote_2.generated": "false",
           "Answer.rating_5": " 3 ", "Input.item_id_1": "abc",
           "Answer.taskAnswers": '[{"rating_3": {"2": true, "3": false}, "rating_4": {"label": "5"}, '
                                 '"rating_1": "9", "rating_6": 1}]'}
    assert parse_answers(row) == {"rating_1": "4", "vote_2": "real", "rating_5": "3", "rating_3": "2",
                                  "rating_4": "5", "rating_6": "1"}
    with pytest.raises(ValueError):
        parse_answers({"Answer.taskAnswers": "[{oops"})
    assert parse_mturk_time("Mon Nov 20 10:04:05 PST 2026") == datetime(2026, 11, 20, 10, 4, 5)
    assert parse_mturk_time("2026-11-20T10:04:05") == datetime(2026, 11, 20, 10, 4, 5)
    assert parse_mturk_time("") is None and parse_mturk_time("yesterday") is None


def test_rebuilding_into_a_study_keeps_its_key_and_results(tmp_path, capsys):
    """Issue 19: `build` into an existing study rewrote private/key.json, and the collected results lost their
    votes in analyze (pass rate 62.5% -> 25%); stale mturk/<task> folders stayed."""
    real, ours = make_clips_dir(tmp_path, "real", 4), make_clips_dir(tmp_path, "ours", 4, ".avi", 10)
    study = tmp_path / "study"
    args = ["build", "--kind", "turing", "--system", f"ours={ours}", "--real", str(real), "--num", "4",
            "--base-url", "https://x.example/m", "--out", str(study), "--items-per-hit", "4", "--seed", "11"]
    assert main(args) == 0
    key = json.loads((study / "private" / "key.json").read_text())
    res = type("R", (), {"tasks": {"turing": {"batch_csv": study / "mturk" / "turing" / "batch.csv"}}})()
    paths, _ = simulate(res, key, tmp_path, ["fields"])
    before = analyze_results(paths, study, tmp_path / "a1").turing
    key_bytes = (study / "private" / "key.json").read_bytes()

    assert main(args) == 0                                            # the same study: resumes
    capsys.readouterr()
    assert main(args[:-1] + ["12"]) == 2                              # another seed: another key
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds a study built with other settings" in err and err.count("\n") == 1
    assert (study / "private" / "key.json").read_bytes() == key_bytes
    assert analyze_results(paths, study, tmp_path / "a2").turing == before

    mos = args[:2] + ["mos"] + args[3:]
    assert main(mos + ["--overwrite"]) == 0                           # asked for: replaced, nothing stale left
    assert sorted(p.name for p in (study / "mturk").iterdir()) == ["mos_aq", "mos_av", "mos_vq"]
    (study / "private" / "published_live.json").write_text("{}")
    assert main(args + ["--overwrite"]) == 2
    assert "live marketplace" in capsys.readouterr().err


def test_tables_by_hand_with_systems_and_tasks_without_votes():
    import pandas as pd

    from eval.study.analyze import VOTE_COLUMNS, _with_others, agreement, mos_table, turing_table

    votes = pd.DataFrame([("mos_vq", "i1", "ours", "W1", "4", 4.0), ("mos_vq", "i1", "ours", "W2", "2", 2.0),
                          ("mos_vq", "i2", "ours", "W1", "3", 3.0)], columns=VOTE_COLUMNS)
    real, ours = mos_table(votes, ["mos_vq", "mos_aq"], ["real", "ours"], 0.95)
    assert list(ours) == ["system", "label", "mos_vq_mean", "mos_vq_low", "mos_vq_high", "mos_vq_n",
                          "mos_aq_mean", "mos_aq_low", "mos_aq_high", "mos_aq_n"]
    half = sps.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)                  # votes 4, 2, 3: mean 3, sd 1
    assert (ours["mos_vq_mean"], ours["mos_vq_n"]) == (3.0, 3) and type(ours["mos_vq_n"]) is int
    assert (ours["mos_vq_low"], ours["mos_vq_high"]) == pytest.approx((3 - half, 3 + half))
    assert ours["mos_aq_n"] == real["mos_vq_n"] == 0 and math.isnan(real["mos_vq_mean"])
    assert real["label"] == "Ground truth"
    # the other workers' mean on the same clip: W1 on i1 sees W2's 2, W2 sees W1's 4, nobody else rated i2
    assert _with_others(votes)["others"].tolist()[:2] == [2.0, 4.0]
    assert math.isnan(_with_others(votes)["others"].iloc[2])
    assert list(agreement(votes)) == ["mos_vq"]
    turing = pd.DataFrame([("turing", f"i{k}", "ours", "W1", a, 0.0) for k, a in
                           enumerate(["real", "cannot_tell", "generated", "generated"])], columns=VOTE_COLUMNS)
    gt, t_ours = turing_table(turing, ["real", "ours"], 0.95)
    assert (t_ours["pass_rate"], t_ours["n"], t_ours["passes"]) == (0.5, 4, 2)
    assert gt["n"] == 0 and math.isnan(gt["pass_rate"]) and math.isnan(t_ours["relative_to_gt"])


def test_report_shows_worker_text_literally(studies, tmp_path):
    """A worker id or answer from a results CSV is shown as written in report.md (and so in the studio), never as a
    live Markdown link or HTML."""
    res, key = studies["mos"]
    paths, _ = simulate(res, key, tmp_path, ["fields", "fields", "fields"])
    evil = "[Claim your bonus](https://evil.example/login)<b>"

    def edit(header, rows):
        for r in rows:
            if r["WorkerId"] == "BADGOLD":              # fails gold: listed among the dropped workers
                r["WorkerId"] = evil
        rows[0]["Answer.rating_1"] = evil                # an invalid answer: listed among the problems
        return header, rows

    for p in paths:
        _rewrite(p, edit)
    out = analyze_results(paths, res.study_dir, tmp_path / "out")
    report = (tmp_path / "out" / "report.md").read_text()
    assert any(d["id"] == evil for d in out.dropped)
    assert r"\[Claim your bonus\](https://evil.example/login)&lt;b&gt;" in report
    assert "[Claim your bonus](" not in report and "<b>" not in report


def test_a_rerun_replaces_the_analysis_but_never_the_users_files_beside_it(studies, tmp_path):
    res, key = studies["mos"]
    paths, _ = simulate(res, key, tmp_path, ["fields", "fields", "fields"])
    out = tmp_path / "analysis"
    analyze_results(paths, res.study_dir, out)
    (out / "figs_final").mkdir()
    (out / "figs_final" / "fig1.pdf").write_bytes(b"camera-ready")
    with pytest.raises(ValueError, match=r"did not write \(figs_final/fig1\.pdf\)"):
        analyze_results(paths, res.study_dir, out)
    assert (out / "figs_final" / "fig1.pdf").read_bytes() == b"camera-ready" and (out / "report.md").is_file()
    (out / "figs_final" / "fig1.pdf").unlink()
    (out / "figs_final").rmdir()
    analyze_results(paths, res.study_dir, out)                 # only its own files: replaced as a whole
