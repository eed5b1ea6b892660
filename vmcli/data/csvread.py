"""Read a sensor CSV (rows = time steps, columns = channels) as people export it; write views back.

Real exports vary: ',', ';' or tab between values; a BOM and CRLF line ends from Excel; a header
or not; timestamp, index and label columns beside the channels; empty cells where a sensor
dropped a sample. `read_csv_recording` turns all of that into one float32 T × C array plus a
`CsvLayout`, and `write_csv_like` writes a view in that same layout, so whatever the user reads
their recordings with also reads the views. Every problem is a `DataError` that names the file,
the line where it can be found, and how to fix it.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vmcli.errors import DataError
from vmcli.runs import make_temp_file

if TYPE_CHECKING:
    import pandas as pd

DELIMITERS = ("\t", ";", ",")  # on a tie the one least likely to sit inside a cell wins
EXCEL_SEP = re.compile(r"sep=([,;\t])[ \t]*(\r\n|\n|\r|$)", re.IGNORECASE)  # Excel's hint
MISSING = frozenset({"", "nan", "-nan", "na", "n/a", "#n/a", "null", "none"})
TIME_NAMES = frozenset(
    ["time", "timestamp", "datetime", "date", "index", "idx", "t", "time_s", "time_ms", "ts"]
    + ["seconds", "sample", "frame", "epoch", "elapsed", "unnamed: 0"]
)
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?inf(inity)?", re.IGNORECASE)
DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")
SNIFF_CHARS = 1 << 16  # text looked at to choose the delimiter
SNIFF_LINES = 50  # lines looked at to choose the delimiter
HEADER_SAMPLE = 200  # data rows looked at to decide whether the first row is a header
COLUMNS_HINT = "or choose the channel columns yourself (--columns)"


@dataclass
class CsvLayout:
    """How a file is laid out, so a view can be written back the same way."""

    delimiter: str  # ',', ';' or '\t'
    has_header: bool
    header: list[str]  # all column names as in the file ('c0', 'c1', ... without a header)
    channel_columns: list[str]  # the numeric channel columns used (file order unless chosen)
    dropped_columns: list[str]  # timestamp/index/text/empty columns kept aside (not channels)
    bom: bool  # the file started with a UTF-8 BOM
    line_ending: str  # '\n', '\r\n' or '\r'
    header_cells: list[str] | None = None  # the header as written (repeated names unrenamed)


@dataclass
class CsvRecording:
    """One file's channels as numbers, plus what is needed to write a view of it back."""

    path: Path
    layout: CsvLayout
    values: np.ndarray  # T × C float32, channels in layout.channel_columns order, gaps filled
    other: pd.DataFrame  # the dropped columns' original cells (T rows, strings), for writing back
    interpolated: int  # how many missing channel cells were filled
    # the channel cells as written (T × C strings) and which were missing (T × C bool): a
    # view is written as these numbers plus its change, at their own precision, not rounded
    # through float32, and a missing cell as it was
    cells: np.ndarray | None = None
    gaps: np.ndarray | None = None


@dataclass
class _Column:
    """One column's cells parsed once: numbers, and which cells were missing or not numbers."""

    cells: np.ndarray  # object array of stripped strings
    nums: np.ndarray  # float64; NaN where missing or not a number
    missing: np.ndarray  # bool: empty / NaN / NA / null ...
    junk: np.ndarray  # bool: neither missing nor a number

    @property
    def empty(self) -> bool:
        return bool(self.missing.all())

    @property
    def text(self) -> bool:
        """Some cells hold something and none of them is a number: a label or date column."""
        return bool(self.junk.any()) and bool(np.isnan(self.nums).all())


