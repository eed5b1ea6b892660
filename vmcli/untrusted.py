"""Run folders are input: what is read back from one may be hand-edited, truncated, copied
from another version of vm, or not ours at all.

Everything `vm` reads from a run folder passes through here before it is used: config.json
(`config`), the safetensors headers (`export_header`), checkpoint.pt (`checkpoint`, and
`fits_models` once the models exist). A problem is a `CheckpointError` (exit 4) with one line
that names the file and the field, never a traceback. No pickle is executed (checkpoints are
loaded with `weights_only=True`, and only from torch's zip format) and nothing is allocated
from a size a file merely claims: sizes are bounded and checked against each other, and a
viewmaker's shapes against the tensors its file really holds before the module is built.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vmcli import __version__
from vmcli.errors import CheckpointError, ConfigError
from vmcli.nn.encoders import ENCODERS

RUN_FORMAT = 1  # config.json / checkpoint.pt / export header layout; raised on breaking changes
MAX_ELEMENTS = 1 << 26  # values in one decoded sample (64 Mi: 70 min of 16 kHz audio)
MAX_IMAGE_SIDE = 8192
MAX_SAMPLE_RATE = 768_000
MAX_MELS = 512
MAX_COLUMNS = 4096
ENCODER_NAMES = tuple(ENCODERS)


class Untrusted(Exception):
    """One problem with one field (turned into a CheckpointError naming the file)."""


def _fail(src: Path, problem: str, found: Any = None) -> CheckpointError:
    """The one-line error: the file, what is wrong, and the version that wrote it if not ours."""
    written = ""
    if isinstance(found, Mapping):
        v = found.get("vmcli_version")
        if isinstance(v, str) and v != __version__:
            written = f" (written by vm {v[:40]}; this is vm {__version__})"
    return CheckpointError(f"{src}: {problem}{written}; is it a file written by `vm train`?")


def _check_format(found: Mapping[str, Any], src: Path) -> None:
    fmt = found.get("format", 1)  # runs made before the field existed are format 1
    if isinstance(fmt, bool) or not isinstance(fmt, int):
        raise _fail(src, f"format is {shown(fmt)}, not a number", found)
    if fmt > RUN_FORMAT:
        v = found.get("vmcli_version")
        by = f"vm {v[:40]}" if isinstance(v, str) else "a newer vm"
        raise CheckpointError(
            f"{src}: written by {by} in run format {fmt}; this is vm {__version__}, which reads "
            f"format {RUN_FORMAT}: upgrade vm to use this run"
        )


# -- plain values --------------------------------------------------------------------------------


def whole_number(d: Mapping[str, Any], key: str, lo: int, hi: int, where: str) -> int:
    if key not in d:
        raise Untrusted(f"{_owner(where)} lacks {key!r}")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise Untrusted(f"{where}{key} is {shown(v)}, not a whole number")
    if not lo <= v <= hi:
        raise Untrusted(f"{where}{key} is {v}, outside {lo}..{hi}")
    return v


def _number(d: Mapping[str, Any], key: str, where: str, positive: bool = False) -> float:
    if key not in d:
        raise Untrusted(f"{_owner(where)} lacks {key!r}")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise Untrusted(f"{where}{key} is {shown(v)}, not a finite number")
    if positive and not v > 0:
        raise Untrusted(f"{where}{key} is {v}, not > 0")
    return float(v)


def _dict(d: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    if key not in d:
        raise Untrusted(f"{_owner(where)} lacks {key!r}")
    if not isinstance(d[key], dict):
        raise Untrusted(f"{where}{key} is {shown(d[key])}, not a mapping")
    return d[key]


def one_of(d: Mapping[str, Any], key: str, options: tuple[str, ...], where: str) -> str:
    if key not in d:
        raise Untrusted(f"{_owner(where)} lacks {key!r}")
    if d[key] not in options:
        raise Untrusted(f"{where}{key} is {shown(d[key])}, not one of {', '.join(options)}")
    return d[key]


def _owner(where: str) -> str:
    return where.rstrip(".") or "it"


def shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _numbers(v: Any, depth: int = 0) -> bool:
    """A finite number, or (nested, at most 3 deep) lists of them."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return math.isfinite(v)
    if isinstance(v, list) and depth < 3:
        return all(_numbers(x, depth + 1) for x in v)
    return False


def _scalar(v: Any) -> bool:
    """One finite number: what a format string such as f"{v:.4f}" can print."""
    return not isinstance(v, list) and _numbers(v)


# -- data shapes ---------------------------------------------------------------------------------


