"""Children that die with their parent.

A process that supervises others (the router wrapper, the scanner's worker
pool, the local stack) can itself be killed with SIGKILL, which it cannot
catch; its children would then run on with nobody reading their output or
stopping them. Linux can be asked to signal a process when its parent dies
(``PR_SET_PDEATHSIG``); elsewhere this is a no-op and the supervisor's own
clean shutdown is all there is.
"""

from __future__ import annotations

import ctypes
import os

_PR_SET_PDEATHSIG = 1


def signal_on_parent_death(signum: int, parent: int | None = None) -> bool:
    """Ask for ``signum`` when the parent dies; False where Linux's prctl is
    missing. With ``parent`` (the pid the caller expects as its parent), a
    parent already gone before the request was made ends this process at
    once, since no signal would ever come."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)
    return True
