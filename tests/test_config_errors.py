"""A bad setting stops every console script with one line and exit code 2.

Each script is run as a real process with everything else it needs set, so
the one thing wrong is the variable under test, and the answer must name it
(no traceback, no retry loop)."""

from __future__ import annotations

import os

import pytest

from procs import refused_at_start

SCRIPTS = ["sisock-crossbar", "sisock-hub", "sisock-http", "sisock-weather-server", "sisock-sensors-server",
           "sisock-g3-file-scanner", "sisock-g3-reader-server", "sisock-apex-weather-server",
           "sisock-radiometer-server", "sisock-data-feed-server", "sisock-thermometry-server"]
BAD = [("LOGLEVEL", "loud"), ("CROSSBAR_TLS_PORT", "eighty"), ("PORT", "x"),
       ("SISOCK_ROUTER_SOCKET", "/tmp/" + "a-socket-path-longer-than-a-unix-socket-may-be" * 3)]


#: Who reads what: PORT only the bridge, the router's address every WAMP
#: client (the scanner is none), LOGLEVEL everyone.
READS = {"PORT": {"sisock-http"}, "CROSSBAR_TLS_PORT": set(SCRIPTS) - {"sisock-g3-file-scanner"},
         "SISOCK_ROUTER_SOCKET": set(SCRIPTS) - {"sisock-g3-file-scanner"}}
CASES = [(script, variable, value) for script in SCRIPTS for variable, value in BAD
         if script in READS.get(variable, SCRIPTS)]


@pytest.mark.parametrize(("script", "variable", "value"), CASES)
def test_bad_setting_is_one_line_and_exit_2(tmp_path, script, variable, value):
    env = {**os.environ, "DATA_DIRECTORY": str(tmp_path), "SISOCK_STATE_DIR": str(tmp_path),
           "TARGET": "agent", "FEED": "feed", "NAME": "node", "DESCRIPTION": "d", "WAMP_SECRET": "s", variable: value}
    assert variable in refused_at_start(script, env, cwd=tmp_path)
