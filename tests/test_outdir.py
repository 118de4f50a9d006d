"""mmdiff.outdir: a run owns its output folder (refuse non-empty, --overwrite clears only ours), lock while writing."""
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from mmdiff.outdir import LOCK_NAME, MARKER_NAME, OutputDirError, claim, contents, join, named

TEST_OUTPUTS = named(r"old\.mp4", r"partial\.mp4", r"thesis\.tex", r"sub/clip\.mp4")

HOLD = """
import sys, time
from mmdiff.outdir import claim
with claim(sys.argv[1], "test") as d:
    (d / "partial.mp4").write_bytes(b"x")
    print("ready", flush=True)
    time.sleep(60)
"""


def _holder(folder):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert p.stdout.readline().strip() == "ready"
    return p


def test_new_folder_is_created_marked_and_unlocked_after(tmp_path):
    out = tmp_path / "a" / "b"
    with claim(out, "test") as d:
        assert d == out and (out / LOCK_NAME).is_file()
        (d / "x.mp4").write_bytes(b"1")
    assert not (out / LOCK_NAME).exists()
    assert json.loads((out / MARKER_NAME).read_text())["pid"] == os.getpid()
    assert [p.name for p in contents(out)] == [MARKER_NAME, "x.mp4"]


def test_non_empty_is_refused_and_overwrite_clears_only_our_folders(tmp_path):
    with claim(tmp_path / "run", "test") as d:
        (d / "old.mp4").write_bytes(b"1")
        (d / "sub").mkdir()
        (d / "sub" / "clip.mp4").write_bytes(b"2")
    with pytest.raises(OutputDirError, match=r"is not empty \(.*old.mp4.*\); choose a new --out, or add --overwrite"):
        with claim(tmp_path / "run", "test"):
            pass
    assert (tmp_path / "run" / "old.mp4").exists()
    with claim(tmp_path / "run", "test", overwrite=True, outputs=TEST_OUTPUTS) as d:
        assert [p.name for p in contents(d)] == [MARKER_NAME]          # its files and the folder they left empty

    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("precious")
    with pytest.raises(OutputDirError, match="no mmdiff run wrote"):
        with claim(user, "test", overwrite=True):
            pass
    assert (user / "thesis.tex").read_text() == "precious"
    with claim(user, "test", overwrite=True, ours=lambda f: (f / "thesis.tex").exists(), outputs=TEST_OUTPUTS):
        pass                                  # recognised by the caller: cleared
    assert not (user / "thesis.tex").exists()


def test_resume_predicate_keeps_the_folder(tmp_path):
    with claim(tmp_path, "test") as d:
        (d / "index.json").write_text("{}")
    with claim(tmp_path, "test", resume=lambda f: (f / "index.json").exists()) as d:
        assert (d / "index.json").exists()


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputDirError, match="not a folder"):
        with claim(tmp_path / "f", "test"):
            pass


def test_concurrent_run_is_refused_and_a_killed_runs_lock_is_stale(tmp_path):
    out = tmp_path / "busy"
    p = _holder(out)
    try:
        with pytest.raises(OutputDirError, match=rf"in use by another run \(pid {p.pid} "):
            with claim(out, "test", overwrite=True):
                pass
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert (out / LOCK_NAME).exists()                         # left behind by the killed run
    with pytest.raises(OutputDirError, match="not empty"):    # its partial outputs are not ours to mix with
        with claim(out, "test"):
            pass
    with claim(out, "test", overwrite=True, outputs=TEST_OUTPUTS) as d:   # the stale lock does not block
        assert [p.name for p in contents(d)] == [MARKER_NAME]


def test_ranks_of_one_launch_join_and_block_other_runs(tmp_path):
    out = tmp_path / "sharded"
    entered = threading.Event()

    def rank1():
        with join(out, "launch-1", 1, timeout_s=10):
            entered.set()

    with claim(out, "test", run="launch-1"):
        t = threading.Thread(target=rank1)
        t.start()
        t.join(10)
    assert entered.is_set()
    with pytest.raises(OutputDirError, match="did not take"):
        with join(out, "launch-2", 1, timeout_s=0.3):
            pass


def test_overwrite_clears_only_outputs_of_the_same_command(tmp_path):
    with claim(tmp_path / "study", "eval.study build") as d:
        (d / "private").mkdir()
    with pytest.raises(OutputDirError, match=r"holds outputs of eval.study build; --overwrite replaces only .*"
                                             r"mmdiff.sample"):
        with claim(tmp_path / "study", "mmdiff.sample", overwrite=True):
            pass
    assert (tmp_path / "study" / "private").is_dir()


