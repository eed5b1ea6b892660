"""The CLI end to end on small real files: exit codes, run folders, views, tables, JSON."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vmcli.cli import app

runner = CliRunner()
FAST = [
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--encoder",
    "small",
    "--viewmaker-width",
    "8",
    "--device",
    "cpu",
    "-q",
]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for cmd in ("train", "augment", "eval", "info"):
        assert cmd in result.output


def test_train_augment_eval_info_end_to_end(image_folder, tmp_path):
    """The viewmaker (the paper's method) through every command; the default views of each
    modality are covered by test_views_auto_is_learned_transforms_unless_a_budget_is_given."""
    runs = tmp_path / "runs"
    before = {p: p.read_bytes() for p in image_folder.rglob("*") if p.is_file()}

    r = invoke("train", image_folder, *FAST, "--views", "viewmaker", "--out", runs, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    run = Path(summary["run"])
    assert run == runs / "train"
    assert {
        "config.json",
        "viewmaker.safetensors",
        "encoder.safetensors",
        "preview.png",
        "metrics.csv",
        "summary.json",
        "checkpoint.pt",
    } <= set(os_names(run))
    assert Image.open(run / "preview.png").size[0] > 100

    r = invoke("train", image_folder, *FAST, "--views", "viewmaker", "--out", runs)
    assert r.exit_code == 0 and (runs / "train-2").is_dir(), (
        "a second run never overwrites the first"
    )

    out = tmp_path / "views"
    r = invoke(
        "augment",
        image_folder / "test",
        "--out",
        out,
        "--run",
        run,
        "--views-per-input",
        "2",
        "--json",
    )
    assert r.exit_code == 0, r.output
    src = sorted(
        p.relative_to(image_folder / "test") for p in (image_folder / "test").rglob("*.png")
    )
    got = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert got == sorted(p.with_name(f"{p.stem}_view{k}{p.suffix}") for p in src for k in (0, 1))
    first = Image.open(out / got[0])
    assert first.mode == "L" and first.size == (16, 16)
    assert {p: p.read_bytes() for p in image_folder.rglob("*") if p.is_file()} == before, (
        "input untouched"
    )

    # same seed → same views; another seed → other views
    out2, out3 = tmp_path / "v2", tmp_path / "v3"
    r = invoke(
        "augment",
        image_folder / "test",
        "--out",
        out2,
        "--run",
        run,
        "--views-per-input",
        "2",
        "-q",
    )
    assert r.exit_code == 0 and "step " not in r.output and "done:" in r.output  # -q: no progress
    invoke(
        "augment",
        image_folder / "test",
        "--out",
        out3,
        "--run",
        run,
        "--views-per-input",
        "2",
        "--seed",
        "7",
    )
    assert (out / got[0]).read_bytes() == (out2 / got[0]).read_bytes()
    assert (out / got[0]).read_bytes() != (out3 / got[0]).read_bytes()

    r = invoke("eval", run, "--linear", "--knn", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    names = [row["features"] for row in result["rows"]]
    assert names == ["vm encoder (viewmaker)", "random encoder", "raw inputs"]
    assert all(0 <= row["linear"] <= 1 and 0 <= row["knn"] <= 1 for row in result["rows"])
    assert result["train_samples"] == 16 and result["test_samples"] == 8
    for row in result["rows"]:  # each score inside its own 95 % interval over 8 test samples
        for probe in ("linear", "knn"):
            lo, hi = row[f"{probe}_ci95"]
            assert 0 <= lo <= row[probe] <= hi <= 1 and hi - lo > 0.3
    # the encoder minus each baseline, per probe, paired on the same 8 samples
    pairs = [(c["baseline"], c["probe"]) for c in result["comparisons"]]
    assert pairs == [(b, p) for b in names[1:] for p in ("linear", "knn")]
    scores = {row["features"]: row for row in result["rows"]}
    for c in result["comparisons"]:
        ours, theirs = scores[names[0]][c["probe"]], scores[c["baseline"]][c["probe"]]
        assert c["difference"] == pytest.approx(ours - theirs)
        assert c["ci95"][0] <= c["difference"] <= c["ci95"][1]
    assert "minus each baseline" in r.stderr and "Intervals: 95 %" in " ".join(r.stderr.split())
    assert (run / "eval.json").is_file()

    one_class = tmp_path / "one" / "circle"  # labelled, but a probe needs two classes
    one_class.mkdir(parents=True)
    for src in sorted((image_folder / "train" / "circle").glob("*.png"))[:4]:
        (one_class / src.name).write_bytes(src.read_bytes())
    r = invoke("eval", run, "--data", tmp_path / "one")
    assert r.exit_code == 3 and "one class (circle)" in r.output, r.output
    # a class with test files but no training files: scored, with a warning that says so
    from conftest import make_image_folder

    unseen = make_image_folder(tmp_path / "unseen", classes=("circle", "square", "blob"))
    for path in (unseen / "train" / "blob").glob("*.png"):
        path.unlink()
    r = invoke("eval", run, "--data", unseen)
    assert r.exit_code == 0, r.output
    assert "1 class(es) have test samples but none to train the probe on (blob)" in " ".join(
        r.output.split()
    )

    # the same data in both splits (a link, a copy) is said: it inflates every score alike
    leaky = make_image_folder(tmp_path / "leaky")
    tests = sorted((leaky / "test" / "square").glob("*.png"))
    (leaky / "train" / "square" / "link.png").symlink_to(tests[0])
    (leaky / "train" / "square" / "copy.png").write_bytes(tests[1].read_bytes())
    r = invoke("eval", run, "--data", leaky, "--json")
    assert r.exit_code == 0, r.output
    assert "2 of the 8 test samples are identical to training samples" in " ".join(r.output.split())
    assert json.loads((run / "eval.json").read_text())["test_samples_also_in_train"] == 2
    r = invoke("eval", run, "--data", image_folder)
    assert "identical to training" not in r.output
    assert json.loads((run / "eval.json").read_text())["test_samples_also_in_train"] == 0

    r = invoke("info", run)
    assert r.exit_code == 0 and "budget" in r.output and "eval: random encoder" in r.output
    assert "eval: minus random encoder, linear" in r.output
    r = invoke("eval", run, "--no-linear")
    assert r.exit_code == 2 and "nothing to measure: --no-linear needs --knn" in r.output


def os_names(path: Path):
    return [p.name for p in path.iterdir()]


def test_augment_refuses_unsafe_outputs(image_folder, tmp_path):
    runs = tmp_path / "runs"
    assert invoke("train", image_folder, *FAST, "--out", runs).exit_code == 0
    r = invoke("augment", image_folder, "--out", image_folder / "views", "--runs", runs)
    assert r.exit_code == 2 and "inside the input folder" in r.output
    assert not (image_folder / "views").exists()
    r = invoke("augment", image_folder, "--out", image_folder, "--runs", runs)
    assert r.exit_code == 2
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    r = invoke("augment", image_folder, "--out", busy, "--runs", runs)
    assert r.exit_code == 2 and "not empty" in r.output
    assert (busy / "keep.txt").read_text() == "mine"
    # a file where a folder belongs is called a file, not missing or "not empty"
    r = invoke("augment", image_folder, "--out", busy / "keep.txt", "--runs", runs)
    assert r.exit_code == 2 and "keep.txt is a file" in r.output
    r = invoke("augment", busy / "keep.txt", "--out", tmp_path / "v", "--runs", runs)
    assert r.exit_code == 3 and "keep.txt: is a file" in r.output
    r = invoke("augment", image_folder, "--out", tmp_path / "v", "--run", busy / "keep.txt")
    assert r.exit_code == 4 and "is a file, not a run folder" in r.output
    assert (busy / "keep.txt").read_text() == "mine"
    # newest run is the default, and the command says which one it used
    r = invoke("augment", image_folder / "test", "--out", tmp_path / "ok", "--runs", runs)
    assert r.exit_code == 0 and "newest run" in r.output


def test_bad_input_gives_clear_errors_not_tracebacks(tmp_path):
    r = invoke("train", tmp_path / "missing", *FAST)
    assert r.exit_code == 3 and "no such folder" in r.output and "Traceback" not in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    r = invoke("train", empty, *FAST)
    assert r.exit_code == 3 and "found no image" in r.output
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        (broken / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    r = invoke("train", broken, *FAST)
    assert r.exit_code == 3 and "could be read" in r.output
    r = invoke("train", "--epochs", "1")
    assert r.exit_code == 2 and "DATA" in r.output
    r = invoke("train", broken, "--views", "magic")
    assert r.exit_code == 2 and "--views" in r.output
    r = invoke("eval", tmp_path / "nope")
    assert r.exit_code == 4 and "no such run" in r.output


def test_skips_unreadable_files_with_a_count(image_folder, tmp_path):
    (image_folder / "train" / "circle" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    r = invoke("train", image_folder, *FAST, "--out", tmp_path / "runs")
    assert r.exit_code == 0
    assert "bad.png" in r.output and "skipped 1" in r.output


def test_eval_without_labels_says_so(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(flat / f"{i}.png")
    runs = tmp_path / "runs"
    assert invoke("train", flat, *FAST, "--out", runs).exit_code == 0
    r = invoke("eval", "--runs", runs)
    assert r.exit_code == 3 and "no labels" in r.output


def _copy_breaking(src_root: Path, dst_root: Path, part: str) -> Path:
    """A copy of an image folder whose PNGs under a folder named `part` cannot be decoded."""
    for src in src_root.rglob("*.png"):
        dst = dst_root / src.relative_to(src_root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(b"\x89PNG\r\n\x1a\n broken" if part in src.parts else src.read_bytes())
    return dst_root


def test_eval_refuses_data_too_thin_for_a_probe_after_skipping(image_folder, tmp_path):
    """Scores of 1.0 for one class left (the others' files all unreadable), or NaN-standardised
    features for one training sample, looked like results: now one error line, exit 3."""
    runs = tmp_path / "runs"
    assert invoke("train", image_folder, *FAST, "--out", runs).exit_code == 0
    corrupt = _copy_breaking(image_folder, tmp_path / "corrupt", "square")
    r = invoke("eval", "--runs", runs, "--data", corrupt)
    assert r.exit_code == 3, r.output
    assert "usable labelled files are all in one class (circle)" in " ".join(r.output.split())
    single = tmp_path / "single"
    (single / "train" / "circle").mkdir(parents=True)
    first = sorted((image_folder / "train" / "circle").glob("*.png"))[0]
    (single / "train" / "circle" / "a.png").write_bytes(first.read_bytes())
    for src in (image_folder / "test").rglob("*.png"):
        dst = single / src.relative_to(image_folder)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    r = invoke("eval", "--runs", runs, "--data", single)
    assert r.exit_code == 3, r.output
    assert "1 to train the probe on" in " ".join(r.output.split())
    assert "Traceback" not in r.output and "UserWarning" not in r.output
    # a test/ split whose files were all skipped is not silently replaced by a split of train/
    lost = _copy_breaking(image_folder, tmp_path / "lost", "test")
    r = invoke("eval", "--runs", runs, "--data", lost)
    assert r.exit_code == 3, r.output
    n_test = len(list((image_folder / "test").rglob("*.png")))
    assert f"own test/ split has no usable labelled file (all {n_test} were skipped" in " ".join(
        r.output.split()
    )
    assert "stratified" not in r.output


def test_handcrafted_run_has_no_viewmaker_to_apply(image_folder, tmp_path):
    runs = tmp_path / "runs"
    assert (
        invoke("train", image_folder, *FAST, "--views", "handcrafted", "--out", runs).exit_code == 0
    )
    assert not (runs / "train" / "viewmaker.safetensors").exists()
    r = invoke("augment", image_folder, "--out", tmp_path / "v", "--runs", runs)
    assert r.exit_code == 4 and "no learned views" in r.output
    # ε is the viewmaker's: `vm info` does not list a budget the run never used
    r = invoke("info", runs / "train")
    assert r.exit_code == 0 and "handcrafted" in r.output and "budget" not in r.output


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _sorted_files(root: Path):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_audio_folder_end_to_end_both_view_spaces(tmp_path):
    import soundfile as sf

    data = EXAMPLES / "instruments"
    runs = tmp_path / "runs"
    for space in ("spectrogram", "waveform"):
        r = invoke(
            "train",
            data,
            *FAST[:2],
            "--batch-size",
            "16",
            *FAST[4:],
            "--view-space",
            space,
            "--views",
            "viewmaker",  # the default on audio is learned transforms; this is the viewmaker's
            "--out",
            runs,
            "--json",
        )
        assert r.exit_code == 0, r.output
        summary = json.loads(r.stdout)
        assert summary["modality"] == "audio" and summary["view_space"] == space
        # each space's default budget, exactly (spectrogram 0.2, waveform 0.05)
        assert summary["delta_l1"] == pytest.approx(
            {"spectrogram": 0.2, "waveform": 0.05}[space], rel=1e-3
        )
        run = Path(summary["run"])
        wavs = sorted(p.name for p in (run / "preview_audio").iterdir())
        assert "sample0_original.wav" in wavs and len(wavs) == 9

        out = tmp_path / f"views-{space}"
        extra = ["--to-wav"] if space == "spectrogram" else []
        r = invoke("augment", data / "test", "--out", out, "--run", run, *extra)
        assert r.exit_code == 0, r.output
        inputs = _sorted_files(data / "test")
        if space == "waveform":  # real audio, same files, same format and length
            assert _sorted_files(out) == inputs
            src, dst = data / "test" / inputs[0], out / inputs[0]
            a, b = sf.info(str(src)), sf.info(str(dst))
            assert (a.format, a.samplerate, a.channels, a.frames) == (
                b.format,
                b.samplerate,
                b.channels,
                b.frames,
            )
        else:  # log-mel arrays, plus approximate WAVs on request
            expected = sorted(
                [p.with_suffix(".npy") for p in inputs] + [p.with_suffix(".wav") for p in inputs]
            )
            assert _sorted_files(out) == expected
            assert np.load(out / inputs[0].with_suffix(".npy")).shape[0] == 64

        r = invoke("eval", run, "--json")
        assert r.exit_code == 0, r.output
        rows = json.loads(r.stdout)["rows"]
        assert [row["features"] for row in rows] == [
            "vm encoder (viewmaker)",
            "random encoder",
            "raw inputs",
        ]


def test_sensor_folder_end_to_end_both_view_spaces(tmp_path):
    import pandas as pd

    data = EXAMPLES / "watch"
    runs = tmp_path / "runs"
    for space in ("signal", "spectrogram"):
        r = invoke(
            "train",
            data,
            *FAST[:2],
            "--batch-size",
            "16",
            *FAST[4:],
            "--view-space",
            space,
            "--views",
            "viewmaker",
            "--out",
            runs,
            "--json",
        )
        assert r.exit_code == 0, r.output
        summary = json.loads(r.stdout)
        assert (summary["modality"], summary["view_space"]) == ("sensor", space)
        run = Path(summary["run"])
        out = tmp_path / f"views-{space}"
        r = invoke("augment", data / "test", "--out", out, "--run", run)
        assert r.exit_code == 0, r.output
        inputs = _sorted_files(data / "test")
        if space == "signal":
            assert _sorted_files(out) == inputs
            a, b = pd.read_csv(data / "test" / inputs[0]), pd.read_csv(out / inputs[0])
            assert list(a.columns) == list(b.columns) and a.shape == b.shape
            assert 0 < (a - b).abs().to_numpy().mean() < a.abs().to_numpy().mean()
        else:
            assert _sorted_files(out) == sorted(p.with_suffix(".npy") for p in inputs)
        r = invoke("eval", run, "--json", "--knn")
        assert r.exit_code == 0, r.output
        names = [row["features"] for row in json.loads(r.stdout)["rows"]]
        assert names == [
            "vm encoder (viewmaker)",
            "random encoder",
            "raw windows",
            "channel mean/std/min/max",
        ]


def test_views_auto_is_learned_transforms_unless_a_budget_is_given(tmp_path):
    """The default `--views auto`: the family that won on validation for sensor, audio and
    image data (learned transforms), the viewmaker when --budget (its knob) is given."""
    cases = [
        (EXAMPLES / "watch", [], "learned-transforms"),
        (EXAMPLES / "watch", ["--budget", "0.1"], "viewmaker"),
        (EXAMPLES / "instruments", [], "learned-transforms"),
        (EXAMPLES / "instruments", ["--budget", "0.2"], "viewmaker"),
        (EXAMPLES / "fashion-mnist", [], "learned-transforms"),
    ]
    for i, (data, extra, expected) in enumerate(cases):
        runs = tmp_path / f"runs{i}"
        r = invoke("train", data, *FAST[:2], "--batch-size", "16", *FAST[4:], *extra,
                   "--out", runs, "--json")  # fmt: skip
        assert r.exit_code == 0, r.output
        summary = json.loads(r.stdout)
        assert summary["views"] == expected
        config = json.loads((Path(summary["run"]) / "config.json").read_text())
        assert config["train"]["views"] == expected  # resolved, so resume and eval agree
        if expected == "learned-transforms":
            assert summary["transforms"]  # the learned strengths, reported


def test_sensor_long_recordings_with_window_and_stride(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("walk", "run"):
            for i in range(n):
                folder = tmp_path / "rec" / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                t = np.arange(300)
                sig = np.sin(t / (3 if cls == "run" else 12))[:, None] + 0.1 * rng.normal(
                    size=(300, 2)
                )
                rows = "\n".join(f"{k * 10},{a:.5f},{b:.5f}" for k, (a, b) in enumerate(sig))
                (folder / f"r{i}.csv").write_text("time_ms,x,y\n" + rows + "\n")
    runs = tmp_path / "runs"
    r = invoke(
        "train",
        tmp_path / "rec",
        *FAST,
        "--window",
        "64",
        "--stride",
        "32",
        "--views",
        "viewmaker",
        "--out",
        runs,
        "--json",
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["train_samples"] == 6 * 8  # 6 recordings × 8 windows
    r = invoke("eval", "--runs", runs, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["test_samples"] == 2 * 8
    # `vm augment` writes each whole recording back (the viewmaker is convolutional: any length)
    r = invoke("augment", tmp_path / "rec" / "test", "--out", tmp_path / "views", "--runs", runs)
    assert r.exit_code == 0, r.output
    src = (tmp_path / "rec" / "test" / "walk" / "r0.csv").read_text().splitlines()
    out = (tmp_path / "views" / "walk" / "r0.csv").read_text().splitlines()
    assert len(out) == len(src) == 301 and out[0] == "time_ms,x,y"
    assert [ln.split(",")[0] for ln in out] == [ln.split(",")[0] for ln in src]  # time kept
    assert out[1:] != src[1:]


def test_help_shows_no_type_for_the_version_flag():
    line = next(ln for ln in invoke("--help").output.splitlines() if "--version" in ln)
    assert "<bool>" not in line and "Show the version" in line
    assert invoke("--version").output.startswith("vm ")


def test_train_options_default_to_train_config_and_show_their_defaults():
    """One default per knob: every `vm train` option named after a TrainConfig/LoadOptions field
    either defaults to that field's value or to None ("decide from the data / the run")."""
    import dataclasses

    import typer.main

    from vmcli.config import LoadOptions, TrainConfig

    command = typer.main.get_command(app).commands["train"]
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    defaults |= {f.name: f.default for f in dataclasses.fields(LoadOptions)}
    checked = 0
    for param in command.params:
        if param.name in defaults and param.default is not None:
            assert param.default == defaults[param.name], param.name
            checked += 1
    assert checked >= 12
    text = invoke("train", "--help").output
    for shown in ("[default: 0.1 for image", "[default: 100]", "[default: median length]"):
        assert shown in text.replace("\n", " ") or shown in text, shown
    for panel in ("Views", "Training", "Images", "Audio", "Sensors", "Arrays", "Run folder"):
        assert f" {panel} " in text, panel


def test_a_data_option_for_another_modality_is_reported_not_silently_ignored(
    image_folder, tmp_path
):
    r = invoke(
        "train",
        image_folder,
        *FAST,
        "--window",
        "64",
        "--sample-rate",
        "8000",
        "--out",
        tmp_path / "runs",
    )
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "--window applies to sensor data; this is image data, so it is ignored" in text
    assert "--sample-rate applies to audio data" in text
    assert "applies to image data" not in text  # its own options are not flagged


def test_an_option_of_a_view_family_the_run_does_not_use_is_reported(image_folder, tmp_path):
    """config.json records options as given; one that did not shape the views says so."""
    i = FAST.index("--viewmaker-width")  # a viewmaker option: left out here
    common = [image_folder, *FAST[:i], *FAST[i + 2 :], "--out", tmp_path / "runs"]
    r = invoke("train", *common, "--views", "viewmaker", "--transforms-max", "crop=0.3")
    assert r.exit_code == 0, r.output
    assert "--transforms-max does not apply to --views viewmaker: ignored" in " ".join(
        r.output.split()
    )
    r = invoke("train", *common, "--views", "fixed-transforms", "--budget", "0.1")
    assert "--budget does not apply to --views fixed-transforms: ignored" in " ".join(
        r.output.split()
    )
    r = invoke("train", *common, "--views", "random", "--budget", "0.1")  # it applies there
    assert r.exit_code == 0 and "does not apply" not in r.output, r.output
    # nothing learned, nothing to alternate: said, and recorded as the one pass it is
    r = invoke("train", *common, "--views", "handcrafted", "--alternating")
    assert r.exit_code == 0 and "--alternating does not apply" in r.output, r.output
    assert "schedule one pass" in " ".join(r.output.split())
    runs_made = sorted((tmp_path / "runs").iterdir())
    config = json.loads((runs_made[-1] / "config.json").read_text())
    assert config["train"]["alternating"] is False


def test_train_out_inside_the_data_folder_is_refused(image_folder, tmp_path, monkeypatch):
    """Run files inside DATA would be read as data by the next run (a mixed-modality error)
    and break the run's own resume check."""
    before = sorted(p.relative_to(image_folder) for p in image_folder.rglob("*"))
    for out in (image_folder / "runs", image_folder):
        r = invoke("train", image_folder, *FAST, "--out", out)
        assert r.exit_code == 2, r.output
        assert "is inside the data folder" in " ".join(r.output.split())
    monkeypatch.chdir(image_folder)  # `vm train .` with the default --out runs
    r = invoke("train", ".", *FAST)
    assert r.exit_code == 2 and "--out runs is inside the data folder ." in r.output, r.output
    assert sorted(p.relative_to(image_folder) for p in image_folder.rglob("*")) == before


def test_a_seed_out_of_range_is_refused_by_every_command(image_folder, tmp_path):
    """torch takes 64-bit seeds: 2**64 + 5 gave seed 5's views, and -3 passed unnoticed."""
    r = invoke("train", image_folder, *FAST, "--out", tmp_path / "runs")
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "train"
    for seed in ("-3", str(2**64 + 5)):
        for args in (
            ("train", image_folder, *FAST, "--out", tmp_path / "more"),
            ("augment", image_folder, "--out", tmp_path / "views", "--run", run),
            ("eval", run, "--linear"),
        ):
            r = invoke(*args, "--seed", seed)
            assert r.exit_code == 2, (args[0], r.output)
            assert f"--seed must be a whole number from 0 to {2**63 - 1}; got {seed}" in r.output
    assert not (tmp_path / "views").exists() and not (tmp_path / "more").exists()
    assert not (run / "eval.json").exists()


def test_an_unknown_modality_is_a_usage_error(image_folder, tmp_path):
    r = invoke("train", image_folder, "--modality", "video", "--out", tmp_path / "runs")
    assert r.exit_code == 2 and "unknown modality 'video'" in r.output, r.output
    assert not (tmp_path / "runs").exists()


def test_choices_are_checked_by_the_command_line_before_anything_runs(tmp_path):
    for option, bad in (("--views", "viewmakr"), ("--precision", "fp16"), ("--data-mode", "ram")):
        r = invoke("train", tmp_path, option, bad)
        assert r.exit_code == 2, (option, r.output)  # a usage error, nothing loaded or written
        assert f"'{bad}' is not one of" in " ".join(r.output.split())
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("failure", "where"),
    [
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB"), "memory"),
        (MemoryError(), "memory"),
        ("cuda", "the GPU"),
    ],
)
def test_running_out_of_memory_is_one_line_and_exit_5(
    image_folder, tmp_path, monkeypatch, failure, where
):
    """An allocation failure inside training (a too-big --image-size, a long --clip-seconds)
    is one error line saying what to shrink, not torch's traceback."""
    import torch

    import vmcli.session

    if failure == "cuda":
        failure = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    def fit(*args, **kwargs):
        raise failure

    monkeypatch.setattr(vmcli.session, "fit", fit)
    r = invoke("train", image_folder, "--epochs", "1", "--device", "cpu", "--out", tmp_path / "r")
    assert r.exit_code == 5, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.output
    assert f"ran out of {where}" in r.output and "--batch-size" in r.output


@pytest.mark.parametrize("failure", ["memory", "cuda"])
def test_augment_and_eval_running_out_of_memory_give_their_own_advice(
    image_folder, tmp_path, monkeypatch, failure
):
    """vm augment makes views one file at a time at its full size: out of memory, it names
    the file and says what helps (--device cpu for the GPU, a smaller file), not training's
    --batch-size / --image-size, which it has not; vm eval likewise."""
    import torch
    from conftest import fast_config

    import vmcli.evaluation
    from vmcli.data.image import ImageModality
    from vmcli.session import train

    run = train(fast_config(image_folder), out=tmp_path / "runs", progress=False)["run"]
    big = sorted(p for p in image_folder.rglob("*.png"))[1]
    read = ImageModality.read_file

    def read_file(self, path, *args):
        if path == big:
            raise (
                torch.OutOfMemoryError("CUDA out of memory") if failure == "cuda" else MemoryError()
            )
        return read(self, path, *args)

    monkeypatch.setattr(ImageModality, "read_file", read_file)
    r = invoke("augment", image_folder, "--out", tmp_path / "views", "--run", run, "-q")
    assert r.exit_code == 5, r.output
    text = " ".join(r.output.split())
    assert text.count("error:") == 1 and "Traceback" not in text
    assert f"{big} is too large" in text and "--views-per-input does not help" in text
    assert "--batch-size" not in text and "--image-size" not in text
    assert ("--device cpu" in text) == (failure == "cuda")
    assert not (tmp_path / "views").exists()

    def evaluate(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(vmcli.evaluation, "evaluate", evaluate)
    r = invoke("eval", run)
    text = " ".join(r.output.split())
    assert r.exit_code == 5 and "ran out of memory" in text and "--data" in text
    assert "--batch-size" not in text and "--image-size" not in text


def test_other_runtime_errors_are_not_taken_for_memory(image_folder, tmp_path, monkeypatch):
    import vmcli.session

    def fit(*args, **kwargs):
        raise RuntimeError("a bug, not a memory problem")

    monkeypatch.setattr(vmcli.session, "fit", fit)
    r = invoke("train", image_folder, "--epochs", "1", "--device", "cpu", "--out", tmp_path / "r")
    assert r.exit_code == 1 and isinstance(r.exception, RuntimeError)
    assert "a bug" in str(r.exception)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--budget", "inf", "--budget must be a finite number > 0"),
        ("--viewmaker-lr", "inf", "--viewmaker-lr must be a finite number ≥ 0"),
        ("--encoder-lr", "inf", "--encoder-lr must be a finite number ≥ 0"),
        ("--transforms-lr", "inf", "--transforms-lr must be a finite number ≥ 0"),
        ("--temperature", "inf", "--temperature must be a finite number > 0"),
        ("--temperature", "nan", "--temperature must be a finite number > 0"),
        ("--clip-seconds", "nan", "--clip-seconds must be a number from 0.1 to 600"),
        ("--clip-seconds", "inf", "--clip-seconds must be a number from 0.1 to 600"),
        ("--seed", str(2**63), "--seed must be a whole number from 0 to 9223372036854775807"),
        ("--seed", "99999999999999999999999", "--seed must be a whole number"),
        ("--seed", "-1", "--seed must be a whole number"),
        ("--devices", "0", "--devices must be at least 1"),
        ("--devices", "-1", "--devices must be at least 1"),
        ("--window", "0", "--window must be a whole number from 8"),
        ("--stride", "0", "--stride must be a whole number from 1"),
        ("--sample-rate", "10", "--sample-rate must be a whole number from 1000 to 768000"),
        ("--image-size", "4", "--image-size must be a whole number from 8 to 8192"),
        ("--columns", "ax,ay,ax", "--columns names 'ax' more than once"),
    ],
)
def test_absurd_numbers_are_refused_up_front_by_option(
    image_folder, tmp_path, option, value, message
):
    """Non-finite or out-of-range numbers: one exit-2 line naming the option, before any data
    is read or any run folder made (inf learning rates once trained NaN weights to exit 0;
    --clip-seconds nan and a 24-digit --seed were raw tracebacks)."""
    r = invoke("train", image_folder, *FAST, "--out", tmp_path / "runs", option, value)
    text = " ".join(r.output.split())
    assert r.exit_code == 2, (option, value, r.output)
    assert message in text and "Traceback" not in text, text
    assert not (tmp_path / "runs").exists()