def read_csv_recording(
    path: Path,
    columns: list[str] | None = None,
    max_gap: int = 5,
    max_missing: float = 0.5,
) -> CsvRecording:
    """Read one recording/window: numeric channels as T × C float32, short gaps interpolated.

    `columns` picks the channels by header name (or 'c0' / '0' positions) in the order given;
    otherwise every numeric column that is not a timestamp or index is a channel. Gaps of up
    to `max_gap` missing cells are filled linearly; a longer gap, or a channel with more than
    `max_missing` of its cells missing, is an error rather than invented data.
    """
    path = Path(path)
    text, bom = _decode(path)
    line_ending = _line_ending(text)
    sep_line = EXCEL_SEP.match(text)
    delimiter = sep_line.group(1) if sep_line else _sniff_delimiter(text)
    rows, lines = _parse_rows(path, text, delimiter)
    if sep_line and rows and lines[0] == 1:  # read it, but it is not data (nor written back)
        rows, lines = rows[1:], lines[1:]
    if not rows:
        raise DataError(f"{path}: the file is empty; a recording needs a row per time step")

    has_header = _looks_like_header(rows)
    if has_header:
        raw_header, rows, lines = rows[0], rows[1:], lines[1:]
        width = len(raw_header)
    else:
        raw_header = []
        width = _common_width(rows)
    if len(rows) < 2:
        raise DataError(
            f"{path}: {len(rows)} data row(s); a recording needs at least 2 rows (time steps)"
            + (
                " below the header"
                if has_header
                else " (a header alone, with no data below it, counts as this row)"
                if len(rows) == 1
                else ""
            )
        )
    rows = _fit_width(path, rows, lines, width, has_header)
    header = _unique_names(raw_header) if has_header else [f"c{i}" for i in range(width)]
    line_no = np.asarray(lines)
    parsed = [_parse_column(np.array([r[j] for r in rows], dtype=object)) for j in range(width)]

    if isinstance(columns, str):  # "ax,ay" as typed on a command line
        columns = [c for c in columns.split(",") if c.strip()]
    comma_hint = "; the cells seem to use ',' as the decimal mark: save the file with '.' decimals"
    if columns is not None:
        try:
            chosen = _resolve_columns(path, columns, header, has_header)
        except DataError as e:  # a header not told apart from junk data rows: say why
            raise DataError(str(e) + (comma_hint if _decimal_commas(parsed) else "")) from None
    else:
        chosen = _auto_channels(parsed, header, has_header)
        if not chosen:
            comma = _decimal_commas(parsed)
            raise DataError(
                f"{path}: no numeric channel column (columns: {', '.join(header)}; timestamp, "
                "index, text and empty columns are not channels); sensor CSVs need one column "
                "of numbers per channel, one row per time step" + (comma_hint if comma else "")
            )
    channel_columns = [header[j] for j in chosen]
    dropped = sorted(set(range(width)) - set(chosen))

    values = np.empty((len(rows), len(chosen)), dtype=np.float32)
    cells = np.empty((len(rows), len(chosen)), dtype=object)
    gaps = np.zeros((len(rows), len(chosen)), dtype=bool)
    interpolated = 0
    for k, j in enumerate(chosen):
        col, filled = _channel_values(path, header[j], parsed[j], line_no, max_gap, max_missing)
        values[:, k] = col
        cells[:, k], gaps[:, k] = parsed[j].cells, parsed[j].missing
        interpolated += filled

    layout = CsvLayout(
        delimiter=delimiter,
        has_header=has_header,
        header=header,
        channel_columns=channel_columns,
        dropped_columns=[header[j] for j in dropped],
        bom=bom,
        line_ending=line_ending,
        header_cells=list(raw_header) if has_header else None,
    )
    import pandas as pd  # loaded on first use: `import vmcli` stays light

    other = pd.DataFrame(
        {header[j]: parsed[j].cells for j in dropped}, index=range(len(rows)), dtype=object
    )
    return CsvRecording(path, layout, values, other, interpolated, cells, gaps)


