"""The Python client returns numpy arrays equal to the archive files."""

import os

import numpy as np

from sisock.servers.weather import DEFAULT_DATA


def _file(name):
    rows = [line.split() for line in open(os.path.join(DEFAULT_DATA, name + ".dat")) if not line.startswith("#")]
    return np.array([float(r[0]) for r in rows]), np.array([float(r[1]) for r in rows])


def test_client_data_equals_files(client, weather):
    nodes = {n["name"] for n in client.data_nodes()}
    assert "apex_archive" in nodes
    field, timeline = client.fields("apex_archive")
    assert field["apex_pressure"]["units"] == "mBar"
    assert set(timeline) == {"apex_weather", "apex_radiometer"}
    t_file, v_file = _file("apex_pressure")
    _, r_file = _file("apex_radiometer")
    data = client.data("apex_archive", ["apex_pressure", "apex_radiometer"], 1, 0)
    pressure = data["apex_pressure"]
    assert isinstance(pressure.values, np.ndarray) and pressure.values.dtype == np.float64
    assert np.array_equal(pressure.values, v_file)
    shift = pressure.t[0] - t_file[0]
    assert shift % 3600 == 0  # the replay shift is whole hours
    assert np.array_equal(pressure.t - shift, t_file)
    assert np.array_equal(data["apex_radiometer"].values, r_file)


def test_msgpack_is_negotiated(client):
    serializer = client.link.session._transport._serializer
    assert serializer.SERIALIZER_ID == "msgpack"
