"""sisock: live and archived housekeeping data, served to Grafana over WAMP.

``import sisock`` gives the original API (``sisock.base``) and the modern way
to run a DataNodeServer, ``sisock.run(MyServer)``.

Nothing is imported until it is asked for. Every console script and the
container health probe live in this package, and the probe, started every
few seconds in every container, uses only the standard library: importing
Twisted, autobahn and numpy for it would cost more than the probe itself.
So ``sisock.base``, ``sisock.run`` and every submodule (``sisock.contract``,
``sisock.client``, ...) are loaded on first access.
"""

import importlib

__version__ = "0.2.0"
__all__ = ["base", "run", "__version__"]


def __getattr__(name: str):
    if name == "run":
        from sisock.connect import run

        globals()["run"] = run
        return run
    if not name.startswith("__"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # the submodule exists but needs something missing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
