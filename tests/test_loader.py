"""Streaming from disk: same batches as the in-memory path, bounded memory, CLI end to end."""

import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vmcli.data import MODALITIES, LoadOptions, scan
from vmcli.data.image import ImageModality
from vmcli.data.loader import FileDataset, ResidentBatches, StreamedBatches


def many_small_images(root, n=120, size=8):
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(
            folder / f"{i:04d}.png"
        )
    return root


def test_streamed_batches_equal_resident_batches(tmp_path):
    root = many_small_images(tmp_path / "imgs", n=40)
    m = ImageModality()
    index = scan(root, MODALITIES)
    data = m.load(root, index.items, LoadOptions())
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    resident = list(ResidentBatches(data.x, torch.device("cpu")).epoch(perm, 8, 1))
    streamed = list(
        StreamedBatches(FileDataset(m, root, data.items, data.meta), workers=2).epoch(perm, 8, 1)
    )
    assert len(resident) == len(streamed) == 4  # 5 steps per epoch, resumed at step 1
    for a, b in zip(resident, streamed, strict=True):
        assert torch.equal(a, b)


class CountingModality(ImageModality):
    """Counts decoded samples across worker processes."""

    def __init__(self, counter):
        self.counter = counter

    def decode_item(self, root, item, meta):
        with self.counter.get_lock():
            self.counter.value += 1
        return super().decode_item(root, item, meta)


def test_streaming_memory_is_bounded(tmp_path):
    root = many_small_images(tmp_path / "imgs", n=120)
    index = scan(root, MODALITIES)
    meta = {"size": 8, "channels": 1}
    counter = mp.get_context("fork").Value("i", 0)
    source = StreamedBatches(
        FileDataset(CountingModality(counter), root, index.items, meta), workers=2, prefetch=2
    )
    batch = 5
    bound_samples = (
        source.memory_bound_bytes(batch, 1) // 1
    )  # 1 byte per "sample": bound in samples
    consumed, worst = 0, 0
    for raw in source.epoch(torch.arange(120), batch, 0):
        consumed += raw.shape[0]
        time.sleep(0.02)  # a slow training step lets the workers run as far ahead as they may
        worst = max(worst, counter.value - consumed)
    assert consumed == 120
    assert worst <= bound_samples, (worst, bound_samples)
    assert worst >= batch  # it did prefetch


