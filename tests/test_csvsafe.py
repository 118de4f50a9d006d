"""mmdiff.csvsafe: formula-like text is quoted for spreadsheets, numbers stay numbers; every CSV goes through it."""
import csv
import json

import pytest

from mmdiff.csvsafe import safe_cell, write_csv


@pytest.mark.parametrize("cell, shown", [
    ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
    ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("-", "'-"),
    ("-3.2", "-3.2"), ("+1", "+1"), ("1e-5", "1e-5"), ("-.5E+3", "-.5E+3"), ("-inf", "-inf"), ("nan", "nan"),
    ("A1=B1", "A1=B1"), ("", ""), ("worker 7", "worker 7"),
    (-3.2, -3.2), (0, 0), (True, True), (None, None),
])
def test_safe_cell(cell, shown):
    assert safe_cell(cell) == shown


def test_written_file_keeps_numbers_and_quotes_formulas(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["=h", "id", "x"],
                     [{"=h": "a", "id": "=1+1", "x": -3.25}, {"=h": "b", "id": "A7", "x": 1e-5}])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["'=h", "id", "x"], ["a", "'=1+1", "-3.25"], ["b", "A7", "1e-05"]]
    assert path.read_bytes().endswith(b"\r\n")


def test_eval_protocol_csv_goes_through_the_helper(tmp_path):
    from eval.protocol import write_outputs

    results = {"runs": [{"run": 0, "fvd": -1.5, "note": "=cmd()", "seed": 1}],
               "summary": {"fvd": {"mean": -1.5, "std": 0.0}},
               "card": {"fake": "clips, take 2", "real": "@SUM(A1)"}}
    _, path = write_outputs(results, tmp_path / "results.json")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["note"] == "'=cmd()" and rows[0]["fvd"] == "-1.5"
    assert rows[0]["card.fake"] == "clips, take 2"                 # a comma inside a cell does not split it
    assert all(r["card.real"] == "'@SUM(A1)" for r in rows)        # card columns on the mean/std rows too
