"""What survives crashes and what others can read: file modes, checkpoint cadence, kill -9."""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import fast_config, umask
from typer.testing import CliRunner

from vmcli import runs
from vmcli.augment import augment_folder
from vmcli.cli import app
from vmcli.config import CheckpointCadence
from vmcli.errors import ConfigError
from vmcli.session import train

ROOT = Path(__file__).resolve().parent.parent


def modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root.parent)): stat.S_IMODE(p.stat().st_mode)
        for p in [root, *root.rglob("*")]
    }


def test_run_folder_and_views_get_the_modes_the_umask_gives(image_folder, tmp_path):
    with umask(0o027):
        summary = train(fast_config(image_folder), out=tmp_path / "runs", progress=False)
        augment_folder(
            image_folder / "test",
            tmp_path / "views",
            Path(summary["run"]),
            device="cpu",
            progress=False,
        )
    run, views = Path(summary["run"]), tmp_path / "views"
    for root in (run, views):
        got = modes(root)
        assert len(got) > 5
        want = {k: 0o750 if (root.parent / k).is_dir() else 0o640 for k in got}
        assert got == want


# -- checkpoint cadence --------------------------------------------------------------------------


def test_checkpoint_every_syntax():
    assert CheckpointCadence.parse("10m").seconds == 600
    assert CheckpointCadence.parse("30s").seconds == 30
    assert CheckpointCadence.parse("1.5h").seconds == 5400
    assert CheckpointCadence.parse("500steps").steps == 500
    assert CheckpointCadence.parse("1step").steps == 1
    off = CheckpointCadence.parse("off")
    assert not any(off.due(n) for n in range(1, 100))
    for bad in ("500", "10", "ten minutes", "0s", "0steps", "2.5steps", "-1m", ""):
        with pytest.raises(ConfigError, match="--checkpoint-every"):
            CheckpointCadence.parse(bad)
    with pytest.raises(ConfigError, match="minutes or steps"):
        CheckpointCadence.parse("500")


def test_time_cadence_checkpoints_mid_epoch_at_step_boundaries(image_folder, tmp_path, monkeypatch):
    """A fake clock: each step takes 4 minutes, so `10m` writes after steps 3 and 6 (the clock
    restarts at every checkpoint), and the epoch's end writes as before."""
    now = {"t": 0.0}
    monkeypatch.setattr("vmcli.config._monotonic", lambda: now["t"])
    import vmcli.training as T

    real_step = T.train_step

    def slow_step(*a, **k):
        now["t"] += 240
        return real_step(*a, **k)

    saved = []
    real_save = runs.save_checkpoint
    monkeypatch.setattr(T, "train_step", slow_step)
    monkeypatch.setattr(
        runs, "save_checkpoint", lambda dst, st: (saved.append(st["step"]), real_save(dst, st))
    )
    cfg = fast_config(image_folder, batch_size=2, checkpoint_every="10m")  # 8 steps an epoch
    train(cfg, out=tmp_path / "runs", progress=False)
    assert saved == [3, 6, 0]  # (epoch 0, step 3), (0, 6), then the epoch's end (1, 0)


