"""A DataNodeServer holding some of the demo archive's samples under the
archive's own names (``observatory.<instance>.feeds.<feed>.<channel>``):
a second node with the same series, as an agent's live feed is beside its
archive. The samples are those :func:`sisock.demo.g3.expected` gives for
``FROM``..``TO`` (environment, unix seconds), so a test knows them."""

import os

import sisock
from sisock import contract
from sisock.demo.g3 import Provider, expected

START = 1_700_000_000.0
PROVIDERS = [Provider("observatory.therm1.feeds.temperatures", ["ch1_t", "ch2_t", "ch3_t"], rate=1.0, block="temps")]
#: The arguments tests/g3_helpers.make_archive writes the archive with.
ARCHIVE = {"file_seconds": 3600, "frame_seconds": 300, "schema": 2, "spike_every": 1800,
           "gaps": ((START + 5000.0, START + 6500.0),)}


class Mirror(sisock.base.DataNodeServer):
    name = os.environ.get("NAME", "ocs_mirror")
    description = "Samples of the demo archive, under its names"

    def __init__(self, config=None):
        super().__init__(config)
        truth = expected(PROVIDERS, float(os.environ["FROM"]), float(os.environ["TO"]), **ARCHIVE)
        self.timelines = [contract.Timeline(name, t, {name: v}) for name, (t, v) in truth.items()]

    def _get_fields_blocking(self, start, end):
        return contract.fields_reply({tl.name: contract.field_info(tl.name) for tl in self.timelines})

    def _get_data_blocking(self, field, start, end, min_stride=None):
        return contract.data_reply(field, self.timelines, start, end, min_stride)


if __name__ == "__main__":
    raise SystemExit(sisock.run(Mirror))
