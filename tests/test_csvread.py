"""Sensor CSVs as people export them: delimiters, BOM, CRLF, headers, timestamps, gaps, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vmcli.data.csvread import CsvRecording, read_csv_recording, write_csv_like
from vmcli.errors import DataError


def put(
    tmp_path: Path, text: str, name: str = "rec.csv", bom: bool = False, crlf: bool = False
) -> Path:
    """Write `text` (lines joined by '\\n') as real bytes, optionally with a BOM and CRLF."""
    if crlf:
        text = text.replace("\n", "\r\n")
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def read_error(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_csv_recording(path, **kwargs)
    return str(info.value)


# -- layouts ------------------------------------------------------------------------------------


def test_header_comma(tmp_path):
    rec = read_csv_recording(put(tmp_path, "ax,ay,az\n1,2,3\n4,5,6\n-1.5,0,2e-3\n"))
    assert isinstance(rec, CsvRecording)
    lay = rec.layout
    assert (lay.delimiter, lay.has_header, lay.bom, lay.line_ending) == (",", True, False, "\n")
    assert lay.header == lay.channel_columns == ["ax", "ay", "az"]
    assert lay.dropped_columns == [] and rec.interpolated == 0
    assert rec.values.dtype == np.float32 and rec.values.shape == (3, 3)
    np.testing.assert_array_equal(rec.values, np.float32([[1, 2, 3], [4, 5, 6], [-1.5, 0, 2e-3]]))


def test_no_header_names_columns_by_position(tmp_path):
    rec = read_csv_recording(put(tmp_path, "0.5,2\n-0.25,3\n0.125,1\n"))
    assert not rec.layout.has_header
    assert rec.layout.header == rec.layout.channel_columns == ["c0", "c1"]
    np.testing.assert_array_equal(rec.values, np.float32([[0.5, 2], [-0.25, 3], [0.125, 1]]))


@pytest.mark.parametrize("delim", [",", ";", "\t"])
@pytest.mark.parametrize("header", [True, False])
def test_each_delimiter(tmp_path, delim, header):
    lines = [delim.join(r) for r in (["3.5", "-1", "0"], ["2", "7.25", "1"], ["9", "0.5", "-2"])]
    if header:
        lines.insert(0, delim.join(["acc x", "acc y", "acc z"]))
    rec = read_csv_recording(put(tmp_path, "\n".join(lines) + "\n"))
    assert rec.layout.delimiter == delim and rec.layout.has_header == header
    assert rec.layout.channel_columns == (
        ["acc x", "acc y", "acc z"] if header else ["c0", "c1", "c2"]
    )
    np.testing.assert_array_equal(
        rec.values, np.float32([[3.5, -1, 0], [2, 7.25, 1], [9, 0.5, -2]])
    )


def test_semicolon_with_commas_in_text_column(tmp_path):
    text = "ax;note;ay\n1;a, b;2\n3;c, d;4\n5;e, f;6\n"
    rec = read_csv_recording(put(tmp_path, text))
    assert rec.layout.delimiter == ";"
    assert rec.layout.channel_columns == ["ax", "ay"] and rec.layout.dropped_columns == ["note"]


def test_tab_file_with_commas_in_text_and_excel_sep_line(tmp_path):
    rec = read_csv_recording(put(tmp_path, "ax\tnote\n1\ta, b\n2\tc, d\n3\te, f\n"))
    assert rec.layout.delimiter == "\t" and rec.layout.channel_columns == ["ax"]
    rec = read_csv_recording(put(tmp_path, "sep=;\nax;ay\n1;2\n3;4\n"))
    assert rec.layout.delimiter == ";" and rec.layout.header == ["ax", "ay"]
    assert "line 4" in read_error(put(tmp_path, "sep=;\nax;ay\n1;2\n3;x\n5;6\n"))


def test_old_mac_line_ends_with_an_excel_sep_line(tmp_path):
    """CR alone ends lines (classic Mac OS exports): the `sep=` line is a hint, not a header
    row, and a view is written back with the same line ends (found by test_properties)."""
    rec = read_csv_recording(put(tmp_path, "sep=,\r0\r\r1\r2"))
    assert rec.layout.header == ["c0"] and not rec.layout.has_header
    assert rec.layout.line_ending == "\r"
    np.testing.assert_array_equal(rec.values, np.float32([[0], [1], [2]]))
    write_csv_like(rec, rec.values, tmp_path / "view.csv")
    assert (tmp_path / "view.csv").read_bytes() == b"0\r1\r2\r"


def test_bom_crlf_whitespace_quotes_and_trailing_blank_lines(tmp_path):
    text = ' "ax" , "ay" ,"az"\n 1 , 2 ,3\n4,  5,6 \n7,8,9\n\n\n'
    rec = read_csv_recording(put(tmp_path, text, bom=True, crlf=True))
    assert rec.layout.bom and rec.layout.line_ending == "\r\n"
    assert rec.layout.header == ["ax", "ay", "az"], "no BOM or quotes left in the first name"
    np.testing.assert_array_equal(rec.values, np.float32([[1, 2, 3], [4, 5, 6], [7, 8, 9]]))


def test_trailing_empty_rows_and_trailing_delimiters(tmp_path):
    rec = read_csv_recording(put(tmp_path, "ax,ay,\n1,2,\n3,4,\n5,6,\n,,\n,,\n"))
    assert rec.layout.channel_columns == ["ax", "ay"]
    assert rec.layout.dropped_columns == [""], (
        "the empty trailing column is kept aside, not a channel"
    )
    assert rec.values.shape == (3, 2)


# -- timestamp, index and text columns ----------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["timestamp", "Time", " time_ms ", "t", "TimeStamp_UTC", "index", "frame"]
)
def test_named_timestamp_column_dropped(tmp_path, name):
    rec = read_csv_recording(put(tmp_path, f"{name},ax,ay\n1000,1,2\n1020,3,4\n1040,5,6\n"))
    assert rec.layout.channel_columns == ["ax", "ay"]
    assert rec.layout.dropped_columns == [name.strip()]
    assert rec.other[name.strip()].tolist() == ["1000", "1020", "1040"]
    np.testing.assert_array_equal(rec.values, np.float32([[1, 2], [3, 4], [5, 6]]))


@pytest.mark.parametrize(
    "first",
    [
        ["0.00", "0.01", "0.02", "0.03"],  # seconds at 100 Hz
        ["0", "1", "2", "3"],  # a row index
        ["1600000000.000", "1600000000.020", "1600000000.041", "1600000000.060"],  # jittery clock
    ],
)
def test_unnamed_monotonic_first_column_dropped(tmp_path, first):
    chans = ["1,2", "3,1", "-2,0", "4,4"]
    text = "".join(f"{t},{c}\n" for t, c in zip(first, chans, strict=True))
    rec = read_csv_recording(put(tmp_path, text))
    assert rec.layout.header == ["c0", "c1", "c2"]
    assert rec.layout.channel_columns == ["c1", "c2"] and rec.layout.dropped_columns == ["c0"]
    assert rec.other["c0"].tolist() == first
    np.testing.assert_array_equal(rec.values[:, 0], np.float32([1, 3, -2, 4]))


def test_monotonic_first_column_kept_when_it_is_a_channel(tmp_path):
    # a non-steady rise is a signal, and a lone column is never dropped as a clock
    rec = read_csv_recording(put(tmp_path, "0.1,5\n0.2,4\n3.0,3\n3.1,2\n"))
    assert rec.layout.channel_columns == ["c0", "c1"]
    rec = read_csv_recording(put(tmp_path, "0\n1\n2\n3\n"))
    assert rec.layout.channel_columns == ["c0"]


def test_pandas_index_column_dropped(tmp_path):
    df = pd.DataFrame({"ax": [0.5, 1.5, 2.5], "ay": [3.0, 2.0, 1.0]})
    df.to_csv(tmp_path / "rec.csv")  # ",ax,ay" then "0,0.5,3.0" ...
    rec = read_csv_recording(tmp_path / "rec.csv")
    assert rec.layout.header == ["", "ax", "ay"] and rec.layout.channel_columns == ["ax", "ay"]
    np.testing.assert_array_equal(rec.values, df.to_numpy(np.float32))


def test_text_columns_dropped(tmp_path):
    rows = ["2024-01-01 10:00,1,walk,2", "2024-01-01 10:01,3,walk,4", "2024-01-01 10:02,5,run,6"]
    text = "date,ax,label,ay\n" + "\n".join(rows) + "\n"
    rec = read_csv_recording(put(tmp_path, text))
    assert rec.layout.channel_columns == ["ax", "ay"]
    assert rec.layout.dropped_columns == ["date", "label"]
    assert rec.other["label"].tolist() == ["walk", "walk", "run"]
    # the same without a header: the text columns are still told apart from the numbers
    rec = read_csv_recording(put(tmp_path, "\n".join(text.splitlines()[1:]) + "\n"))
    assert not rec.layout.has_header
    assert rec.layout.channel_columns == ["c1", "c3"] and rec.layout.dropped_columns == ["c0", "c2"]


def test_no_numeric_columns_empty_and_short_files(tmp_path):
    assert "no numeric channel" in read_error(put(tmp_path, "a,b\nx,y\nz,w\n"))
    assert "empty" in read_error(put(tmp_path, "\n\n"))
    assert "empty" in read_error(put(tmp_path, ""))
    assert "at least 2" in read_error(put(tmp_path, "ax,ay\n1,2\n"))
    assert "a header alone, with no data below it" in read_error(put(tmp_path, "ax,ay\n"))
    assert "no numeric channel" in read_error(put(tmp_path, "time,ax\n0,\n1,\n2,\n"))


# -- missing values -----------------------------------------------------------------------------


def test_short_gaps_interpolated_exactly(tmp_path):
    ax = ["NA", "2", "", "NaN", "5", "null", "7", "nan", "9", "10", "11"]
    ay = ["0", "1", "0", "1", "0", "1", "0", "1", "0", "3", "NaN"]
    text = "ax,ay\n" + "".join(f"{a},{b}\n" for a, b in zip(ax, ay, strict=True))
    rec = read_csv_recording(put(tmp_path, text))
    np.testing.assert_array_equal(rec.values[:, 0], np.float32([2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]))
    np.testing.assert_array_equal(rec.values[:, 1], np.float32([0, 1, 0, 1, 0, 1, 0, 1, 0, 3, 3]))
    assert rec.interpolated == 6
    ramp = read_csv_recording(
        put(tmp_path, "ax,ay\n0,1\n,1\n,1\n,1\n1,1\n2,1\n3,1\n", name="r.csv")
    )
    np.testing.assert_array_equal(ramp.values[:, 0], np.float32([0, 0.25, 0.5, 0.75, 1, 2, 3]))


def test_too_long_gap_names_file_column_and_line(tmp_path):
    rows = ["1,0", "2,0", ",0", ",0", ",0", "6,0", "7,0", "8,0", "9,0", "10,0"]
    path = put(tmp_path, "ax,ay\n" + "\n".join(rows) + "\n", name="walk_03.csv")
    msg = read_error(path, max_gap=2)
    assert "walk_03.csv" in msg and "line 4" in msg and "'ax'" in msg
    assert read_csv_recording(path, max_gap=3).values[3, 0] == np.float32(4)


def test_too_many_missing_cells(tmp_path):
    path = put(tmp_path, "ax,ay\n1,1\n,2\n3,3\n,4\n5,5\n,6\n7,7\n,8\n", name="sparse.csv")
    msg = read_error(path, max_missing=0.25)
    assert "sparse.csv" in msg and "'ax'" in msg and "line 3" in msg
    assert read_csv_recording(path).interpolated == 4


def test_inf_and_junk_cells_name_the_line(tmp_path):
    msg = read_error(put(tmp_path, "ax,ay\n1,2\n3,inf\n5,6\n", name="inf.csv"))
    assert "inf.csv" in msg and "line 3" in msg and "'ay'" in msg and "infinite" in msg
    assert "line 2" in read_error(put(tmp_path, "ax,ay\n1,-Infinity\n3,4\n5,6\n"))
    assert "too large" in read_error(put(tmp_path, "ax,ay\n1,2\n1e39,4\n5,6\n"))
    for junk in ("abc", "1.2.3"):
        msg = read_error(put(tmp_path, f"ax,ay\n1,2\n3,4\n\n5,{junk}\n7,8\n", name="junk.csv"))
        assert "junk.csv" in msg and "line 5" in msg and repr(junk) in msg, (
            "blank lines still count"
        )


def test_decimal_comma_gets_a_hint(tmp_path):
    assert "decimal" in read_error(put(tmp_path, "ax;ay\n1,5;2\n3;4,25\n5;6\n"))
    # every cell with a decimal comma: no column is numeric, and the hint was missing
    message = read_error(put(tmp_path, "ax;ay;az\n1,5;0,1;2,0\n3,5;4,25;1,0\n5,1;6,2;7,3\n"))
    assert "no numeric channel column" in message and "',' as the decimal mark" in message
    # columns chosen by name (as vm augment and vm eval read with a run's): the same hint
    path = put(tmp_path, "ax;ay;az\n1,5;0,1;2,0\n3,5;4,25;1,0\n5,1;6,2;7,3\n")
    with pytest.raises(DataError) as e:
        read_csv_recording(path, columns=["ax", "ay", "az"])
    assert "no column 'ax'" in str(e.value) and "',' as the decimal mark" in str(e.value)


def test_ragged_short_row_interpolated(tmp_path):
    rec = read_csv_recording(put(tmp_path, "ax,ay,az\n1,2,3\n4,5\n7,8,9\n"))
    np.testing.assert_array_equal(rec.values, np.float32([[1, 2, 3], [4, 5, 6], [7, 8, 9]]))
    assert rec.interpolated == 1


def test_ragged_long_row_is_an_error(tmp_path):
    msg = read_error(put(tmp_path, "ax,ay\n1,2\n3,4\n5,6,7\n8,9\n", name="long.csv"))
    assert "long.csv" in msg and "line 4" in msg
    msg = read_error(put(tmp_path, "1,2\n3,4\n5,6,7\n8,9\n", name="long.csv"))
    assert "line 3" in msg


# -- choosing columns ---------------------------------------------------------------------------


def test_columns_override(tmp_path):
    path = put(tmp_path, "time,ax,ay,az\n0,1,2,3\n1,4,5,6\n2,7,8,9\n")
    rec = read_csv_recording(path, columns=["az", "ax"])
    assert rec.layout.channel_columns == ["az", "ax"]
    assert rec.layout.dropped_columns == ["time", "ay"]
    np.testing.assert_array_equal(rec.values, np.float32([[3, 1], [6, 4], [9, 7]]))
    assert read_csv_recording(path, columns=["AY"]).layout.channel_columns == ["ay"]
    assert read_csv_recording(path, columns="az, ax").layout.channel_columns == ["az", "ax"]

    msg = read_error(path, columns=["ax", "gx"])
    assert "'gx'" in msg and all(name in msg for name in ("'time'", "'ax'", "'ay'", "'az'"))
    assert "twice" in read_error(path, columns=["ax", "ax"])


def test_columns_override_without_header(tmp_path):
    path = put(tmp_path, "0,1,2\n1,4,5\n2,7,8\n")
    assert read_csv_recording(path).layout.channel_columns == ["c1", "c2"]
    rec = read_csv_recording(path, columns=["2", "c0"])
    assert rec.layout.channel_columns == ["c2", "c0"]
    np.testing.assert_array_equal(rec.values, np.float32([[2, 0], [5, 1], [8, 2]]))
    assert "c3" in read_error(path, columns=["c3"])


# -- writing back -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bom", "crlf"),
    [
        (
            "timestamp;ax;ay;label\n0.00;1;-2.5;walk\n0.02;0.1;3;walk\n0.04;7;0.001;run\n",
            True,
            True,
        ),
        ("ax\tay\n1\t2\n3\t4\n5\t6\n", False, False),
        ("0,0.5,1\n1,0.25,2\n2,-1,3\n", False, True),
        (",ax,ay\n0,1.5,2\n1,2.5,3\n2,3.5,4\n", False, False),
    ],
)
def test_round_trip_is_identical(tmp_path, text, bom, crlf):
    src = put(tmp_path, text, bom=bom, crlf=crlf)
    rec = read_csv_recording(src)
    dst = tmp_path / "out" / "view.csv"
    write_csv_like(rec, rec.values, dst)
    again = read_csv_recording(dst)
    np.testing.assert_array_equal(again.values, rec.values)
    assert again.layout == rec.layout
    assert again.other.equals(rec.other)
    assert dst.read_bytes() == src.read_bytes(), "a plainly written file comes back byte for byte"


def test_round_trip_of_arbitrary_float32(tmp_path):
    rng = np.random.default_rng(0)
    rec = read_csv_recording(put(tmp_path, "ax,ay,az\n1,2,3\n4,5,6\n7,8,9\n"))
    view = np.concatenate([rng.standard_normal((3, 3)), rng.standard_normal((3, 3)) * 1e-7])
    view = (view * [1, 1e6, 1e-30]).astype(np.float32)
    view[0, 0] = np.float32(16777217.0)
    rec2 = CsvRecording(rec.path, rec.layout, view, rec.other.reindex(range(6)), 0)
    write_csv_like(rec2, view, tmp_path / "v.csv")
    np.testing.assert_array_equal(read_csv_recording(tmp_path / "v.csv").values, view)


def test_a_view_carries_its_timestamps_and_labels(tmp_path):
    rows = [f"{i * 0.01:.2f},{i},{-i},{'walk' if i < 2 else 'run'}" for i in range(4)]
    src = put(tmp_path, "time,ax,ay,label\n" + "\n".join(rows) + "\n")
    rec = read_csv_recording(src)
    view = rec.values * 2
    dst = tmp_path / "w.csv"
    write_csv_like(rec, view, dst)
    assert dst.read_text().splitlines() == [
        "time,ax,ay,label",
        "0.00,0,0,walk",
        "0.01,2,-2,walk",
        "0.02,4,-4,run",
        "0.03,6,-6,run",
    ]
    back = read_csv_recording(dst)
    np.testing.assert_array_equal(back.values, view)
    assert back.other["time"].tolist() == ["0.00", "0.01", "0.02", "0.03"]


def test_write_refuses_bad_views(tmp_path):
    rec = read_csv_recording(put(tmp_path, "ax,ay\n1,2\n3,4\n5,6\n"))
    with pytest.raises(DataError, match="shape"):
        write_csv_like(rec, np.zeros((2, 3)), tmp_path / "a.csv")
    with pytest.raises(DataError, match="whole recording"):
        write_csv_like(rec, np.zeros((2, 2)), tmp_path / "a.csv")
    bad = np.zeros((3, 2), dtype=np.float32)
    bad[1, 0] = np.nan
    with pytest.raises(DataError, match="not finite"):
        write_csv_like(rec, bad, tmp_path / "a.csv")
    assert not (tmp_path / "a.csv").exists()


# -- stray quotes and long names ------------------------------------------------------------------


def walk_file(tmp_path: Path, edit=None, name: str = "w0.csv", crlf: bool = False) -> Path:
    """t,note,a,b with 64 rows; `edit` maps a 1-based line number to its new text."""
    lines = ["t,note,a,b"] + [f"{j},walk,{j * 0.5:.3f},{-j:.3f}" for j in range(64)]
    for line, text in (edit or {}).items():
        lines[line - 1] = text
    return put(tmp_path, "\n".join(lines) + "\n", name=name, crlf=crlf)


def test_a_stray_quote_names_its_line_instead_of_swallowing_the_file(tmp_path, capsys):
    """`10,"walk,...` on line 12 used to make lines 12-65 one text cell: a 12-row recording,
    edge-padded in training without a word. Now the file is skipped, named, with the line."""
    for crlf in (False, True):
        msg = read_error(walk_file(tmp_path, {12: '10,"walk,5.000,-10.000'}, crlf=crlf))
        assert msg.startswith(str(tmp_path / "w0.csv")) and "line 12: a quote opens" in msg
        assert "lines 12-65" in msg
    # closed again on a later line: still not one recording's worth of rows
    msg = read_error(walk_file(tmp_path, {3: '1,"walk,0.5,-1', 5: '3,walk",1.5,-3'}))
    assert "line 3:" in msg and "(to line 5)" in msg
    # training and vm augment skip it by name, as other unreadable CSVs
    from vmcli.data import MODALITIES, LoadOptions, scan
    from vmcli.data.sensor import SensorModality

    folder = tmp_path / "s_t"
    folder.mkdir()
    for i in range(4):
        walk_file(folder, {12: '10,"walk,5.000,-10.000'} if i == 0 else None, name=f"w{i}.csv")
    data = SensorModality().load(folder, scan(folder, MODALITIES).items, LoadOptions())
    assert [p.name for p, _ in data.skipped] == ["w0.csv"] and data.x.shape[0] == 3
    assert "w0.csv" in capsys.readouterr().err


def test_quoted_cells_on_one_line_still_read(tmp_path):
    rec = read_csv_recording(
        walk_file(tmp_path, {2: '0,"walk, slow",0.000,0.000', 5: '3,"said ""hi""",1.5,-3'})
    )
    assert rec.values.shape == (64, 2) and rec.layout.dropped_columns == ["t", "note"]
    assert rec.other["note"].tolist()[:4] == ["walk, slow", "walk", "walk", 'said "hi"']
    np.testing.assert_array_equal(rec.values[:, 0], np.arange(64, dtype=np.float32) * 0.5)


