"""Output folders that belong to one run: refuse a folder an earlier run (or the user) filled, clear it only
when asked (--overwrite) and only when it holds outputs of this project, and lock it while the run writes.

    with claim(args.out, "mmdiff.sample", args.overwrite, ours=lambda d: (d / "manifest.json").exists(),
               outputs=SAMPLE_OUTPUTS) as out:
        ...write files into out...

The lock is an exclusive `flock` on `OUT/.mmdiff-lock`: the kernel drops it when its process dies, so a
lock file left by a killed run is stale by construction and the next run simply takes it. A second run
into the same folder while the first one writes is refused with `OutputDirError` (one line, naming the
process that holds it). `claim` also writes `OUT/.mmdiff-run.json` (which command, pid, start time), so that
a later `--overwrite` of the same command knows the folder holds its earlier outputs and may clear them; a
non-empty folder that is neither marked by that command nor recognised by the caller's `ours` test is never
cleared (`mmdiff.sample --overwrite` does not empty a study folder, nor `--overwrite` a home folder). Even
then `--overwrite` removes only the files the command writes (its `outputs` test, by relative path): a folder
that also holds anything else (notes, a subfolder of favourites, an analysis inside a study) is refused, naming
those files, before anything is removed.

Sharded runs (torchrun): rank 0 claims; the other ranks `join` (wait until rank 0 holds the folder for
the same launch, then lock their own `.mmdiff-lock.rank<r>`), see `claim_for_rank`.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mmdiff.atomic import temp_target, write_text

LOCK_NAME = ".mmdiff-lock"           # the run's lock; ranks > 0 of a sharded run add ".rank<r>"
MARKER_NAME = ".mmdiff-run.json"     # which run wrote the folder (lets --overwrite know it is ours)


class OutputDirError(ValueError):
    """A user-facing refusal: the folder is busy, not empty, or not ours to clear (a ValueError, so that the
    CLIs and the studio show it as a one-line user error)."""


class FolderLock:
    """Exclusive, non-blocking flock on `folder/name`; released on `release()` or when the process dies."""

    def __init__(self, folder: str | os.PathLike, name: str = LOCK_NAME):
        self.path = Path(folder) / name
        self.fd: int | None = None

    def acquire(self) -> "FolderLock":
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputDirError(f"{self.path.parent} is in use by another run ({_holder(self.path)}); "
                                     "wait for it to finish or choose another folder") from None
            try:                       # the file may have been unlinked by its previous holder: lock the new one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)          # while still held: nobody can be locking this inode
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "process unknown"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')}"


def is_held(lock_path: Path) -> bool:
    """True when a live process holds the flock on `lock_path` (a leftover file of a dead one is not held)."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _is_lock(p: Path) -> bool:
    return p.name == LOCK_NAME or p.name.startswith(LOCK_NAME + ".")


def is_bookkeeping(path: Path) -> bool:
    """The lock and run-marker files of this module (not outputs: bundles and uploads leave them out)."""
    return _is_lock(path) or path.name == MARKER_NAME


def contents(folder: Path) -> list[Path]:
    """What the folder holds besides lock files, sorted by name."""
    return sorted((p for p in folder.iterdir() if not _is_lock(p)), key=lambda p: p.name)


def _listed(items: list) -> str:
    """The first three of `items` for a message: "a, b, c and 4 more"."""
    return ", ".join(map(str, items[:3])) + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def check_output_file(path: Path, example: str) -> None:
    """OutputDirError for an --out file path that cannot be written: an existing folder, or a parent that is a
    file (a missing parent folder is made when the file is written). `example`: a file name to suggest."""
    if path.is_dir():
        raise OutputDirError(f"--out {path} is a folder; give a file inside it, e.g. {path / example}")
    if path.parent.exists() and not path.parent.is_dir():
        raise OutputDirError(f"--out {path}: {path.parent} is a file, not a folder")


def _files(folder: Path) -> list[Path]:
    """Every file and symlink under `folder`, relative to it, except this module's lock and marker files at its top
    (symlinked folders are listed, not followed)."""
    found = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        links = [d for d in dirs if (here / d).is_symlink()]
        dirs[:] = [d for d in dirs if d not in links]
        for name in files + links:
            rel = (here / name).relative_to(folder)
            if len(rel.parts) == 1 and is_bookkeeping(rel):
                continue
            found.append(rel)
    return sorted(found)


def _runs_by_folder(folder: Path, rels: list[Path]) -> list[str]:
    """`rels` for a message, a subfolder that another command's run wrote (its own marker file) named once, with
    that command: "analysis/ (an eval.study analyze run)", not its marker and every file in it."""
    nested = {rel.parent for rel in rels if rel.name == MARKER_NAME and len(rel.parts) > 1}
    named_runs = [f"{sub}/ (an {(run_marker(folder / sub) or {}).get('kind', 'mmdiff')} run)" for sub in sorted(nested)]
    rest = [str(rel) for rel in rels if not any(sub in rel.parents for sub in nested)]
    return named_runs + rest


def clear(folder: Path, outputs: Callable[[Path], bool] | None) -> None:
    """Remove the files an earlier run wrote into `folder` (`outputs(relative path)` says which), and the folders
    they leave empty; lock files stay (ours, and the stale ones of killed runs: harmless). Anything else in the
    folder (the user's notes, a subfolder of favourites, another command's outputs) makes it refuse, before
    anything is removed: --overwrite replaces a run, never what a person put beside it."""
    files = _files(folder)

    def written(rel: Path) -> bool:               # an output, or the temp file of one a killed run left behind
        target = temp_target(rel)
        return outputs is not None and (outputs(rel) or (target is not None and outputs(target)))

    foreign = _runs_by_folder(folder, [rel for rel in files if not written(rel)])
    if foreign:
        raise OutputDirError(f"{folder} also holds files that an earlier run did not write ({_listed(foreign)}); only that "
                             "run's outputs are replaced: move them out first, or choose a new --out")
    for rel in files:
        (folder / rel).unlink(missing_ok=True)
    (folder / MARKER_NAME).unlink(missing_ok=True)
    for root, dirs, _ in os.walk(folder, topdown=False):
        for d in dirs:
            sub = Path(root) / d
            if not sub.is_symlink() and not any(sub.iterdir()):
                sub.rmdir()