def write_csv_like(rec: CsvRecording, values: np.ndarray, dst: Path) -> None:
    """Write `values` (T × C, the whole recording) as a CSV laid out like `rec`'s file, so the
    user's tools read it. The dropped columns (timestamps, labels) go beside the values
    unchanged. Each number is the input's cell plus the view's change, added in decimal (a
    7-digit latitude keeps its digits; float32 would round them), an unchanged cell is
    written as it was, and a missing one stays empty (training filled it in); without the
    input's cells, numbers get the shortest text that reads back as the same float32.
    """
    layout, dst = rec.layout, Path(dst)
    arr = np.asarray(values, dtype=np.float32)
    n_ch = len(layout.channel_columns)
    if arr.ndim == 1 and n_ch == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != n_ch:
        raise DataError(
            f"{dst}: values of shape {tuple(arr.shape)} do not fit {rec.path}'s {n_ch} channel(s) "
            f"({', '.join(layout.channel_columns)}); pass a T × {n_ch} array"
        )
    if len(arr) != len(rec.values):
        raise DataError(
            f"{dst}: the view has {len(arr)} rows but {rec.path} has {len(rec.values)}; "
            "a view covers its whole recording"
        )
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise DataError(
            f"{dst}: row {bad} of the view is not finite (NaN or inf); not written, because "
            "the file could not be read back"
        )

    out: dict[str, list[str]] = {}
    floats: dict[str, list[str]] = {}
    for k, name in enumerate(layout.channel_columns):
        out[name] = floats[name] = _format_float32(arr[:, k])
        if rec.cells is not None and rec.gaps is not None and rec.cells.shape == arr.shape:
            change = arr[:, k].astype(np.float64) - rec.values[:, k].astype(np.float64)
            out[name] = _cells_plus(rec.cells[:, k], rec.gaps[:, k], change, floats[name])
    for name in layout.dropped_columns:
        out[name] = rec.other[name].astype(str).tolist()
    blank = [""] * len(arr)
    table = [out.get(name, blank) for name in layout.header]
    for i in range(len(arr)):  # a row of empty gaps would read back as a blank line, no row
        if all(not col[i] for col in table):
            for name in layout.channel_columns:
                out[name][i] = floats[name][i]

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:  # a short temporary name beside it: `dst.name + ".part"` may be too long a name
        tmp = make_temp_file(dst.parent, prefix=".", suffix=".part")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            if layout.bom:
                f.write("\ufeff")
            writer = csv.writer(f, delimiter=layout.delimiter, lineterminator=layout.line_ending)
            if layout.has_header:
                writer.writerow(layout.header_cells or layout.header)
            writer.writerows(zip(*table, strict=True))
        os.replace(tmp, dst)
    except OSError as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise DataError(
            f"{dst}: cannot be written ({e.strerror or e}); check the folder and its permissions"
        ) from None


# -- reading helpers ----------------------------------------------------------------------------


