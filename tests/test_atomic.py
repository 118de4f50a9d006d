"""mmdiff.atomic: the rename happens only on success, temporaries never stay behind."""
import os
import stat

import pytest

from mmdiff.atomic import atomic_path, write_bytes, write_text


def test_success_replaces_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_text(target, "old")
    write_text(target, "néw", fsync=True)
    assert target.read_text(encoding="utf-8") == "néw"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]
    mode = stat.S_IMODE(os.stat(target).st_mode)
    assert mode == 0o666 & ~_umask(), oct(mode)           # not mkstemp's 0600


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.bin"
    write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_temporary_is_hidden_beside_the_target_with_the_asked_suffix(tmp_path):
    with atomic_path(tmp_path / "fig.png", suffix=".png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".fig.png.")
        tmp.write_bytes(b"x")
    with atomic_path(tmp_path / "noext") as tmp:
        assert tmp.suffix == ".tmp"
        tmp.write_bytes(b"y")
    assert (tmp_path / "fig.png").read_bytes() == b"x" and (tmp_path / "noext").read_bytes() == b"y"


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
