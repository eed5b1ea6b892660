"""What survives crashes and what others can read: file modes, checkpoint cadence, kill -9."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from conftest import fast_config

from vmcli.augment import augment_folder
from vmcli.session import train


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root.parent)): stat.S_IMODE(p.stat().st_mode)
        for p in [root, *root.rglob("*")]
    }


def test_run_folder_and_views_get_the_modes_the_umask_gives(image_folder, tmp_path):
    with umask(0o027):
        summary = train(fast_config(image_folder), out=tmp_path / "runs", progress=False)
        augment_folder(
            image_folder, tmp_path / "views", Path(summary["run"]), device="cpu", progress=False
        )
    run, views = Path(summary["run"]), tmp_path / "views"
    for root in (run, views):
        got = modes(root)
        assert len(got) > 5
        want = {k: 0o750 if (root.parent / k).is_dir() else 0o640 for k in got}
        assert got == want