def _decode(path: Path) -> tuple[str, bool]:
    """Bytes to text, noting a UTF-8 BOM; other encodings are a clear error, not mojibake."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in raw[:4096]:
        raise DataError(
            f"{path}: looks like UTF-16 or a binary file; save it as a UTF-8 (or ASCII) CSV"
        )
    bom = raw.startswith(codecs.BOM_UTF8)
    body = raw[len(codecs.BOM_UTF8) :] if bom else raw
    try:
        return body.decode("utf-8"), bom
    except UnicodeDecodeError as e:
        line = body[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: not valid UTF-8 (byte 0x{body[e.start]:02x}); "
            "save the file as UTF-8 CSV"
        ) from None


def _line_ending(text: str) -> str:
    i = text.find("\n")
    if i < 0:
        return "\r" if "\r" in text else "\n"  # old Mac files end lines with CR alone
    return "\r\n" if i > 0 and text[i - 1] == "\r" else "\n"


def _sniff_delimiter(text: str) -> str:
    """Pick the delimiter that splits the first lines most consistently into several fields.

    Ties go to the split with more cells that are numbers, then more fields (',' inside a
    text column of a ';' file does not win). A single-column file gets ','.
    """
    head = text[:SNIFF_CHARS].splitlines()
    sample = [ln for ln in head[: SNIFF_LINES * 2] if ln.strip()][:SNIFF_LINES]
    best, best_score = ",", (0.0, 0.0, 1)
    for d in DELIMITERS:
        rows = list(csv.reader(sample, delimiter=d, skipinitialspace=True))
        if not rows:
            continue
        mode, count = Counter(len(r) for r in rows).most_common(1)[0]
        cells = [c.strip() for r in rows for c in r]
        numeric = sum(_is_number(c) for c in cells) / max(len(cells), 1)
        score = (count / len(rows), numeric, mode)
        if mode > 1 and score > best_score:
            best, best_score = d, score
    return best


def _parse_rows(path: Path, text: str, delimiter: str) -> tuple[list[list[str]], list[int]]:
    """Split into rows of stripped cells with their 1-based line numbers; blank lines go.

    Rows whose cells are all empty are kept inside the data (a missed sample) but dropped at
    the end (spreadsheets often add a few ',,,' lines). A quoted cell that runs over a line
    end is an error naming the line where it opens: it is almost always a stray quote, which
    would otherwise swallow the rest of the file into one text cell without a word.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        end = 0  # the line the previous row ended on
        for cells in reader:
            if reader.line_num > end + 1:
                _unclosed_quote(path, end + 1, reader.line_num)
            end = reader.line_num
            stripped = [c.strip() for c in cells]
            if len(stripped) <= 1 and (not stripped or not stripped[0]):
                continue
            rows.append(stripped)
            lines.append(reader.line_num)
    except csv.Error as e:
        raise DataError(
            f"{path}, line {reader.line_num}: cannot be split into cells ({e})"
        ) from None
    while rows and not any(rows[-1]):
        rows.pop()
        lines.pop()
    return rows, lines


def _unclosed_quote(path: Path, first: int, last: int) -> None:
    """Raise the error for a row the reader took from lines `first` to `last`: a quote opened
    on line `first` and closed only on a later line, or never."""
    raise DataError(
        f"{path}, line {first}: a quote opens a cell on this line that runs over the line end "
        f"(to line {last}), so lines {first}-{last} would be read as one text cell; remove the "
        "stray quote, or close it on the same line (cells that hold line breaks are not read)"
    )


def _is_number(cell: str) -> bool:
    return NUMBER.fullmatch(cell) is not None


def _looks_like_header(rows: list[list[str]]) -> bool:
    """A header if some first-row cell is text while that column below it holds numbers."""
    first, below = rows[0], rows[1 : 1 + HEADER_SAMPLE]
    for j, cell in enumerate(first):
        if cell.lower() in MISSING or _is_number(cell):
            continue
        col = [r[j] for r in below if j < len(r) and r[j].lower() not in MISSING]
        if col and sum(_is_number(c) for c in col) * 2 >= len(col):
            return True
    return False


def _common_width(rows: list[list[str]]) -> int:
    """Without a header, the number of columns is the most common row width (ties: wider)."""
    counts = Counter(len(r) for r in rows)
    return max(counts, key=lambda w: (counts[w], w))


def _fit_width(
    path: Path, rows: list[list[str]], lines: list[int], width: int, has_header: bool
) -> list[list[str]]:
    """Pad short rows with missing cells; refuse rows with extra values (a shifted row)."""
    out = []
    for cells, line in zip(rows, lines, strict=True):
        if len(cells) > width:
            if any(cells[width:]):  # trailing delimiters alone are harmless
                ref = "the header has" if has_header else "most rows have"
                raise DataError(
                    f"{path}, line {line}: {len(cells)} values but {ref} {width}; "
                    "remove the extra values or fix the delimiters on that line"
                )
            cells = cells[:width]
        elif len(cells) < width:
            cells = cells + [""] * (width - len(cells))
        out.append(cells)
    return out


def _unique_names(names: list[str]) -> list[str]:
    """Repeated names get '.1', '.2' (as pandas does) so every column can be named."""
    seen: set[str] = set()
    out = []
    for name in names:
        cand, k = name, 0
        while cand in seen:
            k += 1
            cand = f"{name}.{k}"
        seen.add(cand)
        out.append(cand)
    return out