def test_divergence_stops_exports_nothing_and_keeps_the_last_good_checkpoint(
    image_folder, tmp_path, monkeypatch
):
    """The loss turns NaN from step 3 on; progress is read every 4 steps and a checkpoint is
    due after every step: steps 1 and 2 are saved, step 3's NaN weights are not, and step 4's
    progress update stops the run."""
    import vmcli.training as T
    from vmcli.errors import DataError

    real, calls = T.nt_xent, {"n": 0}

    def poisoned(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(T, "nt_xent", poisoned)
    cfg = fast_config(image_folder, batch_size=2, log_every=4, checkpoint_every="1step")
    with pytest.raises(DataError, match="training diverged at step 4"):
        train(cfg, out=tmp_path / "runs", progress=False)
    run = tmp_path / "runs" / "train"
    assert not (run / runs.VIEWMAKER).exists() and not (run / runs.ENCODER).exists()
    state = runs.load_checkpoint(run / runs.CHECKPOINT)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["viewmaker"].values())


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_run_folder(
    image_folder, tmp_path, monkeypatch
):
    """Option errors found after setup starts are caught before the run folder is made, and a
    run that stops before its first checkpoint removes the folder it made: otherwise a folder
    holding only config.json became the newest run, and default vm augment / eval / info used
    it and failed."""
    runs_dir = tmp_path / "runs"
    fast = ["--epochs", "1", "--batch-size", "8", "--viewmaker-width", "8", "--device", "cpu"]
    fast += ["-q", "--out", str(runs_dir)]
    cli = CliRunner()
    assert cli.invoke(app, ["train", str(image_folder), *fast]).exit_code == 0
    for bad in (["--transforms-max", "crop=0"], ["--encoder", "bogus"]):
        r = cli.invoke(app, ["train", str(image_folder), *fast, *bad])
        assert r.exit_code == 2 and "Traceback" not in r.output, (bad, r.output)
        assert sorted(p.name for p in runs_dir.iterdir()) == ["train"], bad
    # a failure inside training, before any checkpoint: the loss is NaN from the first step
    import vmcli.training as T
    from vmcli.errors import DataError

    real = T.nt_xent
    monkeypatch.setattr(T, "nt_xent", lambda *a, **k: real(*a, **k) * float("nan"))
    cfg = fast_config(image_folder, log_every=1, checkpoint_every="off")
    with pytest.raises(DataError, match="diverged"):
        train(cfg, out=runs_dir, progress=False)
    assert sorted(p.name for p in runs_dir.iterdir()) == ["train"]
    r = cli.invoke(app, ["info", "--runs", str(runs_dir)])
    assert r.exit_code == 0 and "train-2" not in r.output and "has not finished" not in r.output


def test_a_run_stopped_before_its_summary_is_finished_by_a_resume(image_folder, tmp_path):
    """Killed between its last checkpoint and summary.json, a run could never be finished (the
    resume said "already finished") while `vm info` said to resume it; `vm augment` and
    `vm eval` used its exports without a word. Now the resume writes what is missing, without
    training, and the others say the run is unfinished."""
    cli = CliRunner()
    fast = ["--epochs", "1", "--batch-size", "8", "--encoder", "small", "--device", "cpu", "-q"]
    assert (
        cli.invoke(app, ["train", str(image_folder), *fast, "--out", str(tmp_path)]).exit_code == 0
    )
    run = tmp_path / "train"
    finished = json.loads((run / runs.SUMMARY).read_text())
    encoder, _ = runs.read_weights(run / runs.ENCODER)
    for name in (runs.SUMMARY, runs.PREVIEW, runs.TRAINING_PLOT):
        (run / name).unlink()
    r = cli.invoke(app, ["info", str(run)])
    assert "has not finished (no summary.json: it stopped during its 1 epochs" in " ".join(
        r.output.replace("│", " ").split()
    )
    r = cli.invoke(
        app,
        ["augment", str(image_folder / "test"), "--out", str(tmp_path / "v"), "--run", str(run)],
    )
    assert r.exit_code == 0 and "has not finished (no summary.json" in " ".join(r.output.split())
    assert cli.invoke(app, ["eval", str(run)]).exit_code == 0

    r = cli.invoke(app, ["train", "--resume", str(run), "-q"])
    assert r.exit_code == 0, r.output
    # the same weights written again: the evaluation is still the run's (the file's bytes
    # differ: safetensors writes its header's metadata in another order each time)
    assert json.loads(cli.invoke(app, ["info", str(run), "--json"]).stdout)["eval_is_current"]
    assert all((run / n).is_file() for n in (runs.SUMMARY, runs.PREVIEW, runs.TRAINING_PLOT))
    after, _ = runs.read_weights(run / runs.ENCODER)
    assert all(torch.equal(after[k], encoder[k]) for k in encoder)  # nothing was trained
    again = json.loads((run / runs.SUMMARY).read_text())
    assert again["final_loss"] == finished["final_loss"] and again["epochs"] == 1
    assert "has not finished" not in cli.invoke(app, ["info", str(run)]).output
    r = cli.invoke(app, ["train", "--resume", str(run), "-q"])
    assert r.exit_code == 2 and "already finished 1 epochs" in r.output
    # a summary they do not otherwise use never stops vm augment (it did, exit 4)
    broken = dict(again, samples_per_s="fast")
    (run / runs.SUMMARY).write_text(json.dumps(broken))
    r = cli.invoke(
        app,
        ["augment", str(image_folder / "test"), "--out", str(tmp_path / "v2"), "--run", str(run)],
    )
    assert r.exit_code == 0 and "cannot tell whether the run finished" in " ".join(r.output.split())
    (run / runs.SUMMARY).write_text(json.dumps(again))

    # a resume to more epochs, stopped before it finished: the exports are the earlier ones
    config = json.loads((run / runs.CONFIG).read_text())
    config["train"]["epochs"] = 5
    (run / runs.CONFIG).write_text(json.dumps(config))
    r = cli.invoke(app, ["info", str(run), "--json"])
    assert json.loads(r.stdout)["unfinished"].startswith("was extended to 5 epochs")
    r = cli.invoke(app, ["eval", str(run)])
    assert r.exit_code == 0, r.output
    assert (
        "has not finished (its summary is of epoch 1); using the encoder it exported"
        in " ".join(r.output.split())
    )


