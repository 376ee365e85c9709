"""Importing the library (and what it pulls in) prints nothing at all."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", [
    "sisock", "sisock.base", "sisock.client", "autobahn", "autobahn.twisted.wamp",
    "autobahn.wamp.serializer", "crossbar", "sisock.components.http.app", "sisock.servers.weather",
])
def test_import_is_silent(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
