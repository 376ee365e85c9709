"""The ``sensors`` DataNodeServer: live readings of the host it runs on.

Temperatures come from lm-sensors when it is installed, else straight from
the kernel's sysfs; CPU, load, memory and disk use come from psutil, so a
VM with no temperature sensors still has something to show. Everything is
sampled together onto one timeline and kept in a bounded ring
(:class:`sisock.ring.TimeRing`, as the live feeds are), so memory does not
grow with uptime.

The sampler belongs to the process, not to the WAMP session:
``SensorsServer.prepare`` builds it once and every session a reconnection creates shares it, so a router
restart neither loses the buffer nor leaves a gap in it.
"""

from __future__ import annotations

import glob
import math
import os
import re
import shutil
import socket
import subprocess
import time

import numpy as np
import psutil
import txaio
from twisted.internet import task, threads

from sisock import contract, runtime
from sisock.base import DataNodeServer
from sisock.ring import TimeRing
from sisock.runtime import Setting

TIMELINE = "sensors"
DEFAULT_INTERVAL = 5.0
MIN_INTERVAL = 0.2
DEFAULT_BUFFER = 1800.0
#: Extra slots so jitter in the sampling period never cuts the buffer short.
SLACK = 16
SENSORS_TIMEOUT = 10.0
_NOT_GIVEN = object()

SYSTEM_FIELDS = {  # name: (units, description)
    "cpu_percent": ("%", "CPU use"),
    "load_1m": ("", "load average over 1 minute"),
    "memory_percent": ("%", "memory in use"),
    "disk_percent": ("%", "disk space in use"),
}


def field_name(*parts: str) -> str:
    """Dashboards address fields by name, so names must be plain and stable."""
    return re.sub(r"[^a-z0-9]+", "_", "_".join(parts).lower()).strip("_")


def _add(out: dict, name: str, value: float):
    """Two sensors may share a label (e.g. two NVMe drives): number the later ones."""
    unique, n = name, 1
    while unique in out:
        n += 1
        unique = f"{name}_{n}"
    out[unique] = value


