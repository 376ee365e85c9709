"""A DataNodeServer that answers with its own process id.

tests/test_shared_nodes.py starts several of them under one name and calls
that name through the router: the ``pid`` in each answer tells which process
the router chose, and ``calls`` how many ``get_data`` calls that process has
answered so far. ``NAME`` names it; it runs through sisock.runtime, so
``--shared`` and ``SISOCK_SHARED`` apply to it as to every in-tree server.

For the tests of answer threads, ``ANSWER_THREADS`` sets
:attr:`~sisock.base.DataNodeServer.answer_threads`, ``WHOAMI_DELAY`` makes
each ``get_data`` answer take that many seconds, and the fields ``peak``
(the most answers this process has had in progress at once) and ``thread``
(the answering thread's name) tell how answers ran.
"""

from __future__ import annotations

import itertools
import os
import threading
import time

from sisock import config, contract, runtime
from sisock.base import DataNodeServer
from sisock.runtime import Setting

PID = os.getpid()
#: get_data calls this process answered (every session of it).
_CALLS = itertools.count(1)
_BUSY = {"now": 0, "peak": 0}
_BUSY_LOCK = threading.Lock()


def node_name(env) -> str:
    name = env.get("NAME") or "whoami"
    problem = contract.node_name_problem(name)
    if problem is not None:
        raise config.ConfigError(f"NAME {problem}: {name!r}")
    return name


class WhoAmI(DataNodeServer):
    """Serve this process's id, for the tests of shared data nodes."""

    description = "Which process answered"
    script = "sisock-whoami-server"
    settings = (Setting("node", node_name),
                Setting("answer_threads", lambda env: config.whole_number("ANSWER_THREADS", 0, env, minimum=0)),
                Setting("delay", lambda env: float(env.get("WHOAMI_DELAY") or 0)))

    @classmethod
    def prepare(cls, settings):
        print(f"{cls.script}: process {PID} serving {settings.node}", flush=True)
        return {"name": settings.node, "answer_threads": settings.answer_threads or None, "delay": settings.delay}

    def __init__(self, config=None, name: str = "whoami", answer_threads: int | None = None, delay: float = 0.0):
        super().__init__(config)
        self.name = name
        self.answer_threads = answer_threads
        self.delay = delay

    def _get_fields_blocking(self, start, end):
        info = {field: contract.field_info("whoami", description=f"{field} of the answering process")
                for field in ("pid", "calls", "peak", "thread")}
        return contract.fields_reply(info, {"whoami": None})

    def _get_data_blocking(self, field, start, end, min_stride=None):
        with _BUSY_LOCK:
            _BUSY["now"] += 1
            _BUSY["peak"] = max(_BUSY["peak"], _BUSY["now"])
        try:
            time.sleep(self.delay)
        finally:
            with _BUSY_LOCK:
                _BUSY["now"] -= 1
        values = {"pid": [PID], "calls": [next(_CALLS)], "peak": [_BUSY["peak"]],
                  "thread": [threading.current_thread().name]}
        data = {name: values.get(name, []) for name in field}
        timeline = {"whoami": {"t": [time.time()], "finalized_until": None}} if any(data.values()) else {}
        return contract.to_wire({"data": data, "timeline": timeline})


def main(argv=None):
    runtime.run(WhoAmI, argv)


if __name__ == "__main__":
    main()
