"""The sisock API that DataNodeServers are written against.

Names, signatures and URIs here are those of the original sisock, so servers
written for it run unchanged. The module constants are read from the
environment once, at import, as the original's were fixed at import.

A DataNodeServer announces itself to the hub after registering its two
procedures, and again whenever a (re)started hub asks, so the registry heals
after a hub or router restart without the server being restarted.

A name is served by one process, unless its servers share it: each of them
then registers the procedures with the same invocation policy of the
router's shared registrations (:attr:`DataNodeServer.shared`), and the
router hands every call to one of them.
"""

from __future__ import annotations

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions
from twisted.internet import threads
from twisted.internet.defer import inlineCallbacks

from sisock import contract
from sisock.config import ConfigError, Settings
from sisock.contract import BASE_URI, HUB_STARTED, REALM, sisock_to_unix_time, uri
from sisock.session import AuthenticatedSession

try:
    _settings = Settings.from_env()
except ConfigError:
    # A bad variable is reported, in one line, when the server starts
    # (sisock.run reads the environment again); importing must not fail.
    _settings = Settings()

WAMP_USER = _settings.wamp_user
WAMP_SECRET = _settings.wamp_secret
SISOCK_HOST = _settings.crossbar_host
SISOCK_PORT = _settings.tls_port
OCS_PORT = _settings.ocs_port
WAMP_URI = _settings.router_url

__all__ = [
    "BASE_URI", "REALM", "WAMP_USER", "WAMP_SECRET", "WAMP_URI", "SISOCK_HOST", "SISOCK_PORT",
    "OCS_PORT", "uri", "sisock_to_unix_time", "DataNodeServer",
]


def _holder(error: str, policy: str | None) -> str | None:
    """Who holds a procedure the router refused to register with ``policy``,
    when sharing is the reason; None for two exclusive servers of one name."""
    if error == contract.PROCEDURE_ALREADY_EXISTS and policy is not None:
        return "a server that does not share it"
    if error == contract.PROCEDURE_POLICY_CONFLICT:
        return "servers that share it with another policy" if policy is not None else "servers that share it"
    return None


_pools: dict = {}


def _answer_pool(reactor, size: int):
    """The process's pool of ``size`` answer threads, started on first use
    and stopped with the reactor: sessions come and go with reconnections,
    the pool stays."""
    pool = _pools.get(size)
    if pool is None:
        from twisted.python.threadpool import ThreadPool

        pool = _pools[size] = ThreadPool(minthreads=1, maxthreads=size, name=f"sisock-answers-{size}")
        pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
    return pool