def test_only_an_unstarted_run_folder_and_only_its_own_files_are_removed(tmp_path):
    started = tmp_path / "started"
    started.mkdir()
    for name in (runs.CONFIG, runs.CHECKPOINT):
        (started / name).write_text("{}")
    assert not runs.remove_unstarted_run(started)
    assert sorted(p.name for p in started.iterdir()) == [runs.CHECKPOINT, runs.CONFIG]
    shared = tmp_path / "shared"
    shared.mkdir()
    for name in (runs.CONFIG, runs.METRICS, f".{runs.CONFIG}.0a1b2c.tmp", "notes.txt"):
        (shared / name).write_text("x")
    assert not runs.remove_unstarted_run(shared)  # someone else's file: the folder stays
    assert sorted(p.name for p in shared.iterdir()) == ["notes.txt"]


def test_kill_9_mid_epoch_then_resume_gives_the_uninterrupted_weights(image_folder, tmp_path):
    """`vm train` SIGKILLed inside step 12 of 16 (epoch 2 of 2, 8 steps each), with a checkpoint
    every 3 steps: the run resumes from step 9 and ends with the same weights, bit for bit, as
    a run that was never interrupted, and the same metrics rows (the resumed epoch's sums
    before the checkpoint were kept in it)."""
    fast = ["--batch-size", "2", "--encoder", "small", "--viewmaker-width", "8"]
    fast += ["--device", "cpu", "-q", "--epochs", "2", "--budget", "0.05"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # the 14th loss computed is step 12's: 8 steps, then the adversary probe's two at the end
    # of epoch 1 (log_every 50 > 8 steps), then steps 9-12
    killed = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sigkill_train.py"), "14", "train"]
        + [str(image_folder), *fast, "--checkpoint-every", "3steps", "--out", str(tmp_path / "k")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = tmp_path / "k" / "train"
    state = runs.load_checkpoint(run / runs.CHECKPOINT)
    assert (state["epoch"], state["step"]) == (1, 1)  # global step 9: mid-epoch, 2 steps lost
    assert not (run / runs.VIEWMAKER).exists() and not (run / runs.SUMMARY).exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary left behind

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the killed process: bitwise reproducible reductions
    try:
        resumed = CliRunner().invoke(app, ["train", "--resume", str(run), "-q"])
        assert resumed.exit_code == 0, resumed.output
        cfg = fast_config(
            image_folder, epochs=2, batch_size=2, checkpoint_every="off", log_every=50
        )
        straight = Path(train(cfg, out=tmp_path / "s", progress=False)["run"])
    finally:
        torch.set_num_threads(threads)
    for name in (runs.VIEWMAKER, runs.ENCODER):
        a, _ = runs.read_weights(run / name)
        b, _ = runs.read_weights(straight / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert state["metric_window"]["steps"] == 1 and state["metric_window"]["n_probes"] == 0
    timing = {"samples_per_s", "elapsed_s", "data_wait_share"}
    rows = [
        [
            {k: v for k, v in r.items() if k not in timing}
            for r in csv.DictReader(p.read_text().splitlines())
        ]
        for p in (run / runs.METRICS, straight / runs.METRICS)
    ]
    assert len(rows[0]) == 2 and rows[0] == rows[1]


# -- resuming on changed data --------------------------------------------------------------------


def vm(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error:")]


def test_resume_refuses_changed_data_unless_allowed(image_folder, tmp_path):
    from vmcli.data import MODALITIES, scan
    from vmcli.data.discover import fingerprint

    fast = ["--batch-size", "8", "--encoder", "small", "--viewmaker-width", "8"]
    fast += ["--device", "cpu", "-q"]
    r = vm("train", image_folder, *fast, "--epochs", "1", "--out", tmp_path / "runs")
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "train"
    circles = image_folder / "train" / "circle"
    first = circles / "000.png"

    def refused(*extra) -> str:
        r = vm("train", "--resume", run, "--epochs", "2", "-q", *extra)
        assert r.exit_code == 3, r.output
        assert len(error_lines(r.output)) == 1 and "Traceback" not in r.output
        assert "--allow-data-change" in r.output
        assert runs.load_checkpoint(run / runs.CHECKPOINT)["epoch"] == 1  # nothing trained
        return r.output

    (circles / "new.png").write_bytes(first.read_bytes())  # a file added
    assert "17 training files now, 16 when the run started" in refused()
    (circles / "new.png").unlink()
    first.rename(circles / "renamed.png")  # the same count, another name
    assert "under other names" in refused()
    (circles / "renamed.png").rename(first)
    st = first.stat()
    os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the same file, re-saved
    assert "were modified" in refused()

    # test/ files are not training files: adding one is not a change to refuse
    test_dir = image_folder / "test" / "circle"
    (test_dir / "extra.png").write_bytes(first.read_bytes())
    assert "were modified" in refused()

    r = vm("train", "--resume", run, "--epochs", "2", "-q", "--allow-data-change")
    assert r.exit_code == 0, r.output
    saved = runs.read_json(run / runs.CONFIG)["data"]["fingerprint"]
    assert saved == fingerprint(scan(image_folder, MODALITIES))  # the data as it is now

    # a run from before fingerprints: resumed with a note, and recorded from then on
    config = runs.read_json(run / runs.CONFIG)
    del config["data"]["fingerprint"]
    runs.write_json(run / runs.CONFIG, config)
    r = vm("train", "--resume", run, "--epochs", "3")
    assert r.exit_code == 0 and "not checked for changes" in r.output
    assert "fingerprint" in runs.read_json(run / runs.CONFIG)["data"]


def test_a_resume_names_what_it_ignores_and_a_failed_one_keeps_the_data_check(
    image_folder, tmp_path
):
    """Files removed below the run's batch size: the resume says so in one line (not "batch
    size larger than the samples", which no option of a resume can change), and, having
    failed, records nothing: the next resume still sees the data change."""
    fast = ["--batch-size", "8", "--encoder", "small", "--viewmaker-width", "8"]
    fast += ["--device", "cpu", "-q"]
    r = vm("train", image_folder, *fast, "--epochs", "1", "--out", tmp_path / "runs")
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "train"
    # options a resume cannot take are named, not dropped silently
    r = vm("train", "--resume", run, "--epochs", "2", "-q", "--batch-size", "4", "--no-compile")
    assert r.exit_code == 0, r.output
    assert "ignored with --resume: --batch-size, --compile/--no-compile" in " ".join(
        r.output.split()
    )
    assert runs.read_json(run / runs.CONFIG)["train"]["batch_size"] == 8
    before = (run / runs.CONFIG).read_bytes()
    for path in sorted((image_folder / "train").rglob("*.png"))[5:]:
        path.unlink()  # 5 training files left, batch size 8
    r = vm("train", "--resume", run, "--epochs", "3", "-q", "--allow-data-change")
    assert r.exit_code == 3 and "Traceback" not in r.output, r.output
    assert len(error_lines(r.output)) == 1
    assert "batch size 8" in r.output and "5 usable training sample" in r.output
    assert (run / runs.CONFIG).read_bytes() == before  # nothing recorded by a failed resume
    r = vm("train", "--resume", run, "--epochs", "3", "-q")
    assert r.exit_code == 3 and "--allow-data-change" in r.output, r.output


def test_data_that_shrank_past_a_mid_epoch_checkpoint_restarts_that_epoch(image_folder, tmp_path):
    """A checkpoint at step 6 of an 8-step epoch, then half the training files removed (4
    steps now): with --allow-data-change the epoch starts again instead of the checkpoint
    being called foreign (and config.json rewritten by the failed resume)."""
    fast = ["--batch-size", "2", "--encoder", "small", "--viewmaker-width", "8"]
    fast += ["--device", "cpu", "-q"]
    r = vm("train", image_folder, *fast, "--epochs", "1", "--out", tmp_path / "runs")
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "train"
    state = torch.load(run / runs.CHECKPOINT, weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 0)
    state["step"] = 6  # as if written mid-way through epoch 2 of 16 files at batch 2
    torch.save(state, run / runs.CHECKPOINT)
    for path in sorted((image_folder / "train").rglob("*.png"))[::2]:
        path.unlink()  # 8 training files left: 4 steps an epoch
    r = vm("train", "--resume", run, "--epochs", "2", "--allow-data-change")
    assert r.exit_code == 0, r.output
    assert "epoch 2 starts again from its first step" in " ".join(r.output.split())
    assert runs.load_checkpoint(run / runs.CHECKPOINT)["epoch"] == 2
    rows = (run / runs.METRICS).read_text().splitlines()
    assert [ln.split(",")[0] for ln in rows[1:]] == ["1", "2"]  # one row per epoch


def test_an_evaluation_of_an_earlier_encoder_is_not_shown_as_the_runs(image_folder, tmp_path):
    """eval.json records the encoder it measured; after a resume trained on, `vm info` says the
    numbers are of an earlier encoder instead of showing them beside the new epoch count."""
    import json

    fast = ["--batch-size", "8", "--encoder", "small", "--viewmaker-width", "8"]
    fast += ["--device", "cpu", "-q"]
    r = vm("train", image_folder, *fast, "--epochs", "1", "--out", tmp_path / "runs")
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "train"
    assert vm("eval", run, "--linear").exit_code == 0
    r = vm("info", run, "--json")
    assert json.loads(r.output)["eval_is_current"] is True
    assert "eval: vm encoder" in vm("info", run).output
    assert vm("train", "--resume", run, "--epochs", "2", "-q").exit_code == 0
    r = vm("info", run)
    assert "of an earlier encoder" in " ".join(r.output.split())
    assert "eval: vm encoder" not in r.output and "eval: data" in r.output
    assert json.loads(vm("info", run, "--json").output)["eval_is_current"] is False
    assert vm("eval", run, "--linear").exit_code == 0
    assert "eval: vm encoder" in vm("info", run).output
    # what the numbers were measured on includes the recordings --group-by named
    assert vm("eval", run, "--linear", "--group-by", "(circle|square)").exit_code == 0
    assert json.loads((run / "eval.json").read_text())["group_by"] == "(circle|square)"
    shown = " ".join(vm("info", run).output.replace("│", " ").split())
    assert "recordings by --group-by '(circle|square)'" in shown
    assert vm("eval", run, "--linear", "--group-by", "([a-z]+)/0").exit_code == 0
    shown = " ".join(vm("info", run).output.replace("│", " ").split())  # [a-z] is no style
    assert "recordings by --group-by '([a-z]+)/0'" in shown
    # a damaged encoder: vm info still shows the run (the digest cannot be told)
    (run / runs.ENCODER).write_bytes((run / runs.ENCODER).read_bytes()[:100])
    r = vm("info", run, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["eval_is_current"] is None


# -- vm augment: output names ----------------------------------------------------------------------


def test_augment_output_names_never_clash():
    from vmcli.augment import plan_outputs
    from vmcli.data.audio import AudioModality
    from vmcli.data.image import ImageModality

    audio = AudioModality()
    rels = [Path(p) for p in ("a.wav", "a.flac", "a.wav.ogg", "b.wav", "x.wav", "x.npy/y.wav")]
    plan, kept = plan_outputs(audio, rels, "spectrogram", 1)
    assert {str(r): str(plan[(r, 0)]) for r in rels} == {
        "a.wav": "a.wav.npy",
        "a.flac": "a.flac.npy",
        "a.wav.ogg": "a.wav.ogg.npy",  # would have been a.wav.npy, the renamed a.wav's name
        "b.wav": "b.npy",
        "x.wav": "x.wav.npy",  # x.npy is a folder of views
        "x.npy/y.wav": "x.npy/y.npy",
    }
    assert [str(r) for r in kept] == ["a.flac", "a.wav", "a.wav.ogg", "x.wav"]
    plan, _ = plan_outputs(audio, rels[:2], "spectrogram", 2)
    assert sorted(map(str, plan.values())) == [
        "a_view0.flac.npy",
        "a_view0.wav.npy",
        "a_view1.flac.npy",
        "a_view1.wav.npy",
    ]
    # format-preserving views keep their names; name_view{k}.ext never meets another input's
    images = [Path("a.png"), Path("a_view0.png"), Path("a.jpg")]
    plan, kept = plan_outputs(ImageModality(), images, "pixels", 2)
    assert len(set(plan.values())) == 6 and kept == []
    # a clash renaming cannot solve is an error, not an overwrite
    with pytest.raises(ConfigError, match="distinct names"):
        plan_outputs(
            audio, [Path(p) for p in ("x.wav", "x.flac", "x.wav.npy/y.wav")], "spectrogram", 1
        )


def test_augment_removes_partial_folders_a_killed_run_left(image_folder, tmp_path, capsys):
    """kill -9 during vm augment leaves its hidden .OUT.partial-PID.HOST-* folder: the next run
    to the same OUT removes it when that process is gone, leaves a live one's alone and reports
    ones whose owner it cannot tell."""
    from vmcli.augment import _host_tag

    summary = train(fast_config(image_folder), out=tmp_path / "runs", progress=False)
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    dead = int(done.stdout)
    host = _host_tag()
    stale = tmp_path / f".views.partial-{dead}.{host}-0123456789ab"
    live = tmp_path / f".views.partial-{os.getpid()}.{host}-0123456789ab"
    old = tmp_path / ".views.partial-0123456789ab"
    other = tmp_path / f".other.partial-{dead}.{host}-0123456789ab"
    for folder in (stale, live, old, other):
        (folder / "test").mkdir(parents=True)
        (folder / "test" / "x.png").write_bytes(b"half")
    augment_folder(
        image_folder / "test",
        tmp_path / "views",
        Path(summary["run"]),
        device="cpu",
        progress=False,
    )
    err = capsys.readouterr().err
    assert not stale.exists() and "removed 1 partial folder" in err
    assert live.exists() and other.exists(), "a live run's folder and other OUTs' are left alone"
    assert old.exists() and str(old) in err and "may be left over" in err
    assert not [
        p
        for p in tmp_path.iterdir()
        if p.name.startswith(".views.partial-") and p not in (live, old)
    ]


def test_a_full_disk_is_one_error_and_leaves_no_partial_file(tmp_path, monkeypatch):
    """A write that fails for its device — ENOSPC as an OSError, or torch.save's RuntimeError
    while the device is full — is a StorageError naming the file, and the temporary file is
    gone; any other failure stays what it was."""
    import errno
    import shutil
    from collections import namedtuple

    from vmcli.errors import StorageError

    dst = tmp_path / "checkpoint.pt"

    def failing_write(exc):
        with runs.atomic_write(dst) as tmp:
            tmp.write_bytes(b"half")
            raise exc

    with pytest.raises(StorageError, match="checkpoint.pt: No space left on device"):
        failing_write(OSError(errno.ENOSPC, "No space left on device"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(StorageError, match="No space left on device"):
        failing_write(RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos"))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 0, 10**9))
    with pytest.raises(RuntimeError, match="a bug"):
        failing_write(RuntimeError("a bug"))
    assert list(tmp_path.iterdir()) == []  # no temporary file left, no half file


def test_a_full_disk_in_a_command_is_exit_6(image_folder, tmp_path, monkeypatch):
    import errno

    import vmcli.session

    def fit(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r" / "metrics.csv"))

    monkeypatch.setattr(vmcli.session, "fit", fit)
    r = vm("train", image_folder, "--epochs", "1", "--device", "cpu", "--out", tmp_path / "r")
    assert r.exit_code == 6 and "Traceback" not in r.output, r.output
    assert len(error_lines(r.output)) == 1 and "metrics.csv: No space left" in r.output


def test_augment_that_loses_a_race_for_its_out_folder_says_so(image_folder, tmp_path, monkeypatch):
    """Two vm augment to the same new OUT: the one that finishes second finds OUT filled.
    It says so in one line, leaves OUT as the other made it, and keeps no views of its own."""
    from vmcli.data.image import ImageModality

    summary = train(fast_config(image_folder), out=tmp_path / "runs", progress=False)
    out = tmp_path / "views"
    original = ImageModality.write_file

    def write_while_another_run_fills_out(self, raw, sample, dst):
        if not out.exists():  # the other run finishes first
            (out / "other").mkdir(parents=True)
            (out / "other" / "view.png").write_bytes(b"theirs")
        return original(self, raw, sample, dst)

    monkeypatch.setattr(ImageModality, "write_file", write_while_another_run_fills_out)
    with pytest.raises(ConfigError, match="filled by something else"):
        augment_folder(image_folder / "test", out, Path(summary["run"]), progress=False)
    assert sorted(p.name for p in out.rglob("*")) == ["other", "view.png"]
    assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name] == []


def test_augment_takes_a_file_name_that_is_not_utf8(image_folder, tmp_path):
    """A Latin-1 name (b"caf\\xe9.png") is a valid Linux file name: its view is written under
    the same bytes, and a UTF-8 name's view seed is what it always was."""
    import zlib

    from vmcli.augment import view_seed

    odd = os.fsdecode(b"caf\xe9.png")
    src = image_folder / "test" / "circle"
    (src / odd).write_bytes((src / "000.png").read_bytes())
    summary = train(fast_config(image_folder), out=tmp_path / "runs", progress=False)
    result = augment_folder(
        image_folder / "test", tmp_path / "views", Path(summary["run"]), progress=False
    )
    assert result["views_written"] == 9
    assert os.fsencode(tmp_path / "views" / "circle" / odd) in {
        os.fsencode(p) for p in (tmp_path / "views" / "circle").iterdir()
    }
    assert view_seed(3, Path("a/é.png"), 1) == (
        3 * 1_000_003 + zlib.crc32("a/é.png".encode()) * 65_537 + 1
    ) % (2**63)
