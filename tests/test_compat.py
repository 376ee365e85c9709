"""Scripts written for the original sisock run unchanged."""

import os
import shutil

import numpy as np
import pytest

from conftest import node_names
from procs import wait_for

HERE = os.path.dirname(__file__)


@pytest.mark.parametrize("mode", ["class", "instance"])
def test_original_style_script(stack, client, tmp_path, mode):
    os.makedirs(tmp_path / ".crossbar")
    shutil.copy(stack.settings.cert, tmp_path / ".crossbar" / "server_cert.pem")
    name = f"old_{mode}"
    env = {k: v for k, v in stack.env.items() if k != "SISOCK_CERT"}
    p = stack.python(f"old-{mode}", os.path.join(HERE, "servers", "original_style.py"), name, mode,
                     cwd=str(tmp_path))
    p.env = env
    p.start()
    try:
        wait_for(lambda: name in node_names(client), 30, f"{name} to register")
        field, timeline = client.fields(name)
        assert field["counter"]["timeline"] == "tl" and timeline["tl"]["field"] == ["counter"]
        series = client.data(name, ["counter", "unknown"], 1000.0, 2000.0)
        assert np.array_equal(series["counter"].values, [1.0, 2.0, 3.0, 4.0, 5.0])
        assert np.array_equal(series["counter"].t, [1001.0, 1002.0, 1003.0, 1004.0, 1005.0])
        assert "unknown" not in series
    finally:
        p.stop()


def test_base_constants_and_helpers():
    import time

    import sisock

    assert sisock.base.uri("consumer.x.get_data") == "org.simonsobservatory.consumer.x.get_data"
    assert sisock.base.BASE_URI == "org.simonsobservatory" and sisock.base.REALM == "test_realm"
    assert sisock.base.sisock_to_unix_time(1234.5) == 1234.5
    assert abs(sisock.base.sisock_to_unix_time(-60) - (time.time() - 60)) < 1
    assert sisock.base.WAMP_URI.startswith("wss://") and sisock.base.WAMP_URI.endswith("/ws")
    for name in ("WAMP_USER", "WAMP_SECRET", "SISOCK_HOST", "SISOCK_PORT", "OCS_PORT"):
        assert hasattr(sisock.base, name)