class DataNodeServer(AuthenticatedSession):
    """Base class of every DataNodeServer.

    Subclasses set :attr:`name` and :attr:`description` and override either
    :meth:`get_fields` / :meth:`get_data` (run in the reactor, may return
    Deferreds) or :meth:`_get_fields_blocking` / :meth:`_get_data_blocking`
    (run in a worker thread, for file and CPU work).

    Servers answering through the blocking path also get ``get_aggregates``
    (exact statistics of time buckets), computed from their own raw
    ``_get_data_blocking`` answer; one that keeps statistics of its own
    overrides :meth:`_get_aggregates_blocking`.

    :attr:`shared` set to one of :data:`sisock.contract.SHARED_POLICIES`
    (``"roundrobin"`` or ``"random"``) lets several processes serve one
    name, the router choosing one of them for each call; every one of them
    must say the same policy. Servers run by :func:`sisock.runtime.run` take
    it from ``--shared`` or ``SISOCK_SHARED``; code building servers itself
    sets it on the class or the instance. None (the default) is a name served
    by this process alone.
    """

    name: str | None = None
    description: str | None = None
    shared: str | None = None
    #: Threads computing data answers (``get_data``, ``get_data_packed``,
    #: ``get_aggregates``), in a pool of the process's own; None: Twisted's
    #: shared pool (up to 10 threads, ``get_fields`` included). Answers that
    #: hold the GIL for milliseconds gain nothing from running side by side:
    #: the threads hand the GIL to one another at every release and spend
    #: the machine on the hand-overs (see the g3-reader's ``G3_THREADS``).
    answer_threads: int | None = None

    @inlineCallbacks
    def onJoin(self, details):
        self.log.info("joined {realm} as session {sid}", realm=details.realm, sid=details.session)
        if not self.name:
            raise ValueError(f"{type(self).__name__}.name must be set")
        # A bad policy stops the session here, before anything is registered.
        if self._policy is not None:
            self.log.info("serving {n} together with other servers of that name ({p})", n=self.name, p=self._policy)
        self._registered = set()
        yield self._register_procedures()
        self._refused = False
        yield self.subscribe(self._on_hub_started, HUB_STARTED)
        yield self.subscribe(self._on_node_subtracted, contract.DATA_NODE_SUBTRACTED)
        yield self._announce(details.session)
        result = self.after_onJoin(details)
        if result is not None:
            yield result

    @property
    def _policy(self) -> str | None:
        """The invocation policy of a shared name, None for an exclusive one."""
        try:
            return contract.shared_policy(self.shared)
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__}.shared {exc}") from None

    @inlineCallbacks
    def _register_procedures(self):
        """Register whichever of the two procedures this session does not
        hold yet. While another server holds the name (or, for a shared
        name, servers with another policy hold it) the router refuses them;
        they are registered again when that server leaves."""
        policy = self._policy
        options = None if policy is None else RegisterOptions(invoke=policy)
        procedures = [(self.get_fields, contract.get_fields_procedure(self.name)),
                      (self.get_data, contract.get_data_procedure(self.name))]
        if type(self).get_data is DataNodeServer.get_data:  # a server answering in the reactor is asked plainly
            procedures.append((self.get_data_packed, contract.get_data_packed_procedure(self.name)))
            if self._answers_aggregates():
                procedures.append((self.get_aggregates, contract.get_aggregates_procedure(self.name)))
        for proc, procedure in procedures:
            if procedure in self._registered:
                continue
            try:
                yield self.register(proc, procedure, options=options)
                self._registered.add(procedure)
                self.log.debug("registered {p}", p=procedure)
            except ApplicationError as exc:
                holder = _holder(exc.error, policy)
                if holder is None:
                    self.log.error("could not register {p}: {e}", p=procedure, e=exc.error)
                else:
                    self.log.error("could not register {p}: {e}; it is held by {h}, and every server of one "
                                   "name must be started with the same SISOCK_SHARED (or --shared)",
                                   p=procedure, e=exc.error, h=holder)

    @inlineCallbacks
    def _announce(self, session_id):
        yield self._register_procedures()
        policy = self._policy
        # An exclusive node is announced exactly as servers always did, so
        # hubs that know nothing of sharing keep accepting it.
        sharing = {} if policy is None else {contract.SHARED_KEYWORD: policy}
        try:
            accepted = yield self.call(contract.DATA_NODE_ADD, self.name, self.description, session_id, **sharing)
        except ApplicationError as exc:
            if exc.error == contract.NO_SUCH_PROCEDURE:
                self.log.info("hub not running yet; will announce {n} when it starts", n=self.name)
            else:
                self.log.error("hub refused to add {n}: {e}", n=self.name, e=exc.error)
            return False
        self._refused = not accepted
        if accepted and policy is None:
            self.log.info("data node registered as {n}", n=self.name)
        elif accepted:
            self.log.info("data node registered as {n}, shared ({p})", n=self.name, p=policy)
        elif policy is None:
            self.log.error("hub refused data node {n}: the name is already taken; "
                           "will take over if the other server leaves", n=self.name)
        else:
            self.log.error("hub refused data node {n} shared ({p}): the name is served by a server that is "
                           "exclusive or shares it with another policy (every server of one name needs the "
                           "same SISOCK_SHARED); will take over if those servers leave", n=self.name, p=policy)
        return accepted

    def _on_hub_started(self, *args, **kwargs):
        if self.session_id is not None:
            return self._announce(self.session_id)

    def _on_node_subtracted(self, node, *args, **kwargs):
        if getattr(self, "_refused", False) and isinstance(node, dict) and node.get("name") == self.name:
            return self._on_hub_started()

    def after_onJoin(self, details):
        """Hook for subclasses that need to do more once joined."""

    # -- the two procedures ------------------------------------------------

    def get_fields(self, start, end):
        """``(field, timeline)`` of the fields with data in ``[start, end]``."""
        return threads.deferToThread(self.answer_get_fields, start, end)

    def get_data(self, field, start, end, min_stride=None):
        """Samples of ``field`` in ``[start, end]``, decimated to ``min_stride``."""
        return self._in_answer_thread(self.answer_get_data, field, start, end, min_stride)

    def get_data_packed(self, field, start, end, min_stride=None):
        """:meth:`get_data` with numeric arrays as bytes (``contract.to_packed``)."""
        return self._in_answer_thread(self.answer_get_data_packed, field, start, end, min_stride)

    def get_aggregates(self, field, start, end, interval, offset=0.0):
        """Statistics of each ``interval``-wide bucket of ``field``'s samples
        in ``[start, end]`` (:func:`sisock.aggregate.bucket_stats`)."""
        return self._in_answer_thread(self.answer_get_aggregates, field, start, end, interval, offset)

    def _in_answer_thread(self, fn, *args):
        """A Deferred of ``fn(*args)`` run in the answer pool (:attr:`answer_threads`)."""
        if not self.answer_threads:
            return threads.deferToThread(fn, *args)
        from twisted.internet import reactor

        return threads.deferToThreadPool(reactor, _answer_pool(reactor, self.answer_threads), fn, *args)

    def _answers_aggregates(self) -> bool:
        """Whether ``get_aggregates`` is registered: the default answer needs
        the blocking ``get_data`` and, to pair fields with timelines, the
        blocking ``get_fields`` (or an answer of the server's own)."""
        cls = type(self)
        if cls._get_aggregates_blocking is not DataNodeServer._get_aggregates_blocking:
            return True
        return cls.get_fields is DataNodeServer.get_fields

    # -- the answers, without Twisted ------------------------------------------

    def answer_get_fields(self, start, end):
        """The reply a ``get_fields`` call through the router gets,
        computed in the calling thread without Twisted, so that tests and
        scripts asking a server directly read relative times as it does."""
        return self._get_fields_blocking(sisock_to_unix_time(start), sisock_to_unix_time(end))

    def answer_get_data(self, field, start, end, min_stride=None):
        """The reply a ``get_data`` call through the router gets, computed
        in the calling thread without Twisted.

        Tests and scripts that ask a server directly go through the same
        reading of ``field`` and of relative times, the same size limit and
        the same conversion to lists as a consumer's call, so what they
        check is what is sent. Servers that override :meth:`get_data`
        itself answer in the reactor and are not covered.
        """
        return contract.on_wire(self._answer_data(field, start, end, min_stride))

    def answer_get_data_packed(self, field, start, end, min_stride=None):
        """:meth:`answer_get_data` as ``get_data_packed`` sends it."""
        return contract.to_packed(self._answer_data(field, start, end, min_stride))

    def answer_get_aggregates(self, field, start, end, interval, offset=0.0):
        """The reply a ``get_aggregates`` call through the router gets,
        computed in the calling thread without Twisted."""
        from sisock import aggregate  # numpy, only for servers asked for statistics

        aggregate.grid(interval, offset)  # a bad interval is refused before anything is read
        fields = self._get_aggregates_blocking(contract.field_list(field), sisock_to_unix_time(start),
                                               sisock_to_unix_time(end), float(interval), float(offset))
        if fields is False:
            return False
        return self._bounded(aggregate.to_wire(fields), aggregate.reply_size, "get_aggregates",
                             "ask with a wider interval or a shorter range")

    def _get_aggregates_blocking(self, field, start, end, interval, offset):
        """``{name: statistics}`` of the fields found, or False for too much.

        The default is computed from the server's own raw ``get_data``
        answer (no decimation), so it is exact for every server; one that
        keeps statistics of its own overrides this."""
        from sisock import aggregate

        reply = self._blocking_data(field, start, end, None)
        if not isinstance(reply, dict):
            return False if reply is False else {}
        timelines = reply.get("timeline") or {}
        timeline_of = {}
        if len(timelines) > 1:  # which field is on which timeline: get_fields says
            _, listed = self._get_fields_blocking(start, end)
            timeline_of = {name: tl for tl, info in listed.items() for name in info.get("field", ())}
        series = {name: contract.field_series(reply, name, timeline_of.get(name)) for name in field}
        found = {name: pair for name, pair in series.items() if pair is not None}
        return aggregate.series_stats(found, start, end, interval, offset)

    def _answer_data(self, field, start, end, min_stride):
        return self._bounded(self._blocking_data(contract.field_list(field), sisock_to_unix_time(start),
                                                 sisock_to_unix_time(end), min_stride))

    def _blocking_data(self, field, start, end, min_stride):
        """The blocking ``get_data`` answer, under whichever name the server gives it."""
        blocking = self._get_data_blocking
        legacy = getattr(self, "get_data_blocking", None)
        if legacy is not None:
            blocking = legacy  # the name used by early versions of the API
        return blocking(field, start, end, min_stride)

    def _bounded(self, reply, size_of=contract.reply_size, what="get_data",
                 hint="ask with min_stride or set MAX_POINTS"):
        """False (the contract's "too much") for a reply the router would refuse."""
        size = size_of(reply)
        if size > contract.MAX_REPLY_VALUES:
            self.log.warn("refusing a {w} reply of {n} numbers (limit {m}): {h}", w=what, n=size,
                          m=contract.MAX_REPLY_VALUES, h=hint)
            return False
        return reply

    def _get_fields_blocking(self, start, end):
        raise NotImplementedError(f"{type(self).__name__} must override get_fields or _get_fields_blocking")

    def _get_data_blocking(self, field, start, end, min_stride=None):
        raise NotImplementedError(f"{type(self).__name__} must override get_data or _get_data_blocking")
