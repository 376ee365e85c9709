"""A DataNodeServer written the way the in-tree ones are: settings declared
on the class, once-per-process work in ``prepare``, a ``main`` of one line.

tests/test_server_registry.py adds it to the table of servers and checks
that ``sisock up`` and the console scripts pick it up; tests/test_runtime.py
runs it against the test router. Its values are a function of its settings,
so a test can tell each setting arrived.
"""

from __future__ import annotations

import math
import time

import numpy as np

from sisock import config, contract, runtime
from sisock.base import DataNodeServer
from sisock.runtime import Setting

ENTRY_POINT = "runtime_counter:main"
#: How many seconds back the counter has values (bounds a reply).
HISTORY = 600


def node_name(env) -> str:
    name = env.get("NAME") or "counter"
    problem = contract.node_name_problem(name)
    if problem is not None:
        raise config.ConfigError(f"NAME {problem}: {name!r}")
    return name


class CounterServer(DataNodeServer):
    """Serve a counter that steps every second, for the runtime's tests.

    One setting of each kind the runtime reads: a variable (``NAME``), a
    variable checked by a parser of sisock.config (``COUNTER_STEP``), and a
    flag over a variable (``--offset``, ``COUNTER_OFFSET``).
    """

    description = "A counter run by sisock.runtime"
    script = "sisock-counter-server"
    settings = (
        Setting("node", node_name),
        Setting("step", lambda env: config.positive_number("COUNTER_STEP", 1.0, env)),
        Setting("offset", lambda env: config.positive_number("COUNTER_OFFSET", 1.0, env), flag="--offset",
                type=float, help="the counter's value at a whole multiple of 100 s (also COUNTER_OFFSET)"),
    )

    @classmethod
    def prepare(cls, settings):
        print(f"{cls.script}: counting by {settings.step:g} from {settings.offset:g} as {settings.node}", flush=True)
        return {"name": settings.node, "step": settings.step, "offset": settings.offset}

    def __init__(self, config=None, name: str = "counter", step: float = 1.0, offset: float = 1.0):
        super().__init__(config)
        self.name, self.step, self.offset = name, step, offset

    def value(self, t):
        return self.offset + self.step * (np.asarray(t) % 100)

    def _timeline(self, start, end) -> contract.Timeline:
        now = math.floor(time.time())
        t = np.arange(max(math.ceil(start), now - HISTORY), min(math.floor(end), now) + 1, dtype=np.float64)
        return contract.Timeline("counter", t, {"count": self.value(t)}, finalized_until=None)

    def _get_fields_blocking(self, start, end):
        if not len(self._timeline(start, end).t):
            return contract.fields_reply({})
        return contract.fields_reply({"count": contract.field_info("counter")}, {"counter": 1.0})

    def _get_data_blocking(self, field, start, end, min_stride=None):
        return contract.data_reply(field, [self._timeline(start, end)], start, end, min_stride)


def main(argv=None):
    runtime.run(CounterServer, argv)


if __name__ == "__main__":
    main()
