"""With the router gone the bridge answers 503 with a reason; when it is
back, bridge, hub and servers reconnect by themselves."""

import requests

from conftest import Stack
from procs import wait_for


def test_router_stopped_gives_503_then_recovers(tmp_path):
    s = Stack(str(tmp_path))
    try:
        s.start_router()
        s.proc("hub", "sisock-hub").start()
        s.proc("http", "sisock-http").start()
        s.proc("weather", "sisock-weather-server").start()

        def weather_listed():
            r = requests.post(s.http + "/search", json={"target": "apex_radiometer"}, timeout=2)
            return r.status_code == 200 and r.json() == ["apex_archive::apex_radiometer"]

        wait_for(weather_listed, 60, "the bridge to list the weather server")
        s.router.kill()
        body = {"range": {"from": "2017-07-14T00:00:00Z", "to": "2017-07-15T00:00:00Z"},
                "targets": [{"target": "apex_archive::apex_pressure"}]}

        def refused():
            r = requests.post(s.http + "/query", json=body, timeout=5)
            return [r] if r.status_code == 503 else None  # a Response is falsy when not ok

        (r,) = wait_for(refused, 30, "a 503 from the bridge")
        assert "router" in r.json()["message"]
        assert requests.post(s.http + "/search", json={}, timeout=5).status_code == 503
        assert requests.get(s.http + "/", timeout=5).status_code == 503
        s.start_router()
        wait_for(weather_listed, 60, "bridge, hub and weather server to reconnect")
    finally:
        s.stop_all()