def test_a_view_with_a_255_byte_name_is_written(tmp_path):
    """The temporary name used to be `name + ".part"`: 260 bytes, "File name too long"."""
    rec = read_csv_recording(put(tmp_path, "ax,ay\n1,2\n3,4\n5,6\n"))
    out = tmp_path / "views"
    dst = out / ("q" * 251 + ".csv")
    write_csv_like(rec, rec.values, dst)
    assert [p.name for p in out.iterdir()] == [dst.name]  # no temporary file left
    np.testing.assert_array_equal(read_csv_recording(dst).values, rec.values)


def test_a_view_keeps_the_inputs_digits_and_its_gaps(tmp_path):
    """Numbers went through float32 (47.3768959 → 47.376892: a latitude lost 60 % of its
    distinct values) and gaps came back filled with invented readings. Now: each cell plus
    the view's change in decimal, an unchanged cell as it was, a gap still empty."""
    lat = [f"47.37689{i:02d}" for i in range(8)]
    rows = [f"{a},{i * 0.5}" if i != 3 else f",{i * 0.5}" for i, a in enumerate(lat)]
    rec = read_csv_recording(put(tmp_path, "lat,ax\n" + "\n".join(rows) + "\n"))
    assert rec.interpolated == 1
    view = rec.values.copy()
    view[:, 0] += np.float32(0.0012345)
    view[5, 1] += np.float32(0.25)  # one changed ax cell; the others unchanged
    dst = tmp_path / "v.csv"
    write_csv_like(rec, view, dst)
    lines = dst.read_text().splitlines()
    assert lines[0] == "lat,ax"
    got_lat = [ln.split(",")[0] for ln in lines[1:]]
    got_ax = [ln.split(",")[1] for ln in lines[1:]]
    assert got_lat[3] == ""  # the gap stays a gap
    for i in (0, 1, 7):  # the input's digits plus the change, to float32's 7 digits of it
        assert float(got_lat[i]) == pytest.approx(float(lat[i]) + 0.0012345, abs=2e-6)
        assert len(set(got_lat[i][:10]) - set("0123456789.")) == 0
    assert len({s for s in got_lat if s}) == 7  # every distinct input value stays distinct
    assert got_ax[:5] == ["0.0", "0.5", "1.0", "1.5", "2.0"] and got_ax[6:] == ["3.0", "3.5"]
    assert float(got_ax[5]) == pytest.approx(2.75)