def _parse_column(cells: np.ndarray) -> _Column:
    import pandas as pd

    series = pd.Series(cells, dtype=object)
    missing = series.str.lower().isin(MISSING).to_numpy(dtype=bool)
    nums = pd.to_numeric(series, errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan, copy=True
    )
    nums[missing] = np.nan
    junk = ~missing & np.isnan(nums)
    return _Column(cells, nums, missing, junk)


def _is_time_name(name: str) -> bool:
    n = name.strip().lower()
    return n in TIME_NAMES or n.startswith("time")


def _is_clock(col: _Column) -> bool:
    """Strictly increasing integers (an index), or strictly increasing with a steady step (a
    clock; the step may jitter within a factor of 3 of its median, as phone timestamps do)."""
    v = col.nums
    if len(v) < 3 or not np.isfinite(v).all():
        return False
    d = np.diff(v)
    if not (d > 0).all():
        return False
    if (v == np.round(v)).all():
        return True
    med = float(np.median(d))
    return bool(d.max() <= 3 * med and d.min() >= med / 3)


def _auto_channels(parsed: list[_Column], header: list[str], has_header: bool) -> list[int]:
    """Numeric columns in file order, minus timestamps/indexes (by name, or by values when
    there is no header or the first column is unnamed) and empty or text columns."""
    numeric = [j for j, c in enumerate(parsed) if not c.empty and not c.text]
    keep = [j for j in numeric if not (has_header and _is_time_name(header[j]))]
    unnamed_first = not has_header or header[0].strip() == ""
    if keep and keep[0] == 0 and len(keep) > 1 and unnamed_first and _is_clock(parsed[0]):
        keep = keep[1:]
    return keep


def _decimal_commas(parsed: list[_Column]) -> bool:
    """Cells that did not read as numbers look like `9,81`: a decimal comma."""
    return any(DECIMAL_COMMA.fullmatch(str(c)) for col in parsed for c in col.cells[col.junk][:20])


def _resolve_columns(
    path: Path, columns: list[str], header: list[str], has_header: bool
) -> list[int]:
    """Names to positions: exact name, else a unique case-insensitive match, else a position."""
    folded = [h.strip().casefold() for h in header]
    out: list[int] = []
    for name in columns:
        s = str(name).strip()
        if s in header:
            j = header.index(s)
        elif folded.count(s.casefold()) == 1:
            j = folded.index(s.casefold())
        elif s.isdigit() and int(s) < len(header):
            j = int(s)
        else:
            avail = ", ".join(repr(h) for h in header)
            extra = (
                ""
                if has_header
                else " (the file has no header: name columns c0, c1, ... or 0, 1, ...)"
            )
            raise DataError(f"{path}: no column {name!r}; available columns: {avail}{extra}")
        if j in out:
            raise DataError(f"{path}: column {header[j]!r} is chosen twice; list each channel once")
        out.append(j)
    if not out:
        raise DataError(f"{path}: no columns chosen; name at least one channel column")
    return out


