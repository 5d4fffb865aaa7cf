"""CSV files as row sources: a per-rank file or a byte range of a shared one.

The header rule (``header="auto"``), applied to the first line after a UTF-8
byte-order mark, which is always stripped:

- a field that is not a number makes the line a header;
- the integers ``0,1,...,p-1`` (what pandas writes for unnamed columns) with
  ``p >= 2`` make it a header too;
- anything else is data.  A one-column file whose first line is ``0`` is data:
  pass ``header=True`` for a one-column file that pandas wrote with its
  default header.

Rows are parsed by pandas, a block of rows at a time, from a window of the
file's bytes, so a file larger than memory can be read in pieces.
"""

from __future__ import annotations

import io
import os

import numpy as np

from ..errors import InputError
from .sources import Source, parse_csv_bytes, reading

__all__ = ["CSVSource", "sniff_header"]

BOM = b"\xef\xbb\xbf"


def _fields(line: bytes) -> list:
    text = line.decode("utf-8", "replace").strip()
    return [f.strip().strip('"') for f in text.split(",")] if text else []


def sniff_header(first_line: bytes) -> bool:
    """True if the first CSV line (BOM already stripped) is a header; the rule is the module's."""
    fields = _fields(first_line)
    if not fields:
        return False
    for f in fields:
        if f == "":
            continue
        try:
            float(f)
        except ValueError:
            return True
    return len(fields) >= 2 and fields == [str(i) for i in range(len(fields))]


class _Window(io.RawIOBase):
    """Bytes ``[start, stop)`` of a file as a read-only stream (for pandas' parser)."""

    def __init__(self, path, start, stop):
        self._fh = open(path, "rb")  # noqa: SIM115 - stays open for the stream's life; close() closes it
        self._fh.seek(start)
        self._left = stop - start

    def readable(self):
        return True

    def readinto(self, buf):
        n = min(len(buf), self._left)
        if n <= 0:
            return 0
        got = self._fh.readinto(memoryview(buf)[:n])
        self._left -= got
        return got

    def close(self):
        self._fh.close()
        super().close()


def _line_start_at_or_after(fh, pos: int, data_start: int, total: int) -> int:
    """Byte offset of the first line that starts at or after ``pos``."""
    if pos <= data_start:
        return data_start
    if pos >= total:
        return total
    fh.seek(pos - 1)
    while True:
        buf = fh.read(1 << 16)
        if not buf:
            return total
        i = buf.find(b"\n")
        if i >= 0:
            return fh.tell() - len(buf) + i + 1


class CSVSource(Source):
    """This rank's rows of a CSV file.

    ``nrows`` is None until the rows are counted (:meth:`count_rows`) or
    read whole; blocks are read in order (:meth:`read` restarts the parser
    when asked for rows before the current position).
    """

    def __init__(self, path, header="auto", part=None):
        self.path = path
        total = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(len(BOM))
            skip = len(BOM) if head == BOM else 0
            fh.seek(skip)
            first = fh.readline()
            while first and not first.strip():  # leading blank lines
                first = fh.readline()
            first_end = fh.tell()
            is_header = sniff_header(first) if header == "auto" else bool(header)
            data_start = first_end if is_header else skip
            self.names = None
            if is_header:
                self.names = _fields(first)
            self.ncols = len(self.names) if self.names else (len(_fields(first)) or None)
            if part:
                a = data_start + (total - data_start) * part[0] // part[1]
                b = data_start + (total - data_start) * (part[0] + 1) // part[1]
                self._start = _line_start_at_or_after(fh, a, data_start, total)
                self._stop = _line_start_at_or_after(fh, b, data_start, total)
            else:
                self._start, self._stop = data_start, total
        self._reader, self._cursor = None, 0
        self.nrows = 0 if self._stop <= self._start else None

    @property
    def nbytes(self) -> int:
        """Estimated from the text: about one float64 per 8 bytes of text or fewer."""
        return max(0, self._stop - self._start)

    def _open(self):
        import pandas as pd

        self.close()
        names = self.names or list(range(self.ncols or 0))
        window = io.BufferedReader(_Window(self.path, self._start, self._stop), 1 << 20)
        try:
            self._reader = pd.read_csv(window, header=None, names=names, index_col=False,
                                       skip_blank_lines=True, chunksize=1 << 16)
        except pd.errors.EmptyDataError:
            self._reader = None
        self._cursor = 0

    def close(self):
        if self._reader is not None:
            self._reader.close()
        self._reader = None

    def read(self, start, stop):
        import pandas as pd

        from .sources import frame_to_array

        if self.ncols is None or stop <= start:
            return np.empty((0, self.ncols or 0))
        if self._reader is None or start < self._cursor:
            self._open()
        if start > self._cursor:
            self._skip(start - self._cursor)
        with reading(self.path):
            try:
                frame = self._reader.get_chunk(stop - start) if self._reader else None
            except StopIteration:
                frame = None
            except pd.errors.ParserError as exc:
                raise InputError(f"{self.path}: malformed CSV ({exc})".replace("\n", " ")) from None
            except UnicodeDecodeError as exc:
                raise InputError(f"{self.path}: not a text CSV file ({exc})") from None
        if frame is None:
            return np.empty((0, self.ncols))
        self._cursor += len(frame)
        return frame_to_array(frame, self.path)

    def _skip(self, rows):
        while rows > 0:
            got = self.read(self._cursor, self._cursor + min(rows, 1 << 16))
            if not len(got):
                return
            rows -= len(got)

    def blocks(self, rows: int):
        """Yield this block's rows, ``rows`` at a time (sets :attr:`nrows` when done)."""
        self._open()
        n = 0
        while True:
            B = self.read(n, n + rows)
            if not len(B):
                break
            n += len(B)
            yield B
            del B
        self.nrows = n
        self.close()

    def read_all(self):
        if self.ncols is None:
            return None
        if self.nrows == 0:
            return np.empty((0, self.ncols))
        with open(self.path, "rb") as fh:
            fh.seek(self._start)
            chunk = fh.read(self._stop - self._start)
        if not chunk.strip():
            self.nrows = 0
            return np.empty((0, self.ncols))
        names = self.names or list(range(self.ncols))
        arr = parse_csv_bytes(io.BytesIO(chunk), self.path, False, names=names)
        arr = np.empty((0, self.ncols)) if arr is None else arr
        self.nrows = len(arr)
        return arr

    def describe_row(self, row: int) -> str:
        """The file's line of local row ``row`` (blank lines skipped as pandas skips them)."""
        line = 1
        with open(self.path, "rb") as fh:
            pos = 0
            for raw in fh:
                if pos >= self._start and raw.strip():
                    if row == 0:
                        return f"{self.path}, line {line}"
                    row -= 1
                pos += len(raw)
                line += 1
        return f"{self.path}, row {row}"
