"""Build a MOS or Turing-test study: media, MTurk batch CSVs, HTML templates, previews, private key.

Layout of STUDY_DIR (see docs/study.md):
  media/<id>.mp4                 host these at --base-url (public; names are anonymous ids)
  mturk/<task>/template.html     paste into the MTurk project layout (public)
  mturk/<task>/batch.csv         upload as the batch input (public; header = template ${variables})
  mturk/<task>/hit_settings.json reward, durations, worker requirements to use when publishing
  preview/<task>.html            one HIT with real values, plays ../media locally (do not upload)
  private/key.json               id -> system, source clip, gold answer; the HIT layout (never upload)
  private/build_report.json      what was copied, transcoded and skipped

Gold items: every HIT holds `gold` check clips made from real clips (tasks.Task.gold_variant):
broken video for video quality, broken audio for audio quality and alignment (expected 1 or 2),
noise video + noise audio for the Turing test (expected "generated"). Real clips are not used as
Turing gold: in the paper even ground truth passes only 85-93 %, so a "generated" vote on a real
clip says little about attention. When the clips do not fill the last HIT, it is padded with more
(distinct) gold clips rather than repeating study clips.
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from mmdiff.atomic import write_text
from mmdiff.outdir import claim, named

from .files import write_csv_atomic, write_json_atomic
from .key import GOLD, REAL
from .media import (ClipInfo, MediaFormat, clip_id, common_format, differences, export_clip, make_gold_clip,
                    sample_clips)
from .publish import HitSettings, write_hit_settings
from .tasks import Task, tasks_for
from .template import render_preview, render_task_template, template_variables

KEY_VERSION = 1


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; saved into private/key.json."""

    kind: str                           # "mos" or "turing"
    systems: dict[str, str]             # system name -> clips dir
    real: str                           # clips dir of real (ground-truth) clips
    num: int                            # clips sampled per system and from the real data
    base_url: str                       # where media/ will be served, e.g. https://host/study1/media
    votes: int = 5                      # assignments (workers) per HIT
    items_per_hit: int = 10             # study clips per HIT (gold clips come on top)
    seed: int = 0
    gold: int = 1                       # gold clips per HIT
    max_hits_per_worker: int = 20       # per task; written to the HIT settings, enforced by analyze
    keep_formats: bool = False          # True: each clip in its own format (real clips then tell themselves apart)

    def validate(self) -> None:
        tasks_for(self.kind)
        if not self.systems:
            raise ValueError("give at least one --system NAME=CLIPS_DIR")
        for name in self.systems:
            if not name or name == REAL or name.startswith("__") or any(c in name for c in "=/\\"):
                raise ValueError(f"system name {name!r} is reserved or invalid (not '{REAL}', not '__*', no = / \\)")
        for label, v in (("--num", self.num), ("--votes", self.votes), ("--items-per-hit", self.items_per_hit)):
            if v < 1:
                raise ValueError(f"{label} must be >= 1, got {v}")
        if self.gold < 0 or self.max_hits_per_worker < 0:
            raise ValueError("--gold and --max-hits-per-worker must be >= 0")
        check_base_url(self.base_url)


def check_base_url(url: str) -> None:
    """ValueError unless `url` is a plain https URL (it is written into every HIT page that workers open)."""
    bad = [c for c in url if c in "\"'<>`\\{}|^" or c.isspace() or not c.isprintable()]
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or bad or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"--base-url must be a plain https:// URL of the folder where media/ is served "
                         f"(no quotes, < >, spaces, query or #), got {url!r}")


@dataclass
class BuildResult:
    study_dir: Path
    tasks: dict[str, dict[str, Path]]           # task -> {"template", "batch_csv", "preview"}
    num_items: int                              # study clips (systems + real)
    num_gold: int                               # gold clips made
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def media_url(base_url: str, item_id: str) -> str:
    return base_url.rstrip("/") + "/" + item_id + ".mp4"


