"""The DataNodeServers this repository ships, in one table.

Several places must know which servers exist: ``setup.py`` installs a
console script for each, ``sisock up`` offers them to ``--servers`` and
knows what each one starts, the compose checks ask which of them need a
service, and the tests check the documentation lists them. They all read
:data:`SERVERS`, so adding a server is its module plus one line here, and
none of those places can be forgotten.

(This is the table of servers that can be installed and started; the hub's
registry is of the data nodes that are running.)

Standard library only, and names rather than imports: ``setup.py`` reads
this file by its path before anything is installed, and the library does
not import the servers, which are built on it.
"""

from __future__ import annotations

from typing import NamedTuple


class Server(NamedTuple):
    """One in-tree DataNodeServer and how it is started."""

    #: Its short name for ``sisock up --servers``.
    name: str
    #: The console script that runs it (Dockerfiles and compose use this name).
    script: str
    #: ``module:function`` the console script calls.
    entry_point: str
    #: Console scripts ``sisock up`` starts before it, once however many
    #: servers need them.
    companions: tuple[str, ...] = ()
    #: Arguments ``sisock up`` adds to the script: what suits a demo on one
    #: machine, where production leaves the script's own defaults.
    up_args: tuple[str, ...] = ()

    @property
    def commands(self) -> tuple[tuple[str, ...], ...]:
        """What ``sisock up`` runs for it, in order: its companions, then the server."""
        return (*((script,) for script in self.companions), (self.script, *self.up_args))

    @property
    def console_script(self) -> str:
        """Its line of setup.py's ``console_scripts``."""
        return f"{self.script} = {self.entry_point}"


SERVERS: tuple[Server, ...] = (
    # Replay puts the example fortnight at "now", so dashboards with relative ranges show it.
    Server("weather", "sisock-weather-server", "sisock.servers.weather:main", up_args=("--replay",)),
    Server("sensors", "sisock-sensors-server", "sisock.servers.sensors:main"),
    Server("apex-weather", "sisock-apex-weather-server", "sisock.servers.apex_weather:main"),
    Server("ucsc-radiometer", "sisock-radiometer-server", "sisock.servers.radiometer:main"),
    Server("data-feed", "sisock-data-feed-server", "sisock.servers.data_feed:main"),
    Server("thermometry", "sisock-thermometry-server", "sisock.servers.data_feed:thermometry_main"),
    # The reader only serves what the scanner has indexed.
    Server("g3-reader", "sisock-g3-reader-server", "sisock.servers.g3_reader:main",
           companions=("sisock-g3-file-scanner",)),
)


def get(name: str) -> Server:
    """The server with short name ``name``; KeyError if there is none."""
    for server in SERVERS:
        if server.name == name:
            return server
    raise KeyError(name)


def console_scripts() -> list[str]:
    """``console_scripts`` lines of every server, as setup.py declares them."""
    return [server.console_script for server in SERVERS]
