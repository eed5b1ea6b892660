"""vm: learn data augmentations (viewmaker networks) for self-supervised learning.

    import vmcli
    augment = vmcli.load_viewmaker("runs/train")   # nn.Module: raw batch → learned view
    encoder = vmcli.load_encoder("runs/train")     # nn.Module: raw batch → embedding / features

Heavy imports (torch) happen on first use of an attribute, so `vm --help` stays instant.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_viewmaker": "vmcli.pipeline",
    "load_encoder": "vmcli.pipeline",
    "Augmenter": "vmcli.pipeline",
    "FeatureExtractor": "vmcli.pipeline",
    "Viewmaker": "vmcli.nn.viewmaker",
    "LearnedTransforms": "vmcli.nn.transforms",
    "project_to_budget": "vmcli.nn.viewmaker",
    "grad_reverse": "vmcli.nn.viewmaker",
    "create_encoder": "vmcli.nn.encoders",
    "nt_xent": "vmcli.losses",
    "TrainConfig": "vmcli.config",
    "LoadOptions": "vmcli.config",
    "train": "vmcli.session",
    "fit": "vmcli.training",
    "augment_folder": "vmcli.augment",
    "evaluate": "vmcli.evaluation",
    "VmError": "vmcli.errors",
    "DataError": "vmcli.errors",
    "ConfigError": "vmcli.errors",
    "CheckpointError": "vmcli.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vmcli' has no attribute {name!r}")