def _sample_groups(cfg: StudyConfig) -> tuple[dict[str, list[ClipInfo]], list[str], MediaFormat | None]:
    """group -> sampled clips (real first, then systems in the given order), skip messages, and the format every
    clip is shown in: the generated clips' (None with keep_formats). Real clips shorter than it are skipped."""
    groups, skipped = {}, []
    for group, d in cfg.systems.items():
        clips, skip = sample_clips(d, cfg.num, cfg.seed, group)
        groups[group] = clips
        skipped += skip
    fmt = None if cfg.keep_formats else common_format([c for clips in groups.values() for c in clips])
    real, skip = sample_clips(cfg.real, cfg.num, cfg.seed, REAL, min_duration=fmt.duration if fmt else 0.0)
    return {REAL: real, **groups}, skipped + skip, fmt


def _study_items(cfg: StudyConfig, groups: dict[str, list[ClipInfo]]
                 ) -> tuple[dict[str, dict], dict[str, ClipInfo]]:
    """id -> key entry and id -> clip for every sampled clip; ValueError on an id collision."""
    items: dict[str, dict] = {}
    infos: dict[str, ClipInfo] = {}
    for group, clips in groups.items():
        for c in clips:
            i = clip_id(cfg.seed, group, c.path.name)
            if i in items:
                raise ValueError(f"anonymous id collision for {c.path} and {items[i]['source']}")
            items[i] = {"system": group, "source": str(c.path.resolve()), "gold": None}
            infos[i] = c
    return items, infos


def _gold_items(cfg: StudyConfig, tasks: tuple[Task, ...], real: list[ClipInfo], pool: int
                ) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """Gold key entries and, per task, its pool of gold ids (`pool` clips of the task's variant)."""
    items, pools = {}, {}
    variants = list(dict.fromkeys(t.gold_variant for t in tasks))
    for variant in variants:
        ids = []
        for j in range(pool):
            src = real[j % len(real)]
            gid = clip_id(cfg.seed, f"{GOLD}:{variant}:{j}", src.path.name)
            items[gid] = {"system": GOLD, "source": str(src.path.resolve()), "variant": variant,
                          "gold": {t.name: list(t.gold_expected) for t in tasks if t.gold_variant == variant}}
            ids.append(gid)
        for t in tasks:
            if t.gold_variant == variant:
                pools[t.name] = ids
    return items, pools


def _hit_rows(task: Task, item_ids: list[str], gold_pool: list[str], per_hit: int, gold: int,
              seed: int, base_url: str) -> list[dict[str, str]]:
    """Batch CSV rows: items shuffled into HITs of `per_hit`, plus gold, slot order shuffled per HIT."""
    rng = random.Random(f"{seed}:{task.name}:hits")
    order = sorted(item_ids)
    rng.shuffle(order)
    slots = per_hit + gold
    rows = []
    for start in range(0, len(order), per_hit):
        chunk = order[start:start + per_hit]
        chunk += rng.sample(gold_pool, slots - len(chunk))      # gold + padding, distinct in a HIT
        rng.shuffle(chunk)
        row = {"study_task": task.name}
        for i, item in enumerate(chunk, 1):
            row[f"item_id_{i}"] = item
            row[f"video_url_{i}"] = media_url(base_url, item)
        rows.append(row)
    return rows


def _export_media(study_dir: Path, items: dict[str, dict], infos: dict[str, ClipInfo], seed: int,
                  progress: Callable[[str], None] | None, fmt: MediaFormat | None) -> dict[str, int]:
    """Write media/<id>.mp4 for every item (resumes: existing files are kept). Returns mode counts."""
    counts = {"copied": 0, "transcoded": 0, "gold": 0, "existing": 0}
    for n, (i, entry) in enumerate(tqdm(items.items(), desc="media", unit="clip", disable=progress is None)):
        dst = study_dir / "media" / f"{i}.mp4"
        if dst.exists():
            counts["existing"] += 1
            continue
        if entry["system"] == GOLD:
            make_gold_clip(infos[i], entry["variant"], dst, seed=seed * 1000 + n, fmt=fmt)
            counts["gold"] += 1
        else:
            counts[export_clip(infos[i], dst, fmt)] += 1
    return counts


