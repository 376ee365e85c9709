"""Deterministic example archives for the apex-weather and ucsc-radiometer servers.

The tests, the docs and ``sisock up --archives-demo`` need archives whose
every value is known. The writers return exactly what a correct reader
must serve: values are written with fixed decimals and returned as the
float those decimals parse to; times are whole seconds. UCSC times are
written as fractional days of year with 8 decimals (1e-8 day = 0.864 ms),
so the whole second is recovered exactly after the reader's rounding to the
millisecond; the writer checks that before returning.

Optional defects (NaN rows, blank lines, malformed lines) are injected at
fixed positions, so tests can count what the reader must skip.

    python -m sisock.demo.archives DIR [--days N]
"""

from __future__ import annotations

import argparse
import calendar
import os
import time
from dataclasses import dataclass, field

import numpy as np

DAY = 86400
#: (mean, amplitude of the daily cycle, noise, decimals) of each APEX field,
#: in the order the files are written; the fields are those the
#: apex-weather server knows (the tests check both lists agree).
APEX_SHAPES = {
    "humidity": (30.0, 15.0, 2.0, 2),
    "pressure": (555.0, 1.5, 0.2, 2),
    "radiometer": (1.2, 0.6, 0.1, 3),
    "dewpoint": (-15.0, 4.0, 0.5, 2),
    "temperature": (-2.0, 6.0, 0.4, 2),
    "windspeed": (25.0, 10.0, 3.0, 2),
    "winddirection": (180.0, 90.0, 20.0, 1),
}
UCSC_DECIMALS = 3
DOY_DECIMALS = 8
#: Malformed lines injected in turn; every one must be skipped and counted.
MALFORMED = (b"garbage", b"1700000000", b"1 2 3", b"1.2.3 4", b"12 abc", b"nan", b"--- ---")


@dataclass
class Written:
    """What a writer put on disk: ``series[field] = (t, values)`` as a
    reader must serve them (NaN rows left out), and the files written with
    the number of malformed lines each holds."""

    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)

    def add(self, name, t, v):
        if name in self.series:
            t0, v0 = self.series[name]
            t, v = np.r_[t0, t], np.r_[v0, v]
        self.series[name] = (t, v)


@dataclass(frozen=True)
class Defects:
    """Every ``nan_every``-th sample is written as NaN, a blank line follows
    every ``blank_every``-th row and a malformed line every ``malformed_every``-th."""

    nan_every: int = 0
    blank_every: int = 0
    malformed_every: int = 0


NONE = Defects()


