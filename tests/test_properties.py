"""Property tests for the parsers that read users' files: the sensor CSV reader and the folder
scanner. Whatever the input (delimiters, quoting, BOMs, blank lines, NaN runs, random bytes,
odd names, links), the result is a parsed recording / index or a named error (a VmError
subclass) — never a traceback. Bounded for CI; `VM_PROPERTY_EXAMPLES=5000` hunts longer."""

from __future__ import annotations

import io
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from vmcli.data import MODALITIES, scan
from vmcli.data.csvread import read_csv_recording, write_csv_like
from vmcli.data.discover import fingerprint
from vmcli.errors import ConfigError, DataError, VmError

FAST = settings(
    max_examples=int(os.environ.get("VM_PROPERTY_EXAMPLES", 150)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- the CSV reader -------------------------------------------------------------------------------

MISSING = ["", "nan", "NaN", "NA", "n/a", "#N/A", "null", "None", "-nan"]
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda x: f"{x:.6g}"),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from([".5", "5.", "+3", "-0", "1E-3"]),
)
odd_numbers = st.sampled_from(["1e39", "-1e400", "inf", "-Infinity", "1,5", "0x10", "1_000"])
words = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=6)
cells = st.one_of(numbers, numbers, odd_numbers, st.sampled_from(MISSING), words)


def quote(cell: str, how: int) -> str:
    if how == 1:
        return '"' + cell.replace('"', '""') + '"'
    if how == 2:  # a stray quote, as hand-edited files have
        return '"' + cell
    return cell


@st.composite
def csv_texts(draw, messy: bool) -> bytes:
    """Rows of cells — tidy (numbers, a few empty cells, one width) or messy (any cell, any
    width, stray quotes) — with a run of missing values, blank lines, an Excel `sep=` line,
    BOMs, any line ends, and (messy) random bytes spliced in."""
    delimiter = draw(st.sampled_from([",", ";", "\t", "|", " ", ", "]))
    width = draw(st.integers(1, 5))
    cell = cells if messy else st.one_of(numbers, numbers, numbers, numbers, st.just(""))
    rows = []
    if draw(st.booleans()):
        header = ["time", "ax", "ay", "az", "label", "", "ax"] + (["Temp °C"] if messy else [])
        rows.append([draw(st.sampled_from(header)) for _ in range(width)])
    for _ in range(draw(st.integers(0 if messy else 2, 14))):
        row_width = width if not messy or draw(st.integers(0, 5)) else draw(st.integers(0, 7))
        rows.append([draw(cell) for _ in range(row_width)])
    if rows and draw(st.booleans()):  # a run of missing values down one column
        col, start = draw(st.integers(0, width - 1)), draw(st.integers(0, len(rows) - 1))
        for r in rows[start : start + draw(st.integers(1, 8))]:
            if col < len(r):
                r[col] = draw(st.sampled_from(MISSING))
    quoting = st.sampled_from([0, 0, 0, 1, 2] if messy else [0, 0, 0, 0, 1])
    lines = [delimiter.join(quote(c, draw(quoting)) for c in r) for r in rows]
    for _ in range(draw(st.integers(0, 3))):  # blank lines anywhere
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", " ", ",,,"])))
    if draw(st.integers(0, 4)) == 0:
        lines.insert(0, f"sep={delimiter.strip() or ','}")
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    data = (ending.join(lines) + draw(st.sampled_from(["", ending]))).encode("utf-8")
    boms = [b"", b"", b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xef\xbb\xbf\xef\xbb\xbf"]
    data = draw(st.sampled_from(boms)) + data
    if messy and draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=12)) + data[at:]
    return data


any_csv = st.one_of(csv_texts(messy=False), csv_texts(messy=True), st.binary(max_size=200))


def check_recording(path: Path, columns=None):
    """Parse; a named error is fine, anything else must be a usable recording."""
    try:
        rec = read_csv_recording(path, columns=columns)
    except DataError as e:
        assert str(e).startswith(str(path)), e
        event("named error")
        return None
    event("parsed")
    t, c = rec.values.shape
    assert rec.values.dtype == np.float32 and t >= 2 and c >= 1
    assert np.isfinite(rec.values).all()
    assert len(rec.layout.channel_columns) == c and len(rec.other) == t
    assert set(rec.layout.channel_columns) | set(rec.layout.dropped_columns) <= set(
        rec.layout.header
    )
    return rec