def _natural(path: str):
    """thermal_zone10 after thermal_zone2, so names stay stable as zones are added."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path)]


# -- temperature sources ----------------------------------------------------------

_TEMP_INPUT = re.compile(r"temp\d+_input")


def parse_sensors_u(text: str) -> dict[str, float]:
    """Temperatures (degC) from ``sensors -u`` output.

    Chips are separated by blank lines; a chip starts with its name and an
    ``Adapter:`` line, then each feature is an unindented ``label:`` line
    followed by indented ``subfeature: value`` lines.
    """
    out: dict[str, float] = {}
    chip = feature = None
    for line in text.splitlines():
        if not line.strip():
            chip = feature = None
        elif line[0].isspace():
            key, _, value = line.strip().partition(":")
            if chip and feature and _TEMP_INPUT.fullmatch(key.strip()):
                try:
                    _add(out, field_name(chip, feature), float(value))
                except ValueError:
                    pass
        elif chip is None:
            chip = line.strip()
        elif line.startswith("Adapter:"):
            continue
        elif line.rstrip().endswith(":"):
            feature = line.rstrip()[:-1]
    return out


def run_sensors(executable: str) -> str:
    # Parsed whatever the exit status: sensors fails when one chip cannot be
    # read but still prints the others.
    done = subprocess.run([executable, "-u"], capture_output=True, text=True, timeout=SENSORS_TIMEOUT, check=False)
    return done.stdout


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:  # sysfs answers EIO/ENODATA for sensors that are present but asleep
        return None


def _millidegrees(path: str) -> float | None:
    text = _read(path)
    try:
        return int(text) / 1000.0 if text else None
    except ValueError:
        return None


def kernel_temperatures(root: str = "/sys") -> dict[str, float]:
    """Temperatures (degC) from sysfs: thermal zones, then hwmon chips."""
    out: dict[str, float] = {}
    for zone in sorted(glob.glob(os.path.join(root, "class/thermal/thermal_zone*")), key=_natural):
        value = _millidegrees(os.path.join(zone, "temp"))
        if value is not None:
            _add(out, field_name(os.path.basename(zone), _read(os.path.join(zone, "type")) or ""), value)
    for hwmon in sorted(glob.glob(os.path.join(root, "class/hwmon/hwmon*")), key=_natural):
        chip = _read(os.path.join(hwmon, "name")) or os.path.basename(hwmon)
        for path in sorted(glob.glob(os.path.join(hwmon, "temp*_input")), key=_natural):
            value = _millidegrees(path)
            if value is not None:
                sensor = os.path.basename(path)[: -len("_input")]
                label = _read(os.path.join(hwmon, f"{sensor}_label")) or sensor
                _add(out, field_name(chip, label), value)
    return out


def system_readings(disk: str = "/") -> dict[str, float]:
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "load_1m": psutil.getloadavg()[0],
        "memory_percent": psutil.virtual_memory().percent,
        "disk_percent": psutil.disk_usage(disk).percent,
    }


# -- the sampler --------------------------------------------------------------------

class Sampler:
    """Reads the host every ``interval`` seconds into a ring of ``buffer`` seconds.

    Fields are fixed at construction, so dashboards see a stable list; a
    sensor that disappears later reads NaN until it comes back.
    """

    def __init__(self, interval: float = DEFAULT_INTERVAL, buffer: float = DEFAULT_BUFFER, disk: str = "/",
                 sys_root: str = "/sys", sensors=_NOT_GIVEN, clock=time.time):
        self.log = txaio.make_logger()
        self.interval = max(MIN_INTERVAL, float(interval))
        self.disk = disk
        self.sys_root = sys_root
        self.clock = clock
        self.sensors = shutil.which("sensors") if sensors is _NOT_GIVEN else sensors
        psutil.cpu_percent(interval=None)  # the first call only sets the reference
        system = system_readings(disk)  # a bad disk path fails here, not silently later
        self.source, temps = "lm-sensors", self._lm_sensors()
        if not temps:
            self.source, temps = "sysfs", kernel_temperatures(sys_root)
        if not temps:
            self.source = None
        self.fields = {name: contract.field_info(TIMELINE, f"temperature ({self.source})", "C") for name in temps}
        for name in system:
            units, description = SYSTEM_FIELDS[name]
            if name == "disk_percent":
                description = f"{description} on {disk}"
            self.fields[name] = contract.field_info(TIMELINE, description, units)
        samples = math.ceil(float(buffer) / self.interval) + SLACK
        self.ring = TimeRing(float(buffer) + SLACK * self.interval, capacity=samples, max_samples=samples,
                             channels=self.fields)
        self._missing: set[str] = set()
        self._loop = None

    def _lm_sensors(self) -> dict[str, float]:
        if not self.sensors:
            return {}
        try:
            return parse_sensors_u(run_sensors(self.sensors))
        except (OSError, subprocess.SubprocessError) as exc:
            self.log.warn("{cmd} -u failed: {e}", cmd=self.sensors, e=exc)
            return {}

    def read(self) -> dict[str, float]:
        values: dict[str, float] = {}
        if self.source == "lm-sensors":
            values.update(self._lm_sensors())
        elif self.source == "sysfs":
            values.update(kernel_temperatures(self.sys_root))
        try:
            values.update(system_readings(self.disk))
        except OSError as exc:
            self.log.warn("psutil failed: {e}", e=exc)
        return values

    def sample(self):
        t = self.clock()
        values = self.read()
        gone = {name for name in self.fields if name not in values}
        for name in sorted(gone - self._missing):
            self.log.warn("{name} can no longer be read; recording NaN until it is back", name=name)
        for name in sorted(self._missing - gone):
            self.log.info("{name} can be read again", name=name)
        self._missing = gone
        newest = self.ring.newest
        if newest is not None and t <= newest:
            # The clock stepped back: start afresh rather than serve the
            # samples stamped in what is now the future as the latest.
            self.ring.clear()
        self.ring.extend([t], {name: [value] for name, value in values.items() if name in self.fields})

    def snapshot(self):
        return self.ring.snapshot()

    # Sampling runs in a worker thread: `sensors` and sysfs reads can take a
    # while, and the reactor must keep answering requests meanwhile.
    def _tick(self):
        d = threads.deferToThread(self.sample)
        d.addErrback(lambda f: self.log.failure("sampling failed: {log_failure.value}", failure=f))
        return d

    def start(self):
        """Start sampling (in the reactor thread); idempotent."""
        if self._loop is None or not self._loop.running:
            self._loop = task.LoopingCall(self._tick)
            self._loop.start(self.interval, now=True)

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()


def sampler_from_env(env=None, interval: float | None = None) -> Sampler:
    env = os.environ if env is None else env
    try:
        if interval is None:
            interval = float(env.get("SENSORS_INTERVAL") or DEFAULT_INTERVAL)
        buffer = float(env.get("SENSORS_BUFFER") or DEFAULT_BUFFER)
    except ValueError:
        raise ValueError("SENSORS_INTERVAL and SENSORS_BUFFER must be numbers of seconds") from None
    if not (math.isfinite(interval) and math.isfinite(buffer) and interval > 0 and buffer > 0):
        raise ValueError(f"SENSORS_INTERVAL ({interval}) and SENSORS_BUFFER ({buffer}) must be positive")
    return Sampler(interval, buffer, disk=env.get("SENSORS_DISK") or "/")


# -- the server ---------------------------------------------------------------------

class SensorsServer(DataNodeServer):
    """Serve live temperatures and load of this host.

    Sampling starts with the process, not with the first session, so the
    buffer fills even while the router is unreachable.
    """

    name = "sensors"
    description = f"Live readings of {socket.gethostname()}"
    script = "sisock-sensors-server"
    settings = (
        Setting("interval", flag="--interval", type=float, default=None,
                help=f"seconds between samples (also SENSORS_INTERVAL; default {DEFAULT_INTERVAL:g}, "
                     f"at least {MIN_INTERVAL:g})"),
    )

    @classmethod
    def prepare(cls, settings):
        from twisted.internet import reactor

        sampler = sampler_from_env(interval=settings.interval)
        reactor.callWhenRunning(sampler.start)  # sample even while the router is unreachable
        return {"sampler": sampler}

    def __init__(self, config=None, sampler: Sampler | None = None):
        super().__init__(config)
        # Each machine runs its own; NAME keeps their names apart on one router.
        self.name = os.environ.get("NAME") or type(self).name
        # A sampler of its own (old-style runners) lives and dies with the session.
        self._own_sampler = sampler is None
        self.sampler = sampler_from_env() if sampler is None else sampler

    def after_onJoin(self, details):
        self.sampler.start()

    def onLeave(self, details):
        if self._own_sampler:
            self.sampler.stop()
        super().onLeave(details)

    def _timeline(self) -> contract.Timeline:
        t, values = self.sampler.snapshot()
        return contract.Timeline(TIMELINE, t, values, finalized_until=None)

    def _get_fields_blocking(self, start, end):
        t = self._timeline().t
        if not np.any((t >= start) & (t <= end)):
            return contract.fields_reply({})
        return contract.fields_reply(self.sampler.fields, {TIMELINE: self.sampler.interval})

    def _get_data_blocking(self, field, start, end, min_stride=None):
        return contract.data_reply(field, [self._timeline()], start, end, min_stride)


def main(argv=None):
    runtime.run(SensorsServer, argv)


if __name__ == "__main__":
    main()
