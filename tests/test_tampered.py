"""Untrusted run folders: hand-edited metadata, foreign checkpoints, configs from other
versions. Each is one error line and exit 4 — no traceback, no pickle run, no huge allocation."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import make_image_folder
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import vmcli
from vmcli import runs
from vmcli.cli import app
from vmcli.errors import CheckpointError

FAST = ["--batch-size", "8", "--encoder", "small", "--viewmaker-width", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """One finished 1-epoch run (copied by each test before it is tampered with)."""
    root = tmp_path_factory.mktemp("tampered")
    data = make_image_folder(root / "shapes")
    r = CliRunner().invoke(
        app,
        ["train", str(data), *FAST, "--views", "viewmaker", "--epochs", "1", "-q", "--out"]
        + [str(root / "runs")],
    )
    assert r.exit_code == 0, r.output
    return data, root / "runs" / "train"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained[1], copy)
    return copy


def vm(*args) -> tuple[int, str]:
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.output


def one_error(code: int, output: str, *fragments: str) -> None:
    """Exit 4 with exactly one error line holding every fragment."""
    assert code == 4, output
    assert "Traceback" not in output, output
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# -- safetensors metadata -------------------------------------------------------------------------


def edit_header(path: Path, change: Callable[[dict], None]) -> None:
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        header = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    change(header)
    save_file(tensors, str(path), metadata={k: json.dumps(v) for k, v in header.items()})


def _set(key: str, value) -> Callable[[dict], None]:
    def change(h: dict) -> None:
        target, *path = key.split(".")
        if path:
            h[target][path[0]] = value
        else:
            h[target] = value

    return change


def _drop(key: str) -> Callable[[dict], None]:
    return lambda h: h.pop(key)


def _wider_channels(h: dict) -> None:  # consistent metadata that the tensors do not fit
    h["data_meta"].update(channels=3, raw_shape=[3, 16, 16])
    h["raw_shape"] = [3, 16, 16]
    h["space_stats"] = {"mean": [0.5] * 3, "std": [0.25] * 3}


HEADER_CASES = {
    "missing key": (_drop("budget"), "lacks 'budget'"),
    "missing section": (_drop("data_meta"), "lacks 'data_meta'"),
    "wrong type": (_set("viewmaker.width", "wide"), "viewmaker.width is 'wide'"),
    "wrong type of section": (_set("viewmaker", [8, 3]), "viewmaker is [8, 3]"),
    "absurd width": (_set("viewmaker.width", 10**9), "outside 1..256"),
    "absurd raw shape": (_set("raw_shape", [1, 10**6, 10**6]), "raw_shape"),
    "absurd image size": (
        lambda h: h["data_meta"].update(size=10**6, raw_shape=[1, 10**6, 10**6]),
        "data_meta.size is 1000000",
    ),
    "absurd channels": (_set("data_meta.channels", 10**9), "data_meta.channels"),
    "negative budget": (_set("budget", -1), "budget is -1"),
    "NaN statistics": (_set("space_stats", {"mean": [float("nan")]}), "not finite"),
    "statistics of the wrong length": (
        _set("space_stats", {"mean": [0.5, 0.5], "std": [0.25, 0.25]}),
        "does not fit together",
    ),
    "a width the tensors do not have": (_set("viewmaker.width", 16), "needs torch.float32"),
    "channels the tensors do not have": (_wider_channels, "needs torch.float32"),
    "the other export": (_set("kind", "encoder"), "not the viewmaker"),
    "unknown modality": (_set("modality", "video"), "modality is 'video'"),
    "from a newer vm": (_set("format", 2), "upgrade vm"),
}


@pytest.mark.parametrize("case", HEADER_CASES)
def test_hand_edited_export_metadata_is_a_clean_error(run, case):
    change, fragment = HEADER_CASES[case]
    edit_header(run / runs.VIEWMAKER, change)
    with pytest.raises(CheckpointError, match="viewmaker.safetensors") as err:
        vmcli.load_viewmaker(run)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_hand_edited_encoder_metadata_through_the_cli(run, trained, tmp_path):
    edit_header(run / runs.ENCODER, _set("raw_shape", [1, 10**5, 10**5]))
    one_error(*vm("eval", run, "--data", trained[0]), "encoder.safetensors", "raw_shape")
    edit_header(run / runs.VIEWMAKER, _drop("view_space"))
    one_error(*vm("augment", trained[0], "--out", tmp_path / "v", "--run", run), "view_space")
    assert not (tmp_path / "v").exists()


# -- checkpoint.pt -------------------------------------------------------------------------------


class Payload:
    """Unpickling this would create a file: proof that no pickle code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def resume(run: Path) -> tuple[int, str]:
    return vm("train", "--resume", run, "--epochs", "2", "-q")