# What a build writes (module docstring), and a sandbox publication of it: what --overwrite may remove. An analysis
# inside the study, results CSVs or notes make --overwrite refuse (mmdiff.outdir.clear).
STUDY_OUTPUTS = named(r"media/[0-9a-f]+\.mp4", r"mturk/\w+/(template\.html|batch\.csv|hit_settings\.json)",
                      r"preview/\w+\.html", r"private/(key|build_report|published_sandbox)\.json", r"README\.txt")


def _same_study(study_dir: Path, key: dict) -> bool:
    """True when `study_dir` holds a study whose private/key.json is `key` (a rerun resumes it)."""
    old = _old_key(study_dir)
    return old is not None and old == json.loads(json.dumps(key))


def _old_key(study_dir: Path) -> dict | None:
    """The study's private/key.json, with what keys written before the one-format change lack filled in as those
    studies were built (each clip in its own format: keep_formats True, no media_format)."""
    try:
        old = json.loads((study_dir / "private" / "key.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(old, dict) and "media_format" not in old:
        old["media_format"] = None
        if isinstance(old.get("config"), dict):
            old["config"].setdefault("keep_formats", True)
    return old


def _check_existing(study_dir: Path, key: dict, overwrite: bool) -> None:
    """Refuse to replace the key of a built study: results of its published HITs need that key."""
    key_path = study_dir / "private" / "key.json"
    if not key_path.is_file() or _same_study(study_dir, key):
        return
    old = _old_key(study_dir) or {}
    if not overwrite and old.get("media_format") is None and (old.get("config") or {}).get("keep_formats") \
            and not key["config"].get("keep_formats"):
        raise ValueError(f"{study_dir} holds a study built with each clip in its own format (--keep-formats, or "
                         "built before studies showed every clip in one format); rerun with --keep-formats to resume "
                         "it as it was built, or build into a new --out")
    if not overwrite:
        raise ValueError(f"{study_dir} holds a study built with other settings, and results of its HITs can only "
                         "be analysed with its private/key.json; build into a new --out (or add --overwrite to "
                         "replace that study)")
    live = study_dir / "private" / "published_live.json"
    if live.is_file():
        raise ValueError(f"{study_dir} was published on the live marketplace ({live.name}); its key is needed to "
                         "analyse what workers were paid for, so --overwrite will not replace it: use a new --out")


def build_study(cfg: StudyConfig, out_dir: str | Path, progress: Callable[[str], None] | None = print,
                overwrite: bool = False) -> BuildResult:
    """Build the study in `out_dir` (see module docstring).

    `out_dir` must be new or empty, or hold this very study (same key: the rerun resumes, media already
    written are kept). Another study there is refused, unless `overwrite` (then it is cleared first,
    except when it was published live). The folder is locked while it is written (mmdiff.outdir).
    """
    cfg.validate()
    study_dir = Path(out_dir)
    say = progress or (lambda s: None)
    tasks = tasks_for(cfg.kind)
    groups, skipped, fmt = _sample_groups(cfg)
    for s in skipped:
        say(f"skipped: {s}")
    items, infos = _study_items(cfg, groups)
    per_hit = min(cfg.items_per_hit, len(items))
    pad = -len(items) % per_hit
    pool = max(3, cfg.gold + pad) if (cfg.gold or pad) else 0
    gold_items, pools = _gold_items(cfg, tasks, groups[REAL], pool)
    by_source = {str(c.path.resolve()): c for c in groups[REAL]}
    infos.update({g: by_source[e["source"]] for g, e in gold_items.items()})
    all_items = {**items, **gold_items}
    rows = {t.name: _hit_rows(t, list(items), pools.get(t.name, []), per_hit, cfg.gold, cfg.seed, cfg.base_url)
            for t in tasks}
    key = {"version": KEY_VERSION, "config": asdict(cfg), "slots_per_hit": per_hit + cfg.gold,
           "media_format": asdict(fmt) if fmt else None,
           "tasks": [t.name for t in tasks], "items": all_items,
           "hits": {t: [[r[f"item_id_{i}"] for i in range(1, per_hit + cfg.gold + 1)] for r in rs]
                    for t, rs in rows.items()}}
    _check_existing(study_dir, key, overwrite)
    with claim(study_dir, "eval.study build", overwrite, ours=lambda d: (d / "private" / "key.json").is_file(),
               resume=lambda d: _same_study(d, key), outputs=STUDY_OUTPUTS):
        return _write_study(study_dir, cfg, tasks, key, rows, infos, skipped, per_hit, progress,
                            _format_notes(fmt, groups))


def _format_notes(fmt: MediaFormat | None, groups: dict[str, list[ClipInfo]]) -> list[str]:
    """Build-report lines on the clips' formats: what the real clips were changed in, or (keep_formats) how the
    groups differ, which lets a worker tell them apart."""
    if fmt is not None:
        changed = differences(fmt, groups[REAL])
        notes = [f"every clip is shown as {fmt.describe()} (the generated clips' format)"
                 + (f"; the real clips were converted from {'; '.join(changed)}" if changed else "")]
        for group, clips in groups.items():            # systems of different formats: all shown in the smallest
            if group != REAL and (changed := differences(fmt, clips)):
                notes.append(f"the clips of system {group} were converted too, from {'; '.join(changed)}: the "
                             "systems' outputs differ in format, so each is shown in the smallest of them")
        return notes
    own = {g: common_format(clips) for g, clips in groups.items()}
    if len({(f.width, f.height, f.fps, round(f.duration, 1), f.audio_rate, f.channels) for f in own.values()}) > 1:
        return ["--keep-formats: the groups' clips differ in format (" + "; ".join(
            f"{g}: {f.describe()}" for g, f in own.items()) + "), which can tell a worker which clips are real"]
    return []


def _write_study(study_dir: Path, cfg: StudyConfig, tasks: tuple[Task, ...], key: dict,
                 rows: dict[str, list[dict[str, str]]], infos: dict[str, ClipInfo], skipped: list[str],
                 per_hit: int, progress: Callable[[str], None] | None, notes: list[str]) -> BuildResult:
    say = progress or (lambda s: None)
    fmt = MediaFormat(**key["media_format"]) if key["media_format"] else None
    write_json_atomic(study_dir / "private" / "key.json", key)     # first: an interrupted build resumes from it
    counts = _export_media(study_dir, key["items"], infos, cfg.seed, progress, fmt)
    say(f"media: {counts}")
    outputs = {}
    for task in tasks:
        template = render_task_template(task, per_hit + cfg.gold, cfg.gold, cfg.max_hits_per_worker)
        header = template_variables(template)
        d = study_dir / "mturk" / task.name
        outputs[task.name] = {
            "template": write_text(d / "template.html", template),
            "batch_csv": write_csv_atomic(d / "batch.csv", header, rows[task.name]),
            "preview": write_text(study_dir / "preview" / f"{task.name}.html",
                                  render_preview(template, rows[task.name][0], "../media/")),
        }
        write_hit_settings(study_dir, task.name, HitSettings(), cfg.votes, cfg.max_hits_per_worker, sandbox=False)
        say(f"{task.name}: {len(rows[task.name])} HITs x {per_hit + cfg.gold} clips, {cfg.votes} assignments each")
    num_items = sum(e["system"] != GOLD for e in key["items"].values())
    warnings = notes + ([] if per_hit == cfg.items_per_hit else [
        f"only {num_items} clips: HITs hold {per_hit} study clips instead of {cfg.items_per_hit}"])
    write_json_atomic(study_dir / "private" / "build_report.json",
                      {"media": counts, "skipped": skipped, "warnings": warnings})
    write_text(study_dir / "README.txt", STUDY_README)
    return BuildResult(study_dir, outputs, num_items, len(key["items"]) - num_items, skipped, warnings)


STUDY_README = """\
This folder is a user study built by `python -m eval.study build`.

Public (upload):
  media/            serve these files at the --base-url given to build (names are anonymous ids)
  mturk/<task>/     template.html -> MTurk project layout; batch.csv -> "Publish batch"
Local only:
  preview/<task>.html   open in a browser to try one HIT (plays ../media/)
Private (never upload or share with workers):
  private/key.json      which system made each clip, gold answers, HIT layout
Results: download each batch's Batch_*_batch_results.csv, then
  python -m eval.study analyze --results Batch_*_batch_results.csv --key <this folder>
"""
