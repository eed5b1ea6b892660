"""Walk a data folder: classify files, detect the modality, read labels and splits.

Conventions (those of torchvision's ImageFolder, which users already follow):
- top-level folders named train/, test/, val/ (valid/, validation/) give splits;
- inside a split (or the root, without splits) a file's first folder is its class label;
  files directly at that level are unlabeled. Labels are only ever used for evaluation.
- hidden files and folders (name starting with '.') are ignored.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmcli.console import first_few, warn
from vmcli.data.base import Item, Modality
from vmcli.errors import ConfigError, DataError

SPLIT_FOLDERS = {
    "train": "train",
    "test": "test",
    "val": "val",
    "valid": "val",
    "validation": "val",
}
HEAD_BYTES = 64


@dataclass
class DataIndex:
    """What a folder holds, before anything is decoded."""

    root: Path
    modality: str
    items: list[Item]
    counts: dict[str, int]  # files per modality found (before choosing one)
    unrecognized: int = 0  # files no modality claims
    outside_splits: int = 0  # files beside train/ and test/ folders, not used
    notes: list[str] = field(default_factory=list)
    ignored_examples: list[str] = field(default_factory=list)  # the first few unclaimed files

    @property
    def labeled(self) -> bool:
        return any(it.label is not None for it in self.items)

    @property
    def splits(self) -> list[str]:
        return sorted({it.split for it in self.items if it.split})


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _visible_files(root: Path) -> list[Path]:
    """Every visible file under `root`, sorted. Linked folders are followed when they lead out
    of `root` (a dataset assembled from links: class folders linked from elsewhere); a link to
    a folder inside `root`, to one that holds `root` (`..`, `/`: the whole disk) or to one seen
    already is not, so no file is found twice under another label and a link loop ends.
    Folders are walked in name order, so which of two links to one folder counts (and the
    fingerprint `--resume` compares) does not depend on the file system's listing order."""
    top = root.resolve()
    seen: set[tuple[int, int]] = set()
    out = []
    unreadable: list[OSError] = []
    broken: list[Path] = []  # links whose target is gone: nothing to read, but said
    for folder, dirs, files in os.walk(root, onerror=unreadable.append, followlinks=True):
        here = Path(folder)
        st = here.stat()
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        keep = []
        for name in dirs:
            if _hidden(name):
                continue
            sub = here / name
            if sub.is_symlink():
                target = sub.resolve()
                if target == top or top in target.parents or target in top.parents:
                    continue
            keep.append(name)
        dirs[:] = sorted(keep)
        for name in files:
            path = here / name
            if _hidden(name):
                continue
            if path.is_file():
                out.append(path)
            elif path.is_symlink() and not path.exists():
                broken.append(path)
    if unreadable and Path(unreadable[0].filename or "") == root:
        raise DataError(f"{root}: cannot be read ({unreadable[0].strerror or unreadable[0]})")
    if unreadable:  # left out by name, not silently: their files would be missing from the run
        shown = [f"{e.filename} ({e.strerror or e})" for e in unreadable[:5]]
        warn(
            f"{len(unreadable)} folder(s) could not be read, their files are left out: "
            + first_few(shown, len(unreadable), "; ")
        )
    if broken:
        shown = first_few([str(p.relative_to(root)) for p in sorted(broken)[:5]], len(broken))
        warn(f"{len(broken)} broken link(s) left out (their targets do not exist): {shown}")
    return sorted(out)


def classify(path: Path, modalities: dict[str, Modality]) -> str | None:
    """Modality of one file: by extension, confirmed (or corrected) by its first bytes.

    A file whose extension claims a modality but whose header matches none still counts for
    that modality, so the loader reports it by name as unreadable instead of ignoring it.
    """
    ext = path.suffix.lower().lstrip(".")
    try:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        head = b""
    by_ext = [name for name, m in modalities.items() if ext in m.extensions]
    for name in by_ext:
        if modalities[name].sniff(path, head):
            return name
    for name, m in modalities.items():
        if name not in by_ext and m.has_magic and m.sniff(path, head):
            return name  # e.g. a PNG saved as .jpg, or a WAV without an extension
    return by_ext[0] if by_ext else None


IGNORED_SHOWN = 3  # ignored files named in the summary line; the rest are counted


def ignored_text(count: int, examples: list[str]) -> str:
    """ "2 other file(s) ignored: notes.txt, labels.xlsx": which files vm did not take is what
    a user checks when a folder's count looks short."""
    return f"{count} other file(s) ignored: {first_few(examples, count)}"