def run_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _check_or_clear(folder: Path, kind: str, overwrite: bool, ours: Callable[[Path], bool] | None,
                    resume: Callable[[Path], bool] | None, outputs: Callable[[Path], bool] | None) -> None:
    busy = [p for p in folder.iterdir() if _is_lock(p) and p.name != LOCK_NAME and is_held(p)]
    if busy:
        raise OutputDirError(f"{folder} is in use by another run ({_holder(busy[0])}); wait for it to finish "
                             "or choose another folder")
    left = contents(folder)
    if not left or (resume is not None and resume(folder)):
        return
    names = _listed([p.name for p in left])
    if not overwrite:
        raise OutputDirError(f"{folder} is not empty ({names}); choose a new --out, or add --overwrite to "
                             "replace what an earlier run wrote there")
    marker = run_marker(folder) or {}
    if marker.get("kind") not in (None, kind) and not (ours is not None and ours(folder)):
        raise OutputDirError(f"{folder} holds outputs of {marker['kind']}; --overwrite replaces only earlier "
                             f"outputs of {kind}: choose a new --out")
    if not marker and not (ours is not None and ours(folder)):
        raise OutputDirError(f"{folder} holds files that no mmdiff run wrote ({names}); --overwrite clears only "
                             "output folders of this project: empty it yourself or choose a new --out")
    clear(folder, outputs)


def _write_marker(folder: Path, kind: str, run: str | None) -> None:
    write_text(folder / MARKER_NAME, json.dumps({
        "kind": kind, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:2000], "pid": os.getpid(),
        "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "run": run}) + "\n")


@contextmanager
def claim(folder: str | os.PathLike, kind: str, overwrite: bool = False, ours: Callable[[Path], bool] | None = None,
          resume: Callable[[Path], bool] | None = None, run: str | None = None,
          outputs: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Own `folder` while the block runs: create it, lock it, then check it is empty (or clear it).

    :param kind: the command that owns the folder, e.g. "mmdiff.sample" (recorded in the marker)
    :param overwrite: clear a non-empty folder that holds earlier outputs of `kind` (marked, or `ours(folder)`)
    :param ours: recognises output folders written before the marker existed (e.g. a manifest.json)
    :param resume: a non-empty folder this run may continue (e.g. a cache made with the same settings)
    :param run: an id shared by the ranks of one sharded launch (see `claim_for_rank`)
    :param outputs: which files `kind` writes, by path relative to the folder: --overwrite removes only those and
        refuses a folder holding anything else (None: nothing is recognised, so a non-empty folder is never cleared)
    Raises OutputDirError (a message for the user) before anything is written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputDirError(f"{folder} exists and is not a folder")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputDirError(f"cannot create {folder}: {e.strerror or e}") from None
    try:
        with FolderLock(folder):
            _check_or_clear(folder, kind, overwrite, ours, resume, outputs)
            _write_marker(folder, kind, run)
            try:
                yield folder
            finally:                           # a run that stopped before writing must not block the next one
                _unmark_if_unused(folder)
    finally:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _unmark_if_unused(folder: Path) -> None:
    if [p.name for p in contents(folder)] == [MARKER_NAME]:
        (folder / MARKER_NAME).unlink(missing_ok=True)


@contextmanager
def join(folder: str | os.PathLike, run: str, rank: int, timeout_s: float = 300.0) -> Iterator[Path]:
    """For rank > 0 of a sharded launch: wait until rank 0 of launch `run` claimed the folder (its marker
    names `run`), then lock a rank file so that no other run claims the folder while this rank writes."""
    folder = Path(folder)
    deadline = time.monotonic() + timeout_s
    while (run_marker(folder) or {}).get("run") != run:
        if time.monotonic() > deadline:
            raise OutputDirError(f"rank 0 did not take {folder} within {timeout_s:g} s (see its error)")
        time.sleep(0.2)
    with FolderLock(folder, f"{LOCK_NAME}.rank{rank}"):
        yield folder


def launch_id() -> str:
    """An id the ranks of one torchrun launch share and another launch does not."""
    keys = ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT", "WORLD_SIZE")
    run = "|".join(os.environ.get(k, "") for k in keys)
    if os.environ.get("LOCAL_WORLD_SIZE", "") == os.environ.get("WORLD_SIZE", "1"):
        run += f"|{os.getppid()}"      # one node: the ranks are children of the same torchrun agent
    return run


def claim_for_rank(folder: str | os.PathLike, kind: str, rank: int, world: int, overwrite: bool = False,
                   ours: Callable[[Path], bool] | None = None, outputs: Callable[[Path], bool] | None = None):
    """`claim` on rank 0 (or when not sharded), `join` on the other ranks of the same launch."""
    if world <= 1:
        return claim(folder, kind, overwrite, ours, outputs=outputs)
    run = launch_id()
    return claim(folder, kind, overwrite, ours, run=run, outputs=outputs) if rank == 0 else join(folder, run, rank)


def named(*patterns: str) -> Callable[[Path], bool]:
    """An `outputs` test from regular expressions matched against the whole relative POSIX path."""
    compiled = [re.compile(p) for p in patterns]
    return lambda rel: any(c.fullmatch(Path(rel).as_posix()) for c in compiled)
