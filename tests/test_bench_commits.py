"""benchmarks.bench_commits: both trees are really imported (each child reports the module it ran) and agree."""
import json
from pathlib import Path

import pytest

from benchmarks import bench_commits
from mmdiff.checkpoint import default_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_each_tree_runs_its_own_mmdiff_and_reports_outputs(capsys):
    bench_commits.main(["--old", str(ROOT), "--ckpt", str(default_checkpoint()), "--batch", "1", "--steps", "1",
                        "--rounds", "2", "--threads", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["code"] for r in lines] == ["old", "this", "this", "old"]        # alternating order
    assert all(r["module"] == str(ROOT / "mmdiff" / "generate.py") for r in lines)
    assert len({r["video_mean"] for r in lines}) == 1 and all(r["s_per_clip"] > 0 for r in lines)


def test_a_folder_without_the_project_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench_commits.main(["--old", str(tmp_path), "--ckpt", "x.pt"])
    assert e.value.code == 2 and "holds no mmdiff/generate.py" in capsys.readouterr().err