def scan(root: Path, modalities: dict[str, Modality], modality: str | None = None) -> DataIndex:
    """Index `root`. Raises DataError when it is missing, empty, or mixes modalities."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: is a file; give the folder that holds your data")
    if modality is not None and modality not in modalities:
        raise ConfigError(
            f"unknown modality {modality!r}; choose one of {', '.join(sorted(modalities))}"
        )

    files = _visible_files(root)
    kinds: dict[Path, str] = {}
    unrecognized: list[Path] = []
    for path in files:
        kind = classify(path, modalities)
        if kind is None:
            unrecognized.append(path)
        else:
            kinds[path] = kind
    # the walk yields paths under `root`, so each is relative to it
    ignored = [str(p.relative_to(root)) for p in unrecognized[:IGNORED_SHOWN]]
    counts = dict(Counter(kinds.values()))
    if not counts:
        raise DataError(
            f"{root}: found no image, audio, sensor (CSV) or array (.npy, .npz) files"
            + (f" ({ignored_text(len(unrecognized), ignored)})" if unrecognized else "")
        )
    if modality is None:
        if len(counts) > 1:
            listing = ", ".join(
                f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])
            )
            raise DataError(
                f"{root}: mixes modalities ({listing}); pick one with --modality "
                f"{'|'.join(sorted(counts))}"
            )
        modality = next(iter(counts))
    chosen = [p for p, k in kinds.items() if k == modality]
    if not chosen:
        found = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        raise DataError(f"{root}: no {modality} files here (it holds {found} files)")

    rels = [p.relative_to(root) for p in chosen]
    split_dirs = {
        r.parts[0] for r in rels if len(r.parts) > 1 and r.parts[0].lower() in SPLIT_FOLDERS
    }
    has_splits = any(SPLIT_FOLDERS[d.lower()] in ("train", "test") for d in split_dirs) or (
        len(split_dirs) > 1
    )
    items: list[Item] = []
    outside = 0
    for rel in rels:
        parts = rel.parts
        split = ""
        if has_splits:
            if len(parts) < 2 or parts[0] not in split_dirs:
                outside += 1
                continue
            split, parts = SPLIT_FOLDERS[parts[0].lower()], parts[1:]
        label = parts[0] if len(parts) > 1 else None
        items.append(Item(path=rel, split=split, label=label))
    index = DataIndex(
        root,
        modality,
        items,
        counts,
        unrecognized=len(unrecognized),
        outside_splits=outside,
        ignored_examples=ignored,
    )
    if outside:
        index.notes.append(f"{outside} {modality} files outside the split folders were not used")
    unlabeled = sum(it.label is None for it in items)
    if 0 < unlabeled < len(items):
        index.notes.append(f"{unlabeled} files sit outside class folders and count as unlabeled")
    return index


def fingerprint(index: DataIndex) -> dict[str, Any]:
    """What `vm train --resume` compares to notice changed data: the training files (the
    train/ split, or every file without one) by relative path, size and modification time.
    Nothing is read, only listed, so it costs one stat per file."""
    items = [it for it in index.items if it.split in ("train", "")] or index.items
    names, listing, total = hashlib.sha256(), hashlib.sha256(), 0
    for rel in sorted(it.path.as_posix() for it in items):
        try:
            st = (index.root / rel).stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        key = rel.encode("utf-8", "surrogateescape")
        names.update(key + b"\0")
        listing.update(key + f"\0{size}\0{mtime}\n".encode())
        total += max(size, 0)
    return {
        "files": len(items),
        "bytes": total,
        "names": names.hexdigest(),
        "files_sizes_mtimes": listing.hexdigest(),
    }


def describe_change(then: dict[str, Any], now: dict[str, Any]) -> str | None:
    """How the training files differ from a fingerprint taken earlier (None: they do not)."""
    if then.get("files_sizes_mtimes") == now["files_sizes_mtimes"]:
        return None
    was, n = then.get("files"), now["files"]
    if then.get("names") != now["names"]:
        if was == n:
            return f"the same number of training files ({n}), but under other names"
        if not isinstance(was, int):
            return f"{n} training files now, another set when the run started"
        more = "more" if n > was else "fewer"
        return (
            f"{n} training files now, {was} when the run started ({abs(n - was)} {more} "
            "in all; files may also have been added, removed or modified beside those)"
        )
    return (
        f"the same {n} training files, but some were modified (sizes or modification times "
        f"differ; {now['bytes']:,} bytes now, {then.get('bytes', 0):,} then)"
    )
