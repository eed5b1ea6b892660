"""Trained modules as users hold them: raw data in, views or features out.

`Augmenter` = [learned transforms] + view space + [viewmaker]: a batch augmentation for your
own training loop.
`FeatureExtractor` = view space + encoder: embeddings and probe features for raw batches.
Both are rebuilt from a run folder (or one of its .safetensors files) with `load_viewmaker`
and `load_encoder`; the safetensors header holds everything needed to rebuild them.

Loaded modules behave like an augmentation or a feature extractor from a model zoo: frozen
(no parameter requires grad, so a call builds no autograd graph) and in eval mode, unless
loaded with `trainable=True`. They check what they are given: a batch of the wrong rank,
channel count or value range is a one-line `DataError` that says what the run expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vmcli import runs, untrusted
from vmcli.data import ViewSpace, get_modality
from vmcli.devices import module_device, resolve_device
from vmcli.errors import CheckpointError, ConfigError, DataError
from vmcli.nn.encoders import Encoder, create_encoder
from vmcli.nn.transforms import FAMILIES, LearnedTransforms
from vmcli.nn.viewmaker import Viewmaker


def build_viewmaker(space: ViewSpace, budget: float, width: int = 32, blocks: int = 3) -> Viewmaker:
    return Viewmaker(
        channels=space.channels,
        dims=space.dims,
        budget=budget,
        width=width,
        num_res_blocks=blocks,
        clamp=space.clamp,
    )


def build_encoder(name: str, space: ViewSpace, raw_shape: tuple[int, ...]) -> Encoder:
    shape = space.encoder_input_shape(raw_shape)
    return create_encoder(name, dims=space.encoder_dims, in_channels=shape[0], input_size=shape[1:])


@dataclass(frozen=True)
class RawSpec:
    """The raw batches a loaded module accepts, from its run's metadata."""

    shape: tuple[int, ...]  # one training sample: C × T or C × H × W (other T, H, W are fine)
    form: str  # in words, e.g. "images B × 1 × H × W, float in [0, 1] or uint8"
    value_range: tuple[float, float] | None = None  # bounds for float inputs (images: 0..1)
    source: str = "the run"  # for messages: "this viewmaker (image run, 1 × 16 × 16)"


def check_raw(
    raw: Any, spec: RawSpec, check_range: bool = True, device: torch.device | None = None
) -> None:
    """Raise a one-line DataError when `raw` cannot be a batch of what the run was trained on.

    Rank, channels, emptiness and device (the module's, when given) are checked on every call
    (free); the values — finite, and within the value range for spaces that have one — are
    read, which waits for a GPU: `check_range=False` skips that. NaN or inf would otherwise
    come back as a view or embedding that looks like any other (or as NaN)."""
    c, dims = spec.shape[0], len(spec.shape) - 1
    expects = f"{spec.source} expects {spec.form}"
    if not isinstance(raw, Tensor):
        raise DataError(f"{expects}; got a {type(raw).__name__}, not a torch.Tensor")
    got = f"got a tensor of shape {tuple(raw.shape)}"
    if raw.ndim != dims + 2:
        hint = ""
        if raw.ndim == dims + 1 and raw.shape[0] == c:
            hint = " (one sample? add a batch axis: x[None])"
        raise DataError(f"{expects}; {got}{hint}")
    if raw.shape[1] != c:
        raise DataError(f"{expects}; {got}: {raw.shape[1]} channel(s), not {c}")
    if raw.shape[0] == 0:
        raise DataError(f"{expects}; {got}: an empty batch (no samples)")
    if 0 in raw.shape[2:]:
        raise DataError(f"{expects}; {got}: samples of size 0")
    if raw.dtype == torch.bool or raw.is_complex():
        raise DataError(f"{expects}; got a {raw.dtype} tensor")
    if device is not None and raw.device != device:
        raise DataError(
            f"{expects}; got a tensor on {raw.device}, but the module is on {device} "
            f"(move the batch: x.to('{device}'))"
        )
    if spec.value_range is not None and not raw.is_floating_point() and raw.dtype != torch.uint8:
        raise DataError(f"{expects}; got a {raw.dtype} tensor (use uint8, or floats)")
    if not (check_range and raw.is_floating_point()):
        return
    finite = torch.isfinite(raw.detach()).flatten(1).all(1)
    if not bool(finite.all()):
        first = int(torch.nonzero(~finite)[0, 0])
        raise DataError(f"{expects}; got NaN or inf values (sample {first} of the batch)")
    top = torch.finfo(torch.float32).max
    if raw.dtype == torch.float64 and float(raw.detach().abs().amax()) > top:
        raise DataError(  # computed in float32, they would be inf, and the output NaN
            f"{expects}; got float64 values beyond float32's range (±{top:.3g}), which the "
            "model computes in"
        )
    if spec.value_range is not None:
        lo, hi = (float(v) for v in torch.aminmax(raw.detach()))
        low, high = spec.value_range
        if lo < low - 1e-3 or hi > high + 1e-3:
            hint = " (divide by 255?)" if hi > 2 else ""
            raise DataError(f"{expects}; got values from {lo:.4g} to {hi:.4g}{hint}")


