"""Run folders: numbering, atomic writes, checkpoints and safetensors exports.

A run folder (`runs/train`, `runs/train-2`, ...) is never overwritten. Every file in it is
written to a temporary name and renamed into place, so a crash or Ctrl-C never leaves a
half-written file; files and folders get the modes a plain open()/mkdir() would (the umask
decides, so a team can share runs), and checkpoints, exports and JSON records are fsynced
before and after the rename, so a killed VM finds the old file or the new one. Shipped weights are safetensors (no pickle) with everything needed to
rebuild the module in the header metadata; the resumable checkpoint is a torch file holding
only tensors and plain containers, loaded with `weights_only=True`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from vmcli import __version__, untrusted
from vmcli.console import warn
from vmcli.errors import CheckpointError, ConfigError, as_storage_error

CONFIG = "config.json"
SUMMARY = "summary.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"
VIEWMAKER = "viewmaker.safetensors"
ENCODER = "encoder.safetensors"
PREVIEW = "preview.png"
TRANSFORMS = "transforms.safetensors"
TRAINING_PLOT = "training.png"
EVAL = "eval.json"


def _fresh_name(parent: Path, prefix: str, suffix: str) -> Path:
    return parent / f"{prefix}{secrets.token_hex(6)}{suffix}"


def make_temp_file(parent: Path, prefix: str, suffix: str = ".tmp") -> Path:
    """Create an empty file with a fresh name in `parent`, with the mode an ordinary `open()`
    gives (0666 less the umask) — unlike `tempfile.mkstemp`, whose files are always 0600."""
    while True:
        path = _fresh_name(parent, prefix, suffix)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """Create a folder with a fresh name in `parent`, with the mode an ordinary `mkdir()`
    gives (0777 less the umask) — unlike `tempfile.mkdtemp`, whose folders are always 0700."""
    while True:
        path = _fresh_name(parent, prefix, "")
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        return path


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush a file's data (or a folder's entries) to the disk; a no-op where the platform
    cannot open folders (Windows)."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(dst: Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `dst`; rename it onto `dst` only if the block succeeds.

    The file gets the mode a plain `open()` would give it: that of the file it replaces, or
    0666 less the umask for a new one. With `durable`, its data is fsynced before the rename
    and the folder after it, so a power loss or a killed VM leaves the old file or the new one,
    complete, on disk.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_file(dst.parent, prefix=f".{dst.name}.")
    try:
        with contextlib.suppress(OSError):  # keep the mode of the file it replaces
            os.chmod(tmp, stat.S_IMODE(os.stat(dst).st_mode))
        wanted = stat.S_IMODE(os.stat(tmp).st_mode)
        yield tmp
        if stat.S_IMODE(os.stat(tmp).st_mode) != wanted:  # a writer replaced it (safetensors
            os.chmod(tmp, wanted)  # writes its own 0600 file)
        if durable:
            _fsync(tmp)
        os.replace(tmp, dst)
        if durable:
            _fsync(dst.parent, directory=True)
    except BaseException as e:
        storage = as_storage_error(e, dst)  # before the unlink frees the space again
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if storage is not None:
            raise storage from e
        raise


def write_json(dst: Path, payload: dict[str, Any], durable: bool = True) -> None:
    with atomic_write(dst, durable) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def read_json(src: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(src).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{src}: missing; is this a run folder made by `vm train`?") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{src}: not valid JSON ({e})") from None


def read_config(run_dir: Path) -> dict[str, Any]:
    """A run's config.json, checked: settings of the right types and bounded shapes that agree
    (CheckpointError otherwise, also for a run written by a newer, incompatible vm)."""
    src = Path(run_dir) / CONFIG
    return untrusted.config(read_json(src), src)


def _read_result(run_dir: Path, name: str) -> dict[str, Any] | None:
    src = Path(run_dir) / name
    return untrusted.results(read_json(src), src) if src.is_file() else None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """A run's summary.json (None where missing), checked for what `vm info` shows."""
    return _read_result(run_dir, SUMMARY)


