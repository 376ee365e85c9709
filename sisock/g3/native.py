"""Importing so3g without costing the MySQL driver its C extension.

so3g's bundled libraries use up the process's static TLS space. If
mysql-connector's C extension is loaded after them, it fails ("cannot
allocate memory in static TLS block") and the driver quietly falls back to
its pure-Python protocol, which is several times slower on every
statement. So whatever imports so3g does it through :func:`so3g`, which
loads the extension first when it is installed.
"""

from __future__ import annotations

import functools


@functools.cache
def preload_mysql_extension() -> bool:
    """Load mysql-connector's C extension now, before so3g; False if it is
    not installed (SQLite-only installs) or cannot load."""
    try:
        import _mysql_connector  # noqa: F401
    except ImportError:
        return False
    return True


def so3g():
    """The ``so3g`` module (which also registers its frame types with spt3g)."""
    preload_mysql_extension()
    import so3g as module

    return module
