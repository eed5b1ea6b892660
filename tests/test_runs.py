import json

import pytest
import torch

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
