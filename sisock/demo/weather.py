"""Deterministic example APEX weather for the example-weather DataNodeServer
(``apex_archive``), which serves the files committed under
``servers/weather_data``; ``python -m sisock.demo.weather`` rewrites them.

The example server needs data that looks like weather, so dashboards and
spike-preserving downsampling can be judged by eye, yet is identical on every
run so the files can be committed and checked against a fresh generation.
Hence the legacy ``RandomState`` (numpy freezes its stream, unlike
``Generator``'s), a fixed seed, and times built from integer UTC seconds
only, never from the clock or the local time zone.

Each series ends with three single-sample glitches placed above everything
else in it, so a test can find them as the three largest values.
"""

from __future__ import annotations

import argparse
import calendar
import importlib.util
import os
import time

import numpy as np

SEED = 20170713
START = calendar.timegm((2017, 7, 13, 0, 0, 0))
END = calendar.timegm((2017, 7, 27, 0, 0, 0))


def _servers_folder() -> str:
    """Where ``sisock.servers`` lives: ``servers/`` beside ``sisock/`` in the
    repository, ``sisock/servers`` once installed. Found without importing
    it, since the library does not depend on the servers."""
    return importlib.util.find_spec("sisock.servers").submodule_search_locations[0]


#: The example-weather server's package data, which these files are.
DEFAULT_OUT = os.path.join(_servers_folder(), "weather_data")
DAY = 86400.0
SPIKES = 3


def diurnal(t, peak_hour_utc: float, period_hours: float = 24.0):
    """A cosine peaking at ``peak_hour_utc``; APEX's solar noon is ~16:30 UTC."""
    hours = (np.asarray(t) % 86400) / 3600.0
    return np.cos(2 * np.pi * (hours - peak_hour_utc) / period_hours)


def ar1(rng, n: int, step: float, tau: float, sd: float):
    """Mean-reverting random walk, so weather wanders over days but stays bounded."""
    phi = np.exp(-step / tau)
    kicks = rng.standard_normal(n) * sd * np.sqrt(1 - phi * phi)
    x = np.empty(n)
    x[0] = kicks[0] / np.sqrt(1 - phi * phi)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + kicks[i]
    return x


def add_spikes(rng, values, amplitude: float):
    """Put one glitch in each third of the series, above its normal maximum."""
    v = values.copy()
    n = len(v)
    top = v.max()
    for k in range(SPIKES):
        i = rng.randint(k * n // SPIKES + 2, (k + 1) * n // SPIKES - 2)
        v[i] = top + amplitude * (1 + 0.5 * rng.random_sample())
    return v


def series(rng):
    """``{name: (description, timeline, units, decimals, t, values)}``."""
    th = np.arange(START, END + 1, 3600, dtype=np.int64)
    tm = np.arange(START, END + 1, 60, dtype=np.int64)
    nh, nm = len(th), len(tm)

    day_cycle = 4.0 * diurnal(th, 19.0)
    temperature = -0.5 + day_cycle + ar1(rng, nh, 3600, 2 * DAY, 1.5) + 0.25 * rng.standard_normal(nh)
    # Multiplicative, so dry spells approach zero without piling up on a floor.
    log_humidity = -0.12 * (temperature + 0.5) + ar1(rng, nh, 3600, 1.5 * DAY, 0.3)
    humidity = np.clip(22.0 * np.exp(log_humidity + 0.05 * rng.standard_normal(nh)), 1.0, 85.0)
    pressure = 555.0 + 0.7 * diurnal(th, 14.5, 12.0) + ar1(rng, nh, 3600, 3 * DAY, 1.2)
    pressure += 0.05 * rng.standard_normal(nh)
    gusts = rng.gamma(2.0, 2.5, nh)
    calm_to_gale = 18.0 + 7.0 * diurnal(th, 20.0) + ar1(rng, nh, 3600, DAY, 6.0)
    windspeed = 4.0 * np.logaddexp(0.0, calm_to_gale / 4.0) + gusts  # smoothly positive
    log_pwv = ar1(rng, nm, 60, DAY, 0.45) + ar1(rng, nm, 60, 1800, 0.05) + 0.1 * diurnal(tm, 20.0)
    pwv = np.clip(np.exp(log_pwv) * (1 + 0.01 * rng.standard_normal(nm)), 0.15, 6.0)

    return {
        "apex_humidity": ("APEX relative humidity", "apex_weather", "%", 1, th,
                          add_spikes(rng, humidity, 9.0)),
        "apex_pressure": ("APEX atmospheric pressure", "apex_weather", "mBar", 2, th,
                          add_spikes(rng, pressure, 4.0)),
        "apex_radiometer": ("APEX radiometer precipitable water vapour", "apex_radiometer", "mm", 3,
                            tm, add_spikes(rng, pwv, 1.5)),
        "apex_temperature": ("APEX air temperature", "apex_weather", "C", 2, th,
                             add_spikes(rng, temperature, 6.0)),
        "apex_windspeed": ("APEX wind speed", "apex_weather", "km/h", 1, th,
                           add_spikes(rng, windspeed, 40.0)),
    }


def render(description, timeline, units, decimals, t, values) -> str:
    # Adding 0.0 turns -0.0 into 0.0, so no "-0.00" appears in the files.
    rounded = np.round(values, decimals) + 0.0
    first_date = time.strftime("%Y-%m-%d", time.gmtime(int(t[0])))
    header = [f"# {description}", f"# {timeline}", f"# {units}", f"# {first_date}"]
    rows = [f"{ti} {vi:.{decimals}f}" for ti, vi in zip(t.tolist(), rounded.tolist(), strict=True)]
    return "\n".join(header + rows) + "\n"


def generate(out: str = DEFAULT_OUT) -> list[str]:
    """Write the five ``.dat`` files into ``out``; returns their paths."""
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(SEED)
    paths = []
    for name, spec in series(rng).items():
        path = os.path.join(out, f"{name}.dat")
        with open(path, "w", encoding="ascii", newline="\n") as f:
            f.write(render(*spec))
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sisock.demo.weather",
                                     description="Write the example APEX weather archive.")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
