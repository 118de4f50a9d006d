"""What every tab shares: the model store, the work folder the app owns, limits, path policy, cancel events.

One `StudioContext` is made per app by `build_app`; nothing lives in module globals.
"""
from __future__ import annotations

import functools
import html
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from mmdiff.checkpoint import DEFAULT_CHECKPOINT, DEFAULT_SR_CHECKPOINT, CheckpointError
from mmdiff.jobs import JobCancelled, ModelStore, find_checkpoints
from mmdiff.mdsafe import md_escape, md_text  # noqa: F401  (the tabs import them from here)
from mmdiff.uploads import UploadError, UploadLimits

log = logging.getLogger("studio")
DEFAULT_CHOICE = "default: tiny-synthetic.pt (shipped)"

# Errors whose message is written for the user; anything else is logged and summarised.
USER_ERRORS = (UploadError, CheckpointError, ValueError, FileNotFoundError, JobCancelled)

# Command-line wording in messages shared with the CLI, said the way the studio's controls say it.
UI_WORDS = [
    (re.compile(r"pass it with --upscale"), "the Upscale option uses it (start the studio with --sr-ckpt PATH)"),
    (re.compile(r"pass it with --ckpt"), "choose it as the model checkpoint"),
    (re.compile(r"pass --num-samples (\d+)"), r'set "N clips per set" to \1'),
    (re.compile(r"--num-samples"), '"N clips per set"'),
    (re.compile(r"--runs\b"), '"runs"'),
    (re.compile(r"--steps\b"), '"sampler steps"'),
    (re.compile(r"--upscale\b"), 'the "Upscale" option'),
    (re.compile(r"--seed\b"), '"Seed"'),
]
SERVER_PATH = re.compile(r"(?<![\w.])/[^\s:;,'\"()<>]+")    # an absolute POSIX path in a message


def _server_dirs() -> list[str]:
    """Folders whose paths mean nothing to a user: the temp folder (uploads, the app's work folder)."""
    dirs = [tempfile.gettempdir(), os.environ.get("GRADIO_TEMP_DIR", "")]
    return [str(Path(d).resolve()) for d in dirs if d]


def ui_text(message: str) -> str:
    """A message in the UI's language: server temp paths cut to the file name, CLI flags named as the
    controls that set them."""
    dirs = _server_dirs()

    def short(m: re.Match) -> str:
        path = m.group(0)
        return Path(path).name if any(path.startswith(d + "/") or path == d for d in dirs) else path

    text = SERVER_PATH.sub(short, str(message))
    for pattern, words in UI_WORDS:
        text = pattern.sub(words, text)
    return text


def status_error(message: str) -> str:
    """Markdown for a status line that shows an (already HTML-escaped) error message."""
    return "**Error:** " + md_escape(message)