def test_the_library_checks_the_same_numbers():
    from vmcli.config import LoadOptions, TrainConfig
    from vmcli.errors import ConfigError

    for bad in (
        {"temperature": float("nan")},
        {"budget": float("inf")},
        {"encoder_momentum": 1.0},
        {"encoder_weight_decay": float("nan")},
        {"seed": 1.5},
        {"load": LoadOptions(clip_seconds=float("nan"))},
        {"load": LoadOptions(window=0)},
        {"epochs": 1.5},  # trained 2 epochs, recorded 1.5, then refused its own run
        {"batch_size": 8.0},
        {"viewmaker_width": 300},
        {"preview_samples": 0},  # a traceback after training, the run left unfinished
        {"preview_views": 0},
        {"log_every": 0},
    ):
        with pytest.raises(ConfigError):
            TrainConfig(data="x", **bad).validate()
    TrainConfig(data="x", seed=2**63 - 1, load=LoadOptions(clip_seconds=600)).validate()
    with pytest.raises(
        ConfigError, match=r"--epochs must be a whole number from 1 or more; got 1.5"
    ):
        TrainConfig(data="x", epochs=1.5).validate()


def test_the_library_takes_numpy_numbers():
    """A budget or size taken from an array is a numpy scalar: checked as the number it is
    (np.float32(0.1) was called "not a finite number > 0") and recorded as plain JSON."""
    import json

    import numpy as np

    from vmcli.config import LoadOptions, TrainConfig

    cfg = TrainConfig(
        data="x",
        budget=np.float32(0.1),
        epochs=np.int64(3),
        batch_size=np.int32(16),
        seed=np.uint8(7),
        load=LoadOptions(window=np.int64(64), clip_seconds=np.float64(1.5)),
    )
    cfg.validate()
    assert (cfg.epochs, cfg.batch_size, cfg.seed, cfg.load.window) == (3, 16, 7, 64)
    assert type(cfg.budget) is float and cfg.budget == pytest.approx(0.1)
    json.dumps(cfg.to_dict())  # numpy scalars would not serialise


