"""Trained modules as users hold them: raw data in, views or features out.

`Augmenter` = view space + viewmaker: a batch augmentation for your own training loop.
`FeatureExtractor` = view space + encoder: embeddings and probe features for raw batches.
Both are rebuilt from a run folder (or one of its .safetensors files) with `load_viewmaker`
and `load_encoder`; the safetensors header holds everything needed to rebuild them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vmcli import runs, untrusted
from vmcli.data import ViewSpace
from vmcli.nn.encoders import Encoder, create_encoder
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


class Augmenter(nn.Module):
    """Raw batch → one learned view per sample, in the raw representation when the view space
    can be inverted (pixels in [0, 1], waveforms, sensor signals in their units), else in the
    view space (e.g. normalised log-mel spectrograms). Fresh noise on every call.

    >>> augment = vmcli.load_viewmaker("runs/train")        # doctest: +SKIP
    >>> v1, v2 = augment(batch), augment(batch)              # two views per sample
    """

    def __init__(self, space: ViewSpace, viewmaker: Viewmaker):
        super().__init__()
        self.space = space
        self.viewmaker = viewmaker

    def forward(self, raw: Tensor, generator: torch.Generator | None = None) -> Tensor:
        view = self.viewmaker(self.space.to_view(raw), generator=generator)
        return self.space.from_view(view) if self.space.invertible else view


class FeatureExtractor(nn.Module):
    """Raw batch → 128-d contrastive embedding (`forward`) or pooled features (`features`)."""

    def __init__(self, space: ViewSpace, encoder: Encoder):
        super().__init__()
        self.space = space
        self.encoder = encoder

    def encoder_input(self, raw: Tensor) -> Tensor:
        return self.space.to_encoder(self.space.to_view(raw))

    def features(self, raw: Tensor) -> Tensor:
        return self.encoder.features(self.encoder_input(raw))

    def forward(self, raw: Tensor) -> Tensor:
        return self.encoder(self.encoder_input(raw))


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


def load_viewmaker(run: str | Path, device: str | torch.device = "cpu") -> Augmenter:
    """The trained viewmaker of a run folder (or its viewmaker.safetensors), in eval mode."""
    src = _weights_path(run, runs.VIEWMAKER)
    tensors, header = runs.read_weights(src)
    header = untrusted.export_header(header, src, kind="viewmaker")
    space = _space_from(header, src)
    width, blocks = header["viewmaker"]["width"], header["viewmaker"]["blocks"]
    with torch.device("meta"):  # the shapes the metadata implies, nothing allocated
        expected = build_viewmaker(space, header["budget"], width, blocks).state_dict()
    untrusted.same_tensors(tensors, expected, src)
    vm = build_viewmaker(space, header["budget"], width, blocks)
    runs.load_state(vm, tensors, src)
    return Augmenter(space, vm).to(device).eval()


def load_encoder(run: str | Path, device: str | torch.device = "cpu") -> FeatureExtractor:
    """The trained encoder of a run folder (or its encoder.safetensors), in eval mode."""
    src = _weights_path(run, runs.ENCODER)
    tensors, header = runs.read_weights(src)
    header = untrusted.export_header(header, src, kind="encoder")
    space = _space_from(header, src)
    encoder = build_encoder(header["encoder"], space, tuple(header["raw_shape"]))
    untrusted.same_tensors(tensors, encoder.state_dict(), src)
    runs.load_state(encoder, tensors, src)
    return FeatureExtractor(space, encoder).to(device).eval()
