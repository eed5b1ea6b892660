"""Two CPU processes (gloo) must train exactly like one process on the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import fast_config

from vmcli import runs
from vmcli.session import train

ARGS = [
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--encoder",
    "small",
    "--viewmaker-width",
    "8",
    "--device",
    "cpu",
    "--budget",
    "0.05",
    "-q",
]


@pytest.mark.parametrize(
    "views", ["viewmaker", "both", "learned-transforms", "learned-transforms+viewmaker"]
)
def test_two_processes_give_the_single_process_loss_and_gradients(image_folder, tmp_path, views):
    """The same global batch of 8: 2 ranks × 4 (gathered negatives, synchronised batch norm,
    DDP averaging; transform strengths averaged by hand) against 1 process × 8."""
    from ddp_worker import one_step
    from test_transforms import write_sensor_folder

    from vmcli.distributed import World

    if "+viewmaker" in views:  # the sensor transforms beside a 1-D viewmaker
        image_folder = write_sensor_folder(tmp_path / "watch", n=16)

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = one_step(image_folder, World(), views)
    finally:
        torch.set_num_threads(n)
    out = tmp_path / "ddp.pt"
    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(worker),
        str(image_folder),
        str(out),
        views,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)
    assert ddp["loss"].item() == pytest.approx(single["loss"].item(), rel=1e-6)
    assert ddp["grads"].keys() == single["grads"].keys()
    for name, g in single["grads"].items():
        scale = max(g.norm().item(), 1e-3 * max(v.norm().item() for v in single["grads"].values()))
        assert (ddp["grads"][name] - g).norm().item() <= 1e-4 * scale, name


def test_devices_flag_trains_one_run_on_two_processes(image_folder, tmp_path):
    views = "viewmaker"
    train(
        fast_config(image_folder, epochs=2, batch_size=8, log_every=50),
        out=tmp_path / "one",
        progress=False,
    )
    cmd = [
        sys.executable,
        "-m",
        "vmcli",
        "train",
        str(image_folder),
        *ARGS,
        "--views",
        views,
        "--devices",
        "2",
        "--out",
        str(tmp_path / "two"),
        "--json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout)
    assert two["devices"] == 2 and two["batch_size"] == 8
    # no warning per rank (e.g. torch's deprecated torch.distributed.nn.functional)
    assert "Warning" not in proc.stderr, proc.stderr[-3000:]

    a = runs.load_checkpoint(tmp_path / "one" / "train" / "checkpoint.pt")
    b = runs.load_checkpoint(tmp_path / "two" / "train" / "checkpoint.pt")
    # the first epoch's loss agrees; later, Adam turns float noise in the viewmaker's
    # zero-gradient biases (conv biases before instance norm) into lr-sized steps, so two runs
    # stay close rather than identical (exact equality is tested on the gradients above)
    assert a["metrics"][0]["loss"] == pytest.approx(b["metrics"][0]["loss"], rel=1e-3)
    # the adversary probe takes its negatives from every rank too (per-rank slices gave
    # another loss and "inert" verdict than one process on the same batch)
    for key in ("probe_loss", "probe_loss_init"):
        assert a["metrics"][0][key] == pytest.approx(b["metrics"][0][key], rel=0.15), key
    assert b["metrics"][-1]["delta_l1"] == pytest.approx(0.05, rel=1e-4)
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"])
    # rank 0 alone wrote the run folder: exactly one run, complete
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["train"]
    assert (tmp_path / "two" / "train" / "viewmaker.safetensors").is_file()


def test_global_batch_must_divide_by_devices(image_folder, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "vmcli",
        "train",
        str(image_folder),
        *ARGS[:2],
        "--batch-size",
        "7",
        *ARGS[4:],
        "--devices",
        "2",
        "--out",
        str(tmp_path / "r"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    # found once, before any process is started: one line, exit 2, no torchrun traceback
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.count("must divide by the 2 devices") == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("devices", "batch", "message"),
    [
        (3, 16, "--batch-size 16 (the global batch) must divide by the 3 devices"),
        (0, 8, "--devices must be at least 1"),
        (-1, 8, "--devices must be at least 1"),
        ((os.cpu_count() or 1) + 1, 2 * ((os.cpu_count() or 1) + 1), "CPU core(s)"),
    ],
)
def test_devices_mistakes_are_one_message_before_any_process_starts(
    image_folder, tmp_path, devices, batch, message
):
    from typer.testing import CliRunner

    from vmcli.cli import app

    args = ["train", str(image_folder), *ARGS, "--batch-size", str(batch)]
    args += ["--devices", str(devices), "--out", str(tmp_path / "r")]
    r = CliRunner().invoke(app, args)  # the last --batch-size wins
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and text.count(message) == 1, text
    assert not (tmp_path / "r").exists()


def test_an_error_inside_the_ranks_is_one_line_with_its_exit_code(tmp_path):
    """Errors the ranks meet (here: no readable file) came out once per rank, then as the
    launcher's own traceback with exit 1. Now: rank 0's one line and vm's exit code."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_text("junk")
    cmd = [sys.executable, "-m", "vmcli", "train", str(bad), *ARGS, "--devices", "2"]
    proc = subprocess.run(
        cmd + ["--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert proc.stderr.count("none of the 1 image files could be read") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "OMP_NUM_THREADS" not in proc.stderr


def test_an_error_only_one_rank_meets_is_reported_by_the_launcher(tmp_path, monkeypatch):
    """Rank 0 failing is rank 0's line; a failure of another rank alone (rank 0 succeeding or
    left waiting) is printed by the launcher, named by rank, with that rank's exit code."""
    from vmcli import distributed

    script = tmp_path / "rank.py"
    script.write_text(
        "import os, sys\n"
        "from vmcli.console import note_rank_error\n"
        "if os.environ['RANK'] == '1':\n"
        "    note_rank_error('the GPU of rank 1 ran out of memory')\n"
        "    sys.exit(5)\n"
    )
    real = subprocess.Popen

    def popen(cmd, **kw):  # the ranks run the script instead of vm
        return real([sys.executable, str(script)], **kw)

    monkeypatch.setattr(distributed.subprocess, "Popen", popen)
    monkeypatch.setattr(distributed, "check_devices", lambda *a, **k: None)
    assert distributed.launch(2, ["train"]) == 5


INJECT = """
import os
if os.environ.get("RANK") == "1":
    import vmcli.training as t
    from vmcli.errors import DataError
    real, calls = t.train_step, [0]
    def step(*a, **k):
        calls[0] += 1
        if calls[0] == 3:
            raise DataError("rank 1 could not read shard 7")
        return real(*a, **k)
    t.train_step = step
"""


def test_a_rank_failing_alone_mid_training_ends_the_run_with_its_error(image_folder, tmp_path):
    """Rank 1 fails at its third step while rank 0 waits in a collective: the run hung (the
    failed rank waited in teardown's barrier, rank 0 in DDP's broadcast), and a peer failure
    on rank 0 hid the real error. Now: the failing rank's line, its exit code, in seconds."""
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(INJECT)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'inject'}{os.pathsep}{Path.cwd()}"}
    cmd = [sys.executable, "-m", "vmcli", "train", str(image_folder), *ARGS, "--epochs", "3"]
    cmd += ["--views", "viewmaker", "--devices", "2", "--out", str(tmp_path / "r")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "error: rank 1: rank 1 could not read shard 7" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_ctrl_c_sent_to_the_launcher_alone_stops_every_rank_with_a_checkpoint(
    image_folder, tmp_path
):
    """`kill -INT` of the launcher reached no rank (they trained on, and the launcher still
    said 130); it is passed on once, so every rank checkpoints and stops at one step."""
    import signal
    import time

    cmd = [sys.executable, "-m", "vmcli", "train", str(image_folder), *ARGS, "--epochs", "500"]
    cmd += ["--views", "viewmaker", "--devices", "2", "--checkpoint-every", "1steps"]
    cmd += ["--out", str(tmp_path / "r")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "r" / "train" / "checkpoint.pt"
    deadline = time.monotonic() + 90
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert err.count("interrupted at epoch") == 1, err[-3000:]
    assert runs.load_checkpoint(checkpoint)["epoch"] < 500