def _modality(name: Any, where: str) -> Any:
    from vmcli.data import MODALITIES

    if name not in MODALITIES:
        raise Untrusted(f"{where}modality is {shown(name)}, not one of {', '.join(MODALITIES)}")
    return MODALITIES[name]


def data_meta(modality: str, meta: dict[str, Any], where: str = "data_meta.") -> list[int]:
    """Check a run's data description (bounded sizes that agree with each other); returns the
    shape of one raw sample."""
    shape = _modality(modality, "").check_meta(meta, where)
    if math.prod(shape) > MAX_ELEMENTS:
        raise Untrusted(f"{_owner(where)} describes samples of shape {shape}: too large")
    if "raw_shape" in meta and meta["raw_shape"] != shape:
        raise Untrusted(
            f"{where}raw_shape is {shown(meta['raw_shape'])}, but the rest of it says {shape}"
        )
    return shape


def space_stats(stats: dict[str, Any], where: str = "space_stats.") -> None:
    for key, value in stats.items():
        if not _numbers(value):
            raise Untrusted(f"{where}{key} is {shown(value)}, not finite numbers")


def build_space(modality: str, view_space: str, meta: dict, stats: dict, src: Path) -> Any:
    """The view space a run describes (meta and stats already checked); statistics of the
    wrong length are a CheckpointError, not a shape error later."""
    from vmcli.data import get_modality

    try:
        space = get_modality(modality).build_space(view_space, meta, stats)
        # one (bounded) zero sample through the space: statistics of the wrong length would
        # broadcast into other channel counts instead of failing
        shape = space.encoder_input_shape(tuple(data_meta(modality, meta)))
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, ConfigError) as e:
        raise _fail(src, f"its data description does not fit together ({e})") from None
    except Untrusted as e:
        raise _fail(src, str(e)) from None
    if shape[0] != space.channels:
        raise _fail(
            src,
            f"its data description does not fit together (the encoder would see {shape[0]} "
            f"channels of {space.channels}-channel data: statistics of the wrong length?)",
        )
    return space


# -- config.json ---------------------------------------------------------------------------------


def _fits_type(value: Any, hint: Any) -> bool:
    """`value` (from JSON) has the annotated type: int, float, str, bool, X | None, list[X] or
    a dataclass (a mapping of its fields)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits_type(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_fits_type(v, item) for v in value)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            return False
        hints = typing.get_type_hints(hint)
        return all(_fits_type(value[k], hints[k]) for k in value if k in hints)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True  # pragma: no cover - no other annotations in TrainConfig


def train_settings(train: dict[str, Any], where: str = "train.") -> Any:
    """config.json's `train` section as a TrainConfig, checked field by field."""
    from vmcli.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for key, value in train.items():
        if key in hints and not _fits_type(value, hints[key]):
            raise Untrusted(f"{where}{key} is {shown(value)}, of the wrong type")
    for key in ("data", "modality", "view_space", "encoder", "viewmaker_width", "batch_size"):
        if train.get(key) is None:
            raise Untrusted(f"{_owner(where)} lacks {key!r}")
    modality = _modality(train["modality"], where)
    one_of(train, "view_space", modality.view_spaces, where)
    one_of(train, "encoder", ENCODER_NAMES, where)
    cfg = TrainConfig.from_dict(train)
    try:
        cfg.validate()
    except ConfigError as e:
        raise Untrusted(f"{_owner(where)}: {e}") from None
    return cfg


def config(found: Any, src: Path) -> dict[str, Any]:
    """config.json as read (any JSON): checked, or a CheckpointError naming what is wrong."""
    if not isinstance(found, dict):
        raise _fail(src, f"holds {type(found).__name__}, not a run's settings")
    _check_format(found, src)
    try:
        train = _dict(found, "train", "")
        train_settings(train)
        meta = _dict(found, "data_meta", "")
        if "raw_shape" not in meta:
            raise Untrusted("data_meta lacks 'raw_shape'")
        data_meta(train["modality"], meta)
        space_stats(_dict(found, "space_stats", ""))
        if "data" in found and not isinstance(found["data"], dict):
            raise Untrusted(f"data is {shown(found['data'])}, not a mapping")
    except Untrusted as e:
        raise _fail(src, str(e), found) from None
    return found


