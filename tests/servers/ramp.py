"""A minimal modern DataNodeServer: NAME from the environment, a 1 Hz ramp
with a spike every 100 samples, served through the shared contract helpers."""

import os
import time

import numpy as np

import sisock
from sisock import contract


class Ramp(sisock.base.DataNodeServer):
    name = os.environ.get("NAME", "ramp")
    description = "1 Hz test ramp with spikes"

    def _series(self):
        end = float(int(time.time()))
        t = np.arange(end - 86400, end + 1)
        v = (t % 1000) / 10.0
        v[::100] += 1000.0
        return contract.Timeline("ramp", t, {"value": v, "negative": -v})

    def _get_fields_blocking(self, start, end):
        info = {name: contract.field_info("ramp", units="V") for name in ("value", "negative")}
        return contract.fields_reply(info, {"ramp": 1.0})

    def _get_data_blocking(self, field, start, end, min_stride=None):
        return contract.data_reply(field, [self._series()], start, end, min_stride)


if __name__ == "__main__":
    raise SystemExit(sisock.run(Ramp))
