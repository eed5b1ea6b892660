"""The `array` modality: folders of .npy / .npz files, one sample per file."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vmcli.cli import app
from vmcli.data import MODALITIES, LoadOptions, scan
from vmcli.data.array import ArrayModality, ValuesSpace, array_image_views
from vmcli.errors import DataError

M = ArrayModality()
runner = CliRunner()
FAST = ["--epochs", "1", "--batch-size", "8", "--encoder", "small", "--viewmaker-width", "8"]
FAST += ["--device", "cpu", "-q"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def make_signals(root: Path, per_class=(8, 4), channels=3, length=64, dtype=np.float64) -> Path:
    """train/<class>/*.npy and test/<class>/*.npy: C × T signals, slow vs fast sines, in
    units far from z-scored (offset 5, scale 100)."""
    rng = np.random.default_rng(0)
    t = np.arange(length)
    for split, n in zip(("train", "test"), per_class, strict=True):
        for ci, cls in enumerate(("slow", "fast")):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                x = np.stack([np.sin(t / (3 if ci else 9) + k) for k in range(channels)])
                x = 100 * (x + 0.1 * rng.normal(size=x.shape)) + 5
                np.save(folder / f"{i}.npy", x.astype(dtype))
    return root


def make_fields(root: Path, per_class=(8, 4), shape=(2, 12, 16)) -> Path:
    """C × H × W float32 arrays (a blob or a bar per channel), half .npy, half .npz."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    for split, n in zip(("train", "test"), per_class, strict=True):
        for ci, cls in enumerate(("blob", "bar")):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                c = np.exp(-((yy - 6) ** 2 + (xx - 8) ** 2) / 10) if ci == 0 else abs(xx - 8) < 2
                x = np.stack([c * (k + 1) for k in range(shape[0])]) + 0.05 * rng.normal(size=shape)
                if i % 2:
                    np.savez_compressed(folder / f"{i}.npz", x=x.astype(np.float32), y=np.int64(ci))
                else:
                    np.save(folder / f"{i}.npy", x.astype(np.float32))
    return root


def load(root: Path, **opts):
    index = scan(root, MODALITIES)
    assert index.modality == "array"
    return M.load(root, index.items, LoadOptions(**opts))


def test_npy_signals_train_augment_eval_end_to_end(tmp_path):
    data = make_signals(tmp_path / "eeg")
    runs = tmp_path / "runs"
    r = invoke("train", data, *FAST, "--out", runs, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert (summary["modality"], summary["view_space"], summary["train_samples"]) == (
        "array",
        "values",
        16,
    )
    run = Path(summary["run"])
    config = json.loads((run / "config.json").read_text())
    assert config["data_meta"]["shape"] == [3, 64] and config["data_meta"]["layout"] == "ct"
    assert np.allclose(config["space_stats"]["mean"], 5, atol=10)  # fitted in the data's units
    assert (run / "preview.png").is_file()

    out = tmp_path / "views"
    r = invoke("augment", data / "test", "--out", out, "--run", run, "--views-per-input", "2")
    assert r.exit_code == 0, r.output
    src = sorted(p.relative_to(data / "test") for p in (data / "test").rglob("*.npy"))
    assert sorted(p.relative_to(out) for p in out.rglob("*.npy")) == sorted(
        p.with_name(f"{p.stem}_view{k}.npy") for p in src for k in (0, 1)
    )
    a = np.load(data / "test" / src[0])
    v0, v1 = (np.load(out / src[0].with_name(f"{src[0].stem}_view{k}.npy")) for k in (0, 1))
    assert v0.dtype == a.dtype == np.float64 and v0.shape == a.shape
    std = np.array(config["space_stats"]["std"])[:, None]
    assert np.mean(np.abs(v0 - a) / std) == pytest.approx(0.05, rel=0.02)  # ε in channel stds
    assert not np.array_equal(v0, v1)

    r = invoke("eval", run, "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["test_samples"] == 8
    assert [row["features"] for row in result["rows"]] == [
        "vm encoder (viewmaker)",
        "random encoder",
        "raw inputs",
        "channel mean/std/min/max",
    ]


def test_2d_arrays_npy_and_npz_end_to_end_with_handcrafted_views(tmp_path):
    data = make_fields(tmp_path / "fields")
    runs = tmp_path / "runs"
    for views in ("viewmaker", "both"):
        r = invoke("train", data, *FAST, "--views", views, "--out", runs, "--json")
        assert r.exit_code == 0, r.output
    run = runs / "train-2"
    assert json.loads((run / "config.json").read_text())["data_meta"]["shape"] == [2, 12, 16]
    out = tmp_path / "views"
    r = invoke("augment", data / "test", "--out", out, "--run", run)
    assert r.exit_code == 0, r.output
    files = sorted(p.relative_to(data / "test") for p in (data / "test").rglob("*.np?"))
    assert sorted(p.relative_to(out) for p in out.rglob("*.np?")) == files
    npz = next(p for p in files if p.suffix == ".npz")
    with np.load(data / "test" / npz) as a, np.load(out / npz) as v:
        assert v.files == a.files == ["x", "y"]
        assert v["x"].dtype == np.float32 and v["x"].shape == a["x"].shape
        assert 0 < np.abs(v["x"] - a["x"]).mean() < np.abs(a["x"]).mean()
        assert v["y"] == a["y"]
    r = invoke("eval", run, "--json")
    assert r.exit_code == 0, r.output


def test_unusable_files_are_skipped_by_name(tmp_path, capsys):
    make_signals(tmp_path, per_class=(3, 0))
    bad = tmp_path / "train" / "slow"
    good = np.load(bad / "0.npy")
    np.save(bad / "nan.npy", np.where(np.arange(64) == 3, np.nan, good))
    np.save(bad / "inf.npy", np.where(np.arange(64) == 3, np.inf, good))
    np.save(bad / "short.npy", good[:, :50])
    np.save(bad / "pickled.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (bad / "junk.npy").write_bytes(b"not an array at all")
    np.savez(bad / "two.npz", a=good, b=good)
    np.save(bad / "complex.npy", good.astype(np.complex64))
    np.save(bad / "4d.npy", good[None, None])
    np.save(bad / "huge64.npy", np.full(good.shape, 1e300))
    data = load(tmp_path)
    assert len(data) == 6 and data.x.shape == (6, 3, 64) and data.x.dtype == torch.float32
    reasons = {p.name: r for p, r in data.skipped}
    assert set(reasons) == {
        "nan.npy",
        "inf.npy",
        "short.npy",
        "pickled.npy",
        "junk.npy",
        "two.npz",
        "complex.npy",
        "4d.npy",
        "huge64.npy",
    }
    assert "NaN or infinite" in reasons["nan.npy"] and "NaN or infinite" in reasons["inf.npy"]
    assert "3 × 50, not 3 × 64" in reasons["short.npy"]
    assert "never unpickles" in reasons["pickled.npy"]
    assert "one named x" in reasons["two.npz"]
    assert "float32" in reasons["huge64.npy"]
    err = capsys.readouterr().err
    assert all(name in err for name in reasons) and "skipped 9 unusable array file(s)" in err


def _npy_with_header(path, header: bytes) -> None:
    header = header.ljust(117) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)


def test_damaged_npy_headers_are_skipped_with_a_reason_not_a_traceback(tmp_path, capsys):
    """numpy parses a header as a Python literal: damage surfaced as a TokenError traceback
    or a ValueError naming "<ast.Call object ...>"."""
    make_signals(tmp_path, per_class=(3, 0))
    bad = tmp_path / "train" / "slow"
    _npy_with_header(
        bad / "unclosed.npy", b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,64) "
    )
    _npy_with_header(
        bad / "call.npy", b"{'descr': '<f4', 'fortran_order': False, 'shape': (f(3),64), }"
    )
    _npy_with_header(
        bad / "dtype.npy", b"{'descr': 'zz', 'fortran_order': False, 'shape': (3,64), }"
    )
    _npy_with_header(
        bad / "negative.npy", b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,-64), }"
    )
    (bad / "cut.npy").write_bytes(b"\x93NUMPY\x01\x00\x50\x00{'descr'")
    for name, shape in (("huge", (3, 2**70)), ("wraps", (2**32, 2**32))):  # int64 overflows
        header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
        _npy_with_header(bad / f"{name}.npy", header.encode())
    data = load(tmp_path)
    assert len(data) == 6
    reasons = {p.name: r for p, r in data.skipped}
    assert set(reasons) == {
        "unclosed.npy",
        "call.npy",
        "dtype.npy",
        "negative.npy",
        "cut.npy",
        "huge.npy",
        "wraps.npy",
    }
    for name in ("huge.npy", "wraps.npy"):
        assert "per sample); cut it into samples" in reasons[name]
    for name in ("unclosed.npy", "call.npy", "dtype.npy"):
        assert "header is damaged" in reasons[name] and "ast" not in reasons[name]
    assert "shape (3, -64)" in reasons["negative.npy"]
    assert "ends inside its .npy header" in reasons["cut.npy"]
    assert "skipped 7 unusable array file(s)" in capsys.readouterr().err


def test_no_majority_shape_is_an_error_and_short_samples_hint_at_transposing(tmp_path):
    for i in range(2):
        np.save(tmp_path / f"a{i}.npy", np.zeros((3, 64)))
        np.save(tmp_path / f"b{i}.npy", np.zeros((3, 32)))
    with pytest.raises(DataError, match="disagree on their shape"):
        load(tmp_path)
    other = tmp_path / "time-major"
    other.mkdir()
    for i in range(3):
        np.save(other / f"{i}.npy", np.zeros((64, 3)))  # T × C instead of C × T
    with pytest.raises(DataError, match=r"too short.*transpose"):
        load(other)


def test_vectors_and_images_by_layout(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "hw").mkdir()
    for i in range(3):
        np.save(tmp_path / "v" / f"{i}.npy", np.arange(40.0) + i)
        np.save(tmp_path / "hw" / f"{i}.npy", np.ones((10, 12), np.int16) * i)
    vectors = load(tmp_path / "v")
    assert vectors.x.shape == (3, 1, 40) and vectors.meta == {"shape": [1, 40], "layout": "ct"}
    assert load(tmp_path / "hw").x.shape == (3, 10, 12)  # C × T by default
    images = load(tmp_path / "hw", array_layout="hw")
    assert images.x.shape == (3, 1, 10, 12) and images.meta["layout"] == "hw"
    space = M.build_space("values", images.meta)
    assert (space.dims, space.encoder_dims, space.channels) == (2, 2, 1)
    assert M.handcrafted(images.meta) is array_image_views


def test_detection_by_header_not_zip_files(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 16)))
    (tmp_path / "renamed.bin").write_bytes((tmp_path / "a.npy").read_bytes())
    with zipfile.ZipFile(tmp_path / "archive.zip", "w") as z:
        z.writestr("x.npy", (tmp_path / "a.npy").read_bytes())
    np.savez(tmp_path / "b.npz", np.zeros((2, 16)))
    index = scan(tmp_path, MODALITIES)
    assert index.modality == "array" and index.unrecognized == 1  # the .zip is not claimed
    assert sorted(it.path.name for it in index.items) == ["a.npy", "b.npz", "renamed.bin"]


def test_values_space_round_trip_and_rebuild():
    meta = {"shape": [3, 50], "layout": "ct"}
    raw = torch.randn(6, 3, 50, dtype=torch.float64) * torch.tensor([1.0, 1e3, 1e-3]).view(
        1, 3, 1
    ) + torch.tensor([0.0, 1e4, -2.0]).view(1, 3, 1)
    space = ValuesSpace(meta)
    stats = space.fit(raw.float())
    v = space.to_view(raw.float())
    torch.testing.assert_close(v.mean(dim=(0, 2)), torch.zeros(3), atol=1e-3, rtol=0)
    torch.testing.assert_close(v.std(dim=(0, 2)), torch.ones(3), atol=1e-3, rtol=0)
    torch.testing.assert_close(space.from_view(v), raw.float(), rtol=1e-5, atol=1e-6)
    rebuilt = M.build_space("values", json.loads(json.dumps(meta)), json.loads(json.dumps(stats)))
    assert torch.equal(rebuilt.to_view(raw.float()), v)
    flat = ValuesSpace(meta)
    flat.fit(torch.zeros(2, 3, 50))  # constant channels keep std 1, not a division by ~0
    assert flat.stats["std"] == [1.0, 1.0, 1.0]


def test_npz_round_trip_keeps_key_dtype_and_other_members(tmp_path):
    meta = {"shape": [2, 30], "layout": "ct"}
    x = (np.random.default_rng(0).normal(size=(2, 30)) * 10).astype(np.float16)
    np.savez_compressed(tmp_path / "in.npz", x=x, meta=np.array([1, 2, 3]))
    sample = M.read_file(tmp_path / "in.npz", meta, LoadOptions())
    assert sample.raw.shape == (1, 2, 30) and sample.raw.dtype == torch.float32
    M.write_file(sample.raw, sample, tmp_path / "same.npz")  # no change: exactly the input
    M.write_file(sample.raw + 0.5, sample, tmp_path / "out.npz")
    with np.load(tmp_path / "same.npz") as same, np.load(tmp_path / "out.npz") as out:
        assert same.files == out.files == ["x", "meta"]
        assert np.array_equal(same["x"], x) and same["x"].dtype == np.float16
        assert out["x"].dtype == np.float16
        np.testing.assert_allclose(
            out["x"].astype(np.float32), x.astype(np.float32) + 0.5, atol=0.02
        )
        assert np.array_equal(out["meta"], [1, 2, 3])
    with zipfile.ZipFile(tmp_path / "out.npz") as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    # float64 stays exact where the view did not change it; integer inputs become float32
    big = np.full((2, 30), 1e9 + 0.123456789)
    with (tmp_path / "big.NPY").open("wb") as f:  # np.save(path) would append .npy
        np.save(f, big)
    sample = M.read_file(tmp_path / "big.NPY", meta, LoadOptions())
    M.write_file(sample.raw, sample, tmp_path / "big-out.NPY")
    assert np.array_equal(np.load(tmp_path / "big-out.NPY"), big)
    np.save(tmp_path / "ints.npy", np.arange(60, dtype=np.int16).reshape(2, 30))
    sample = M.read_file(tmp_path / "ints.npy", meta, LoadOptions())
    M.write_file(sample.raw + 0.25, sample, tmp_path / "ints-out.npy")
    got = np.load(tmp_path / "ints-out.npy")
    assert got.dtype == np.float32 and np.allclose(got, np.arange(60).reshape(2, 30) + 0.25)
    with pytest.raises(DataError, match="the run was trained on 2 × 30"):
        np.save(tmp_path / "three.npy", np.zeros((3, 30)))
        M.read_file(tmp_path / "three.npy", meta, LoadOptions())


def test_array_image_views_seeded_and_shape_preserving():
    x = torch.randn(4, 2, 12, 16) * 50 + 7
    a = array_image_views(x, torch.Generator().manual_seed(0))
    b = array_image_views(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x)


def test_array_layout_option_reads_2d_arrays_as_images(tmp_path):
    data = tmp_path / "maps"
    rng = np.random.default_rng(2)
    for cls in ("a", "b"):
        (data / cls).mkdir(parents=True)
        for i in range(5):
            np.save(data / cls / f"{i}.npy", rng.normal(size=(12, 14)).astype(np.float32))
    runs = tmp_path / "runs"
    r = invoke("train", data, *FAST, "--array-layout", "hw", "--out", runs)
    assert r.exit_code == 0, r.output
    config = json.loads((runs / "train" / "config.json").read_text())
    assert config["data_meta"] == {"shape": [1, 12, 14], "layout": "hw", "raw_shape": [1, 12, 14]}
    out = tmp_path / "views"
    assert invoke("augment", data, "--out", out, "--runs", runs).exit_code == 0
    assert np.load(out / "a" / "0.npy").shape == (12, 14)
    r = invoke("train", data, *FAST, "--array-layout", "xy", "--out", runs)
    assert r.exit_code == 2 and "--array-layout" in r.output


def test_float16_views_past_the_dtypes_range_are_held_at_its_edge_not_inf(tmp_path):
    """float16 data near ±65504: x + δ can pass the largest float16, which would be written as
    ±inf. It is held at ±65504 instead, and augment says which files, once each."""
    rng = np.random.default_rng(0)
    data = tmp_path / "loud"
    data.mkdir()
    for i in range(16):
        np.save(data / f"s{i}.npy", rng.uniform(-65000, 65000, (2, 64)).astype(np.float16))
    runs = tmp_path / "runs"
    assert invoke("train", data, *FAST, "--out", runs).exit_code == 0
    r = invoke("augment", data, "--out", tmp_path / "v", "--run", runs / "train", "--json")
    assert r.exit_code == 0, r.output
    views = [np.load(p) for p in sorted((tmp_path / "v").glob("*.npy"))]
    assert len(views) == 16 and all(v.dtype == np.float16 for v in views)
    assert all(np.isfinite(v).all() for v in views)
    notes = json.loads(r.stdout)["notes"]
    held = [paths for note, paths in notes.items() if "beyond float16's range" in note]
    assert held and 0 < len(held[0]) <= 16
