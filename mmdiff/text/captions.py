"""Captions for training a text-conditioned model: where they come from, and clips served with their embedding.

Where an item's caption comes from, first match wins:
1. a sidecar file (`mmdiff.train --captions FILE`), matched by the cache item id (`item`) or by the item's
   source path (`source`: the path relative to the `mmdiff.data.prepare --src` folder; every item cut from
   that source gets its caption);
2. the item's own `meta["caption"]` (the synthetic dataset writes one per clip).
An explicit empty caption ("") is allowed and means the null caption: that item trains unconditionally.
An item with no caption at all is an error naming it, unless `allow_missing` (`--allow-missing-captions`)
gives it the empty caption.

Sidecar formats (chosen by the file's suffix):
- CSV (.csv) with a header: a `caption` column and an `item` and/or `source` column.
- JSON lines (.jsonl or .json): one object per line with `caption` and `item` (alias `clip`, as in the
  synthetic data's events.jsonl) and/or `source` (alias `file`).
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

KEY_ALIASES = {"item": ("item", "clip"), "source": ("source", "file")}


class CaptionError(ValueError):
    """A captions file is malformed, or items lack captions."""


@dataclass
class Captions:
    """Captions from a sidecar file, by cache item id and by source path."""

    by_item: dict[str, str] = field(default_factory=dict)
    by_source: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def __len__(self) -> int:
        return len(self.by_item) + len(self.by_source)

    def add(self, kind: str, key: str, caption: str, where: str) -> None:
        table = self.by_item if kind == "item" else self.by_source
        key = key.strip() if kind == "item" else os.path.normpath(key.strip())
        if key in table and table[key] != caption:
            raise CaptionError(f"{where}: {kind} {key!r} has two different captions")
        table[key] = caption

    def lookup(self, item_id: str, source: str) -> str | None:
        if item_id in self.by_item:
            return self.by_item[item_id]
        return self.by_source.get(os.path.normpath(source)) if source else None


def _record(captions: Captions, row: dict, where: str) -> None:
    caption = row.get("caption")
    if not isinstance(caption, str):
        raise CaptionError(f"{where}: no 'caption' text (got {caption!r})")
    keys = 0
    for kind, names in KEY_ALIASES.items():
        value = next((row[n] for n in names if row.get(n) not in (None, "")), None)
        if value is not None:
            captions.add(kind, str(value), caption.strip(), where)
            keys += 1
    if not keys:
        raise CaptionError(f"{where}: needs an 'item' or 'source' value to match a cache item")


def read_captions(path: str | os.PathLike) -> Captions:
    """Parse a captions sidecar (CSV or JSON lines, see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CaptionError(f"captions file {path} does not exist")
    captions = Captions(path=str(path))
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = set(reader.fieldnames or [])
            if "caption" not in header or not header & {"item", "source"}:
                raise CaptionError(f"{path}: the CSV header must have a 'caption' column and an 'item' or "
                                   f"'source' column, got {sorted(header)}")
            for n, row in enumerate(reader, start=2):
                _record(captions, row, f"{path}:{n}")
    elif path.suffix.lower() in (".jsonl", ".json"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CaptionError(f"{path}:{n}: not a JSON object ({e.msg}); expected one object per line") from e
            if not isinstance(row, dict):
                raise CaptionError(f"{path}:{n}: expected a JSON object per line, got {type(row).__name__}")
            _record(captions, row, f"{path}:{n}")
    else:
        raise CaptionError(f"{path}: captions must be a .csv or .jsonl file")
    if not len(captions):
        raise CaptionError(f"{path} holds no captions")
    return captions


def item_captions(items, sidecar: Captions | None = None, allow_missing: bool = False) -> list[str]:
    """The caption of each cache item (CacheItem-like: id, source, meta); see the module docstring."""
    out, missing, matched = [], [], 0
    for item in items:
        caption = sidecar.lookup(item.id, item.source) if sidecar is not None else None
        matched += caption is not None
        if caption is None:
            caption = (item.meta or {}).get("caption")
        if caption is None:
            missing.append(item.id)
            caption = ""
        out.append(str(caption))
    if sidecar is not None and not matched:
        raise CaptionError(f"no caption in {sidecar.path} matches an item id or source of the cache (items "
                           f"look like {[i.id for i in items[:2]]} from {[i.source for i in items[:2]]})")
    if missing and not allow_missing:
        raise CaptionError(f"{len(missing)} of {len(out)} items have no caption (e.g. {missing[:5]}); give them "
                           "one in the --captions file, or pass --allow-missing-captions to train them with "
                           "the empty (null) caption")
    return out


def embed_captions(captions: list[str], encoder) -> torch.Tensor:
    """(N, D) float32 CPU embeddings, each distinct caption encoded once; blank captions are all-zero (null)."""
    from mmdiff.text.encoder import prompt_embeddings

    distinct = sorted(set(captions))
    table = prompt_embeddings(encoder, distinct).float().cpu()                 # (U, D)
    row = {c: k for k, c in enumerate(distinct)}
    return table[[row[c] for c in captions]]


class CaptionedClips(Dataset):
    """An AVClipDataset whose clips come with their item's caption embedding: (video, audio, text (D,)).

    Embeddings are computed once, here (the encoder is frozen), and kept in memory: (items, D) floats.
    """

    def __init__(self, clips, embeddings: torch.Tensor, captions: list[str]):
        if embeddings.shape[0] != len(clips.items) or len(captions) != len(clips.items):
            raise ValueError(f"{embeddings.shape[0]} embeddings / {len(captions)} captions for "
                             f"{len(clips.items)} items")
        self.clips, self.embeddings, self.captions = clips, embeddings, list(captions)

    @classmethod
    def build(cls, clips, encoder, sidecar: str | os.PathLike | None = None,
              allow_missing: bool = False) -> "CaptionedClips":
        side = read_captions(sidecar) if sidecar else None
        captions = item_captions(clips.items, side, allow_missing)
        return cls(clips, embed_captions(captions, encoder), captions)

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.clips.set_epoch(epoch)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        item, start, flip = self.clips.locate(index)
        v, a = self.clips.clip_arrays(item, start, flip)
        return torch.from_numpy(v), torch.from_numpy(a), self.embeddings[item]

    def clip_info(self, index: int) -> dict:
        info = self.clips.clip_info(index)
        item, _, _ = self.clips.locate(index)
        return {**info, "caption": self.captions[item]}


__all__ = ["Captions", "CaptionError", "CaptionedClips", "read_captions", "item_captions", "embed_captions"]