def test_a_pickle_as_checkpoint_is_never_run(run, tmp_path):
    marker = tmp_path / "pwned"
    (run / runs.CHECKPOINT).write_bytes(pickle.dumps({"epoch": Payload(marker)}))
    one_error(*resume(run), "not a torch zip file")
    torch.save({"epoch": Payload(marker)}, run / runs.CHECKPOINT)  # the same, in torch's format
    one_error(*resume(run), "cannot be loaded as a checkpoint")
    assert not marker.exists()


def _ckpt(change: Callable[[dict], object]) -> Callable[[Path], None]:
    """Edit the loaded state in place (what `change` returns is ignored)."""

    def apply(path: Path) -> None:
        state = torch.load(path, weights_only=True)
        change(state)
        torch.save(state, path)

    return apply


def _ckpt_is(value) -> Callable[[Path], None]:
    return lambda path: torch.save(value, path)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _momentum(state: dict) -> None:
    first = next(iter(state["encoder_opt"]["state"].values()))
    first["momentum_buffer"] = torch.zeros(5)


def _nan_weight(key: str) -> Callable[[dict], None]:
    def change(state: dict) -> None:
        name = next(iter(state[key]))
        state[key][name] = torch.full_like(state[key][name], float("nan"))

    return change


def _nan_momentum(state: dict) -> None:
    per = next(iter(state["encoder_opt"]["state"].values()))
    per["momentum_buffer"] = torch.full_like(per["momentum_buffer"], float("inf"))


