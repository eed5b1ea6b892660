"""Data: discover a folder, then one module per modality behind one interface (`base.Modality`)."""

from __future__ import annotations

from vmcli.data.array import ArrayModality
from vmcli.data.audio import AudioModality
from vmcli.data.base import FileSample, Item, LoadOptions, Modality, TensorData, ViewSpace
from vmcli.data.discover import DataIndex, scan
from vmcli.data.image import ImageModality
from vmcli.data.sensor import SensorModality

MODALITIES: dict[str, Modality] = {
    m.name: m for m in (ImageModality(), AudioModality(), SensorModality(), ArrayModality())
}


def get_modality(name: str) -> Modality:
    from vmcli.errors import ConfigError

    if name not in MODALITIES:
        raise ConfigError(
            f"unknown modality {name!r}; choose one of {', '.join(sorted(MODALITIES))}"
        )
    return MODALITIES[name]


__all__ = [
    "MODALITIES",
    "DataIndex",
    "FileSample",
    "Item",
    "LoadOptions",
    "Modality",
    "TensorData",
    "ViewSpace",
    "get_modality",
    "scan",
]
