from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vmcli.data import MODALITIES, LoadOptions, scan
from vmcli.data.sensor import SensorModality, SensorSpectrogramSpace, SignalSpace
from vmcli.errors import ConfigError, DataError
from vmcli.views import sensor_views

M = SensorModality()
COLS = ["ax", "ay", "az"]


def write(path: Path, rows: int, cols=COLS, seed=0, time=False, sep=","):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        rng.normal(size=(rows, len(cols))).round(5) + 9.8 * (np.arange(len(cols)) == 2),
        columns=cols,
    )
    if time:
        df.insert(0, "timestamp", np.arange(rows) * 20)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, sep=sep)
    return df


def load(root: Path, **opts):
    index = scan(root, MODALITIES)
    assert index.modality == "sensor"
    return M.load(root, index.items, LoadOptions(**opts))


def test_single_windows_cropped_or_padded_to_the_median(tmp_path):
    for i, n in enumerate((60, 64, 70)):
        write(tmp_path / "walk" / f"{i}.csv", n, seed=i, time=(i == 0), sep=";" if i == 1 else ",")
    data = load(tmp_path)
    assert data.x.shape == (3, 3, 64)
    assert data.meta == {"columns": COLS, "window": 64, "stride": None}
    short = data.x[[it.path.name for it in data.items].index("0.csv")]
    assert torch.equal(short[:, 0], short[:, 1]) and torch.equal(
        short[:, -1], short[:, -2]
    )  # edge padding


def test_mismatched_columns_skipped_or_error(tmp_path, capsys):
    for i in range(3):
        write(tmp_path / f"{i}.csv", 40, seed=i)
    write(tmp_path / "odd.csv", 40, cols=["gx", "gy"])
    data = load(tmp_path)
    assert len(data) == 3 and [p.name for p, _ in data.skipped] == ["odd.csv"]
    assert "odd.csv" in capsys.readouterr().err
    for i in range(2):
        write(tmp_path / f"m{i}.csv", 40, cols=["mx", "my"])
    with pytest.raises(DataError, match="disagree on their channels"):  # no set has a majority
        load(tmp_path)
    data = load(tmp_path, columns=["ax", "az"])
    assert data.x.shape[1] == 2 and len(data) == 3  # the others lack ax: skipped by name
    assert sorted(p.name for p, _ in data.skipped) == ["m0.csv", "m1.csv", "odd.csv"]


def test_the_same_channels_in_another_order_or_case_are_read_by_name(tmp_path, capsys):
    """Files holding the majority's channels in another column order or letter case are read
    by name in the majority's order (they were skipped: "has channels az,ay,ax, not ax,ay,az")."""
    frames = [write(tmp_path / f"{i}.csv", 40, seed=i) for i in range(3)]
    reordered = frames[0][COLS[::-1]]
    reordered.to_csv(tmp_path / "reversed.csv", index=False)
    shouted = frames[1].rename(columns=str.upper)
    shouted.to_csv(tmp_path / "upper.csv", index=False)
    data = load(tmp_path)
    assert len(data) == 5 and not data.skipped, capsys.readouterr().err
    assert data.meta["columns"] == COLS
    names = [it.path.name for it in data.items]
    for twin, name in (("0.csv", "reversed.csv"), ("1.csv", "upper.csv")):
        assert torch.equal(data.x[names.index(name)], data.x[names.index(twin)])


def test_long_recordings_cut_into_windows(tmp_path):
    write(tmp_path / "train" / "run" / "r1.csv", 100, time=True)
    write(tmp_path / "train" / "sit" / "r2.csv", 45, time=True)
    write(tmp_path / "test" / "run" / "r3.csv", 20, time=True)
    data = load(tmp_path, window=32, stride=16)
    # r1: starts 0,16,32,48,64 (5); r2: 0 (1); r3: too short (0)
    assert data.x.shape == (6, 3, 32)
    assert [it.offset for it in data.items] == [0, 16, 32, 48, 64, 0]
    df = pd.read_csv(tmp_path / "train" / "run" / "r1.csv")
    assert np.allclose(data.x[2].numpy().T, df[COLS].to_numpy()[32:64], atol=1e-5)
    with pytest.raises(ConfigError, match="give --window"):
        load(tmp_path, stride=8)


def test_gaps_are_interpolated_and_junk_skipped(tmp_path):
    write(tmp_path / "a.csv", 40)
    text = (tmp_path / "a.csv").read_text().splitlines()
    text[5] = ",".join(["", text[5].split(",")[1], text[5].split(",")[2]])  # one missing cell
    (tmp_path / "gap.csv").write_text("\n".join(text) + "\n")
    text[7] = "1,abc,2"
    (tmp_path / "junk.csv").write_text("\n".join(text) + "\n")
    data = load(tmp_path)
    assert sorted(it.path.name for it in data.items) == ["a.csv", "gap.csv"]
    assert [p.name for p, _ in data.skipped] == ["junk.csv"] and "line 8" in data.skipped[0][1]


