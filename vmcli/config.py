"""Training settings: one typed place, one default per knob.

`TrainConfig` is what `vm train` builds from its options; `resolve()` turns every "auto" into
the concrete choice (device, encoder, precision, batch size...) and the resolved copy is saved
as the run's config.json, so a run can always be rebuilt and resumed exactly.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from vmcli.errors import ConfigError

MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds; vm derives others from this one
# the smallest data options that work (the modalities read them from here; the largest are
# the bounds a run's metadata is checked against when it is loaded again, in vmcli.untrusted)
MIN_IMAGE_SIZE = 8
MIN_SAMPLE_RATE = 1000
MIN_CLIP_SECONDS = 0.1
MIN_WINDOW = 8


def _finite(value: object) -> bool:
    """A real number (not a bool), neither NaN nor ±inf."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """A numpy scalar (np.float32(0.1), np.int64(8)) as the Python number it holds, so the
    checks see a number and config.json can record it (what a Python API user passes from an
    array is a numpy scalar more often than not); anything else as it is."""
    import numbers

    if (
        isinstance(value, numbers.Number)
        and not isinstance(value, bool | int | float)
        and hasattr(value, "item")
    ):
        return value.item()
    return value


def _plain_numbers(obj: Any) -> None:
    """`_plain` on every field of a config."""
    for f in dataclasses.fields(obj):
        setattr(obj, f.name, _plain(getattr(obj, f.name)))


@dataclass
class LoadOptions:
    """Modality-specific loading knobs; None means "derive from the data"."""

    image_size: int | None = None
    sample_rate: int | None = None
    clip_seconds: float | None = None
    window: int | None = None
    stride: int | None = None
    columns: list[str] | None = None
    max_clip_seconds: float = 600.0
    array_layout: str | None = None  # 2-D arrays: "ct" (C × T, the default) or "hw" (H × W)

    def validate(self) -> None:
        """Each set option in its range (ConfigError naming it), whatever the modality: a value
        no data could use is a mistake even where this data would ignore it."""
        from vmcli import untrusted

        _plain_numbers(self)
        for name, low, high in (
            ("image_size", MIN_IMAGE_SIZE, untrusted.MAX_IMAGE_SIDE),
            ("sample_rate", MIN_SAMPLE_RATE, untrusted.MAX_SAMPLE_RATE),
            ("window", MIN_WINDOW, None),
            ("stride", 1, None),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if not (_whole(value) and value >= low and (high is None or value <= high)):
                upto = f" to {high}" if high is not None else " or more"
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be a whole number from {low}{upto}; got {value}"
                )
        if self.columns is not None:
            # exact names: `x,X` may be two columns of a file (names match exactly first)
            names = [str(c).strip() for c in self.columns]
            twice = sorted({c for c in names if names.count(c) > 1})
            if twice:  # a mistake in the option, not in every file it would be tried on
                raise ConfigError(
                    f"--columns names {', '.join(map(repr, twice))} more than once; "
                    "list each channel once"
                )
        if not (_finite(self.max_clip_seconds) and self.max_clip_seconds > 0):
            raise ConfigError(
                f"max_clip_seconds must be a finite number > 0; got {self.max_clip_seconds}"
            )
        seconds = self.clip_seconds
        if seconds is not None and not (
            _finite(seconds) and MIN_CLIP_SECONDS <= seconds <= self.max_clip_seconds
        ):
            raise ConfigError(
                f"--clip-seconds must be a number from {MIN_CLIP_SECONDS:g} to "
                f"{self.max_clip_seconds:g} (longer files are skipped); got {seconds}"
            )


Views = Literal[
    "auto",
    "viewmaker",
    "random",
    "handcrafted",
    "both",
    "none",
    "learned-transforms",
    "fixed-transforms",
    "learned-transforms+viewmaker",
]
VIEWS: tuple[str, ...] = get_args(Views)
# Two learned families, each with its control arm: `viewmaker` (free-form δ) beside `random`
# (the same viewmaker frozen at its random initialisation), and `learned-transforms` (bounded
# strengths of differentiable transforms) beside `fixed-transforms` (the same transforms frozen
# at their initial strengths, the hand-designed recipe). Learned views only mean something
# beside their control.
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
DataMode = Literal["auto", "memory", "stream"]
EVERY = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|steps?)", re.IGNORECASE)
_monotonic = time.monotonic  # the cadence's clock (a test replaces it)
AUTO_COMPILE_MINUTES = 15
EVERY_HINT = "e.g. 10m (minutes), 30s, 2h, 500steps, or off (at epoch ends only)"


# the --views values whose views come from a viewmaker (learned, or frozen at init for
# `random`): where --budget applies
VIEWMAKER_VIEWS = ("viewmaker", "both", "random", "learned-transforms+viewmaker")


def check_seed(seed: Any) -> int:
    """One range for every command's --seed: torch takes 64-bit seeds, and a larger or
    negative one would wrap to another seed's results without a word. Returns it as an int
    (a numpy integer from the Python API included)."""
    seed = _plain(seed)
    if not (_whole(seed) and 0 <= seed <= MAX_SEED):
        raise ConfigError(f"--seed must be a whole number from 0 to {MAX_SEED}; got {seed}")
    return seed


def check_count(value: Any, option: str) -> int:
    """A whole number ≥ 1 for `option` (a numpy integer taken; 1.5 or True refused)."""
    value = _plain(value)
    if not (_whole(value) and value >= 1):
        raise ConfigError(f"{option} must be a whole number ≥ 1; got {value}")
    return value


# TrainConfig fields that are `vm train` options (named as such in errors); others are
# Python API settings
CLI_OPTIONS = ("epochs", "batch_size", "viewmaker_width", "workers")


@dataclass
class TrainConfig:
    data: str
    modality: str | None = None  # None: detect from the files
    view_space: str | None = None  # None: the modality's default
    views: str = "auto"  # one of VIEWS; auto: the modality's default (resolve_views)
    budget: float | None = None  # ε: mean |δ| per example, in view-space units; None: per space
    epochs: int = 100
    batch_size: int | None = None  # None: the modality's default (paper: 256 images, 128 else)
    encoder: str = "auto"  # auto: resnet18 on a GPU, small on the CPU
    viewmaker_width: int | None = None  # None: 32 on a GPU (the paper), 16 on the CPU (4× cheaper)
    viewmaker_blocks: int = 3  # paper: 3
    temperature: float = 0.07
    encoder_lr: float = 0.03
    encoder_momentum: float = 0.9
    encoder_weight_decay: float = 1e-4
    viewmaker_lr: float = 1e-3
    transforms_lr: float = 1e-2  # Adam, on the logits of the learned transform strengths
    # mean transform strength (fraction of each range) held fixed, so the adversary can only
    # move strength between transforms: a fraction, "recipe" (the recipe's own), None (each
    # strength free within its own bounds) or "auto" (the modality's default; resolved)
    transforms_budget: float | str | None = "auto"
    # upper limits on named transform strengths, "time_mask=0.15,noise=0.5": what a person
    # knows their data cannot take and stay the same class; None: each strength's own bounds
    transforms_max: str | None = None
    alternating: bool = False  # the paper's two-pass schedule instead of gradient reversal
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast where the hardware computes it (devices.py)
    # torch.compile the viewmaker and encoder. None (auto): on the CPU or one CUDA GPU, once a
    # run is measured to have more than AUTO_COMPILE_MINUTES left (CPU: 1.5× faster steps after
    # a 1–2 min compile; H200: 1.27–1.6× after 40–52 s); not under DDP, where it is unmeasured
    compile: bool | None = None
    channels_last: bool = True  # 2-D encoders (CUDA and CPU) and 2-D viewmakers on the CPU
    seed: int = 0
    data_mode: str = "auto"  # memory | stream | auto (stream when decoded data > 1/4 of RAM)
    workers: int = 4  # DataLoader worker processes when streaming
    log_every: int = 50  # steps between host syncs for progress/metrics
    checkpoint_every: str = "10m"  # mid-epoch checkpoints: 10m / 30s / 2h, 500steps, or off
    preview_samples: int = 8
    preview_views: int = 4
    load: LoadOptions = field(default_factory=LoadOptions)

    def validate(self) -> None:
        """Every setting checked up front, before any data is read or a run folder made: a
        ConfigError naming the option and the problem (exit 2 from the CLI)."""
        _plain_numbers(self)
        if self.views not in VIEWS:
            raise ConfigError(f"--views must be one of {', '.join(VIEWS)}; got {self.views!r}")
        for name, low, high in (  # whole numbers: 1.5 epochs would train 2 and record 1.5
            ("epochs", 1, None),
            ("batch_size", 2, None),
            ("viewmaker_width", 1, 256),
            ("viewmaker_blocks", 0, 32),
            ("workers", 0, None),
            ("log_every", 1, None),
            ("preview_samples", 1, 256),
            ("preview_views", 1, 64),
        ):
            value = getattr(self, name)
            if value is None and name in ("batch_size", "viewmaker_width"):
                continue  # decided from the data and the device
            if not (_whole(value) and value >= low and (high is None or value <= high)):
                upto = f" to {high}" if high is not None else " or more"
                flag = f"--{name.replace('_', '-')}" if name in CLI_OPTIONS else name
                raise ConfigError(f"{flag} must be a whole number from {low}{upto}; got {value}")
        from vmcli.nn.encoders import ENCODERS

        if self.encoder != "auto" and self.encoder not in ENCODERS:
            raise ConfigError(
                f"--encoder must be auto, {' or '.join(ENCODERS)}; got {self.encoder!r}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"--precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}"
            )
        if self.budget is not None and not (_finite(self.budget) and self.budget > 0):
            raise ConfigError(
                f"--budget must be a finite number > 0 (the mean |δ| per example); got {self.budget}"
            )
        if self.data_mode not in ("auto", "memory", "stream"):
            raise ConfigError(f"--data-mode must be auto, memory or stream; got {self.data_mode!r}")
        for name in ("encoder_lr", "viewmaker_lr", "transforms_lr", "encoder_weight_decay"):
            value = getattr(self, name)
            if not (_finite(value) and value >= 0):
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be a finite number ≥ 0; got {value}"
                )
        if not (_finite(self.encoder_momentum) and 0 <= self.encoder_momentum < 1):
            raise ConfigError(f"encoder_momentum must be in [0, 1); got {self.encoder_momentum}")
        tb = self.transforms_budget
        named = tb is None or tb in ("auto", "recipe")
        if not named and (isinstance(tb, str) or not 0 < tb <= 1):  # type: ignore[operator]
            raise ConfigError(
                "--transforms-budget is the mean strength as a fraction of each transform's "
                f"range, in (0, 1], 'recipe' (the recipe's own), 'none' or 'auto'; got {tb}"
            )
        if self.transforms_max is not None:
            from vmcli.nn.transforms import parse_limits

            try:
                parse_limits(self.transforms_max)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if not (_finite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"--temperature must be a finite number > 0; got {self.temperature}")
        check_seed(self.seed)
        CheckpointCadence.parse(self.checkpoint_every)
        if isinstance(self.load, dict):  # load={"image_size": 16}: the fields of LoadOptions
            try:
                self.load = LoadOptions(**self.load)
            except TypeError as e:
                raise ConfigError(f"load: {e} (the fields of vmcli.LoadOptions)") from None
        if not isinstance(self.load, LoadOptions):
            raise ConfigError(f"load is {type(self.load).__name__}: give a vmcli.LoadOptions")
        self.load.validate()

    @property
    def uses_viewmaker(self) -> bool:
        """A viewmaker makes the views (learned, or frozen at init for `random`)."""
        return self.views in VIEWMAKER_VIEWS

    @property
    def learns_viewmaker(self) -> bool:
        return self.views in ("viewmaker", "both", "learned-transforms+viewmaker")

    @property
    def uses_transforms(self) -> bool:
        return "transforms" in self.views

    @property
    def learns_transforms(self) -> bool:
        return self.views.startswith("learned-transforms")

    @property
    def learns_views(self) -> bool:
        """Some part of the view pipeline is trained adversarially (so it has a control)."""
        return self.learns_viewmaker or self.learns_transforms

    @property
    def uses_handcrafted(self) -> bool:
        return self.views in ("handcrafted", "both")

    def resolve_views(self, default_views: str) -> str | None:
        """Make `--views auto` concrete: the modality's default family, except that a
        `--budget` (the viewmaker's knob) asks for the viewmaker. Returns why, for the log."""
        if self.views != "auto":
            return None
        if self.budget is not None:
            self.views = "viewmaker"
            return "auto: --budget given"
        self.views = default_views
        return (
            "auto: on this kind of data they beat the viewmaker on validation; "
            "--views viewmaker for a free-form δ"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        # a recorded config without the key predates budgets: its transforms (if any) were free
        d.setdefault("transforms_budget", None)
        known = {f.name for f in dataclasses.fields(cls)}
        load = LoadOptions(
            **{
                k: v
                for k, v in d.pop("load", {}).items()
                if k in {f.name for f in dataclasses.fields(LoadOptions)}
            }
        )
        return cls(load=load, **{k: v for k, v in d.items() if k in known})


def parse_transforms_budget(text: str) -> float | str | None:
    """`--transforms-budget`'s words: a number, 'recipe', 'auto' or 'none' (→ None, free
    strengths); `TrainConfig.validate` checks the number's range."""
    word = text.strip().lower()
    if word in ("auto", "recipe"):
        return word
    if word == "none":
        return None
    try:
        return float(word)
    except ValueError:
        raise ConfigError(
            f"--transforms-budget takes a fraction in (0, 1], 'recipe', 'none' or 'auto'; "
            f"got {text!r}"
        ) from None


class CheckpointCadence:
    """When `fit()` writes a checkpoint inside an epoch: every so much wall time (`10m`, `30s`,
    `2h`) or every so many steps (`500steps`); `off` leaves only the epoch-end checkpoints.
    A bare number is refused: minutes or steps would be a guess."""

    def __init__(self, seconds: float | None = None, steps: int | None = None, clock=None):
        self.seconds, self.steps = seconds, steps
        self.clock: Callable[[], float] = clock or _monotonic
        self.last = self.clock()

    @classmethod
    def parse(cls, text: str, clock: Callable[[], float] | None = None) -> CheckpointCadence:
        spec = str(text).strip().lower()
        if spec in ("off", "none", "never"):
            return cls(clock=clock)
        m = EVERY.fullmatch(spec)
        if m is None:
            hint = " (minutes or steps? add the unit)" if re.fullmatch(r"[\d.]+", spec) else ""
            raise ConfigError(f"--checkpoint-every {text!r}{hint}: give {EVERY_HINT}")
        amount, unit = float(m.group(1)), m.group(2)
        if unit.startswith("step"):
            if amount != int(amount) or amount < 1:
                raise ConfigError(f"--checkpoint-every {text!r}: steps must be a whole number ≥ 1")
            return cls(steps=int(amount), clock=clock)
        seconds = amount * {"s": 1, "m": 60, "h": 3600}[unit]
        if not (math.isfinite(seconds) and seconds >= 1):
            raise ConfigError(f"--checkpoint-every {text!r}: at least 1s; give {EVERY_HINT}")
        return cls(seconds=seconds, clock=clock)

    def due(self, global_step: int) -> bool:
        """After `global_step` steps in all: is a checkpoint due?"""
        if self.steps is not None:
            return global_step % self.steps == 0
        return self.seconds is not None and self.clock() - self.last >= self.seconds

    def written(self) -> None:
        """A checkpoint was just written (at a step boundary or an epoch's end)."""
        self.last = self.clock()