@dataclass
class StudioContext:
    store: ModelStore
    work_root: Path                              # owned by the app, removed by close()
    workspace: list[Path]                        # server folders the UI may read (data, runs, checkpoints)
    limits: UploadLimits = field(default_factory=UploadLimits)
    ckpt: Path | None = None                     # --ckpt: the model selected at start
    sr_ckpt: Path | None = None                  # --sr-ckpt: the super-resolution stage (None: the shipped one)
    max_batch: int = 4
    cancels: dict[tuple[str, str], list[threading.Event]] = field(default_factory=dict)   # (session, job kind)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)   # (session, tab) -> its last error
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, ckpt=None, device="cpu", workspace=(".",), limits: UploadLimits | None = None,
               max_batch: int = 4, work_root=None, sr_ckpt=None) -> "StudioContext":
        root = Path(work_root) if work_root else Path(tempfile.mkdtemp(prefix="mmdiff-studio-"))
        root.mkdir(parents=True, exist_ok=True)
        return cls(store=ModelStore(device), work_root=root.resolve(),
                   workspace=[Path(w).expanduser().resolve() for w in workspace],
                   limits=limits or UploadLimits(), ckpt=Path(ckpt).resolve() if ckpt else None,
                   max_batch=max_batch, sr_ckpt=Path(sr_ckpt).resolve() if sr_ckpt else None)

    def sr_note(self) -> str:
        """Which SR checkpoint the Upscale option uses, or how to get one."""
        path = self.sr_ckpt or DEFAULT_SR_CHECKPOINT
        if path.is_file() and path == DEFAULT_SR_CHECKPOINT:
            return (f"SR model: the shipped tiny demo ({path.name}), trained briefly on synthetic clips; "
                    "start the app with --sr-ckpt for your own (docs/sr.md)")
        if path.is_file():
            return f"SR model: {path.name}"
        return (f"no SR model at {path.name}: train one with python -m mmdiff.train_sr (README) and start "
                "the app with --sr-ckpt")

    def close(self) -> None:
        shutil.rmtree(self.work_root, ignore_errors=True)

    # ------------------------------------------------------------------ files the app writes
    def session_dir(self, request: gr.Request | None) -> Path:
        sid = getattr(request, "session_hash", None) or "anonymous"
        sid = re.sub(r"[^A-Za-z0-9_-]", "", str(sid))[:64] or "anonymous"
        d = self.work_root / sid
        d.mkdir(parents=True, exist_ok=True)
        return d

    def job_dir(self, request: gr.Request | None, kind: str) -> Path:
        d = self.session_dir(request) / f"{kind}-{uuid.uuid4().hex[:10]}"
        d.mkdir(parents=True)
        return d

    def session_clips(self, request: gr.Request | None) -> dict[str, Path]:
        """Label -> mp4 of every clip this session generated, newest first."""
        d = self.session_dir(request)
        clips = sorted(d.glob("*/*.mp4"), key=lambda p: p.stat().st_mtime, reverse=True)
        return {f"{p.parent.name}/{p.name}": p for p in clips}

    # ------------------------------------------------------------------ server paths the UI may read
    def server_path(self, text: str | None, what: str, must_be_dir: bool = False) -> Path:
        """A path typed in the UI, resolved; it must lie inside the workspace (or this app's work folder)."""
        if not text or not str(text).strip():
            raise user_error(f"give the {what}")
        raw = Path(str(text).strip()).expanduser()
        candidates = [raw] if raw.is_absolute() else [w / raw for w in self.workspace]
        for c in candidates:
            p = c.resolve()
            if not any(p == root or root in p.parents for root in [*self.workspace, self.work_root]):
                continue
            if p.exists():
                if must_be_dir and not p.is_dir():
                    raise user_error(f"{what} {text} is not a folder")
                return p
        roots = ", ".join(str(w) for w in self.workspace)
        if raw.is_absolute() and not any(raw.resolve() == r or r in raw.resolve().parents for r in self.workspace):
            raise user_error(f"{what} {text} is outside the studio's workspace ({roots}); start the app with "
                           "--workspace to allow another folder")
        raise user_error(f"{what} {text} does not exist (relative paths are looked up in {roots})")

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_choices(self) -> list[str]:
        found = [str(p) for p in find_checkpoints([*self.workspace]) if p != DEFAULT_CHECKPOINT.resolve()]
        first = [str(self.ckpt)] if self.ckpt else []
        return [*first, DEFAULT_CHOICE, *[f for f in found if f not in first]]

    def default_choice(self) -> str:
        return str(self.ckpt) if self.ckpt else DEFAULT_CHOICE

    def checkpoint_for(self, choice: str | None, upload: str | None = None) -> Path | None:
        """The checkpoint path behind a dropdown choice or an uploaded .pt (None = shipped default)."""
        if upload:
            return Path(upload)
        if not choice or choice == DEFAULT_CHOICE:
            return None
        p = Path(choice).resolve()
        if self.ckpt is not None and p == self.ckpt:
            return p
        return self.server_path(choice, "checkpoint")

    def default_model_note(self) -> str:
        if self.ckpt is not None or DEFAULT_CHECKPOINT.is_file():
            return ""
        return (f"**The shipped default model is missing** (expected at `{DEFAULT_CHECKPOINT}`). "
                "Pick or upload a checkpoint, or start the app with `--ckpt PATH`.")

    # ------------------------------------------------------------------ cancellation
    def new_cancel(self, request: gr.Request | None, kind: str = "job") -> threading.Event:
        """A cancel event for one running job of this session; its tab's Cancel button sets it."""
        ev = threading.Event()
        with self._lock:
            self.cancels.setdefault((self._sid(request), kind), []).append(ev)
        return ev

    def drop_cancel(self, request: gr.Request | None, ev: threading.Event, kind: str = "job") -> None:
        with self._lock:
            evs = self.cancels.get((self._sid(request), kind), [])
            if ev in evs:
                evs.remove(ev)

    def cancel_session(self, request: gr.Request, kind: str | None = None, message: str = "Cancelled.") -> str:
        """Set the cancel events of this session's running jobs of `kind` (None: of every kind)."""
        sid = self._sid(request)
        with self._lock:
            evs = [ev for (s, k), group in self.cancels.items() if s == sid and kind in (None, k) for ev in group]
        for ev in evs:
            ev.set()
        return message if evs else "Nothing to cancel."

    def canceller(self, kind: str, message: str = "Cancelled."):
        """The handler of one tab's Cancel button: cancels only this session's jobs of `kind`."""
        def cancel(request: gr.Request) -> str:
            return self.cancel_session(request, kind, message)

        cancel.__name__ = f"cancel_{kind}"
        return cancel

    @staticmethod
    def _sid(request) -> str:
        return str(getattr(request, "session_hash", None) or "anonymous")

    # ------------------------------------------------------------------ errors where the user looks
    def handler(self, tab: str):
        """Decorator of a tab's event handler: user_errors, and the message kept for that tab's status line
        (show_errors puts it there)."""
        def remember(request, message: str) -> None:
            with self._lock:
                self.errors[(self._sid(request), tab)] = message

        return lambda fn: user_errors(fn, on_error=remember)

    def show_errors(self, event, status, tab: str) -> None:
        """After `event` (made with show_progress_on=status) fails, its status line says why; the error
        badge sits on that line only, and the pop-up stays until closed (user_error)."""
        def report(request: gr.Request) -> str:
            with self._lock:
                message = self.errors.pop((self._sid(request), tab), None)
            return status_error(message) if message else gr.skip()

        report.__name__ = f"report_{tab}_error"
        event.failure(report, None, status, queue=False, api_visibility="private")