def _channel_values(
    path: Path, name: str, col: _Column, line_no: np.ndarray, max_gap: int, max_missing: float
) -> tuple[np.ndarray, int]:
    """One channel as float32 with short gaps filled; bad cells and long gaps are errors."""
    if col.junk.any():
        i = int(np.argmax(col.junk))
        cell = str(col.cells[i])
        hint = "fix or empty that cell (short gaps of empty cells are interpolated)"
        if DECIMAL_COMMA.fullmatch(cell) or ";" in cell:
            hint = "the file seems to use ',' as the decimal mark; save it with '.' decimals"
        raise DataError(
            f"{path}, line {line_no[i]}, column {name!r}: {cell!r} is not a number; {hint}, "
            + COLUMNS_HINT
        )
    with np.errstate(over="ignore"):
        vals = col.nums.astype(np.float32)
    bad = np.isinf(vals)
    if bad.any():
        i = int(np.argmax(bad))
        kind = "infinite" if np.isinf(col.nums[i]) else "too large for 32-bit floats"
        raise DataError(
            f"{path}, line {line_no[i]}, column {name!r}: {col.cells[i]!r} is {kind}; replace it "
            f"with a finite value or empty the cell, {COLUMNS_HINT}"
        )
    miss = col.missing
    n_miss = int(miss.sum())
    if n_miss == 0:
        return vals, 0
    if n_miss > max_missing * len(vals) or n_miss == len(vals):
        i = int(np.argmax(miss))
        raise DataError(
            f"{path}, line {line_no[i]}, column {name!r}: {n_miss} of {len(vals)} cells are "
            f"missing (the first on this line), more than {max_missing:.0%}; fill the gaps in "
            f"the file, {COLUMNS_HINT}"
        )
    edges = np.diff(np.concatenate([[0], miss.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    runs = ends - starts
    if (runs > max_gap).any():
        k = int(np.argmax(runs > max_gap))
        s, e = int(starts[k]), int(ends[k]) - 1
        raise DataError(
            f"{path}, line {line_no[s]}, column {name!r}: a gap of {runs[k]} missing values "
            f"(lines {line_no[s]}-{line_no[e]}); at most {max_gap} in a row are interpolated. "
            f"Fill or cut that part of the recording, {COLUMNS_HINT}"
        )
    idx = np.arange(len(vals))
    filled = col.nums.copy()
    filled[miss] = np.interp(idx[miss], idx[~miss], col.nums[~miss])
    return filled.astype(np.float32), n_miss


# -- writing helpers ----------------------------------------------------------------------------


def _cells_plus(
    cells: np.ndarray, gaps: np.ndarray, change: np.ndarray, fallback: list[str]
) -> list[str]:
    """Each cell's number plus its change, in decimal: the change at float32's 7 significant
    digits (what the view computed), the cell's own digits kept. A gap keeps its text ("",
    "NA"...: training filled it in), so does a cell with no change, and a cell decimal cannot
    read takes `fallback`'s text."""
    out = []
    for cell, gap, d, other in zip(
        cells.tolist(), gaps.tolist(), change.tolist(), fallback, strict=True
    ):
        if gap or d == 0:
            out.append(cell)
            continue
        try:
            out.append(_like(cell, Decimal(cell) + Decimal(format(d, ".7g"))))
        except InvalidOperation:
            out.append(other)
    return out


SCIENTIFIC = re.compile(r"[+-]?(\d*)\.?(\d*)([eE])([+-]?)(\d+)")


def _like(cell: str, value: Decimal) -> str:
    """`value` written as `cell` was: in scientific notation with its mantissa's decimals (at
    least the 7 significant digits the change has), its 'e' or 'E' and as many exponent
    digits (`e-01`), else in decimal."""
    form = SCIENTIFIC.fullmatch(cell.strip())
    if form is None:
        return str(value)
    mantissa, exponent = format(value, f".{max(len(form.group(2)), 6)}e").split("e")
    sign = "-" if exponent.startswith("-") else ("+" if form.group(4) == "+" else "")
    digits = exponent.lstrip("+-").zfill(len(form.group(5)))
    return f"{mantissa}{form.group(3)}{sign}{digits}"


def _format_float32(col: np.ndarray) -> list[str]:
    """Shortest of 7, 8 or 9 significant digits that reads back (as the reader parses: float64,
    then float32) as the same float32; 9 always does."""
    v = np.asarray(col, dtype=np.float32)
    xs = v.astype(np.float64).tolist()
    out = [format(x, ".7g") for x in xs]
    todo = np.flatnonzero(_parse_float32(out) != v)
    for spec in (".8g", ".9g"):
        if not todo.size:
            break
        cand = [format(xs[i], spec) for i in todo.tolist()]
        ok = _parse_float32(cand) == v[todo] if spec != ".9g" else np.ones(len(todo), dtype=bool)
        for i, text, good in zip(todo.tolist(), cand, ok.tolist(), strict=True):
            if good:
                out[i] = text
        todo = todo[~ok]
    return out


def _parse_float32(texts: list[str]) -> np.ndarray:
    return np.array([float(t) for t in texts], dtype=np.float64).astype(np.float32)
