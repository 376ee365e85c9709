"""The example-weather DataNodeServer (``apex_archive``).

It is the smallest complete DataNodeServer, so it doubles as the reference
for writing one and as the data behind the demo dashboards. The archive is a
fortnight of files (see ``sisock.demo.weather``) read once into memory: every
request is then a binary search and, when asked, a min/max decimation, with
no file access.

Replay maps that fortnight onto the fortnight ending now, so a demo shows
"live-looking" panels with relative time ranges. The shift is a whole number
of hours, recomputed on each request: the same request gives the same answer
for an hour, and the data slides forward as time passes without a restart.
"""

from __future__ import annotations

import glob
import math
import os
import time
from typing import NamedTuple

import numpy as np

from sisock import contract, runtime
from sisock.base import DataNodeServer
from sisock.runtime import Setting

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weather_data")
HOUR = 3600
HEADER_LINES = 4
TRUTHY = frozenset({"1", "true", "yes"})


def replay_from_env(env=None) -> bool:
    env = os.environ if env is None else env
    return env.get("WEATHER_REPLAY", "").strip().lower() in TRUTHY


def data_dir_from_env(env=None) -> str:
    env = os.environ if env is None else env
    return env.get("WEATHER_DATA") or DEFAULT_DATA


class DatFile(NamedTuple):
    path: str
    description: str
    timeline: str
    units: str
    first_date: str
    t: np.ndarray
    values: np.ndarray


def read_dat(path: str) -> DatFile:
    """One ``.dat`` file: four header lines starting with ``#`` and a space,
    then ``<unix time> <value>`` rows."""
    with open(path, encoding="utf-8") as f:
        header = [f.readline() for _ in range(HEADER_LINES)]
    if not all(line.startswith("# ") for line in header):
        raise ValueError(f"{path}: expected {HEADER_LINES} header lines starting with '# ' "
                         "(description, timeline, units, first date)")
    description, timeline, units, first_date = (line[2:].rstrip("\r\n") for line in header)
    rows = np.loadtxt(path, comments="#", dtype=np.float64, ndmin=2)
    if rows.shape[0] == 0 or rows.shape[1] != 2:
        raise ValueError(f"{path}: expected rows of '<unix time> <value>', got shape {rows.shape}")
    t = rows[:, 0].copy()
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"{path}: sample times must be strictly increasing")
    return DatFile(path, description, timeline, units, first_date, t, rows[:, 1].copy())


class Archive:
    """Every field of a data folder in memory, grouped into timelines.

    Loaded once per process and shared by the sessions that reconnections
    create, so a router restart does not re-read the files.
    """

    def __init__(self, data_dir: str):
        paths = sorted(glob.glob(os.path.join(data_dir, "*.dat")))
        if not paths:
            raise FileNotFoundError(f"no .dat files in {data_dir} (set WEATHER_DATA?)")
        self.fields: dict[str, dict] = {}
        groups: dict[str, list[tuple[str, DatFile]]] = {}
        for path in paths:
            dat = read_dat(path)
            name = os.path.splitext(os.path.basename(path))[0]
            self.fields[name] = contract.field_info(dat.timeline, dat.description, dat.units)
            groups.setdefault(dat.timeline, []).append((name, dat))
        self.timelines = [self._timeline(tname, members) for tname, members in groups.items()]
        self.intervals = {
            tl.name: float(np.median(np.diff(tl.t))) if len(tl.t) > 1 else None for tl in self.timelines
        }
        #: Replay lands this instant on the current whole hour, so it must be one too.
        self.end = math.ceil(max(tl.t[-1] for tl in self.timelines) / HOUR) * HOUR

    @staticmethod
    def _timeline(name: str, members) -> contract.Timeline:
        _, first = members[0]
        for _, other in members[1:]:
            if not np.array_equal(other.t, first.t):
                raise ValueError(
                    f"timeline {name!r}: {other.path} and {first.path} have different sample times; "
                    "fields sharing a timeline must be sampled at the same times"
                )
        values = {field: dat.values for field, dat in members}
        return contract.Timeline(name, first.t, values, finalized_until=float(first.t[-1]))

    def shifted(self, shift: int) -> list[contract.Timeline]:
        if not shift:
            return self.timelines
        return [
            contract.Timeline(tl.name, tl.t + shift, tl.fields, tl.finalized_until + shift)
            for tl in self.timelines
        ]


class WeatherServer(DataNodeServer):
    """Serve the example APEX weather archive.

    The archive is read once per process, in :meth:`prepare`, and shared by
    every session: a router restart then costs no re-reading, and a folder
    that cannot be read stops the script before it connects.
    """

    name = "apex_archive"
    description = "Archived APEX weather (example data)"
    script = "sisock-weather-server"
    settings = (
        Setting("replay", replay_from_env, flag="--replay", action="store_true",
                help="shift the archive to end at the current hour (also WEATHER_REPLAY=1)"),
        Setting("data_dir", data_dir_from_env),
    )

    @classmethod
    def prepare(cls, settings):
        return {"replay": settings.replay, "archive": Archive(settings.data_dir)}

    def __init__(self, config=None, replay: bool | None = None, data_dir: str | None = None,
                 archive: Archive | None = None):
        super().__init__(config)
        self.replay = replay_from_env() if replay is None else bool(replay)
        self.archive = archive if archive is not None else Archive(data_dir or data_dir_from_env())

    def shift(self) -> int:
        """Seconds added to archive times: zero, or whole hours under replay."""
        if not self.replay:
            return 0
        return int(time.time() // HOUR) * HOUR - self.archive.end

    def _get_fields_blocking(self, start, end):
        timelines = self.archive.shifted(self.shift())
        live = {
            tl.name for tl in timelines
            if np.searchsorted(tl.t, end, side="right") > np.searchsorted(tl.t, start, side="left")
        }
        fields = {name: info for name, info in self.archive.fields.items() if info["timeline"] in live}
        return contract.fields_reply(fields, {name: self.archive.intervals[name] for name in live})

    def _get_data_blocking(self, field, start, end, min_stride=None):
        if isinstance(field, str):
            field = [field]
        return contract.data_reply(field, self.archive.shifted(self.shift()), start, end, min_stride)


def main(argv=None):
    runtime.run(WeatherServer, argv)


if __name__ == "__main__":
    main()
