"""The bridge's view of the data nodes: a cached field list and queries.

The field list is kept in memory and refreshed when the hub says a node came
or went or that it (re)started, and on every join, so ``/search`` never
waits on the network. A query calls every data node it touches at once; a
node that fails or does not exist yields empty series for its targets and
never spoils the others. Only when no node the query needed could answer
does the query fail, with the nodes' own reasons (502), or 504 if they all
timed out: an empty panel would hide that the data exists but cannot be read
right now.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import txaio
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, task, threads
from twisted.python.failure import Failure
from werkzeug.exceptions import BadGateway

from sisock import aggregate, contract
from sisock.cache import Coalescer
from sisock.contract import valid_node_name
from sisock.downsample import sorted_unique
from sisock.link import CallTimeout, NotConnected

from . import series
from .request import SEPARATOR, AnswerTooLarge, BadRequest, Query, Target, check_allowance

ALL_TIME = (1, 0)  # get_fields(1, 0): from the epoch until now
#: Field lists also change without a hub event (an archive server indexes new
#: files), so they are refreshed this often in the background too.
REFRESH_SECONDS = 30.0

log = txaio.make_logger()


class Unavailable(RuntimeError):
    """The router cannot be reached; the bridge answers 503."""


class NodeFailed(BadGateway):
    """Every data node a query needed failed; the bridge answers 502 with
    their reasons on one line."""

    def __init__(self, failures: dict[str, Exception]):
        reasons = "; ".join(f"{node}: {_reason(exc)}" for node, exc in failures.items())
        super().__init__(f"data node failed: {reasons}")
        self.failures = failures


def _reason(exc: Exception) -> str:
    if isinstance(exc, ApplicationError):
        text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else exc.error
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _missing(exc: Exception) -> bool:
    """The node is not there: an unknown node gives empty series, by contract."""
    return isinstance(exc, ApplicationError) and exc.error == contract.NO_SUCH_PROCEDURE


class DataSource:
    def __init__(self, link, call_timeout: float = 30.0):
        self.link = link
        self.call_timeout = call_timeout
        self._fields: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._same = Coalescer()
        self._learned: dict[str, float] = {}
        #: Nodes that do not register ``get_data_packed`` (older servers, or
        #: servers answering in the reactor): asked with ``get_data``. A
        #: node announcing itself again is tried once more.
        self._plain: set[str] = set()
        #: Nodes that do not register ``get_aggregates``: their statistics
        #: are computed here from raw samples. Cleared as ``_plain`` is.
        self._no_aggregates: set[str] = set()
        #: Queries being answered in the reactor: {(query, limit): [Deferred]} of those waiting for them.
        self._in_flight: dict = {}
        link.on_join(self._on_join)
        self._refresher = task.LoopingCall(self._refresh_all)
        self._refresher.clock = link.reactor
        link.reactor.callWhenRunning(self._refresher.start, REFRESH_SECONDS, now=False)

    # -- reactor side: keeping the field list current -----------------------

    @defer.inlineCallbacks
    def _on_join(self, session):
        yield session.subscribe(lambda node, *a, **k: self._refresh(node.get("name")), contract.DATA_NODE_ADDED)
        yield session.subscribe(lambda node, *a, **k: self._forget(node.get("name")), contract.DATA_NODE_SUBTRACTED)
        # A (re)started hub knows who is alive: nodes that died while it was
        # away (and so were never subtracted) leave the list at once.
        yield session.subscribe(lambda *a, **k: self._sync_nodes(), contract.HUB_STARTED)
        yield self._sync_nodes()

    @defer.inlineCallbacks
    def _sync_nodes(self):
        """The hub's node list, then every node's fields."""
        try:
            nodes = yield self.link.call_in_reactor(contract.GET_DATA_NODE, timeout=self.call_timeout)
        except Exception as exc:  # noqa: BLE001 - hub not up yet: its events will fill the list
            log.info("no data node list yet ({e}); waiting for the hub", e=exc)
            return
        names = {node["name"] for node in nodes}
        with self._lock:
            for gone in set(self._fields) - names:
                del self._fields[gone]
        yield defer.DeferredList([self._refresh(name) for name in names], consumeErrors=True)

    def _refresh_all(self):
        if not self.link.connected:
            return None
        d = self._sync_nodes()
        d.addErrback(lambda f: log.warn("periodic field refresh failed: {e}", e=f.getErrorMessage()))
        return d

    @defer.inlineCallbacks
    def _refresh(self, name):
        if not name:
            return
        with self._lock:
            self._plain.discard(name)
            self._no_aggregates.discard(name)
        try:
            field, _timeline = yield self.link.call_in_reactor(
                contract.get_fields_procedure(name), *ALL_TIME, timeout=self.call_timeout
            )
        except ApplicationError as exc:
            quiet = _missing(exc)
            (log.debug if quiet else log.warn)("could not list fields of {n}: {e}", n=name, e=exc)
            return
        except Exception as exc:  # noqa: BLE001 - a broken node must not break the list
            log.warn("could not list fields of {n}: {e}", n=name, e=exc)
            return
        with self._lock:
            changed = self._fields.get(name) != field
            self._fields[name] = dict(field)
        if changed:
            log.info("data node {n}: {k} field(s)", n=name, k=len(field))

    def _forget(self, name):
        with self._lock:
            self._fields.pop(name, None)

    # -- request threads --------------------------------------------------------

    def require_link(self):
        if not self.link.connected:
            raise Unavailable("not connected to the WAMP router")

    def metrics(self, text: str = "") -> list[str]:
        self.require_link()
        needle = text.lower()
        with self._lock:
            names = [f"{node}{SEPARATOR}{field}" for node, fields in self._fields.items() for field in fields]
        return sorted(name for name in names if needle in name.lower())

    def nodes(self, text: str = "") -> list[str]:
        self.require_link()
        needle = text.lower()
        with self._lock:
            return sorted(node for node in self._fields if needle in node.lower())

    def fields_of(self, node: str, text: str = "") -> list[str]:
        self.require_link()
        needle = text.lower()
        with self._lock:
            return sorted(field for field in self._fields.get(node, {}) if needle in field.lower())

    def field_infos(self, node: str | None = None, text: str = "") -> list[tuple[str, str, dict]]:
        """``(node, field, info)`` sorted, for one node or all; ``KeyError`` if
        ``node`` is not a known data node."""
        self.require_link()
        needle = text.lower()
        with self._lock:
            if node is not None and node not in self._fields:
                raise KeyError(node)
            nodes = [node] if node is not None else list(self._fields)
            rows = [(n, f, dict(info)) for n in nodes for f, info in self._fields[n].items()]
        return sorted(row for row in rows if needle in f"{row[0]}{SEPARATOR}{row[1]}".lower())

    def has_node(self, node: str) -> bool:
        with self._lock:
            return node in self._fields

    def field_info(self, node: str, field: str) -> dict:
        with self._lock:
            return dict(self._fields.get(node, {}).get(field) or {})

    def _timeline_of(self, node: str, field: str):
        with self._lock:
            info = self._fields.get(node, {}).get(field)
        return None if info is None else info.get("timeline")

    def query(self, q: Query, limit: int | None = None) -> list[dict]:
        """SimpleJson's answer: one timeserie or table per target, refused
        when it would hold more than ``limit`` points in all."""
        return answer(self.samples(q, limit))

    def samples(self, q: Query, limit: int | None = None) -> list[tuple]:
        """``(target, t, values)`` per target, sorted by time and capped at
        ``q.max_points``: the one data path every dialect formats from.
        Identical queries arriving together (a dashboard open in several
        browsers) are answered by one computation."""
        self.require_link()
        return self._same.run((q, limit), lambda: reduced(q, self._blocking(self._unreduced_steps(q, limit))))

    def unreduced_in_reactor(self, q: Query, limit: int | None = None) -> defer.Deferred:
        """A Deferred of what :func:`reduced` turns into :meth:`samples`,
        asked from the reactor thread with no thread involved: the same
        steps, each call a Deferred. Identical queries in flight together
        share one computation, as in :meth:`samples`."""
        try:
            self.require_link()
        except Unavailable:
            return defer.fail()
        key = (q, limit)
        waiting = self._in_flight.get(key)
        if waiting is not None:
            d = defer.Deferred()
            waiting.append(d)
            return d
        self._in_flight[key] = waiting = []

        def share(result):
            del self._in_flight[key]
            for d in waiting:
                (d.errback if isinstance(result, Failure) else d.callback)(result)
            return result

        return self._in_reactor(self._unreduced_steps(q, limit)).addBoth(share)

    def _unreduced_steps(self, q: Query, limit: int | None):
        """The data path of a query, as steps (see :meth:`_blocking`):
        ``(target, t, values)`` per target as the nodes sent them, once
        the replies and the allowance are judged."""
        by_node: dict[str, list[str]] = {}
        for target in q.targets:
            if target.node is not None and target.field not in by_node.setdefault(target.node, []):
                by_node[target.node].append(target.field)
        results = yield from self._fetch_steps(by_node, q.start, q.end, q.min_stride)
        self._judge(results, "lower maxDataPoints or ask for fewer targets")
        raw = [(t, *self._samples(t, results.get(t.node))) for t in q.targets]
        if limit is not None:  # judged before anything is copied: each target holds at most max_points
            check_allowance([(t, times[:q.max_points]) for t, times, _ in raw], limit)
        return raw

    # -- running the steps: in a request thread, or in the reactor -------------------------

    def _blocking(self, steps):
        """Run steps from a request thread: in the reactor, the thread
        waiting for their answer (see :meth:`_in_reactor`)."""
        return threads.blockingCallFromThread(self.link.reactor, self._in_reactor, steps)

    @defer.inlineCallbacks
    def _in_reactor(self, steps):
        """Run steps in the reactor thread. Steps are generators yielding
        ``("gather", {node: (procedure, args, kwargs)})`` (sent back ``{node:
        reply or exception}``) or ``("learn", [node])`` (field lists to
        refresh), and returning their answer: written once for the routes
        in request threads and the query answered in the reactor."""
        reply = None
        while True:
            try:
                kind, arg = steps.send(reply)
            except StopIteration as stop:
                return stop.value
            if kind == "gather":
                reply = yield self.link.gather_in_reactor(list(arg.values()), timeout=self.call_timeout)
                reply = dict(zip(arg, reply, strict=True))
            else:
                yield self._refresh_nodes(arg)
                reply = None

    def _refresh_nodes(self, nodes) -> defer.Deferred:
        return defer.DeferredList([self._refresh(node) for node in nodes], consumeErrors=True)

    def _judge(self, results: dict, hint: str, what: str = "get_data") -> None:
        """Raise what the replies of the nodes asked say, if the answer
        cannot be given: the router gone (Unavailable), a node refusing to
        send that much (AnswerTooLarge, with ``hint`` on what to lower), or
        every node that should have answered failed (NodeFailed, or their
        CallTimeout). A node that is not there is not a failure."""
        if any(isinstance(result, NotConnected) for result in results.values()):
            raise Unavailable(str(next(r for r in results.values() if isinstance(r, NotConnected))))
        failures = {}
        for node, result in results.items():
            if result is False:  # the contract's "more than I will ship in one reply"
                raise AnswerTooLarge(f"data node {node} refused to send that much in one reply; {hint}")
            if isinstance(result, Exception) and not _missing(result):
                log.warn("{w} on {n} failed: {e}", w=what, n=node, e=_reason(result))
                failures[node] = result
        answered = [node for node, result in results.items() if not isinstance(result, Exception)]
        if failures and not answered:
            if not self.link.connected:  # the router went away during the calls
                raise Unavailable("lost the connection to the WAMP router")
            if all(isinstance(exc, CallTimeout) for exc in failures.values()):
                raise next(iter(failures.values()))
            raise NodeFailed(failures)

    def _fetch_steps(self, by_node, start: float, end: float, min_stride: float | None):
        """Steps of :meth:`_get_data_steps` for every node of ``by_node``,
        once their field lists are known (:meth:`_learn_steps`)."""
        yield from self._learn_steps(by_node)
        return (yield from self._get_data_steps(list(by_node), by_node, start, end, min_stride))

    def _get_data_steps(self, nodes, by_node, start: float, end: float, min_stride: float | None):
        """Steps of every node's reply (or exception), asked at once: packed
        where the node registers it, else (and on a node found not to) plainly."""
        with self._lock:
            plain = set(self._plain)

        def calls(names, packed):
            procedure = contract.get_data_packed_procedure if packed else contract.get_data_procedure
            return {node: (procedure(node), (by_node[node], start, end), {"min_stride": min_stride}) for node in names}

        packed = [n for n in nodes if n not in plain]
        results = (yield ("gather", calls(packed, True))) if packed else {}
        again = [node for node, result in results.items() if _missing(result)]
        if again:
            with self._lock:
                self._plain.update(again)
        asked_plainly = [n for n in nodes if n in plain] + again
        if asked_plainly:
            results.update((yield ("gather", calls(asked_plainly, False))))
        return results

    # -- InfluxQL's statistics and raw samples --------------------------------------

    def aggregates(self, node: str, fields, start: float, end: float, interval: float,
                   offset: float = 0.0) -> dict[str, dict[str, np.ndarray]]:
        """Statistics of each ``interval``-wide bucket of each field's
        samples in ``[start, end]``, as :func:`sisock.aggregate.bucket_stats`
        gives them; fields without a sample there (or unknown) are absent.

        Asked of the node's ``get_aggregates``; a node without it (servers
        answering in the reactor, nodes older than it) sends its raw
        samples, and the bridge computes the same statistics from them."""
        try:
            aggregate.grid(interval, offset)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        fields = contract.field_list(fields)
        self.require_link()
        if not fields or not valid_node_name(node):
            return {}
        # Panels open in several browsers ask the same at the same moment.
        key = ("aggregates", node, tuple(fields), start, end, interval, offset)
        return self._same.run(key, lambda: self._aggregates_of(node, fields, start, end, interval, offset))

    def _aggregates_of(self, node, fields, start, end, interval, offset):
        def steps():
            yield from self._learn_steps({node: fields})  # first: a refresh forgets what the node lacks
            with self._lock:
                if node in self._no_aggregates:
                    return None
            procedure = contract.get_aggregates_procedure(node)
            return (yield ("gather", {node: (procedure, (fields, start, end, interval, offset), {})}))

        result = self._blocking(steps())
        if result is not None:
            if not _missing(result[node]):
                self._judge(result, "use a wider interval or a shorter range", "get_aggregates")
                try:
                    return aggregate.from_wire(result[node], set(fields))
                except (TypeError, ValueError) as exc:  # a node sending something else than the contract
                    log.warn("{n}: unreadable get_aggregates reply: {e}", n=node, e=exc)
                    raise NodeFailed({node: exc}) from None
            with self._lock:
                self._no_aggregates.add(node)
        return aggregate.series_stats(self._raw_of(node, fields, start, end, None), start, end, interval, offset)

    def raw(self, node: str, fields, start: float, end: float,
            limit: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every sample ``(t, values)`` of each field with ``start <= t <=
        end``, in time order, undecimated (as far as the node allows: one
        configured with ``MAX_POINTS`` caps what it sends); fields without
        a sample there are absent. More than ``limit`` samples in all is
        refused (AnswerTooLarge), as is more than the node sends in one reply."""
        fields = contract.field_list(fields)
        self.require_link()
        if not fields or not valid_node_name(node):
            return {}
        key = ("raw", node, tuple(fields), start, end, limit)
        return self._same.run(key, lambda: self._raw_of(node, fields, start, end, limit))

    def _raw_of(self, node, fields, start, end, limit):
        results = self._blocking(self._fetch_steps({node: fields}, start, end, None))
        self._judge(results, "shorten the range or ask for fewer fields")
        out = {}
        for name in fields:
            target = Target(name, node, name, None, "timeserie")
            t, values = self._samples(target, results[node])
            t = np.asarray(t, dtype=np.float64)
            inside = (t >= start) & (t <= end)
            if inside.any():
                values = aggregate.as_values(values)
                out[name] = sorted_unique(t[inside], values[inside])
        if limit is not None:
            check_allowance([(name, t) for name, (t, _) in out.items()], limit)
        return out

    def _learn_steps(self, by_node):
        """Steps fetching the field lists of nodes the cache does not know, or that
        lack a requested field (a live feed's channels appear over time):
        timelines are needed to pair values with times. At most once a
        second per node, so queries for fields that do not exist stay cheap."""
        now = time.monotonic()
        with self._lock:
            # Only the last second matters; dropping older entries keeps a
            # client that invents node names from growing this forever.
            self._learned = {node: t for node, t in self._learned.items() if now - t <= 1.0}
            unknown = [
                node for node, wanted in by_node.items()
                if (node not in self._fields or any(f not in self._fields[node] for f in wanted))
                and now - self._learned.get(node, -1e9) > 1.0
            ]
            for node in unknown:
                self._learned[node] = now
        if unknown:
            yield ("learn", unknown)

    def _samples(self, target, reply):
        empty = (np.zeros(0), np.zeros(0))
        if not isinstance(reply, dict) or target.field is None:
            return empty
        try:
            return self._series_of(target, reply)
        except (TypeError, ValueError, AttributeError) as exc:  # a node sending something else than the contract
            log.warn("{n}: unreadable reply for {f}: {e}", n=target.node, f=target.field, e=exc)
            return empty

    def _series_of(self, target, reply):
        found = contract.field_series(reply, target.field, self._timeline_of(target.node, target.field))
        return (np.zeros(0), np.zeros(0)) if found is None else found


def reduced(q: Query, raw: list[tuple]) -> list[tuple]:
    """``(target, t, values)`` sorted by time and capped at ``q.max_points``."""
    return [(t, *series.reduce(times, values, q.max_points, q.min_stride)) for t, times, values in raw]


def answer(samples: list[tuple]) -> list[dict]:
    """SimpleJson's answer of :meth:`DataSource.samples`: a timeserie or table per target."""
    out = []
    for target, t, values in samples:
        build = series.table if target.type == "table" else series.timeserie
        out.append(build(target.name, target.ref_id, t, values))
    return out
