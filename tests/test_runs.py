import json
import os
import stat

import pytest
import torch
from conftest import umask

from vmcli import runs
from vmcli.errors import CheckpointError


def test_run_folders_are_numbered_never_reused(tmp_path):
    a = runs.new_run_dir(tmp_path)
    b = runs.new_run_dir(tmp_path)
    c = runs.new_run_dir(tmp_path)
    assert [p.name for p in (a, b, c)] == ["train", "train-2", "train-3"]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    dst = tmp_path / "f.json"
    runs.write_json(dst, {"a": 1})
    with pytest.raises(RuntimeError), runs.atomic_write(dst) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert json.loads(dst.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_latest_and_resolve(tmp_path):
    with pytest.raises(CheckpointError, match="no runs"):
        runs.latest_run(tmp_path)
    for _ in range(2):
        d = runs.new_run_dir(tmp_path)
        runs.write_json(d / runs.CONFIG, {})
    assert runs.latest_run(tmp_path).name == "train-2"
    with pytest.raises(CheckpointError, match="not a run folder"):
        runs.resolve_run(tmp_path)


def test_weights_round_trip_with_metadata(tmp_path):
    m = torch.nn.Linear(3, 2)
    runs.save_weights(m, tmp_path / "w.safetensors", {"kind": "test", "shape": [1, 2]})
    tensors, meta = runs.read_weights(tmp_path / "w.safetensors")
    assert meta["kind"] == "test" and meta["shape"] == [1, 2] and "vmcli_version" in meta
    assert torch.equal(tensors["weight"], m.weight.detach())


def test_corrupt_files_give_checkpoint_errors(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        runs.read_weights(tmp_path / "w.safetensors")
    (tmp_path / "c.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        runs.load_checkpoint(tmp_path / "c.pt")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002], ids=oct)
def test_atomic_files_and_temp_folders_respect_the_umask(tmp_path, mask):
    with umask(mask):
        runs.write_json(tmp_path / "a.json", {"a": 1})
        runs.save_checkpoint(tmp_path / "c.pt", {"x": torch.zeros(2)})
        runs.save_weights(torch.nn.Linear(2, 2), tmp_path / "w.safetensors", {})
        folder = runs.make_temp_dir(tmp_path, ".partial-")
    for name in ("a.json", "c.pt", "w.safetensors"):
        assert mode(tmp_path / name) == 0o666 & ~mask, name
    assert mode(folder) == 0o777 & ~mask


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    dst = tmp_path / "shared.json"
    runs.write_json(dst, {"v": 1})
    os.chmod(dst, 0o664)
    runs.write_json(dst, {"v": 2})
    assert mode(dst) == 0o664 and json.loads(dst.read_text()) == {"v": 2}


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names open files via /proc")
def test_checkpoints_and_exports_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    runs.save_checkpoint(tmp_path / "checkpoint.pt", {"x": torch.zeros(2)})
    runs.save_weights(torch.nn.Linear(2, 2), tmp_path / "w.safetensors", {})
    folder = tmp_path.name
    for name, i in (("checkpoint.pt", 0), ("w.safetensors", 3)):
        kind, tmp = events[i]
        assert kind == "fsync" and tmp.startswith(f".{name}."), events  # the data, then
        assert events[i + 1] == ("rename", name), events  # the rename, then
        assert events[i + 2] == ("fsync", folder), events  # the folder entry