def test_signal_space_round_trip_and_spectrogram_shape():
    meta = {"columns": COLS, "window": 128, "stride": None}
    raw = torch.randn(5, 3, 128) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1) + 3
    space = SignalSpace(meta)
    space.fit(raw)
    v = space.to_view(raw)
    torch.testing.assert_close(v.mean(dim=(0, 2)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(space.from_view(v), raw, atol=1e-5, rtol=1e-5)
    spec = SensorSpectrogramSpace(meta)
    spec.fit(raw)
    s = spec.to_view(raw)
    assert s.shape == (5, 3, 32, 33)
    torch.testing.assert_close(s.mean(dim=(0, 3)), torch.zeros(3, 32), atol=1e-4, rtol=0)


def test_sensor_views_seeded_and_shape_preserving():
    x = torch.randn(4, 6, 128)
    a = sensor_views(x, torch.Generator().manual_seed(0))
    b = sensor_views(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.allclose(a, x)
    assert (a - x).abs().mean() < 2 * x.abs().mean()


def test_augment_writes_csv_like_the_input(tmp_path):
    df = write(tmp_path / "in.csv", 50, time=True, sep=";")
    meta = {"columns": COLS, "window": 50, "stride": None}
    sample = M.read_file(tmp_path / "in.csv", meta, LoadOptions())
    assert sample.raw.shape == (1, 3, 50)
    M.write_file(sample.raw + 0.5, sample, tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv", sep=";")
    assert list(out.columns) == ["timestamp", *COLS]
    assert out["timestamp"].tolist() == df["timestamp"].tolist()
    assert np.allclose(out[COLS].to_numpy(), df[COLS].to_numpy() + 0.5, atol=1e-4)


def test_a_skip_reason_quoting_a_huge_header_is_cut_short(tmp_path, capsys):
    """A skipped 3,000-column CSV is named in one readable line, not 17 KB of column names."""
    for i in range(3):
        write(tmp_path / f"{i}.csv", 40, seed=i)
    write(tmp_path / "wide.csv", 40, cols=[f"channel_{i}" for i in range(3000)])
    data = load(tmp_path)
    assert [p.name for p, _ in data.skipped] == ["wide.csv"]
    line = next(ln for ln in capsys.readouterr().err.splitlines() if "wide.csv" in ln)
    assert len(line) < 500 and line.endswith("…")


def test_one_long_recording_without_windows_says_how_to_cut_it(tmp_path):
    from typer.testing import CliRunner

    from vmcli.cli import app

    write(tmp_path / "rec" / "walk.csv", 1000)
    r = CliRunner().invoke(app, ["train", str(tmp_path / "rec"), "--out", str(tmp_path / "r")])
    assert r.exit_code == 3, r.output
    assert "only 1 usable training sample" in r.output and "--window" in r.output


def test_augment_spectrogram_views_of_same_named_csv_and_tsv_are_both_written(tmp_path):
    from conftest import fast_config

    from vmcli.augment import augment_folder
    from vmcli.session import train

    for i in range(5):
        write(tmp_path / "data" / f"w{i}.csv", 40, seed=i)
    write(tmp_path / "data" / "w0.tsv", 40, seed=9, sep="\t")
    summary = train(
        fast_config(tmp_path / "data", view_space="spectrogram"),
        out=tmp_path / "runs",
        progress=False,
    )
    out = tmp_path / "views"
    result = augment_folder(
        tmp_path / "data", out, Path(summary["run"]), device="cpu", progress=False
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == ["w0.csv.npy", "w0.tsv.npy", "w1.npy", "w2.npy", "w3.npy", "w4.npy"]
    assert result["views_written"] == 6
    assert not np.array_equal(np.load(out / "w0.csv.npy"), np.load(out / "w0.tsv.npy"))
    # written as log power (the space's normalisation undone), not as per-bin z-scores
    from vmcli import load_viewmaker

    space = load_viewmaker(summary["run"]).space
    sample = M.read_file(tmp_path / "data" / "w1.csv", space.meta, LoadOptions())
    with torch.no_grad():
        log_power = space.from_view(space.to_view(sample.raw.float()))[0]
    view = torch.from_numpy(np.load(out / "w1.npy"))
    assert view.shape == log_power.shape
    z = (view - log_power) / space.spec_std[0]
    assert float(z.abs().mean()) < 0.3  # the view's own change, in z-score units
    assert float((view - space.spec_mean[0]).abs().mean()) > 0.5  # not z-scores around 0


def test_augment_views_files_shorter_than_a_window_like_training_uses_them(tmp_path):
    """Training edge-pads a 2-row file to the window; augment used to skip it ("need at least
    8"). It is padded for the viewmaker and its view written with the file's own 2 rows."""
    df = write(tmp_path / "two.csv", 2)
    meta = {"columns": COLS, "window": 50, "stride": None}
    sample = M.read_file(tmp_path / "two.csv", meta, LoadOptions())
    assert sample.raw.shape == (1, 3, 8)
    M.write_file(sample.raw + 0.5, sample, tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == COLS and len(out) == 2
    assert np.allclose(out.to_numpy(), df.to_numpy() + 0.5, atol=1e-4)


def test_asking_to_stream_sensor_csvs_says_they_are_decoded_into_memory(tmp_path, capsys):
    from vmcli.config import TrainConfig
    from vmcli.data import MODALITIES, scan
    from vmcli.session import load_training_data

    for i in range(4):
        write(tmp_path / "data" / f"w{i}.csv", 40, seed=i)
    cfg = TrainConfig(data=str(tmp_path / "data"), data_mode="stream")
    data = load_training_data(cfg, M, scan(tmp_path / "data", MODALITIES))
    assert len(data) == 4 and isinstance(data.source, torch.Tensor)
    assert "sensor data is not streamed from disk" in capsys.readouterr().err