def results(found: Any, src: Path) -> dict[str, Any]:
    """summary.json or eval.json: the numbers `vm info` shows are numbers."""
    if not isinstance(found, dict):
        raise _fail(src, f"holds {type(found).__name__}, not a mapping")
    for key in (
        "final_loss",
        "delta_l1",
        "view_l1",
        "samples_per_s",
        "train_s",
        "transforms_budget",
    ):
        if found.get(key) is not None and not _scalar(found[key]):
            raise _fail(src, f"{key} is {shown(found[key])}, not a number", found)
    epochs = found.get("epochs")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)):
        raise _fail(src, f"epochs is {shown(epochs)}, not a whole number", found)
    adv = found.get("adversary")
    if adv and not (
        isinstance(adv, dict)
        and all(_scalar(adv.get(k)) for k in ("loss_learned_views", "loss_initial_views", "effect"))
        and isinstance(adv.get("inert"), bool)
    ):
        raise _fail(src, f"adversary is {shown(adv)}, not the learned-vs-initial losses", found)
    strengths = found.get("transforms")
    if strengths and not (
        isinstance(strengths, list)
        and all(
            isinstance(r, dict)
            and all(isinstance(r.get(k), str) for k in ("name", "unit"))
            and all(_scalar(r.get(k)) for k in ("initial", "learned"))
            for r in strengths
        )
    ):
        raise _fail(src, f"transforms is {shown(strengths)}, not a list of strengths", found)
    rows = found.get("rows", [])
    if not isinstance(rows, list) or not all(
        isinstance(r, dict)
        and isinstance(r.get("features"), str)
        and all(_scalar(r[k]) for k in ("linear", "knn") if k in r)
        for r in rows
    ):
        raise _fail(src, "rows are not a list of results with numbers", found)
    comparisons = found.get("comparisons", [])
    if not isinstance(comparisons, list) or not all(
        isinstance(c, dict)
        and all(isinstance(c.get(k), str) for k in ("baseline", "probe", "verdict"))
        and _scalar(c.get("difference"))
        and isinstance(c.get("ci95"), list)
        and len(c["ci95"]) == 2
        and all(_scalar(v) for v in c["ci95"])
        for c in comparisons
    ):
        raise _fail(src, "comparisons are not a list of paired differences with numbers", found)
    return found


# -- safetensors headers -------------------------------------------------------------------------


def export_header(header: dict[str, Any], src: Path, kind: str) -> dict[str, Any]:
    """The decoded metadata of a viewmaker/encoder export, checked (`kind`: which one)."""
    _check_format(header, src)
    try:
        if "kind" in header and header["kind"] != kind:
            raise Untrusted(f"it is a {shown(header['kind'])} export, not the {kind}")
        modality = _modality(header.get("modality"), "")
        one_of(header, "view_space", modality.view_spaces, "")
        meta = _dict(header, "data_meta", "")
        shape = data_meta(modality.name, meta)
        if header.get("raw_shape") != shape:
            raise Untrusted(
                f"raw_shape is {shown(header.get('raw_shape'))}, but data_meta says {shape}"
            )
        space_stats(_dict(header, "space_stats", ""))
        _number(header, "budget", "", positive=True)
        vm = _dict(header, "viewmaker", "")
        whole_number(vm, "width", 1, 256, "viewmaker.")
        whole_number(vm, "blocks", 0, 32, "viewmaker.")
        one_of(header, "encoder", ENCODER_NAMES, "")
    except Untrusted as e:
        raise _fail(src, f"metadata: {e}", header) from None
    return header


def transforms_budget(header: dict[str, Any], src: Path) -> float | None:
    """A transforms export's budget: absent/None (free strengths) or a fraction in (0, 1]."""
    value = header.get("transforms_budget")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise _fail(src, f"metadata: transforms_budget is {shown(value)}, not a fraction in (0, 1]")
    return float(value)


def transforms_limits(header: dict[str, Any], src: Path, family: type) -> dict[str, float]:
    """The upper bounds a transforms export was trained with (its `strengths` table), as limits
    for the family: the learned logits mean nothing under other bounds. Exports without a table
    used the family's own bounds."""
    table = header.get("strengths")
    if table is None:
        return {}
    if not isinstance(table, list) or not all(isinstance(r, dict) for r in table):
        raise _fail(src, f"metadata: strengths is {shown(table)}, not a table of rows")
    limits: dict[str, float] = {}
    defaults = {s.name: s for s in family.STRENGTHS}
    for row in table:
        name, low, high = row.get("name"), row.get("low"), row.get("high")
        if name not in defaults:
            raise _fail(
                src,
                f"metadata: strengths names {shown(name)}, not one of the {family.family} transforms",
            )
        if low != defaults[name].low:
            raise _fail(src, f"metadata: the bounds of {name} are {shown(low)}..{shown(high)}")
        if high != defaults[name].high:
            limits[name] = high  # a number in range: check_limits says so, or why not
    from vmcli.nn.transforms import check_limits

    try:
        return check_limits(family, limits)
    except ValueError as e:
        raise _fail(src, f"metadata: {e}") from None