def _times(start: float, end: float, cadence: int) -> np.ndarray:
    """Whole-second sample times in ``[start, end)``, aligned on the epoch."""
    first = -(-int(np.ceil(start)) // cadence) * cadence
    return np.arange(first, end, cadence, dtype=np.int64)


def _values(t: np.ndarray, mean, amplitude, noise, decimals, seed) -> np.ndarray:
    # Seeded by the first time too, so each file is reproducible on its own.
    rng = np.random.default_rng([seed, int(t[0]) if len(t) else 0])
    v = mean + amplitude * np.sin(2 * np.pi * t / DAY) + noise * rng.standard_normal(len(t))
    return np.round(v, decimals)


def _write(path: str, header: bytes, xs: list[str], ys: list[str], nan_mask, defects: Defects) -> int:
    """Write rows, with defects; returns the malformed lines written."""
    lines, malformed = [header] if header else [], 0
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        lines.append(f"{x} {'NaN' if nan_mask[i] else y}".encode())
        n = i + 1
        if defects.blank_every and n % defects.blank_every == 0:
            lines.append(b"   " if n % (2 * defects.blank_every) else b"")
        if defects.malformed_every and n % defects.malformed_every == 0:
            lines.append(MALFORMED[(n // defects.malformed_every) % len(MALFORMED)])
            malformed += 1
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return malformed


def _nan_mask(n: int, defects: Defects) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    if defects.nan_every:
        mask[defects.nan_every - 1::defects.nan_every] = True
    return mask


def write_apex(directory, start: float, end: float, cadence: int = 60, file_days: float = 1, seed: int = 0,
               fields=None, defects: Defects = NONE) -> Written:
    """APEX files under ``directory/targets``, one per field per
    ``file_days`` (aligned on the epoch), named by their first and last
    sample times; samples every ``cadence`` s in ``[start, end)``."""
    out = Written()
    span = int(file_days * DAY)
    for name in fields or APEX_SHAPES:
        mean, amplitude, noise, decimals = APEX_SHAPES[name]
        t_all = _times(start, end, cadence)
        chunk = t_all // span
        for c in np.unique(chunk):
            t = t_all[chunk == c]
            v = _values(t, mean, amplitude, noise, decimals, seed + sorted(APEX_SHAPES).index(name))
            nan = _nan_mask(len(t), defects)
            path = os.path.join(directory, "targets", f"APEX_{name}_{t[0]}_{t[-1]}.dat")
            ys = [f"{x:.{decimals}f}" for x in v]
            out.files[path] = _write(path, b"", [str(x) for x in t], ys, nan, defects)
            out.add(name, t[~nan].astype(np.float64), np.array(ys, dtype=np.float64)[~nan])
    return out


def _read_back_doy(doy: np.ndarray, origin: float) -> np.ndarray:
    """UNIX times as a reader gets them from days of year: rounded to the
    millisecond, the most the format carries (8 decimals of a day is 0.86 ms)."""
    return origin + np.round(doy * (DAY * 1000.0)) / 1000.0


def ucsc_name(year: int, doy: int) -> str:
    """The site's name for a day's file: ``DDD-YYYY`` up to 2018 day 201, ``YYYY-DDD`` after."""
    if (year, doy) <= (2018, 201):
        return f"PWV_UCSC_{doy:03d}-{year}.txt"
    return f"PWV_UCSC_{year}-{doy:03d}.txt"


def write_ucsc(directory, start: float, end: float, cadence: int = 60, seed: int = 0,
               defects: Defects = NONE) -> Written:
    """UCSC files under ``directory/PWV``, one per UTC day; samples every
    ``cadence`` s in ``[start, end)``."""
    out = Written()
    t_all = _times(start, end, cadence)
    days = t_all // DAY
    for d in np.unique(days):
        t = t_all[days == d]
        year, _, _, _, _, _, _, yday, _ = time.gmtime(int(d) * DAY)
        origin = calendar.timegm((year, 1, 1, 0, 0, 0)) - DAY  # day 1.0 is the year's first instant
        doy = [f"{x:.{DOY_DECIMALS}f}" for x in (t - origin) / DAY]
        parsed = _read_back_doy(np.array(doy, dtype=np.float64), origin)
        if not np.array_equal(parsed, t):
            raise AssertionError(f"{DOY_DECIMALS} decimals of a day do not round-trip to the second")
        v = np.abs(_values(t, 1.0, 0.5, 0.2, UCSC_DECIMALS, seed))
        ys = [f"{x:.{UCSC_DECIMALS}f}" for x in v]
        nan = _nan_mask(len(t), defects)
        path = os.path.join(directory, "PWV", ucsc_name(year, yday))
        out.files[path] = _write(path, b"DayOfYear PWV(mm)", doy, ys, nan, defects)
        out.add("pwv", t[~nan].astype(np.float64), np.array(ys, dtype=np.float64)[~nan])
    return out


def write_demo(directory, days: float = 7, end: float | None = None, cadence: int = 60) -> tuple[Written, Written]:
    """Both archives, ``days`` long, ending at ``end`` (now, to the minute)."""
    end = float(int(time.time() // 60 * 60) if end is None else end)
    start = end - days * DAY
    return write_apex(directory, start, end, cadence), write_ucsc(directory, start, end, cadence)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sisock.demo.archives",
                                     description="Write example APEX weather and UCSC radiometer archives.")
    parser.add_argument("directory", help="DATA_DIRECTORY to write (targets/ and PWV/ inside)")
    parser.add_argument("--days", type=float, default=7, help="days of data, ending now (default 7)")
    parser.add_argument("--cadence", type=int, default=60, help="seconds between samples (default 60)")
    args = parser.parse_args(argv)
    apex, ucsc = write_demo(args.directory, args.days, cadence=args.cadence)
    print(f"wrote {len(apex.files)} APEX and {len(ucsc.files)} UCSC files under {args.directory} "
          f"({args.days:g} days ending {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")


if __name__ == "__main__":
    main()