def user_error(message: str) -> gr.Error:
    """A gr.Error in the UI's language (ui_text) whose text is escaped: Gradio renders the message as HTML,
    and messages carry file names, typed paths and other text the user controls. The pop-up stays until
    the user closes it."""
    return gr.Error(html.escape(ui_text(str(message)), quote=False), duration=None)


def _request_in(args, kwargs):
    return next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Request)), None)


def user_errors(fn, on_error=None):
    """Turn expected failures into gr.Error with their message; log anything else and say so briefly.
    `on_error(request, message)` is told every message shown (StudioContext.handler).

    Works for plain functions and generators, so the app keeps serving and never shows a stack trace.
    """
    import inspect

    def translate(e: Exception, args, kwargs) -> gr.Error:
        if isinstance(e, JobCancelled):
            err = gr.Error("Cancelled.", duration=None, title="Cancelled")
        elif isinstance(e, gr.Error):
            err = e
            err.duration = None if err.duration == 10 else err.duration      # Gradio's default vanishes in 10 s
        elif isinstance(e, USER_ERRORS):
            err = user_error(str(e))
        else:
            log.exception("studio: unexpected error in %s", fn.__name__)
            err = user_error(f"internal error ({e.__class__.__name__}: {str(e)[:200]}); the server log has details")
        if on_error is not None:
            on_error(_request_in(args, kwargs), err.message)
        return err

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:   # noqa: BLE001 - translated for the user
                raise translate(e, args, kwargs) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:       # noqa: BLE001 - translated for the user
            raise translate(e, args, kwargs) from None
    return wrapper