def _raw_spec(header: dict[str, Any], space: ViewSpace, what: str) -> RawSpec:
    modality = get_modality(header["modality"])
    meta = {"raw_shape": header["raw_shape"], **header["data_meta"]}
    shape = tuple(int(s) for s in header["raw_shape"])
    return RawSpec(
        shape,
        modality.describe_raw(meta),
        # a clamped view space (pixels) is one whose raw floats are the view: same bounds
        tuple(space.clamp) if space.clamp is not None else None,
        f"this {what} ({modality.name} run, trained on {' × '.join(map(str, shape))})",
    )


def check_generator(generator: Any) -> None:
    """A DataError (one line) for a `generator` that is not a torch.Generator or None."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise DataError(
            f"generator is {type(generator).__name__}: give a torch.Generator (e.g. "
            "torch.Generator().manual_seed(0)) or None"
        )


class _Checked(nn.Module):
    """Checks raw batches against the run's RawSpec (when there is one). On a GPU the values
    (finite, in range) are checked on the first batch only (it needs a device sync)."""

    def __init__(self, spec: RawSpec | None):
        super().__init__()
        self.spec = spec
        self._range_checked = False

    def check(self, raw: Any) -> None:
        if self.spec is None:
            return
        on_gpu = isinstance(raw, Tensor) and raw.device.type != "cpu"
        check_raw(raw, self.spec, not (on_gpu and self._range_checked), module_device(self))
        self._range_checked = True


class Augmenter(_Checked):
    """Raw batch → one learned view per sample, in the raw representation when the view space
    can be inverted (pixels in [0, 1], waveforms, sensor signals in their units), else in the
    view space (e.g. normalised log-mel spectrograms). Fresh randomness on every call.

    The view pipeline is a run's: learned transforms (if the run has them) on the raw batch,
    then the viewmaker (if it has one) in the view space.

    >>> augment = vmcli.load_viewmaker("runs/train")        # doctest: +SKIP
    >>> v1, v2 = augment(batch), augment(batch)              # two views per sample
    """

    def __init__(
        self,
        space: ViewSpace,
        viewmaker: Viewmaker | None,
        transforms: LearnedTransforms | None = None,
        spec: RawSpec | None = None,
    ):
        super().__init__(spec)
        if viewmaker is None and transforms is None:
            raise ConfigError("an Augmenter needs a viewmaker, learned transforms or both")
        self.space = space
        self.viewmaker = viewmaker
        self.transforms = transforms

    def forward(self, raw: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.with_planes(raw, None, generator)[0]

    def with_planes(
        self, raw: Tensor, planes: Tensor | None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """A view (as `forward` makes it, from the same random draws) and `planes` (B × K ×
        H × W: an image's alpha, a no-data mask) moved with the view's content: by learned
        transforms' crop and flip, values untouched; the viewmaker moves nothing."""
        self.check(raw)
        check_generator(generator)
        if planes is not None and (
            not isinstance(planes, Tensor)
            or planes.dim() != raw.dim()
            or planes.shape[0] != raw.shape[0]
            or planes.shape[1] < 1
            or planes.shape[2:] != raw.shape[2:]
        ):
            raise DataError(
                f"planes must be B × K × {' × '.join(map(str, raw.shape[2:]))} like the batch "
                f"({tuple(raw.shape)}); got "
                + (
                    f"{tuple(planes.shape)}"
                    if isinstance(planes, Tensor)
                    else type(planes).__name__
                )
            )
        if planes is not None and (planes.is_complex() or planes.device != raw.device):
            raise DataError(
                f"planes must be real values on the batch's device ({raw.device}); got "
                f"{planes.dtype} on {planes.device}"
            )
        if self.transforms is not None:
            if planes is None:
                raw = self.transforms(raw, generator)
            else:
                raw, planes = self.transforms.with_planes(raw, planes, generator)
        view = self.space.to_view(raw)
        if self.viewmaker is not None:
            view = self.viewmaker(view, generator=generator)
        return (self.space.from_view(view) if self.space.invertible else view), planes


class FeatureExtractor(_Checked):
    """Raw batch → 128-d contrastive embedding (`forward`) or pooled features (`features`)."""

    def __init__(self, space: ViewSpace, encoder: Encoder, spec: RawSpec | None = None):
        super().__init__(spec)
        self.space = space
        self.encoder = encoder

    def encoder_input(self, raw: Tensor) -> Tensor:
        self.check(raw)
        return self.space.to_encoder(self.space.to_view(raw))

    def features(self, raw: Tensor) -> Tensor:
        return self.encoder.features(self.encoder_input(raw))

    def forward(self, raw: Tensor) -> Tensor:
        return self.encoder(self.encoder_input(raw))

    def _view_shape(self) -> tuple[int, ...] | None:
        """The shape (less the batch) of the view of one training-size sample (None for an
        export without the raw shape)."""
        if self.spec is not None and getattr(self, "_view_shape_cache", None) is None:
            raw = torch.zeros(1, *self.spec.shape, device=module_device(self))
            with torch.no_grad():
                self._view_shape_cache = tuple(self.space.to_view(raw).shape[1:])
        return getattr(self, "_view_shape_cache", None)

    def embed_views(self, views: Tensor, features: bool = False) -> Tensor:
        """Embeddings (or pooled `features`) of views as `load_viewmaker` returns them for a
        view space that cannot be inverted (a normalised spectrogram): they are not raw
        batches, so `forward` would refuse them. Views of other spaces are raw batches."""
        if self.space.invertible:  # views of this space are raw batches, checked as such
            return self.features(views) if features else self(views)
        shape = self._view_shape() or ()
        if (
            not isinstance(views, Tensor)
            or not views.numel()
            or (shape and (views.dim() != len(shape) + 1 or views.shape[1:-1] != shape[:-1]))
        ):
            got = tuple(views.shape) if isinstance(views, Tensor) else type(views).__name__
            want = " × ".join(map(str, shape[:-1])) or "..."
            raise DataError(
                f"views must be B × {want} × frames, as this run's viewmaker returns them; got {got}"
            )
        device = module_device(self)
        if views.device != device:
            raise DataError(f"views are on {views.device}, the encoder on {device}")
        x = self.space.to_encoder(views.float())
        return self.encoder.features(x) if features else self.encoder(x)


def export_metadata(
    config: dict[str, Any], meta: dict[str, Any], stats: dict[str, Any]
) -> dict[str, Any]:
    """What a safetensors header needs to rebuild either module without the run folder."""
    return {
        "modality": config["modality"],
        "view_space": config["view_space"],
        "data_meta": meta,
        "space_stats": stats,
        "budget": config["budget"],
        "viewmaker": {"width": config["viewmaker_width"], "blocks": config["viewmaker_blocks"]},
        "encoder": config["encoder"],
        "raw_shape": meta["raw_shape"],
    }


def _space_from(header: dict[str, Any], src: Path) -> ViewSpace:
    """The view space of a checked export header."""
    return untrusted.build_space(
        header["modality"], header["view_space"], header["data_meta"], header["space_stats"], src
    )


def _weights_path(run: str | Path, filename: str) -> Path:
    path = Path(run)
    if path.suffix == ".safetensors":
        return path
    return runs.resolve_run(path) / filename


def _frozen(module: nn.Module, device: str | torch.device, trainable: bool) -> Any:
    """On `device` (a ConfigError for one that is not there, as for `vm` commands; "auto"
    picks the GPU when there is one), frozen in eval mode, or trainable in train mode."""
    if not isinstance(device, torch.device | str):
        raise ConfigError(f"device is {device!r}: give a torch.device or a name such as 'cpu'")
    module = module.to(resolve_device(str(device)))
    module.requires_grad_(trainable)
    return module.train(trainable)


def load_viewmaker(
    run: str | Path, device: str | torch.device = "cpu", trainable: bool = False
) -> Augmenter:
    """The trained view pipeline of a run folder (or of one of its .safetensors exports): its
    viewmaker, its learned transforms, or both. Frozen and in eval mode, or with
    `trainable=True` its parameters require grad (train mode) so you can keep training it or
    backpropagate into it."""
    path = Path(run)
    if path.suffix == ".safetensors":
        files = [path]
    else:
        folder = runs.resolve_run(path)
        files = [f for f in (folder / runs.TRANSFORMS, folder / runs.VIEWMAKER) if f.is_file()]
        if not files:
            raise CheckpointError(
                f"{folder}: no {runs.VIEWMAKER} or {runs.TRANSFORMS} (was it trained with "
                "--views handcrafted or none, or did it not finish?)"
            )
    space, vm, tf, header = None, None, None, {}
    for src in files:
        tensors, header = runs.read_weights(src)
        kind = "transforms" if header.get("kind") == "transforms" else "viewmaker"
        header = untrusted.export_header(header, src, kind=kind)
        space = space or _space_from(header, src)
        if kind == "transforms":
            family = FAMILIES.get(header.get("family"))  # type: ignore[arg-type]
            if family is None:
                raise CheckpointError(
                    f"{src}: unknown transform family {header.get('family')!r} "
                    f"(known: {', '.join(FAMILIES)})"
                )
            tf = family(
                untrusted.transforms_budget(header, src),
                untrusted.transforms_limits(header, src, family),
            )
            untrusted.same_tensors(tensors, tf.state_dict(), src)
            runs.load_state(tf, tensors, src)
        else:
            width, blocks = header["viewmaker"]["width"], header["viewmaker"]["blocks"]
            with torch.device("meta"):  # the shapes the metadata implies, nothing allocated
                expected = build_viewmaker(space, header["budget"], width, blocks).state_dict()
            untrusted.same_tensors(tensors, expected, src)
            with torch.random.fork_rng(devices=[]):  # the caller's random stream untouched
                vm = build_viewmaker(space, header["budget"], width, blocks)
            runs.load_state(vm, tensors, src)
    spec = _raw_spec(header, space, "viewmaker") if "raw_shape" in header else None
    return _frozen(Augmenter(space, vm, tf, spec), device, trainable)


def load_encoder(
    run: str | Path, device: str | torch.device = "cpu", trainable: bool = False
) -> FeatureExtractor:
    """The trained encoder of a run folder (or its encoder.safetensors): frozen and in eval
    mode, or with `trainable=True` its parameters require grad and batch norm is in train
    mode (fine-tuning)."""
    src = _weights_path(run, runs.ENCODER)
    tensors, header = runs.read_weights(src)
    header = untrusted.export_header(header, src, kind="encoder")
    space = _space_from(header, src)
    with torch.random.fork_rng(devices=[]):  # initial weights are replaced: no draw shows
        encoder = build_encoder(header["encoder"], space, tuple(header["raw_shape"]))
    untrusted.same_tensors(tensors, encoder.state_dict(), src)
    runs.load_state(encoder, tensors, src)
    return _frozen(
        FeatureExtractor(space, encoder, _raw_spec(header, space, "encoder")), device, trainable
    )
