"""What the text-archive DataNodeServers (apex-weather, ucsc-radiometer) share.

Both archives are folders of small text files of ``<number> <number>`` rows
whose names say which field and which time span they hold. A request lists
the folder (cached until the folder changes), opens only the files whose
span from the name overlaps it, and parses each with a handful of numpy
passes over its bytes, never a Python loop per line. Parsed files sit in a
byte-bounded LRU cache keyed by path, size and mtime, so a file that grows
or is rewritten is read again and an answer never depends on which requests
came first. Each field is its own timeline, as files of different fields are
sampled independently.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from typing import NamedTuple

import numpy as np
import txaio

from sisock import config, contract
from sisock.base import DataNodeServer
from sisock.cache import ByteLRU
from sisock.downsample import sorted_unique, stride_for
from sisock.runtime import Setting

log = txaio.make_logger()

DEFAULT_CACHE_MB = 256
#: A folder listing is trusted only if the folder's mtime is older than this
#: when listed: mtimes have coarse (jiffy) granularity, so a file created in
#: the same tick as the listing would otherwise go unseen until the next one.
RACY_SECONDS = 1.0


class ArchiveFile(NamedTuple):
    """One file and what its name says: its field and the closed span
    ``[t0, t1]`` its samples lie in. Column one becomes a UNIX time as
    ``origin + x * unit`` (``unit`` is 1 for UNIX times, 86400 for days)."""

    field: str
    t0: float
    t1: float
    path: str
    origin: float = 0.0
    unit: float = 1.0


class Layout:
    """How one archive names its files. Subclasses set :attr:`subdir`,
    :attr:`header_lines` and :attr:`fields`, and implement :meth:`match`."""

    subdir = ""
    header_lines = 0
    #: ``{field: (description, units)}`` for the fields the format defines.
    fields: dict[str, tuple[str, str]] = {}

    def match(self, name: str, path: str) -> ArchiveFile | None:
        raise NotImplementedError

    def scan(self, folder: str) -> list[ArchiveFile]:
        out = []
        with os.scandir(folder) as entries:
            for entry in entries:
                found = self.match(entry.name, entry.path)
                if found is not None and entry.is_file():
                    out.append(found)
        return out


class Parsed(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    malformed: int


def _byte_class(chars: bytes) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[list(chars)] = True
    return table


_SPACE = _byte_class(b" \t\r\n\v\f")
#: Bytes a row of two floats (including ``nan``/``inf``) can contain.
_NUMERIC = _byte_class(b"0123456789+-.eEnNaAiIfF \t\r\n\v\f")
_HASH = ord("#")


def parse_pairs(data: bytes, header_lines: int = 0) -> Parsed:
    """Rows of exactly two numbers from ``data``, and how many lines were malformed.

    Blank lines, ``#`` comments and the first ``header_lines`` lines are
    ignored; rows with a NaN or infinite number are dropped (the archives
    write NaN for "no reading"); any other line that is not two numbers is
    malformed. Lines are classified with whole-buffer numpy operations, and
    the good ones are parsed in one ``np.loadtxt`` call (C code). Only if a
    line passes the byte-level checks and still is not two numbers (say
    ``1.2.3 4``) are the candidate lines converted one by one.
    """
    if not data.endswith(b"\n"):
        data += b"\n"
    buf = np.frombuffer(data, dtype=np.uint8)
    is_nl = buf == 10
    nlines = int(np.count_nonzero(is_nl))
    line = np.cumsum(is_nl, dtype=np.int64) - is_nl  # line index of every byte
    space = _SPACE[buf]
    tok = np.flatnonzero(~space & np.r_[True, space[:-1]])  # first byte of every token
    tok_line = line[tok]
    tokens = np.bincount(tok_line, minlength=nlines)
    bad = np.bincount(line[~_NUMERIC[buf]], minlength=nlines) > 0
    first_tok = np.r_[True, tok_line[1:] != tok_line[:-1]]
    ignored = tokens == 0
    ignored[tok_line[first_tok & (buf[tok] == _HASH)]] = True
    ignored[:header_lines] = True
    good = (tokens == 2) & ~bad & ~ignored
    malformed = int(np.count_nonzero(~good & ~ignored))
    if not good.any():
        empty = np.zeros(0)
        return Parsed(empty, empty, malformed)
    text = buf[good[line]].tobytes()
    try:
        rows = np.loadtxt(io.BytesIO(text), dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        rows, rejected = _parse_slowly(text)
        malformed += rejected
    keep = np.isfinite(rows).all(axis=1)
    return Parsed(rows[keep, 0], rows[keep, 1], malformed)


def _parse_slowly(text: bytes):
    rows, rejected = [], 0
    for raw in text.splitlines():
        try:
            a, b = raw.split()
            rows.append((float(a), float(b)))
        except ValueError:
            rejected += 1
    return np.array(rows, dtype=np.float64).reshape(-1, 2), rejected


class TextArchive:
    """The files of one archive folder, parsed on demand through the cache."""

    def __init__(self, root: str, layout: Layout, cache: ByteLRU | None = None):
        self.root = root
        self.layout = layout
        self.folder = os.path.join(root, layout.subdir)
        self.cache = cache if cache is not None else ByteLRU(DEFAULT_CACHE_MB * 1024 * 1024)
        #: Malformed lines per file, as last parsed (logged when it changes).
        self.malformed: dict[str, int] = {}
        self._listing: tuple[int, dict[str, list[ArchiveFile]]] | None = None
        self._lock = threading.Lock()

    # -- which files --------------------------------------------------------

    def files(self) -> dict[str, list[ArchiveFile]]:
        """``{field: files sorted by t0}``; re-listed only when the folder changed."""
        try:
            mtime = os.stat(self.folder).st_mtime_ns
        except OSError:
            return {}
        with self._lock:
            if self._listing is not None and self._listing[0] == mtime:
                return self._listing[1]
        listed_at = time.time_ns()
        by_field: dict[str, list[ArchiveFile]] = {}
        try:
            found = self.layout.scan(self.folder)
        except OSError as exc:
            log.warn("cannot list {folder}: {e}", folder=self.folder, e=exc)
            return {}
        for f in sorted(found, key=lambda f: (f.t0, f.t1, f.path)):
            by_field.setdefault(f.field, []).append(f)
        if listed_at - mtime > RACY_SECONDS * 1e9:
            with self._lock:
                self._listing = (mtime, by_field)
        return by_field

    @staticmethod
    def overlapping(files: list[ArchiveFile], start: float, end: float) -> list[ArchiveFile]:
        return [f for f in files if f.t0 <= end and f.t1 >= start]

    # -- what is in them ----------------------------------------------------

    def samples(self, f: ArchiveFile) -> tuple[np.ndarray, np.ndarray]:
        """``(t, values)`` of one file, sorted by time; empty if it vanished."""
        try:
            st = os.stat(f.path)
        except OSError:
            return np.zeros(0), np.zeros(0)
        key = (f.path, st.st_size, st.st_mtime_ns)
        return self.cache.get_or_compute(key, lambda: self._read(f, key))

    def _read(self, f: ArchiveFile, key) -> tuple[np.ndarray, np.ndarray]:
        # The file changed: older versions of it are dead weight in the cache.
        self.cache.discard(lambda k: k[0] == f.path and k != key)
        try:
            with open(f.path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            log.warn("cannot read {path}: {e}", path=f.path, e=exc)
            return np.zeros(0), np.zeros(0)
        parsed = parse_pairs(data, self.layout.header_lines)
        if parsed.malformed and self.malformed.get(f.path) != parsed.malformed:
            log.warn("{path}: skipped {n} malformed line(s)", path=f.path, n=parsed.malformed)
        self.malformed[f.path] = parsed.malformed
        t = to_unix(parsed.x, f.origin, f.unit)
        return sorted_unique(t, parsed.y)

    def series(self, names, start: float, end: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{name: (t, values)}`` with ``start <= t <= end``; names without data left out."""
        files = self.files()
        out = {}
        for name in dict.fromkeys(names):
            parts_t, parts_v = [], []
            for f in self.overlapping(files.get(name, ()), start, end):
                t, v = self.samples(f)
                lo, hi = np.searchsorted(t, start, "left"), np.searchsorted(t, end, "right")
                if hi > lo:
                    parts_t.append(t[lo:hi])
                    parts_v.append(v[lo:hi])
            if parts_t:
                out[name] = sorted_unique(np.concatenate(parts_t), np.concatenate(parts_v))
        return out

    def fields_with_data(self, start: float, end: float) -> list[str]:
        """Fields with at least one sample in ``[start, end]``; stops at the
        first file that proves it, so one parse per field is the usual cost."""
        found = []
        for name, files in self.files().items():
            for f in self.overlapping(files, start, end):
                t, _ = self.samples(f)
                if np.searchsorted(t, end, "right") > np.searchsorted(t, start, "left"):
                    found.append(name)
                    break
        return sorted(found)