def same_tensors(found: Mapping[str, Any], expected: Mapping[str, Tensor], src: Path) -> None:
    """The tensors a file holds are exactly those of the module its metadata describes (names,
    shapes and dtypes); `expected` may live on the meta device (nothing allocated)."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        what = f"lacks {missing[0]!r}" if missing else f"has an unexpected {extra[0]!r}"
        raise _fail(src, f"its weights do not fit the architecture in its metadata ({what})")
    for name, ref in expected.items():
        t = found[name]
        if not isinstance(t, Tensor):
            raise _fail(src, f"{name} is {type(t).__name__}, not a tensor")
        if tuple(t.shape) != tuple(ref.shape) or t.dtype != ref.dtype:
            raise _fail(
                src,
                f"{name} is {t.dtype} {list(t.shape)}, but the architecture in its metadata "
                f"needs {ref.dtype} {list(ref.shape)}",
            )


# -- checkpoint.pt -------------------------------------------------------------------------------

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6; the legacy format is refused


def checkpoint_file(src: Path) -> None:
    """Only torch's zip format is unpickled (restricted, `weights_only=True`): the legacy format
    allocates storages of the size its pickle claims before reading them."""
    with open(src, "rb") as f:
        head = f.read(4)
    if head != ZIP_MAGIC:
        raise _fail(src, "cannot be loaded as a checkpoint (not a torch zip file)")


_STATE = {
    "epoch": int,
    "step": int,
    "samples": int,
    "elapsed_s": (int, float),
    "encoder": dict,
    "encoder_opt": dict,
    "viewmaker": dict,
    "viewmaker_opt": dict,
    "order_gen": Tensor,
    "view_gen": Tensor,
    "metrics": list,
}


def checkpoint(state: Any, src: Path) -> dict[str, Any]:
    """A loaded checkpoint's layout and plain values (its tensors are checked against the
    models by `fits_models`)."""
    if not isinstance(state, dict):
        raise _fail(src, f"holds {type(state).__name__}, not a training state")
    _check_format(state, src)
    for key, kind in _STATE.items():
        if key not in state:
            raise _fail(src, f"lacks {key!r}", state)
        v = state[key]
        if isinstance(v, bool) or not isinstance(v, kind):
            raise _fail(src, f"{key} is {shown(v)}, of the wrong type", state)
    for key in ("transforms", "transforms_opt"):  # runs with learned transforms only
        if not isinstance(state.get(key, {}), dict):
            raise _fail(src, f"{key} is {shown(state[key])}, of the wrong type", state)
    for key in ("epoch", "step", "samples"):
        if state[key] < 0:
            raise _fail(src, f"{key} is {state[key]}, negative", state)
    for key in ("encoder", "viewmaker", "transforms"):
        if not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in state.get(key, {}).items()
        ):
            raise _fail(src, f"{key} is not a mapping of names to tensors", state)
        finite_tensors(state.get(key, {}), src, f"{key} ")
    for key in ("order_gen", "view_gen"):
        if state[key].dtype != torch.uint8 or state[key].ndim != 1:
            raise _fail(src, f"{key} is not a random generator's state", state)
    _metric_window(state, src)
    skips = state.get("skipped_while_streaming", 0)
    if not _is_count(skips):
        raise _fail(src, f"skipped_while_streaming is {shown(skips)}, not a count", state)
    rows = state["metrics"]
    if len(rows) != state["epoch"] or not all(
        isinstance(row, dict)
        and row.get("epoch") == i + 1
        and "loss" in row
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in row.values())
        for i, row in enumerate(rows)
    ):
        raise _fail(
            src, f"metrics are not one row of numbers per finished epoch ({state['epoch']})", state
        )
    return state


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _metric_window(state: dict[str, Any], src: Path) -> None:
    """The open epoch's metric sums (absent from older checkpoints): two counts and two
    vectors of finite sums, which the resumed run adds to."""
    window = state.get("metric_window", {})
    if not isinstance(window, dict):
        raise _fail(src, f"metric_window is {shown(window)}, of the wrong type", state)
    if not window:
        return
    for key, size in (("sums", 3), ("probes", 4)):
        v = window.get(key)
        if not (isinstance(v, Tensor) and v.dtype == torch.float32 and v.shape == (size,)):
            raise _fail(src, f"metric_window {key} is not {size} float32 sums", state)
        finite_tensors({key: v}, src, "metric_window ")
    for key in ("steps", "n_probes"):
        v = window.get(key)
        if not _is_count(v):
            raise _fail(src, f"metric_window {key} is {shown(v)}, not a count", state)
    if window["steps"] > state["step"]:
        raise _fail(
            src, f"metric_window counts {window['steps']} steps, past step {state['step']}", state
        )


def finite_tensors(tensors: Mapping[str, Tensor], src: Path, what: str = "") -> None:
    """Weights are finite: a NaN or inf would not stop training, augmenting or evaluating,
    only make every view, feature and score it touches meaningless."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise _fail(src, f"{what}{name} holds non-finite values (NaN or inf)")


