"""Apply a trained viewmaker to a folder, mirroring its tree, in the inputs' own format.

Safety: the input folder is only read. Views are written into a hidden sibling folder and
renamed to OUT at the end, so OUT is either complete or absent (never half-written). OUT may
not be the input folder or inside it, and an existing non-empty OUT is refused; an OUT that is
a link to an empty folder fills that folder (a dangling link is refused up front).
Determinism: each file's views come from a generator seeded by (seed, relative path, view), so
the same seed gives the same views whatever the order, batching or subset of files.
Naming: every output path (with `--to-wav`, the WAV beside each view too) is decided before
anything is written (`plan_outputs`); inputs that would share one (c0.wav and c0.flac → c0.npy)
keep their extension (c0.wav.npy, c0.flac.npy), so no view ever overwrites another. A view name
longer than the output filesystem allows (`name_view0.ext` of a 255-byte name) is refused
before any view is made.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import time
import zlib
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from vmcli import runs
from vmcli.config import TrainConfig, check_count, check_seed
from vmcli.console import TrainProgress, first_few, info, warn
from vmcli.data import MODALITIES, get_modality, scan
from vmcli.data.base import Modality
from vmcli.devices import resolve_device
from vmcli.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    as_out_of_memory,
    as_storage_error,
)
from vmcli.pipeline import Augmenter, load_viewmaker


def view_seed(seed: int, rel: Path, k: int) -> int:
    """A stable 63-bit seed for view `k` of file `rel` (independent of processing order). The
    name's bytes as the filesystem has them: a name that is not UTF-8 (a Latin-1 'é') works,
    and a UTF-8 name gives the seed it always did."""
    name = os.fsencode(rel.as_posix())
    return (seed * 1_000_003 + zlib.crc32(name) * 65_537 + k) % (2**63)


def view_path(rel: Path, k: int, views_per_input: int) -> Path:
    """Same relative path for a single view; `name_view{k}.ext` for several."""
    return rel if views_per_input == 1 else rel.with_name(f"{rel.stem}_view{k}{rel.suffix}")


def plan_outputs(
    modality: Modality,
    rels: list[Path],
    view_space: str,
    views_per_input: int,
    to_wav: bool = False,
) -> tuple[dict[tuple[Path, int], Path], list[Path]]:
    """Every view's output path, decided before anything is written: (input, k) → path.

    A view keeps its input's relative path (`name_view{k}.ext` for several views), with the view
    space's suffix where views are another file type (c0.wav → c0.npy). Inputs whose outputs
    would clash — c0.wav and c0.flac both giving c0.npy, or a file's output being the name of an
    output folder — keep their extension in the name instead (c0.wav.npy, c0.flac.npy), every
    view of them; other inputs are unaffected. With `to_wav`, the file written beside each view
    (c0.npy's approximate WAV c0.wav) counts as an output too. Returns the plan and the inputs
    so renamed. A clash no renaming can solve is a ConfigError naming the files: no view is
    ever overwritten by another."""
    keep: set[Path] = set()
    while True:
        plan = {
            (rel, k): modality.output_path(
                view_path(rel, k, views_per_input), view_space, keep_suffix=rel in keep
            )
            for rel in rels
            for k in range(views_per_input)
        }
        owners: dict[Path, list[Path]] = defaultdict(list)
        for (rel, _), dst in plan.items():
            for path in (dst, *_companions(modality, view_space, dst, to_wav)):
                owners[path].append(rel)
        folders = {parent for dst in plan.values() for parent in dst.parents}
        clashing = {
            rel for dst, rs in owners.items() if len(rs) > 1 or dst in folders for rel in rs
        }
        if not clashing:
            return plan, sorted(keep)
        if clashing <= keep:
            dst = next(d for d, rs in owners.items() if len(rs) > 1 or d in folders)
            shown = ", ".join(str(r) for r in sorted(set(owners[dst]))[:5])
            raise ConfigError(
                f"cannot give the views of {shown} distinct names: they would be written to {dst}, "
                "which is also another output or a folder of outputs; rename one of the inputs"
            )
        keep |= clashing


def _name_max(folder: Path) -> int:
    """The longest file name, in bytes, the filesystem that holds (or will hold) `folder` takes."""
    try:
        return int(os.pathconf(runs.nearest_existing(folder), "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or no answer
        return 255


def check_name_lengths(
    plan: dict[tuple[Path, int], Path], src: Path, out: Path, dest: Path | None = None
) -> None:
    """Refuse, before any view is made, views whose names the output filesystem (that of
    `dest`, where OUT is a link) cannot hold — `--views-per-input` adds `_view{k}` to a name
    that may already be at the limit: a ConfigError naming the input, not a crash half-way."""
    limit = _name_max(out if dest is None else dest)
    too_long: dict[Path, Path] = {}
    for (rel, _), dst in plan.items():
        if rel not in too_long and any(len(os.fsencode(part)) > limit for part in dst.parts):
            too_long[rel] = dst
    if not too_long:
        return
    rel = min(too_long)
    parts = too_long[rel].parts
    at = next(i for i, p in enumerate(parts) if len(os.fsencode(p)) > limit)
    name = parts[at]
    if at == len(parts) - 1:  # the file's own name: say how short the input's must be
        extra = len(os.fsencode(name)) - len(os.fsencode(rel.name))
        what, fix = "named", f"shorten the input's name to at most {limit - extra} bytes"
    else:  # a folder on the way (an output filesystem with shorter names than the input's)
        what, fix = "in a folder named", f"shorten that folder's name to at most {limit} bytes"
    others = f" (and {len(too_long) - 1} more input(s) like it)" if len(too_long) > 1 else ""
    raise ConfigError(
        f"{src / rel}: its view would be {what} {name[:40]}... ({len(os.fsencode(name))} "
        f"bytes), longer than the {limit} bytes a file name may have under --out {out}{others}; "
        f"{fix} and run again (nothing was written)"
    )


def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


# what `.{OUT}.partial-PID.HOST-RANDOM` adds to OUT's name, at most (a 10-digit PID)
PARTIAL_EXTRA = len(".partial-") + 10 + 1 + 8 + 1 + 12 + 1


def _partial_stem(out: Path) -> str:
    """OUT's name as the hidden sibling uses it: the name itself, or, where the added suffix
    would go over the filesystem's limit on a name, its start and a checksum of all of it —
    the temporary folder never needs a longer name than OUT."""
    name = os.fsencode(out.name)
    room = _name_max(out.parent) - PARTIAL_EXTRA
    if len(name) <= room:
        return out.name
    return f"{os.fsdecode(name[: max(room - 9, 1)])}~{zlib.crc32(name):08x}"


def _partial_prefix(out: Path) -> str:
    """The hidden sibling's name: `.OUT.partial-PID.HOST-RANDOM`, so that a later run can tell
    a folder left by a killed process from one another run is filling right now."""
    return f".{_partial_stem(out)}.partial-{os.getpid()}.{_host_tag()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # POSIX only: signal 0 checks, sends nothing
    except ProcessLookupError:
        return False
    except OSError:  # exists, someone else's
        return True
    return True


def clean_stale_partials(out: Path) -> tuple[list[Path], list[Path]]:
    """Remove the hidden `.OUT.partial-*` folders that a killed `vm augment` to the same OUT
    left behind (their process, on this machine, is gone); report those whose owner cannot be
    told (made by an older vm, or on another machine). Folders of a live process are left
    alone. Returns (removed, reported)."""
    pattern = re.compile(
        rf"\.{re.escape(_partial_stem(out))}\.partial-(?:(\d+)\.([0-9a-f]{{8}})-)?[0-9a-f]{{12}}"
    )
    removed: list[Path] = []
    unknown: list[Path] = []
    with contextlib.suppress(OSError):
        for path in sorted(out.parent.iterdir()):
            match = pattern.fullmatch(path.name)
            if not match or path.is_symlink() or not path.is_dir():
                continue
            pid, host = match.group(1), match.group(2)
            if pid is None or host != _host_tag() or os.name != "posix":
                unknown.append(path)
            elif not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)
                (unknown if path.exists() else removed).append(path)
    if removed:
        info(
            f"removed {len(removed)} partial folder(s) left by an interrupted vm augment to "
            f"{out}: {', '.join(p.name for p in removed)}"
        )
    if unknown:
        warn(
            f"{len(unknown)} partial folder(s) of an earlier vm augment to {out} may be left over "
            f"from an interrupted run; delete them if no vm augment is writing there: "
            f"{', '.join(str(p) for p in unknown)}"
        )
    return removed, unknown


def _check_folders(src: Path, out: Path) -> Path:
    """Check INPUT and OUT before any work; returns the folder the views go to: OUT, or the
    folder OUT links to (the views fill that folder; the link stays a link)."""
    if src.exists() and not src.is_dir():
        raise DataError(f"{src}: is a file; vm augment takes the folder that holds your data")
    if not src.is_dir():
        raise DataError(f"{src}: no such folder")
    for path in (out, *out.parents):  # a link on the way that leads nowhere (or in a loop)
        if path.exists():
            break
        if path.is_symlink():
            raise ConfigError(
                f"--out {out}: {path} is a link to {os.readlink(path)}, which does not exist; "
                "make that folder or choose another --out"
            )
    runs.check_outside(out, src, folder="the input folder")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; choose a new folder")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} already exists and is not empty; choose a new folder")
    runs.check_out_folder(out)
    return out.resolve() if out.is_symlink() else out


def _companions(modality: Modality, view_space: str, dst: Path, to_wav: bool) -> list[Path]:
    """Files written beside a view (with --to-wav, its approximate WAV)."""
    suffix = modality.companion_suffix.get(view_space) if to_wav else None
    return [dst.with_suffix(suffix)] if suffix else []


def _make_view(
    augmenter: Augmenter,
    raw: torch.Tensor,
    planes: torch.Tensor | None,
    seed: int,
    rel: Path,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """View k of one file (and its moved planes), on the CPU. A DataError: the run refuses
    this sample, or the view overflowed (never written)."""
    gen = torch.Generator(raw.device).manual_seed(view_seed(seed, rel, k))
    with torch.no_grad():  # alpha and no-data planes move with the content
        view, moved = augmenter.with_planes(raw, planes, gen)
        if not augmenter.space.invertible:  # files hold log power, not z-scores
            view = augmenter.space.from_view(view)
    if not bool(torch.isfinite(view).all()):  # an overflow: never written as a view
        raise DataError(f"its view {k} has NaN or infinite values (an overflow); not written")
    return view.cpu(), None if moved is None else moved.cpu()


def augment_folder(
    src: Path,
    out: Path,
    run: Path | None = None,
    views_per_input: int = 1,
    seed: int = 0,
    device: str = "auto",
    to_wav: bool = False,
    runs_parent: Path = Path("runs"),
    progress: bool = True,
) -> dict[str, Any]:
    """Write `views_per_input` learned views of every file in `src` under `out`; returns a summary."""
    src, out = Path(src), Path(out)
    views_per_input = check_count(views_per_input, "--views-per-input")
    seed = check_seed(seed)
    run_dir = runs.resolve_run(run, runs_parent)
    if not (run_dir / runs.VIEWMAKER).is_file() and not (run_dir / runs.TRANSFORMS).is_file():
        trained = runs.read_config(run_dir)["train"]
        if trained.get("views") in ("handcrafted", "none"):
            raise CheckpointError(
                f"{run_dir} was trained with --views {trained['views']}: it has no learned views to apply"
            )
    dest = _check_folders(src, out)  # OUT, or the empty folder it links to
    if run is None:
        info(f"using the newest run: {run_dir}")
    config = runs.read_config(run_dir)
    cfg, meta = config["train"], config["data_meta"]
    dev = resolve_device(device)
    augmenter = load_viewmaker(run_dir, dev)
    runs.warn_if_unfinished(run_dir, config, "views")
    modality = get_modality(cfg["modality"])
    index = scan(src, MODALITIES, modality=cfg["modality"])
    other = sum(index.counts.values()) - index.counts.get(cfg["modality"], 0) + index.unrecognized
    options = TrainConfig.from_dict(cfg).load  # the loading options the run used
    if to_wav and not modality.companion_suffix.get(cfg["view_space"]):
        warn(
            f"--to-wav is ignored: the run's views ({cfg['modality']}, {cfg['view_space']} "
            "space) are written in their own format, not as spectrograms to invert"
        )
    plan, renamed = plan_outputs(
        modality, [item.path for item in index.items], cfg["view_space"], views_per_input, to_wav
    )
    if renamed:
        example = plan[(renamed[0], 0)]
        info(
            f"{len(renamed)} input(s) would share an output name with another input; their "
            f"views keep the input's extension in the name (e.g. {renamed[0]} → {example})"
        )
    check_name_lengths(plan, src, out, dest)

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_partials(dest)
        tmp = runs.make_temp_dir(dest.parent, prefix=_partial_prefix(dest))
    except OSError as e:
        raise runs.out_folder_error(out, "--out", e) from None
    written, skipped = 0, []
    notes: dict[str, list[Path]] = {}  # what could not be kept as the input had it → files
    t0 = time.perf_counter()
    bar = TrainProgress(len(index.items), enabled=progress, label="augment")
    current = None  # the file being augmented: named if it does not fit in memory
    try:
        for i, item in enumerate(index.items):
            current = src / item.path
            try:
                sample = modality.read_file(src / item.path, meta, options)
            except DataError as e:
                skipped.append((item.path, str(e)))
                warn(f"skipped {e}")
                continue
            sample.context["to_wav"] = to_wav
            raw = sample.raw.to(dev)  # once per file, not once per view
            planes = None if sample.planes is None else sample.planes.to(dev)
            done: list[Path] = []  # this file's views so far: removed if a later one fails
            for k in range(views_per_input):  # each written as made: one view in memory
                try:
                    view, moved = _make_view(augmenter, raw, planes, seed, item.path, k)
                except DataError as e:  # what the run refuses in a sample names no file
                    for dst in done:  # a file is skipped whole, never left with some views
                        for path in (dst, *_companions(modality, cfg["view_space"], dst, to_wav)):
                            path.unlink(missing_ok=True)
                    skipped.append((item.path, f"{src / item.path}: {e}"))
                    warn(f"skipped {src / item.path}: {e}")
                    break
                dst = tmp / plan[(item.path, k)]
                dst.parent.mkdir(parents=True, exist_ok=True)
                modality.write_file(view, replace(sample, planes=moved), dst)
                done.append(dst)
            else:
                written += len(done)
                for note in sample.context.get("notes", ()):
                    notes.setdefault(note, []).append(item.path)
            if (i + 1) % 50 == 0 or i + 1 == len(index.items):
                bar.update(i + 1, f"{written} views written")
        if written == 0:
            raise DataError(f"{src}: no views written ({len(skipped)} files could not be read)")
        try:
            if dest.exists():
                dest.rmdir()  # checked empty above
            tmp.rename(dest)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
            raise ConfigError(
                f"--out {out} was filled by something else while this run worked (another "
                "vm augment to the same folder?); it is left as it is and this run's views "
                "were discarded: run again with a new --out"
            ) from None
    except BaseException as e:
        storage = as_storage_error(e, out)  # before the partial views free the space again
        shutil.rmtree(tmp, ignore_errors=True)
        if storage is not None:
            raise storage from e
        oom = as_out_of_memory(e, "augment", current)
        if oom is not None:
            raise oom from None
        raise
    finally:
        bar.close()
        with contextlib.suppress(OSError):
            if tmp.exists() and not any(tmp.iterdir()):
                tmp.rmdir()
    for note, paths in notes.items():
        warn(f"{len(paths)} file(s) {note}: {first_few([str(p) for p in paths[:3]], len(paths))}")
    if skipped:
        warn(f"skipped {len(skipped)} unreadable file(s) of {len(index.items)}")
    return {
        "run": str(run_dir),
        "input": str(src),
        "out": str(out),
        "files": len(index.items) - len(skipped),
        "views_written": written,
        "skipped": [[str(p), r] for p, r in skipped],
        "ignored_other_files": other,
        "kept_extension": [str(p) for p in renamed],
        "notes": {note: [str(p) for p in paths] for note, paths in notes.items()},
        "seed": seed,
        "seconds": time.perf_counter() - t0,
    }