def to_unix(x: np.ndarray, origin: float, unit: float) -> np.ndarray:
    """UNIX times from column one. Day fractions are rounded to the
    millisecond: finer digits are float noise of the ``* 86400``, and the
    formats carry at most ~1 ms (8 decimals of a day is 0.86 ms)."""
    if unit == 1.0:
        return x + origin if origin else x
    return origin + np.round(x * (unit * 1000.0)) / 1000.0


def cache_bytes_from_env(env=None) -> int:
    return int(config.positive_number("ARCHIVE_CACHE_MB", DEFAULT_CACHE_MB, env) * 1024 * 1024)


class TextArchiveServer(DataNodeServer):
    """A DataNodeServer over one :class:`TextArchive`; subclasses set
    :attr:`name`, :attr:`description`, :attr:`layout`, :attr:`script` and a
    docstring (the command's description). The archive and its cache are
    made once per process, so a reconnection keeps what was parsed."""

    layout: Layout
    settings = (
        Setting("root", config.data_directory),
        Setting("max_points", config.max_points),
        Setting("cache_bytes", cache_bytes_from_env),
    )

    @classmethod
    def prepare(cls, settings):
        archive = TextArchive(settings.root, cls.layout, ByteLRU(settings.cache_bytes))
        if not os.path.isdir(archive.folder):
            print(f"{cls.script}: warning: {archive.folder} does not exist (yet); serving no fields until it does",
                  file=sys.stderr, flush=True)
        print(f"{cls.script}: serving {archive.folder} as {cls.name}", flush=True)
        return {"archive": archive, "max_points": settings.max_points}

    def __init__(self, config=None, archive: TextArchive | None = None, max_points: int | None = None):
        super().__init__(config)
        self.archive = archive
        self.max_points = max_points

    def _get_fields_blocking(self, start, end):
        known = self.layout.fields
        info = {}
        for name in self.archive.fields_with_data(start, end):
            description, units = known.get(name, (None, None))
            info[name] = contract.field_info(name, description, units)
        return contract.fields_reply(info)

    def _get_data_blocking(self, field, start, end, min_stride=None):
        stride = stride_for(min_stride, start, end, self.max_points)
        series = self.archive.series(field, start, end)
        timelines = [contract.Timeline(name, t, {name: v}) for name, (t, v) in series.items()]
        return contract.data_reply(field, timelines, start, end, stride or None, self.max_points)
