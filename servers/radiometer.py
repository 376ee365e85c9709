"""The UCSC radiometer DataNodeServer (``ucsc_radiometer``).

Reads ``DATA_DIRECTORY/PWV/PWV_UCSC_<YYYY>-<DDD>.txt``, and the
``PWV_UCSC_<DDD>-<YYYY>.txt`` names the site wrote up to day 201 of 2018:
a header line, then rows of ``<fractional day of year, 1-based> <pwv mm>``.
The file's day, from its name, is its span; times are the year's first UTC
instant plus ``(day - 1) * 86400`` s, which is right across leap days and
year ends and never involves the local time zone.
"""

from __future__ import annotations

import calendar
import re

from sisock import runtime
from sisock.servers.text_archive import ArchiveFile, Layout, TextArchiveServer

DAY = 86400.0
FIELDS = {"pwv": ("UCSC radiometer precipitable water vapour", "mm")}

_NEW = re.compile(r"PWV_UCSC_(?P<year>\d{4})-(?P<doy>\d{3})\.txt")
_OLD = re.compile(r"PWV_UCSC_(?P<doy>\d{3})-(?P<year>\d{4})\.txt")


def year_start(year: int) -> float:
    return float(calendar.timegm((year, 1, 1, 0, 0, 0)))


class UcscLayout(Layout):
    subdir = "PWV"
    header_lines = 1
    fields = FIELDS

    def match(self, name: str, path: str) -> ArchiveFile | None:
        m = _NEW.fullmatch(name) or _OLD.fullmatch(name)
        if m is None:
            return None
        year, doy = int(m["year"]), int(m["doy"])
        if not 1 <= doy <= (366 if calendar.isleap(year) else 365):
            return None
        origin = year_start(year) - DAY  # day 1.0 is the year's first instant
        t0 = origin + doy * DAY
        return ArchiveFile("pwv", t0, t0 + DAY, path, origin=origin, unit=DAY)


class RadiometerServer(TextArchiveServer):
    """UCSC radiometer precipitable water vapour archive. Reads DATA_DIRECTORY/PWV;
    MAX_POINTS caps points per field per reply; ARCHIVE_CACHE_MB bounds the
    parsed-file cache."""

    name = "ucsc_radiometer"
    description = "UCSC radiometer precipitable water vapour archive"
    script = "sisock-radiometer-server"
    layout = UcscLayout()


def main(argv=None):
    runtime.run(RadiometerServer, argv)


if __name__ == "__main__":
    main()