def test_train_streams_a_folder_of_many_small_files(tmp_path):
    from typer.testing import CliRunner

    from vmcli.cli import app

    root = many_small_images(tmp_path / "imgs", n=120)
    args = [
        "train",
        str(root),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--encoder",
        "small",
        "--viewmaker-width",
        "8",
        "--device",
        "cpu",
        "-q",
        "--data-mode",
        "stream",
        "--workers",
        "64",  # more than any CI machine's cores: clamped, with one warning
        "--out",
        str(tmp_path / "runs"),
        "--json",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["streamed"] is True and summary["train_samples"] == 120
    assert summary["skipped_while_streaming"] == 0
    assert "--workers 64 is more than the" in r.output and "UserWarning" not in r.output
    assert "at most" in r.output and "MiB of decoded samples" in r.output
    rows = (tmp_path / "runs" / "train" / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[7] == "data_wait_share" and len(rows) == 3


def test_auto_mode_streams_when_ram_is_short(tmp_path, monkeypatch):
    import vmcli.session as T
    from vmcli.config import TrainConfig

    root = many_small_images(tmp_path / "imgs", n=20)
    index = scan(root, MODALITIES)
    cfg = TrainConfig(data=str(root), batch_size=4)
    assert isinstance(T.load_training_data(cfg, ImageModality(), index).source, torch.Tensor)
    monkeypatch.setattr(T, "available_ram_bytes", lambda: 1000)
    data = T.load_training_data(cfg, ImageModality(), index)
    assert isinstance(data.source, StreamedBatches) and data.sample.shape == (20, 1, 16, 16)


def test_decoding_in_worker_processes_matches_serial(tmp_path, monkeypatch):
    import vmcli.data.base as base

    root = many_small_images(tmp_path / "imgs", n=30)
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    index = scan(root, MODALITIES)
    serial = ImageModality().load(root, index.items, LoadOptions())
    monkeypatch.setattr(base, "PARALLEL_MIN_ITEMS", 1)  # force the process pool
    parallel = ImageModality().load(root, index.items, LoadOptions())
    assert torch.equal(serial.x, parallel.x)
    assert serial.items == parallel.items
    assert [p.name for p, _ in parallel.skipped] == ["broken.png"]


def test_workers_never_rerun_the_callers_script(tmp_path):
    """An unguarded script (no `if __name__ == "__main__"`) on stdin and from a file: the
    workers must not execute it again (spawned workers would)."""
    import subprocess
    import sys

    root = many_small_images(tmp_path / "imgs", n=12)
    script = (
        "import vmcli.data.base as base\n"
        "base.PARALLEL_MIN_ITEMS = 1\n"
        "from vmcli.data import MODALITIES, LoadOptions, scan\n"
        f"idx = scan({str(root)!r}, MODALITIES)\n"
        "d = MODALITIES['image'].load(idx.root, idx.items, LoadOptions())\n"
        "print(tuple(d.x.shape))\n"
    )
    script = "print('script ran')\n" + script
    proc = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["script", "ran", "(12,", "1,", "16,", "16)"]
    (tmp_path / "user.py").write_text(script)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "user.py")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.count("script ran") == 1, (
        proc.stdout + proc.stderr[-2000:]
    )


def test_files_deleted_while_streaming_are_warned_once_and_the_last_one_is_one_line(
    tmp_path, capsys
):
    """Deleted files are replaced by the next ones, each warned about once in the run (and
    at most SHOWN_STREAM_SKIPS per worker), not retried by later items, workers or epochs; when none is left, a
    worker's error reaches the caller as one line, not wrapped in DataLoader's traceback."""
    import pytest

    from vmcli.data.loader import SHOWN_STREAM_SKIPS
    from vmcli.errors import DataError

    root = many_small_images(tmp_path / "imgs", n=40)
    m = ImageModality()
    data = m.load(root, scan(root, MODALITIES).items, LoadOptions())
    dataset = FileDataset(m, root, data.items, data.meta)
    gone = data.items[:15]
    for item in gone:
        (root / item.path).unlink()
    samples = [dataset[i] for i in range(len(data.items))]
    assert all(s.shape == samples[-1].shape for s in samples)  # each replaced by a later file
    err = capsys.readouterr().err
    assert err.count("skipped while streaming: ") == SHOWN_STREAM_SKIPS
    assert "further ones are skipped without a warning each" in err
    assert dataset.skipped_total() == 15
    # through worker processes: the total reaches the main process, once per epoch
    source = StreamedBatches(FileDataset(m, root, data.items, data.meta), workers=1)
    assert len(list(source.epoch(torch.arange(len(data.items)), 8, 0))) == 5
    assert "15 of 40 training files skipped while streaming so far" in capsys.readouterr().err
    # a second epoch's fresh workers neither retry nor warn about the files again
    assert len(list(source.epoch(torch.arange(len(data.items)), 8, 0))) == 5
    assert "skipped while streaming" not in capsys.readouterr().err
    for item in data.items[15:]:
        (root / item.path).unlink()
    perm = torch.arange(len(data.items))
    fresh = FileDataset(m, root, data.items, data.meta)
    with pytest.raises(DataError) as caught:
        list(StreamedBatches(fresh, workers=1).epoch(perm, 8, 0))
    message = str(caught.value)
    assert "none of its 40 training files can be decoded" in message
    assert "Traceback" not in message and "\n" not in message


def test_skips_while_streaming_count_over_a_resume_and_bad_files_are_not_streamed(
    tmp_path, monkeypatch
):
    """A file the statistics pass finds undecodable is left out of the stream (it was kept,
    and failed again every epoch); files failing mid-run are counted over the whole run (a
    resume restarted the count from 0, losing the earlier epochs')."""
    from conftest import fast_config

    from vmcli.data.image import ImageModality
    from vmcli.errors import DataError
    from vmcli.session import train

    root = many_small_images(tmp_path / "imgs", n=40)
    broken = sorted(root.rglob("*.png"))[0]
    raw = bytearray(broken.read_bytes())
    at = raw.find(b"IDAT") + 8
    raw[at : at + 20] = bytes(b ^ 0x5A for b in raw[at : at + 20])
    broken.write_bytes(bytes(raw))
    calls = {"n": 0}
    real = ImageModality.decode_item
    flaky = sorted(root.rglob("*.png"))[1]

    def decode_item(self, root_, item, meta):  # fails from its second decoding on
        if root_ / item.path == flaky:
            calls["n"] += 1
            if calls["n"] > 1:
                raise DataError(f"{flaky}: changed since the run started")
        return real(self, root_, item, meta)

    monkeypatch.setattr(ImageModality, "decode_item", decode_item)
    cfg = fast_config(root, epochs=1, batch_size=8, data_mode="stream", workers=0)
    first = train(cfg, out=tmp_path / "runs", progress=False)
    assert first["train_samples"] == 39 and [Path(p).name for p, _ in first["skipped"]] == [
        broken.name
    ]
    assert first["skipped_while_streaming"] == 1
    again = train(fast_config(root), resume=Path(first["run"]), epochs=2, progress=False)
    # epoch 1's skip is kept (the resume restarted the count from 0); the resume's own
    # statistics pass finds the file bad, so it is no longer streamed at all
    assert again["skipped_while_streaming"] == 1
    assert again["train_samples"] == 38