@FAST
@given(data=any_csv, pick=st.sampled_from([None, None, None, ["c0"], ["ax", "1"], ["0", "0"]]))
@example(data=b"sep=,\r0\r\r0\r0", pick=None)  # found by this test: a CR-only file's sep= line
def test_csv_reader_parses_or_names_the_problem(data, pick):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rec.csv"
        path.write_bytes(data)
        rec = check_recording(path, pick)
        if rec is None:
            return
        # a view written back in the file's layout reads back as the same numbers
        out = Path(tmp) / "view.csv"
        write_csv_like(rec, rec.values, out)
        again = read_csv_recording(out, columns=rec.layout.channel_columns)
        np.testing.assert_array_equal(again.values, rec.values)
        # and a changed view reads back as the change (cells plus change, in decimal; a gap
        # keeps its text and reads back interpolated from its changed neighbours)
        write_csv_like(rec, rec.values + np.float32(0.5), out)
        moved = read_csv_recording(out, columns=rec.layout.channel_columns)
        np.testing.assert_allclose(moved.values, rec.values + np.float32(0.5), rtol=1e-6, atol=1e-6)
        same = ["has_header", "header", "bom", "line_ending"]
        same += ["delimiter"] if len(rec.layout.header) > 1 else []  # one column: no delimiter
        assert [getattr(again.layout, k) for k in same] == [getattr(rec.layout, k) for k in same]


# -- the folder scanner ---------------------------------------------------------------------------


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _wav() -> bytes:
    body = np.zeros(16, np.int16).tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(body))
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(body))
        + body
    )


CONTENTS = {
    "png": _png(),
    "wav": _wav(),
    "csv": b"ax,ay\n1,2\n3,4\n",
    "jpeg magic": b"\xff\xd8\xff\xe0 not really",
    "empty": b"",
    "text": b"hello\n",
}
names = st.one_of(
    st.sampled_from(
        ["train", "test", "val", "Valid", "cat", "dog", ".hidden", "__MACOSX", "a b", "é", "x.y"]
    ),
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00"),
        min_size=1,
        max_size=8,
    ).filter(lambda n: n not in (".", "..")),
)
extensions = st.sampled_from(
    ["png", "PNG", "jpg", "wav", "flac", "csv", "tsv", "txt", "", "tar.gz", "jpeg"]
)
entries = st.tuples(
    st.lists(names, min_size=0, max_size=3),
    names,
    extensions,
    st.one_of(st.sampled_from(list(CONTENTS)), st.binary(max_size=64)),
)
links = st.lists(st.sampled_from(["broken", "to file", "to parent", "outside"]), max_size=2)


def build(root: Path, files, extra_links) -> None:
    made: list[Path] = []
    for folders, stem, ext, content in files:
        folder = root.joinpath(*folders)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / (f"{stem}.{ext}" if ext else stem)
            path.write_bytes(
                CONTENTS.get(content, content) if isinstance(content, str) else content
            )
        except OSError:  # a name the filesystem refuses, or a file where a folder should be
            continue
        made.append(path)
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "x.png").write_bytes(CONTENTS["png"])
    for i, kind in enumerate(extra_links):
        link = root / f"link{i}"
        target = {
            "broken": root / "nowhere",
            "to file": made[0] if made else root / "nowhere",
            "to parent": root,  # a loop
            "outside": outside,
        }[kind]
        if kind == "outside":
            link = root / f"link{i}.png"  # a link named like an image, to a folder
        os.symlink(target, link)


@settings(
    max_examples=int(os.environ.get("VM_PROPERTY_EXAMPLES", 60)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    files=st.lists(entries, max_size=8),
    extra_links=links,
    modality=st.sampled_from([None, None, "image", "audio", "sensor", "video"]),
)
def test_folder_scanner_indexes_or_names_the_problem(files, extra_links, modality):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        build(root, files, extra_links)
        try:
            index = scan(root, MODALITIES, modality)
        except VmError as e:
            # a bad --modality is the user's option (exit 2); anything else is the data's
            assert isinstance(e, ConfigError if modality == "video" else DataError), e
            event("named error")
            return
        event(f"indexed {index.modality}")
        assert index.modality in MODALITIES and index.items
        assert index.counts[index.modality] >= len(index.items)
        for item in index.items:
            assert not item.path.is_absolute() and ".." not in item.path.parts
            assert (root / item.path).is_file()
            assert item.split in ("", "train", "test", "val")
            assert item.label is None or isinstance(item.label, str)
        fp = fingerprint(index)
        assert fp["files"] >= 1 and fp == fingerprint(index)