def test_a_view_keeps_repeated_header_names_and_scientific_notation(tmp_path):
    """A repeated column name came back renamed (`ax.1`) and scientific cells as plain
    decimals (`-7.241060e-01` → `-0.9058608`)."""
    text = "ax,ay,ax\n-7.241060e-01,1.5E+00,3\n2.000000e-02,2.5E+00,4\n1.0e-3,3.5E+00,5\n"
    rec = read_csv_recording(put(tmp_path, text))
    view = rec.values.copy()
    view[:, 0] -= np.float32(0.1817548)
    dst = tmp_path / "v.csv"
    write_csv_like(rec, view, dst)
    lines = dst.read_text().splitlines()
    assert lines[0] == "ax,ay,ax"
    first = [ln.split(",")[0] for ln in lines[1:]]
    assert first[:2] == ["-9.058608e-01", "-1.617548e-01"]
    assert first[2] == "-1.807548e-1"  # a one-digit exponent stays one digit
    assert [ln.split(",")[1] for ln in lines[1:]] == ["1.5E+00", "2.5E+00", "3.5E+00"]
    again = read_csv_recording(dst)
    assert np.allclose(again.values[:, 0], view[:, 0], rtol=1e-6)


def test_columns_that_differ_in_case_only_may_both_be_chosen(tmp_path):
    """`--columns x,X` names two columns of a file with both (names match exactly first):
    refused up front as a duplicate it was not; an exact repeat still is."""
    from vmcli.config import LoadOptions
    from vmcli.errors import ConfigError

    LoadOptions(columns=["x", "X"]).validate()
    with pytest.raises(ConfigError, match="--columns names 'x' more than once"):
        LoadOptions(columns=["x", " x"]).validate()
    rec = read_csv_recording(put(tmp_path, "x,X,y\n1,2,3\n4,5,6\n"), columns=["x", "X"])
    np.testing.assert_array_equal(rec.values, np.float32([[1, 2], [4, 5]]))
