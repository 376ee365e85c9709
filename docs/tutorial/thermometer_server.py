"""A simulated cryostat thermometer, served by sisock.

This is the complete server of the tutorial "Writing your own
DataNodeServer". The test suite runs this very file as a process against a
real router, so the tutorial cannot drift away from working code.

With a router running on this machine (``sisock up --servers none`` in
another terminal), start it from the repository's top folder with::

    SISOCK_CERT=.sisock/crossbar/server_cert.pem python docs/tutorial/thermometer_server.py

and plot ``thermometer::temperature`` in Grafana or on the quicklook page.
"""

from __future__ import annotations

import os
import time

import numpy as np

import sisock
from sisock import contract

#: Seconds between two readings. Readings fall on whole multiples of it since
#: the epoch, so every request (and every run) sees the same sample times.
INTERVAL = 10.0
#: How far back the simulated instrument keeps its readings.
HISTORY = 2 * 86400.0
#: All fields are read together, so they share one timeline.
TIMELINE = "thermometer"
#: Below this temperature (K) the heater is on.
SETPOINT = 4.0
#: Once an hour the readout glitches by this much (K): the kind of one-sample
#: spike a week-long panel must still show.
GLITCH = 2.5


def temperature(t):
    """Kelvin at the UNIX times ``t``.

    A triangle wave over the UTC day, 3 K at midnight and 5 K at noon, plus a
    glitch on the reading taken at the top of every hour. Only ``+ - * /``,
    ``abs`` and ``mod`` are used: numpy computes those exactly alike on every
    machine, so the values are a pure function of the time.
    """
    t = np.asarray(t, dtype=np.float64)
    phase = np.mod(t, 86400.0) / 86400.0
    kelvin = 3.0 + 2.0 * (1.0 - 2.0 * np.abs(phase - 0.5))
    return kelvin + np.where(np.mod(t, 3600.0) == 0.0, GLITCH, 0.0)


def heater(t):
    """Heater power in W: 0.5 W while the temperature is below the setpoint."""
    return np.where(temperature(t) < SETPOINT, 0.5, 0.0)


def reading_times(start, end, now):
    """The times of the readings in ``[start, end]``: none in the future and
    none older than :data:`HISTORY`."""
    first = max(start, now - HISTORY)
    last = min(end, now)
    if last < first:
        return np.zeros(0)
    k0, k1 = np.ceil(first / INTERVAL), np.floor(last / INTERVAL)
    return np.arange(k0, k1 + 1) * INTERVAL


class ThermometerServer(sisock.base.DataNodeServer):
    """Serves ``temperature`` and ``heater`` on one timeline."""

    # The data node's name: fields are shown as <name>::<field>. Read from
    # the environment so that two thermometers can run side by side.
    name = os.environ.get("THERMOMETER_NAME", "thermometer")
    description = "Simulated cryostat thermometer (tutorial)"

    FIELDS = {
        "temperature": contract.field_info(TIMELINE, "Cold plate temperature", units="K"),
        "heater": contract.field_info(TIMELINE, "Heater power", units="W"),
    }

    def _get_fields_blocking(self, start, end):
        """The fields that have readings in ``[start, end]``."""
        if len(reading_times(start, end, time.time())) == 0:
            return contract.fields_reply({})
        return contract.fields_reply(self.FIELDS, {TIMELINE: INTERVAL})

    def _get_data_blocking(self, field, start, end, min_stride=None):
        """The readings of the fields in ``field`` within ``[start, end]``."""
        t = reading_times(start, end, time.time())
        readings = contract.Timeline(
            TIMELINE, t, {"temperature": temperature(t), "heater": heater(t)},
            finalized_until=float(t[-1]) if len(t) else None,
        )
        return contract.data_reply(field, [readings], start, end, min_stride)


if __name__ == "__main__":
    raise SystemExit(sisock.run(ThermometerServer))
