"""`vm augment` and the paths it writes: names at the filesystem's limit, and an OUT that is a
link. Each case either writes every view or stops with one error line before any view is made;
none leaves a half-written or hidden partial folder behind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import fast_config
from typer.testing import CliRunner

from vmcli.cli import app
from vmcli.session import train

LONG = "q" * 251 + ".csv"  # 255 bytes: the longest name most filesystems take


def vm(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error:")]


def write_windows(folder: Path, n: int = 12) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        x = np.random.default_rng(i).normal(size=(64, 3))
        rows = "".join(",".join(f"{v:.4f}" for v in r) + "\n" for r in x)
        (folder / f"w{i:02d}.csv").write_text("ax,ay,az\n" + rows)
    return folder


@pytest.fixture(scope="module")
def sensor_run(tmp_path_factory) -> tuple[Path, Path]:
    """A sensor folder and a run trained on it (once for the module: training takes seconds)."""
    root = tmp_path_factory.mktemp("augment_paths")
    data = write_windows(root / "s")
    summary = train(fast_config(data), out=root / "runs", progress=False)
    return data, Path(summary["run"])


@pytest.fixture
def long_named(sensor_run, tmp_path) -> Path:
    """The sensor folder with one file renamed to a 255-byte name."""
    data = tmp_path / "s_long"
    data.mkdir()
    for path in sensor_run[0].iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    (data / "w00.csv").rename(data / LONG)
    return data


def partials(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial-" in p.name]


def test_a_255_byte_input_name_gets_its_view(sensor_run, long_named, tmp_path):
    """The CSV writer's temporary name used to be `name + ".part"`: over the limit (a traceback,
    `[Errno 36] File name too long`). Now it is short and the view keeps the input's name."""
    out = tmp_path / "o_long"
    r = vm("augment", long_named, "--out", out, "--run", sensor_run[1])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in long_named.iterdir())
    assert (out / LONG).read_text().startswith("ax,ay,az\n")
    assert partials(tmp_path) == []


def test_a_view_name_over_the_limit_is_refused_before_any_view_is_made(
    sensor_run, long_named, tmp_path, monkeypatch
):
    """`--views-per-input 2` makes `<251 q>_view0.csv` (261 bytes): one error line naming the
    input, exit 2, before a single view is written, and no OUT or partial folder left."""
    from vmcli.data.sensor import SensorModality

    def no_views(*args, **kwargs):
        raise AssertionError("a view was written before the names were checked")

    monkeypatch.setattr(SensorModality, "write_file", no_views)
    out = tmp_path / "o2"
    r = vm("augment", long_named, "--out", out, "--run", sensor_run[1], "--views-per-input", 2)
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    (line,) = error_lines(r.output)
    assert str(long_named / LONG) in line and "261 bytes" in line and "255 bytes" in line
    assert not out.exists() and partials(tmp_path) == []


def test_image_view_names_over_the_limit_are_refused_too(tmp_path):
    from vmcli.augment import check_name_lengths, plan_outputs
    from vmcli.data.image import ImageModality
    from vmcli.errors import ConfigError

    rels = [Path("a/" + "q" * 251 + ".png"), Path("a/short.png")]
    plan, _ = plan_outputs(ImageModality(), rels, "pixels", 1)
    check_name_lengths(plan, tmp_path / "in", tmp_path / "out")  # one view: the input's name
    plan, _ = plan_outputs(ImageModality(), rels, "pixels", 2)
    with pytest.raises(ConfigError, match=r"in/a/q+\.png: its view would be named") as e:
        check_name_lengths(plan, tmp_path / "in", tmp_path / "out")
    assert "short.png" not in str(e.value)


def test_a_long_out_name_gets_a_partial_folder_that_fits(sensor_run, tmp_path):
    """`.OUT.partial-PID.HOST-RANDOM` adds 40-odd bytes to OUT's name: for a long OUT it is
    shortened (and still found by the next run's clean-up), rather than failing to be made."""
    from vmcli.augment import _partial_prefix, clean_stale_partials

    out = tmp_path / ("o" * 250)
    r = vm("augment", sensor_run[0], "--out", out, "--run", sensor_run[1])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert len(list(out.iterdir())) == 12 and partials(tmp_path) == []
    # a killed run's folder under the short name is cleaned up by the next run to that OUT
    prefix = _partial_prefix(tmp_path / ("p" * 250))
    assert len(os.fsencode(prefix)) + 12 <= 255
    stale = tmp_path / (prefix.replace(f"-{os.getpid()}.", "-999999999.") + "0123456789ab")
    stale.mkdir()
    removed, _ = clean_stale_partials(tmp_path / ("p" * 250))
    assert removed == [stale] and not stale.exists()


def test_out_as_a_link_to_an_empty_folder_fills_that_folder(sensor_run, tmp_path):
    """It used to do all the work, then say OUT "was filled by something else" (exit 2)."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    link = tmp_path / "views_link"
    link.symlink_to(scratch)
    r = vm("augment", sensor_run[0], "--out", link, "--run", sensor_run[1])
    assert r.exit_code == 0 and "filled by something else" not in r.output, r.output
    assert link.is_symlink() and link.resolve() == scratch.resolve()
    assert sorted(p.name for p in scratch.iterdir()) == [f"w{i:02d}.csv" for i in range(12)]
    assert partials(tmp_path) == []


def test_out_as_a_dangling_link_is_refused_up_front(sensor_run, tmp_path, monkeypatch):
    import vmcli.augment

    def no_work(*args, **kwargs):
        raise AssertionError("the run was loaded before --out was checked")

    monkeypatch.setattr(vmcli.augment, "load_viewmaker", no_work)
    link = tmp_path / "views_link"
    link.symlink_to(tmp_path / "gone")
    for out in (link, link / "sub"):
        r = vm("augment", sensor_run[0], "--out", out, "--run", sensor_run[1])
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        (line,) = error_lines(r.output)
        assert f"{link} is a link to {tmp_path / 'gone'}, which does not exist" in line
        assert link.is_symlink() and not (tmp_path / "gone").exists()
        assert partials(tmp_path) == []


def test_a_folder_name_over_the_output_limit_is_named_with_the_right_bound(tmp_path, monkeypatch):
    """An output filesystem with shorter names than the input's (eCryptfs: 143 bytes): the
    part over the limit can be a folder; the advice named the file with a negative bound."""
    import vmcli.augment as aug
    from vmcli.errors import ConfigError

    monkeypatch.setattr(aug, "_name_max", lambda folder: 20)
    rel = Path("a_rather_long_folder_name/x.png")
    with pytest.raises(ConfigError) as err:
        aug.check_name_lengths({(rel, 0): rel}, tmp_path / "in", tmp_path / "out")
    text = str(err.value)
    assert "in a folder named a_rather_long_folder_name" in text
    assert "shorten that folder's name to at most 20 bytes" in text
    rel = Path("a_file_name_too_long.png")
    with pytest.raises(ConfigError, match="shorten the input's name to at most 20 bytes"):
        aug.check_name_lengths({(rel, 0): rel}, tmp_path / "in", tmp_path / "out")