def test_the_largest_seed_trains(image_folder, tmp_path):
    """2**63 − 1 is a valid seed through the whole run (the adversary probe derived a seed
    from it that overflowed 64 bits)."""
    from conftest import fast_config

    from vmcli.session import train

    cfg = fast_config(image_folder, seed=2**63 - 1, views="learned-transforms")
    summary = train(cfg, out=tmp_path / "runs", progress=False)
    assert summary["adversary"] is not None and summary["final_loss"] > 0


def test_an_unusable_out_or_device_is_one_error_naming_it(image_folder, tmp_path):
    """--out onto a file, through a file or where no folder can be made, and a device PyTorch
    knows but vm does not run on: exit 2 naming the option and the path, not a traceback."""
    afile = tmp_path / "afile"
    afile.write_text("mine")
    through = f"--out {afile / 'sub'} goes through the file {afile}"
    proc = Path("/proc/self").is_dir()  # where no one, not even root, can make a folder
    cases = [
        (["--out", afile], f"--out {afile} is a file"),
        (["--out", afile / "sub"], through),
        (["--out", tmp_path / "runs", "--device", "mps"], "--device 'mps': vm runs on the CPU"),
    ] + [(["--out", "/proc/vm-test-out"], "--out /proc/vm-test-out: cannot make")] * proc
    for options, message in cases:
        r = invoke("train", image_folder, *FAST, *options)  # the last --device wins
        text = " ".join(r.output.split())
        assert r.exit_code == 2 and message in text and "Traceback" not in text, (options, text)
    assert afile.read_text() == "mine" and not (tmp_path / "runs").exists()

    runs = tmp_path / "runs-ok"
    assert invoke("train", image_folder, *FAST, "--out", runs).exit_code == 0
    cases = [(afile / "sub", through)]
    cases += [(Path("/proc/vm-test-views"), "--out /proc/vm-test-views: cannot make")] * proc
    for out, message in cases:
        r = invoke("augment", image_folder / "test", "--out", out, "--runs", runs)
        text = " ".join(r.output.split())
        assert r.exit_code == 2 and message in text and "Traceback" not in text, (out, text)
    assert afile.read_text() == "mine"