def read_results(run_dir: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """A run's summary.json and eval.json (None where missing), checked for what `vm info`
    shows."""
    return read_summary(run_dir), _read_result(run_dir, EVAL)


def warn_if_unfinished(run_dir: Path, config: dict[str, Any], what: str) -> None:
    """`vm augment` and `vm eval` use what a run exported; they say so when that is not its
    finished training (`what`: "views", "encoder")."""
    try:
        summary = read_summary(run_dir)
    except CheckpointError as e:  # a summary they do not otherwise use stops nothing
        warn(f"{e}; cannot tell whether the run finished, using the {what} it exported")
        return
    note = unfinished(config, summary)
    if note:
        warn(f"{run_dir} {note}; using the {what} it exported")


def unfinished(config: dict[str, Any], summary: dict[str, Any] | None) -> str | None:
    """Why a run's files are not those of its finished training, or None: no summary.json (it
    stopped before the end, or between its last checkpoint and the summary), or a resume
    extended it past the epochs its summary and exports were written at."""
    target = config["train"]["epochs"]
    if summary is None:
        return (
            f"has not finished (no {SUMMARY}: it stopped during its {target} epochs, or "
            "before writing its results)"
        )
    done = summary.get("epochs")
    if isinstance(done, int) and done < target:
        # its exports may be of epoch `done` or, stopped while writing them, of a later one
        return (
            f"was extended to {target} epochs and has not finished (its summary is of epoch {done})"
        )
    return None


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes: what eval.json records of the encoder it measured."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_digest(path: Path) -> str:
    """sha256 of a safetensors file's tensors (names, dtypes, shapes, values), not its bytes:
    its header's metadata comes out in another order at every write, so rewriting the same
    weights (a resume that only finishes a run) changed the file's digest."""
    h = hashlib.sha256()
    try:
        with safe_open(str(path), framework="pt") as f:
            for name in sorted(f.keys()):
                t = f.get_tensor(name).contiguous()
                h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
                h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: cannot be read as safetensors ({e})") from None
    return h.hexdigest()


def eval_is_current(run_dir: Path, evaluation: dict[str, Any]) -> bool | None:
    """Whether eval.json measured the encoder the run holds now: False after a resume trained
    on (its numbers belong to an earlier encoder); None where it cannot be told (an eval.json
    from before the digest was recorded, or no encoder file). Compares the weights' digest
    (`encoder_weights_sha256`); eval.json files from before it, the file's bytes."""
    encoder = Path(run_dir) / ENCODER
    weights, recorded = evaluation.get("encoder_weights_sha256"), evaluation.get("encoder_sha256")
    if not encoder.is_file():
        return None
    if isinstance(weights, str):
        try:
            return weights == weights_digest(encoder)
        except CheckpointError:  # a damaged encoder: `vm info` still shows the rest
            return None
    if isinstance(recorded, str):
        return recorded == file_digest(encoder)
    return None


def nearest_existing(path: Path) -> Path:
    """`path`, or the closest of its parents that exists: where a folder to be made would go."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_out_folder(path: Path, option: str = "--out") -> None:
    """Refuse, before any work, a folder that cannot be made or written in: one that is a
    file, a path through a file, or one whose nearest existing folder is not writable
    (ConfigError naming the option and the path). Nothing is created; `out_folder_error`
    names what creating it then still fails on (e.g. /proc, where root may "write")."""
    path = Path(path)
    try:
        probe = nearest_existing(path)
        if not probe.is_dir():
            what = "is a file" if probe == path else f"goes through the file {probe}"
            raise ConfigError(f"{option} {path} {what}, not a folder; choose a folder")
    except OSError as e:
        raise out_folder_error(path, option, e) from None
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: {probe} is not writable; choose another folder")


def check_outside(
    out: Path, data: Path, option: str = "--out", folder: str = "the data folder"
) -> None:
    """Refuse an output folder that is the data folder or inside it: what is written there
    would be read as data by the next run over the folder (or by this one's resume)."""
    if not Path(data).exists():
        return  # the scan names a missing data folder
    o, d = Path(out).resolve(), Path(data).resolve()
    if o == d or d in o.parents:
        raise ConfigError(
            f"{option} {out} is inside {folder} {data}: what is written there would be "
            "read as data by the next run; choose a folder outside it"
        )


def out_folder_error(path: Path, option: str, e: OSError) -> ConfigError:
    """The ConfigError for an output folder that could not be made or written in."""
    return ConfigError(f"{option} {path}: cannot make or write a folder there ({e.strerror or e})")


def new_run_dir(parent: Path, name: str = "train", option: str = "--out") -> Path:
    """Create and return parent/name, or parent/name-2, -3... (the first that does not exist);
    a ConfigError naming `option` and `parent` where that cannot be done."""
    parent = Path(parent)
    check_out_folder(parent, option)
    n = 1
    while True:
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
            return path
        except FileExistsError:
            if not parent.is_dir():
                raise ConfigError(f"{option} {parent} is a file, not a folder") from None
            n += 1
        except OSError as e:
            raise out_folder_error(parent, option, e) from None


# every file `vm train` writes into a run folder
RUN_FILES = (CONFIG, SUMMARY, METRICS, CHECKPOINT, VIEWMAKER, ENCODER, PREVIEW, TRANSFORMS)
RUN_FILES += (TRAINING_PLOT, EVAL)


def remove_unstarted_run(run_dir: Path) -> bool:
    """Remove a run folder that stopped before its first checkpoint (nothing in it to resume);
    True when it is gone. Only vm's own files (and their temporary copies) are removed, and
    the folder only when that empties it; a folder with a checkpoint is left as it is."""
    run_dir = Path(run_dir)
    if (run_dir / CHECKPOINT).exists() or not run_dir.is_dir():
        return False
    for p in run_dir.iterdir():
        own = p.name in RUN_FILES or any(p.name.startswith(f".{name}.") for name in RUN_FILES)
        if own and p.is_file() and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    try:
        run_dir.rmdir()
    except OSError:  # something else is in it: leave it
        return False
    return True


def is_run(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def latest_run(parent: Path = Path("runs")) -> Path:
    """The most recently started run folder under `parent`."""
    parent = Path(parent)
    runs = [p for p in parent.iterdir() if is_run(p)] if parent.is_dir() else []
    if not runs:
        raise CheckpointError(
            f"no runs under {parent}/; train one with `vm train DATA` or name a run folder"
        )
    return max(runs, key=lambda p: (p / CONFIG).stat().st_mtime)


def resolve_run(run: Path | None, parent: Path = Path("runs")) -> Path:
    if run is None:
        return latest_run(parent)
    run = Path(run)
    if run.is_file() and run.suffix == ".safetensors":
        run = run.parent
    if run.exists() and not run.is_dir():
        raise CheckpointError(
            f"{run}: is a file, not a run folder; give a folder made by `vm train`"
        )
    if not run.is_dir():
        raise CheckpointError(f"{run}: no such run folder")
    if not is_run(run):
        raise CheckpointError(
            f"{run}: not a run folder (no {CONFIG}); give a folder made by `vm train`"
        )
    return run


# -- weights ---------------------------------------------------------------------------------


def save_weights(module: nn.Module, dst: Path, metadata: dict[str, Any]) -> None:
    """Save a module's state as safetensors; `metadata` values are JSON-encoded into the header."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    header = {k: json.dumps(v) for k, v in metadata.items()}
    header["vmcli_version"] = json.dumps(__version__)
    header["format"] = json.dumps(untrusted.RUN_FORMAT)
    with atomic_write(dst, durable=True) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def read_weights(src: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and decoded metadata of a safetensors file written by `save_weights`."""
    src = Path(src)
    if not src.is_file():
        raise CheckpointError(
            f"{src}: missing; the run may not have finished (try `vm train --resume`)"
        )
    try:
        tensors = load_file(str(src))
        from safetensors import safe_open

        with safe_open(str(src), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{src}: not a readable safetensors file ({e})") from None
    try:
        meta = {k: json.loads(v) for k, v in raw.items()}
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{src}: metadata is not valid JSON ({e})") from None
    untrusted.finite_tensors(tensors, src)
    return tensors, meta


def load_state(module: nn.Module, tensors: dict[str, torch.Tensor], src: Path) -> None:
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{src}: weights do not fit the architecture in its metadata ({e})"
        ) from None


# -- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(dst: Path, state: dict[str, Any]) -> None:
    state = {**state, "format": untrusted.RUN_FORMAT, "vmcli_version": __version__}
    with atomic_write(dst, durable=True) as tmp:
        torch.save(state, tmp)


def load_checkpoint(src: Path) -> dict[str, Any]:
    """A checkpoint written by `save_checkpoint`: only torch's zip format, unpickled with
    `weights_only=True` (no code runs), with the layout and value types checked."""
    if not Path(src).is_file():
        raise CheckpointError(f"{src}: no checkpoint to resume from")
    try:
        untrusted.checkpoint_file(src)
        state = torch.load(src, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as e:  # torch raises several types for corrupt or foreign files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{src}: cannot be loaded as a checkpoint ({type(e).__name__}: {reason[:200]})"
        ) from None
    return untrusted.checkpoint(state, Path(src))
