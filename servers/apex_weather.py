"""The APEX weather DataNodeServer (``apex_weather``).

Reads ``DATA_DIRECTORY/targets/APEX_<field>_<start ctime>_<end ctime>.dat``,
rows of ``<unix time> <value>``; the span in the name is what lets a request
open only the files it needs (see :mod:`text_archive`).
"""

from __future__ import annotations

import re

from sisock import runtime
from sisock.servers.text_archive import ArchiveFile, Layout, TextArchiveServer

FIELDS = {
    "humidity": ("APEX relative humidity", "%"),
    "pressure": ("APEX atmospheric pressure", "mBar"),
    "radiometer": ("APEX radiometer precipitable water vapour", "mm"),
    "dewpoint": ("APEX dew point", "C"),
    "temperature": ("APEX air temperature", "C"),
    "windspeed": ("APEX wind speed", "km/h"),
    "winddirection": ("APEX wind direction", "deg"),
}

_NAME = re.compile(r"APEX_(\w+?)_(\d+)_(\d+)\.dat")


class ApexLayout(Layout):
    subdir = "targets"
    fields = FIELDS

    def match(self, name: str, path: str) -> ArchiveFile | None:
        m = _NAME.fullmatch(name)
        if m is None:
            return None
        t0, t1 = float(m[2]), float(m[3])
        return ArchiveFile(m[1], min(t0, t1), max(t0, t1), path)


class ApexWeatherServer(TextArchiveServer):
    """APEX weather station archive. Reads DATA_DIRECTORY/targets; MAX_POINTS
    caps points per field per reply; ARCHIVE_CACHE_MB bounds the parsed-file
    cache."""

    name = "apex_weather"
    description = "APEX weather station archive"
    script = "sisock-apex-weather-server"
    layout = ApexLayout()


def main(argv=None):
    runtime.run(ApexWeatherServer, argv)


if __name__ == "__main__":
    main()
