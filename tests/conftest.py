"""Shared fixtures: small generated data folders (real files on disk) and fast settings."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vmcli.config import TrainConfig


def make_image_folder(
    root: Path, classes=("circle", "square"), per_class=(8, 4), size=16, mode="L", seed=0
) -> Path:
    """train/<class>/*.png and test/<class>/*.png with two easily told-apart shapes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for split, n in zip(("train", "test"), per_class, strict=True):
        for ci, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                c = size / 2 + rng.uniform(-2, 2, 2)
                r = size / 4 + rng.uniform(-1, 1)
                if ci == 0:
                    mask = (yy - c[0]) ** 2 + (xx - c[1]) ** 2 < r**2
                else:
                    mask = (abs(yy - c[0]) < r) & (abs(xx - c[1]) < r)
                img = (mask * rng.uniform(150, 255) + rng.uniform(0, 30, (size, size))).astype(
                    np.uint8
                )
                if mode == "RGB":
                    img = np.stack([img, img // 2, 255 - img], axis=-1)
                Image.fromarray(img, mode).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "shapes")


@pytest.fixture
def rgb_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "rgb", mode="RGB", size=20)


def fast_config(data: Path, **overrides) -> TrainConfig:
    """Settings that train in a second or two on the CPU."""
    base = dict(
        data=str(data),
        epochs=1,
        batch_size=8,
        encoder="small",
        viewmaker_width=8,
        device="cpu",
        log_every=1,
        preview_samples=2,
        preview_views=2,
        budget=0.05,
    )
    base.update(overrides)
    return TrainConfig(**base)


@contextlib.contextmanager
def umask(mask: int):
    """Run a block under another umask (file-mode tests)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)