def test_a_run_that_fails_before_writing_leaves_nothing_that_blocks_the_next(tmp_path):
    with pytest.raises(RuntimeError):
        with claim(tmp_path / "new", "test"):
            raise RuntimeError("checkpoint unreadable")
    assert not (tmp_path / "new").exists()                     # created by the claim: removed again
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError):
        with claim(tmp_path / "kept", "test"):
            raise RuntimeError("checkpoint unreadable")
    assert (tmp_path / "kept").is_dir() and not list((tmp_path / "kept").iterdir())
    with pytest.raises(RuntimeError):
        with claim(tmp_path / "half", "test") as d:
            (d / "sample_0.mp4").write_bytes(b"1")
            raise RuntimeError("killed halfway")
    assert (tmp_path / "half" / MARKER_NAME).is_file()         # partial outputs stay marked as ours


def test_a_run_inside_the_folder_is_named_once_with_its_command(tmp_path):
    """An analysis written inside a study (its own marker) is refused as one folder named with the command that
    wrote it, not as '.mmdiff-run.json' and its files."""
    with claim(tmp_path / "run", "test") as d:
        (d / "old.mp4").write_bytes(b"1")
    with claim(tmp_path / "run" / "analysis", "eval.study analyze") as a:
        for name in ("report.md", "summary.json", "mos.png"):
            (a / name).write_text("x")
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match=r"did not write \(analysis/ \(an eval\.study analyze run\), notes\.txt\)"):
        with claim(tmp_path / "run", "test", overwrite=True, outputs=TEST_OUTPUTS):
            pass
    assert (tmp_path / "run" / "analysis" / "report.md").is_file() and (tmp_path / "run" / "old.mp4").is_file()


@pytest.mark.parametrize("extra", ["my_notes.txt", "favorites/best.mp4", "sub/keep.txt"])
def test_overwrite_never_removes_what_the_run_did_not_write(tmp_path, extra):
    """--overwrite replaces an earlier run's outputs; a file a person put beside them (top level or in a subfolder,
    even inside one of the run's folders) makes it refuse, naming the file, and nothing is removed."""
    with claim(tmp_path / "run", "test") as d:
        (d / "old.mp4").write_bytes(b"1")
        (d / "sub").mkdir()
        (d / "sub" / "clip.mp4").write_bytes(b"2")
    (tmp_path / "run" / extra).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "run" / extra).write_text("mine")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "run").rglob("*"))
    with pytest.raises(OutputDirError, match=rf"also holds files that an earlier run did not write \({extra}\); "
                                             r"only that run's outputs are replaced"):
        with claim(tmp_path / "run", "test", overwrite=True, outputs=TEST_OUTPUTS):
            pass
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "run").rglob("*")) == before


def test_overwrite_does_not_follow_a_symlinked_folder(tmp_path):
    precious = tmp_path / "elsewhere"
    precious.mkdir()
    (precious / "old.mp4").write_text("not the run's")
    with claim(tmp_path / "run", "test") as d:
        (d / "old.mp4").write_bytes(b"1")
    (tmp_path / "run" / "link").symlink_to(precious)
    with pytest.raises(OutputDirError, match=r"\(link\)"):
        with claim(tmp_path / "run", "test", overwrite=True, outputs=TEST_OUTPUTS):
            pass
    assert (precious / "old.mp4").read_text() == "not the run's"


def test_overwrite_clears_the_temp_file_of_a_killed_run(tmp_path):
    """atomic_path's hidden temp file (left by a run killed while it wrote an output) is that output's, not the
    user's: --overwrite removes it too; a hidden file of another name is still refused."""
    from mmdiff.atomic import temp_target

    assert temp_target(tmp_path / ".old.mp4.ab12cd_9.mp4") == tmp_path / "old.mp4"
    assert temp_target(tmp_path / ".notes.txt") is None
    with claim(tmp_path / "run", "test") as d:
        (d / "old.mp4").write_bytes(b"1")
        (d / "sub").mkdir()
        (d / "sub" / ".clip.mp4.x7k2m9qa.tmp").write_bytes(b"half")
    with claim(tmp_path / "run", "test", overwrite=True, outputs=TEST_OUTPUTS) as d:
        assert [p.name for p in contents(d)] == [MARKER_NAME]
    (tmp_path / "run" / ".mine.secret.abcdefgh.txt").write_text("mine")
    with pytest.raises(OutputDirError, match=r"\.mine\.secret"):
        with claim(tmp_path / "run", "test", overwrite=True, outputs=TEST_OUTPUTS):
            pass