def test_a_failing_json_command_prints_its_error_as_json(image_folder, tmp_path):
    """`--json` printed nothing on stdout when the command failed: a script had the exit code
    alone. Now the error is the one document (`error`, `exit_code`)."""
    r = invoke("info", tmp_path / "nosuch", "--json")
    assert r.exit_code == 4 and json.loads(r.stdout) == {
        "error": f"{tmp_path / 'nosuch'}: no such run folder",
        "exit_code": 4,
    }
    r = invoke("train", tmp_path / "nodata", "--json", "--out", tmp_path / "runs")
    assert r.exit_code == 3 and json.loads(r.stdout)["exit_code"] == 3


def test_train_json_lists_skipped_files_and_augment_says_to_wav_is_ignored(image_folder, tmp_path):
    data = tmp_path / "data"
    for src in image_folder.rglob("*.png"):
        dst = data / src.relative_to(image_folder)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    (data / "train" / "circle" / "bad.png").write_bytes(b"not an image")
    r = invoke("train", data, *FAST, "--out", tmp_path / "runs", "--json")
    assert r.exit_code == 0, r.output
    [(path, reason)] = json.loads(r.stdout)["skipped"]
    assert path.endswith("bad.png") and "cannot be read as an image" in reason
    r = invoke(
        "augment", image_folder / "test", "--out", tmp_path / "v", "--runs", tmp_path / "runs"
    )
    assert r.exit_code == 0 and "--to-wav" not in r.output
    r = invoke(
        "augment",
        image_folder / "test",
        "--out",
        tmp_path / "v2",
        "--runs",
        tmp_path / "runs",
        "--to-wav",
    )
    assert r.exit_code == 0 and "--to-wav is ignored" in " ".join(r.output.split())
    assert "file " in r.output and "step " not in r.output  # augment's progress: files


def test_a_reader_that_closes_stdout_early_is_no_failure(image_folder, tmp_path):
    """`vm info --json | true` ended with exit 1 and no message (a BrokenPipeError), after
    the command's work was done."""
    import os
    import subprocess
    import sys

    r = invoke("train", image_folder, *FAST, "--out", tmp_path / "runs")
    assert r.exit_code == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cmd = [sys.executable, "-m", "vmcli", "info", str(tmp_path / "runs" / "train"), "--json"]
    read, write = os.pipe()
    os.close(read)  # nobody will read: the first write gets EPIPE
    done = subprocess.run(cmd, stdout=write, stderr=subprocess.PIPE, text=True, env=env)
    os.close(write)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
