"""A DataNodeServer of every kind of field, on several timelines, through
the blocking path: floats with NaN gaps and repeated values, integers,
booleans and strings, at times that are not whole nanoseconds; a dense
field too large for one statistics reply at fine intervals, and a field
whose reading fails. The data is a fixed function of the seed, so a test
can rebuild it with :func:`timelines`."""

import os

import numpy as np

import sisock
from sisock import contract

T0 = 1_700_000_000.0
SPAN = 6 * 3600.0


def timelines(seed: int = 7) -> list:
    rng = np.random.default_rng(seed)
    n = 20_000
    t = np.sort(T0 + rng.uniform(0, SPAN, n))
    t[::500] = np.round(t[::500] / 60.0) * 60.0 + 0.001  # 0.001 s past a minute: truncated to ...999 ns
    t = np.unique(t)
    level = np.round(rng.normal(0, 4, len(t)), 1)  # repeated values: ties for min and max
    level[rng.choice(len(t), 300, replace=False)] = np.nan
    counts = rng.integers(-3, 4, len(t))
    slow_t = T0 + np.arange(0, SPAN, 37.3)
    state = np.array([("idle", "run", "stop")[i % 3] for i in range(len(slow_t))], dtype=object)
    flag = (np.arange(len(slow_t)) % 5) == 0
    dense_t = T0 + np.arange(300_000) * 0.01
    return [contract.Timeline("fast", t, {"level": level, "counts": counts}),
            contract.Timeline("slow", slow_t, {"state": state, "flag": flag}),
            contract.Timeline("dense", dense_t, {"dense": np.sin(dense_t)})]


KINDS = {"level": "number", "counts": "number", "state": "string", "flag": "bool", "dense": "number",
         "boom": "number"}


class Mixed(sisock.base.DataNodeServer):
    name = os.environ.get("NAME", "mixed")
    description = "Fields of every kind"

    def __init__(self, config=None):
        super().__init__(config)
        self.timelines = timelines()

    def _get_fields_blocking(self, start, end):
        where = {name: tl.name for tl in self.timelines for name in tl.fields}
        where["boom"] = "boom"
        info = {name: contract.field_info(where[name], type=kind) for name, kind in KINDS.items()}
        return contract.fields_reply(info)

    def _get_data_blocking(self, field, start, end, min_stride=None):
        if "boom" in field:
            raise RuntimeError("the boom sensor cannot be read")
        return contract.data_reply(field, self.timelines, start, end, min_stride)


if __name__ == "__main__":
    raise SystemExit(sisock.run(Mixed))