def _optimizer_fits(saved: dict, fresh: torch.optim.Optimizer, params: list, what: str) -> str:
    """Why an optimizer's saved state cannot drive `fresh` over `params` ('' if it can)."""
    groups, state = saved.get("param_groups"), saved.get("state")
    if not isinstance(groups, list) or not isinstance(state, dict):
        return f"{what} has no param_groups/state"
    ref = fresh.state_dict()["param_groups"]
    if len(groups) != len(ref):
        return f"{what} has {len(groups)} parameter groups, the model needs {len(ref)}"
    for g, r in zip(groups, ref, strict=True):
        if not isinstance(g, dict) or not isinstance(g.get("params"), list):
            return f"{what} has a malformed parameter group"
        if len(g["params"]) != len(r["params"]) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in g["params"]
        ):
            return f"{what} covers {len(g['params'])} parameters, the model has {len(r['params'])}"
        for key, want in r.items():
            if key == "params" or key not in g:
                continue
            if not _same_kind(g[key], want):
                return f"{what} setting {key} is {shown(g[key])}"
    ids = [i for g in groups for i in g["params"]]
    if sorted(ids) != list(range(len(params))):
        return f"{what} numbers its parameters other than 0..{len(params) - 1}"
    for i, per in state.items():
        if not isinstance(i, int) or not 0 <= i < len(params) or not isinstance(per, dict):
            return f"{what} has state for an unknown parameter {shown(i)}"
        p = params[i]
        for key, v in per.items():
            if isinstance(v, Tensor):
                if v.ndim == 0 or (key == "step" and v.numel() == 1):
                    continue
                if tuple(v.shape) != tuple(p.shape) or not v.is_floating_point():
                    return f"{what} {key} of parameter {i} is {list(v.shape)}, not {list(p.shape)}"
                if not bool(torch.isfinite(v).all()):
                    return f"{what} {key} of parameter {i} holds non-finite values (NaN or inf)"
            elif isinstance(v, bool) or not isinstance(v, int | float):
                return f"{what} {key} of parameter {i} is {shown(v)}"
    return ""


def _same_kind(value: Any, want: Any) -> bool:
    if want is None or isinstance(want, bool):
        return value is None or isinstance(value, bool)
    if isinstance(want, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(want, tuple | list):
        return (
            isinstance(value, tuple | list)
            and len(value) == len(want)
            and all(_same_kind(v, w) for v, w in zip(value, want, strict=True))
        )
    return isinstance(value, type(want))


def fits_models(state: dict[str, Any], job: Any, src: Path) -> None:
    """A checkpoint's weights and optimizer states fit the models and optimizers the run's
    config.json builds (checked before `fit()` loads them)."""
    from vmcli.training import make_optimizers

    same_tensors(state["encoder"], job.encoder.state_dict(), src)
    if job.viewmaker is not None:
        same_tensors(state["viewmaker"], job.viewmaker.state_dict(), src)
    if job.transforms is not None and state.get("transforms"):
        same_tensors(state["transforms"], job.transforms.state_dict(), src)
    # optimizers like the run's, on the CPU (fused CUDA ones refuse parameters not yet moved)
    opt = make_optimizers(dataclasses.replace(job, device=torch.device("cpu")))
    pairs: list[tuple[str, torch.optim.Optimizer, nn.Module]] = [
        ("encoder_opt", opt.encoder, job.encoder)
    ]
    if opt.viewmaker is not None:
        pairs.append(("viewmaker_opt", opt.viewmaker, job.viewmaker))
    if opt.transforms is not None and state.get("transforms_opt"):
        pairs.append(("transforms_opt", opt.transforms, job.transforms))
    for key, fresh, module in pairs:
        problem = _optimizer_fits(state[key], fresh, list(module.parameters()), key)
        if problem:
            raise _fail(src, f"{problem}, so it does not fit this run", state)