CHECKPOINT_CASES = {
    "truncated": (_truncate, "cannot be loaded as a checkpoint"),
    "a tensor": (_ckpt_is(torch.zeros(3)), "holds Tensor"),
    "another program's state": (_ckpt_is({"model": {"w": torch.zeros(2)}}), "lacks 'epoch'"),
    "wrong type": (_ckpt(lambda s: s.update(epoch="0")), "epoch is '0'"),
    "negative step": (_ckpt(lambda s: s.update(step=-3)), "step is -3"),
    "not a generator state": (_ckpt(lambda s: s.update(view_gen=torch.zeros(3))), "view_gen"),
    "weights of another shape": (
        _ckpt(lambda s: s["viewmaker"].update({next(iter(s["viewmaker"])): torch.zeros(2)})),
        "but the architecture",
    ),
    "weights missing": (_ckpt(lambda s: s["encoder"].popitem()), "lacks"),
    "optimizer state of another shape": (_ckpt(_momentum), "momentum_buffer"),
    "optimizer setting of another type": (
        _ckpt(lambda s: s["encoder_opt"]["param_groups"][0].update(lr="fast")),
        "setting lr is 'fast'",
    ),
    "from a newer vm": (_ckpt(lambda s: s.update(format=7, vmcli_version="3.0")), "upgrade vm"),
    "NaN weights": (_ckpt(_nan_weight("viewmaker")), "holds non-finite values"),
    "transforms that are not tensors": (
        _ckpt(lambda s: s.update(transforms={"logits": [0.1, 0.2]})),
        "transforms is not a mapping of names to tensors",
    ),
    "NaN optimizer state": (_ckpt(_nan_momentum), "holds non-finite values"),
    # a metrics row that is not numbers crashed the plot after training, leaving the run
    # marked finished with a stale summary
    "metrics rows that are not numbers": (
        _ckpt(lambda s: s.update(metrics=[{"epoch": "x"}])),
        "metrics are not one row of numbers per finished epoch",
    ),
    "more metrics rows than epochs": (
        _ckpt(lambda s: s.update(metrics=s["metrics"] * 2)),
        "metrics are not one row",
    ),
    "metric sums that are not a mapping": (
        _ckpt(lambda s: s.update(metric_window=[1.0])),
        "metric_window is [1.0], of the wrong type",
    ),
    "NaN metric sums": (
        _ckpt(lambda s: s["metric_window"].update(sums=torch.full((3,), float("nan")))),
        "metric_window sums holds non-finite values",
    ),
    "metric sums of another size": (
        _ckpt(lambda s: s["metric_window"].update(probes=torch.zeros(2))),
        "metric_window probes is not 4 float32 sums",
    ),
    "a metric window longer than the epoch so far": (
        _ckpt(lambda s: s["metric_window"].update(steps=5)),
        "metric_window counts 5 steps, past step 0",
    ),
    "a step past the end of an epoch": (
        _ckpt(lambda s: s.update(step=10**12)),
        "step 1000000000000 is past the end of an epoch",
    ),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_a_checkpoint_that_is_not_ours_is_a_clean_error(run, case):
    change, fragment = CHECKPOINT_CASES[case]
    change(run / runs.CHECKPOINT)
    before = (run / runs.CHECKPOINT).read_bytes()
    one_error(*resume(run), "checkpoint.pt", fragment)
    assert (run / runs.CHECKPOINT).read_bytes() == before


# -- config.json ---------------------------------------------------------------------------------


def _config(change: Callable[[dict], object]) -> Callable[[Path], None]:
    """Edit config.json in place (what `change` returns is ignored)."""

    def apply(path: Path) -> None:
        found = json.loads(path.read_text())
        change(found)
        path.write_text(json.dumps(found))

    return apply


def _config_as_list(path: Path) -> None:
    path.write_text(json.dumps([json.loads(path.read_text())]))


CONFIG_CASES = {
    "a list": (_config_as_list, "holds list"),
    "missing section": (_config(lambda c: c.pop("train")), "lacks 'train'"),
    "missing setting": (_config(lambda c: c["train"].pop("modality")), "lacks 'modality'"),
    "wrong type": (_config(lambda c: c["train"].update(epochs="ten")), "train.epochs is 'ten'"),
    "wrong nested type": (
        _config(lambda c: c["train"]["load"].update(columns="ax")),
        "train.load is",
    ),
    "absurd width": (
        _config(lambda c: c["train"].update(viewmaker_width=10**6)),
        "--viewmaker-width must be a whole number from 1 to 256",
    ),
    "absurd image size": (
        _config(lambda c: c["data_meta"].update(size=10**7)),
        "data_meta.size is 10000000",
    ),
    "raw shape that disagrees": (
        _config(lambda c: c["data_meta"].update(raw_shape=[3, 16, 16])),
        "data_meta.raw_shape",
    ),
    "unknown view space": (
        _config(lambda c: c["train"].update(view_space="waveform")),
        "view_space is 'waveform'",
    ),
    "from another version": (
        _config(lambda c: c.update(format=2, vmcli_version="9.1.0")),
        "written by vm 9.1.0 in run format 2",
    ),
    "another version's layout": (
        _config(lambda c: (c.update(vmcli_version="0.0.1"), c.pop("space_stats"))),
        "written by vm 0.0.1",
    ),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_a_config_from_elsewhere_is_a_clean_error(run, trained, case, tmp_path):
    change, fragment = CONFIG_CASES[case]
    change(run / runs.CONFIG)
    one_error(*vm("info", run), "config.json", fragment)
    one_error(*resume(run), fragment)
    one_error(*vm("augment", trained[0], "--out", tmp_path / "v", "--run", run), fragment)


def test_statistics_of_the_wrong_length_in_config_stop_a_resume(run):
    _config(lambda c: c["space_stats"].update(mean=[0.5, 0.5, 0.5]))(run / runs.CONFIG)
    one_error(*resume(run), "does not fit together")


def _nan_tensors(path: Path) -> None:
    """Every float tensor of a safetensors file NaN, its metadata kept."""
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    tensors = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
        for k, v in load_file(str(path)).items()
    }
    save_file(tensors, str(path), metadata=header)


def test_exports_with_non_finite_weights_are_refused(run, trained, tmp_path):
    """NaN weights ran without complaint: all-black views and a scored table, exit 0."""
    _nan_tensors(run / runs.VIEWMAKER)
    with pytest.raises(CheckpointError, match="viewmaker.safetensors.*non-finite"):
        vmcli.load_viewmaker(run)
    out = tmp_path / "views"
    one_error(*vm("augment", trained[0], "--out", out, "--run", run), "non-finite")
    assert not out.exists()
    _nan_tensors(run / runs.ENCODER)
    one_error(*vm("eval", run, "--linear"), "encoder.safetensors", "non-finite")
    assert not (run / "eval.json").exists()


def test_hand_edited_summary_and_eval_are_clean_errors(run):
    for summary, field in (
        ('{"adversary": "NaN"}', "adversary"),
        ('{"adversary": {"effect": "x"}}', "adversary"),
        ('{"transforms": "x"}', "transforms"),
        ('{"transforms": [{"name": "crop"}]}', "transforms"),
        ('{"transforms_budget": "all"}', "transforms_budget"),
    ):  # each was a TypeError or KeyError traceback in `vm info`
        (run / runs.SUMMARY).write_text(summary)
        one_error(*vm("info", run), "summary.json", field)
    (run / runs.SUMMARY).write_text('{"final_loss": "low"}')
    one_error(*vm("info", run), "summary.json", "final_loss")
    (run / runs.SUMMARY).write_text("{")
    one_error(*vm("info", run), "summary.json", "not valid JSON")
    (run / runs.SUMMARY).unlink()
    (run / "eval.json").write_text('{"rows": [{"features": "x", "linear": "high"}]}')
    one_error(*vm("info", run), "eval.json")
    bad = '{"rows": [], "comparisons": [{"baseline": "raw", "probe": "linear", '
    for numbers in (
        '"difference": 0.1, "ci95": [0.1]',
        '"difference": 0.1, "ci95": 0.1',  # no interval at all: a TypeError traceback before
        '"difference": [0.1], "ci95": [0.0, 0.2]',
        '"difference": 0.1, "ci95": [[0.0], [0.2]]',
    ):
        (run / "eval.json").write_text(bad + f'"verdict": "ahead", {numbers}}}]}}')
        one_error(*vm("info", run), "eval.json", "comparisons")
    (run / "eval.json").write_text('{"rows": [{"features": "x", "linear": [0.8]}]}')
    one_error(*vm("info", run), "eval.json", "rows")


def test_an_untouched_run_still_loads_and_resumes(run, trained):
    assert vmcli.load_viewmaker(run) is not None and vmcli.load_encoder(run) is not None
    code, output = vm("info", run)
    assert code == 0, output
    code, output = resume(run)
    assert code == 0, output


def test_a_checkpoint_from_before_the_metric_window_was_kept_still_resumes(run):
    _ckpt(lambda s: s.pop("metric_window"))(run / runs.CHECKPOINT)
    code, output = resume(run)
    assert code == 0, output
    assert "metric_window" in torch.load(run / runs.CHECKPOINT, weights_only=True)
