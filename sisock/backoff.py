"""Waiting out an outage, the same way in every retry loop.

The router connection is retried by Twisted's ClientService (see
:mod:`sisock.connect`); everything else that waits for something to come
back (the index database, for the scanner and the reader) uses this: delays
that double from a first value up to a cap, and a rule for when a retry is
worth a log line, so an outage of a day costs a few lines, not thousands.
"""

from __future__ import annotations


class Backoff:
    """The delays and the log-worthiness of one run of retries.

    ``step(reason)`` is called after each failed attempt; it returns how long
    to wait before the next one and whether to say so. A retry is reported
    when the reason differs from the last one reported, and, with
    ``report_doublings``, also on attempts 1, 2, 4, 8...
    """

    def __init__(self, first: float, cap: float, report_doublings: bool = False):
        self.first, self.cap = first, cap
        self.report_doublings = report_doublings
        self.attempts = 0
        self.waited = 0.0
        self._next = first
        self._reason = None

    def step(self, reason: str) -> tuple[float, bool]:
        self.attempts += 1
        report = reason != self._reason or (self.report_doublings and self.attempts & (self.attempts - 1) == 0)
        self._reason = reason
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay, report

    def waiting(self, seconds: float):
        """Count time actually waited (it may be less than the delay given)."""
        self.waited += seconds

    @property
    def failing(self) -> bool:
        """Whether any attempt has failed: a recovery is then worth a line."""
        return self.attempts > 0
