"""The g3 index: which file holds which field over which time span.

MariaDB when ``SQL_HOST`` is set, an SQLite file in the state folder
otherwise; SQLAlchemy Core gives both one code path. Tables keep the names of
the original design (``feeds``, ``fields``, ``description``) plus ``files``,
which remembers size and mtime so unchanged files are never read twice.

Every statement is built by SQLAlchemy (a bulk insert, from the schema's
table and column names) with bound parameters; no value from a file or a
request is ever formatted into SQL text.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import URL

from sisock.backoff import Backoff
from sisock.g3.summary import CHUNK_BUCKETS, ROLLUP_LEVELS, SAMPLES_LEVEL, Summary
from sisock.g3.summary import rollup as build_rollup

SCHEMA_VERSION = 5
OK, PARTIAL, ERROR = "ok", "partial", "error"

metadata = sa.MetaData()

meta = sa.Table(
    "sisock_meta", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
)
files = sa.Table(
    "files", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("path", sa.String(512), nullable=False, unique=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime_ns", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("scanned", sa.Float, nullable=False),
)
feeds = sa.Table(
    "feeds", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("file_id", sa.Integer, sa.ForeignKey("files.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("path", sa.String(512), nullable=False),
    sa.Column("prov_id", sa.Integer, nullable=False),
    sa.Column("description", sa.String(255), nullable=False, index=True),
    sa.Column("scanned", sa.Boolean, nullable=False, default=True),
    # The provider's first and last sample in the file (µs): finding the
    # files of a time range without going through every field row.
    sa.Column("start", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("end", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_feeds_description_start", "description", "start"),
    # The files of a time range, whatever their providers (see Index.kinds).
    sa.Index("ix_feeds_start", "start"),
)
description = sa.Table(
    "description", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("description", sa.String(512), nullable=False, unique=True),
    # What the name holds, as the last file scanned had it: float, int, bool or string.
    sa.Column("kind", sa.String(16), nullable=False, server_default="float"),
)
fields = sa.Table(
    "fields", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("feed_id", sa.Integer, sa.ForeignKey("feeds.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("description_id", sa.Integer, sa.ForeignKey("description.id"), nullable=False),
    sa.Column("field", sa.String(255), nullable=False),
    sa.Column("start", sa.BigInteger, nullable=False),
    sa.Column("end", sa.BigInteger, nullable=False),
    # Samples of the field in the file: how a reader sizes an answer before reading.
    sa.Column("samples", sa.BigInteger, nullable=False, server_default="0"),
    # "Which files overlap [t0, t1] for these fields": equality on the name,
    # then a range on the start time, bounded on both sides (see LONGEST);
    # the same index finds a name's first and latest file.
    sa.Index("ix_fields_name_end", "description_id", "end"),
    sa.Index("ix_fields_name_start", "description_id", "start"),
)


summaries = sa.Table(
    "summaries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("feed_id", sa.Integer, sa.ForeignKey("feeds.id", ondelete="CASCADE"), nullable=False),
    sa.Column("block", sa.String(255), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary(length=2**32 - 1), nullable=False),
    sa.Index("ix_summaries_feed_level", "feed_id", "level"),
)


#: Per name, level and chunk of :data:`~sisock.g3.summary.CHUNK_BUCKETS`
#: buckets: that name's statistics across every file, so a year-long panel
#: reads a few dozen rows instead of one summary per file.
rollups = sa.Table(
    "rollups", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("description_id", sa.Integer, sa.ForeignKey("description.id", ondelete="CASCADE"), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("chunk", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary(length=2**32 - 1), nullable=False),
    sa.UniqueConstraint("description_id", "level", "chunk", name="uq_rollups_name_level_chunk"),
)
#: Chunks of a provider whose rollups must be rebuilt: written in the same
#: transaction as the file that changed them (whose rollups it deletes), so
#: a scanner killed before rebuilding leaves work, never a stale rollup.
#: ``mark`` changes at every such write: a rebuild removes the row only if
#: it still has the mark the rebuild read before reading the summaries, so
#: a file stored meanwhile by another scanner leaves its chunk to do.
rollup_todo = sa.Table(
    "rollup_todo", metadata,
    sa.Column("provider", sa.String(255), primary_key=True),
    sa.Column("level", sa.Integer, primary_key=True),
    sa.Column("chunk", sa.BigInteger, primary_key=True),
    sa.Column("mark", sa.BigInteger, nullable=False, server_default="0"),
)


def database_url(env: Mapping | None = None, state_dir: str | None = None) -> URL | str:
    """MariaDB from ``SQL_*`` when ``SQL_HOST`` is set, else SQLite in the state folder."""
    env = os.environ if env is None else env
    host = env.get("SQL_HOST")
    if host:
        host, _, port = host.partition(":")
        return URL.create(
            "mysql+mysqlconnector",
            username=env.get("SQL_USER") or "root",
            password=env.get("SQL_PASSWD") or None,
            host=host,
            port=int(port) if port else None,
            database=env.get("SQL_DB") or "sisock",
            query={"charset": "utf8mb4"},
        )
    state_dir = state_dir or env.get("SISOCK_STATE_DIR") or ".sisock"
    os.makedirs(state_dir, exist_ok=True)
    return "sqlite:///" + os.path.abspath(os.path.join(state_dir, "g3_index.sqlite"))


def describe_url(url) -> str:
    """The URL without its password, for logs and error messages."""
    return url.render_as_string(hide_password=True) if isinstance(url, URL) else str(url)


class IndexTooNew(RuntimeError):
    """The index was written by a newer sisock: this code must not touch it."""


class SetupBusy(Exception):
    """Another process held the index's set-up lock for the whole wait (a
    long upgrade, or a stuck process): nothing is wrong here, try later."""


class StillUnavailable(Exception):
    """:func:`open_index` waited as long as it was allowed to; ``reason`` is
    the last error, on one line."""

    def __init__(self, reason: str, waited: float):
        super().__init__(f"{reason} (waited {waited:.0f} s)")
        self.reason, self.waited = reason, waited


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached right now (down,
    restarting, connection lost, SQLite locked), so trying again later is
    the right answer, as opposed to a mistake that would fail again."""
    if isinstance(exc, SetupBusy):
        return True
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)):
        return True
    if getattr(getattr(exc, "orig", None), "errno", None) in _MARIADB_UNREACHABLE:
        return True
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


#: The client's "cannot connect" (socket, TCP), "server has gone away" and
#: "lost connection": mysql-connector's C extension raises them as
#: DatabaseError, where its pure-Python path raises InterfaceError.
_MARIADB_UNREACHABLE = {2002, 2003, 2006, 2013, 2055}


#: MariaDB's "deadlock found" and "lock wait timeout exceeded": the server
#: gave up on this transaction because of another one, not because of it.
_MARIADB_CONTENTION = {1205, 1213}


def contended(exc: BaseException) -> bool:
    """Whether ``exc`` means another writer got there first: a row it
    committed meanwhile (the same file or field name, stored by a second
    scanner) or a deadlock with it. Redoing the transaction from the start,
    which deletes what is there before writing, is the cure."""
    if isinstance(exc, sa.exc.IntegrityError):
        return True
    return getattr(getattr(exc, "orig", None), "errno", None) in _MARIADB_CONTENTION


def _worth_waiting_at_start(exc: BaseException) -> bool:
    """:func:`unavailable`, narrowed for opening: SQLite is "unavailable"
    only when another process holds its lock. Any other SQLite error there
    (a file that cannot be opened or created, a read-only folder) comes from
    the file system and would never go away by itself."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, sqlite3.Error):
        text = str(orig).lower()
        return "locked" in text or "busy" in text
    return unavailable(exc)


def error_reason(exc: BaseException) -> str:
    """What the driver said, on one line, without the statement or
    SQLAlchemy's help link: fit for a log line or an error message."""
    orig = getattr(exc, "orig", None)
    text = " ".join((str(orig if orig is not None else exc) or type(exc).__name__).split())
    # MariaDB's C client ends "Can't connect" with the bare OS error number,
    # "(111)": say what it means, as the pure-Python driver did.
    found = re.search(r"\((\d{1,3})\)$", text) if "Can't connect" in text else None
    if found and errno.errorcode.get(int(found.group(1))):
        number = int(found.group(1))
        text = f"{text[:found.start()]}({number}: {os.strerror(number)})"
    return text[:300]


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    # Readers never block the scanner in WAL mode. Switching a new file to
    # it takes a lock that SQLite refuses at once ("database is locked",
    # without waiting out the busy timeout) while another process does the
    # same: processes started together on a new index retry briefly.
    deadline = time.monotonic() + 30.0
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    # One commit per file: with WAL, NORMAL keeps the index consistent after a
    # crash of the process (not of the machine) without an fsync per file.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


#: A statement's execution option: send its parameters in binary, as a
#: prepared statement (MariaDB), not escaped into its text.
BINARY = "sisock_binary_parameters"
_PYFORMAT = re.compile(r"%\((\w+)\)s")


def _prepared_cursor(dbapi_connection):
    """A prepared-statement cursor of mysql-connector, C extension or not
    (the class must be named: SQLAlchemy's connections buffer results,
    which prepared cursors do not)."""
    try:
        from mysql.connector.connection_cext import CMySQLConnection
        from mysql.connector.cursor_cext import CMySQLCursorPrepared
    except ImportError:  # no C extension
        CMySQLConnection = None
    if CMySQLConnection is not None and isinstance(dbapi_connection, CMySQLConnection):
        return dbapi_connection.cursor(cursor_class=CMySQLCursorPrepared)
    from mysql.connector.cursor import MySQLCursorPrepared

    return dbapi_connection.cursor(cursor_class=MySQLCursorPrepared)


def _no_ping_per_cursor(dbapi_connection, _record):
    """mysql-connector's C connection pings the server (a round trip, and
    work for the server) each time a cursor is opened, and SQLAlchemy opens
    one per statement: a first scan paid for a few hundred pings. The pool
    already pings once per checkout (``pool_pre_ping``, which calls
    ``ping()`` itself), and a connection lost during a transaction fails
    its next statement all the same, so ``cursor()`` is left the client's
    own view of the connection. Only the C connection is changed; the
    pure-Python one keeps its check."""
    cmysql = getattr(dbapi_connection, "_cmysql", None)
    if cmysql is not None and callable(getattr(cmysql, "connected", None)):
        dbapi_connection.is_connected = lambda: dbapi_connection._cmysql is not None \
            and dbapi_connection._cmysql.connected()


def _binary_insert(cursor, statement, parameters, context):
    """An INSERT of blobs marked :data:`BINARY`, run as one prepared
    multi-row statement: the driver would otherwise escape every blob into
    the SQL text (megabytes of it, then scanned by a regular expression on
    the client and parsed on the server), the slowest part of storing a
    file. A driver error raised here is SQLAlchemy's to wrap, as for any
    statement."""
    if not context.execution_options.get(BINARY):
        return None
    many = isinstance(parameters, list) or (isinstance(parameters, tuple) and parameters
                                            and isinstance(parameters[0], (Mapping, tuple, list)))
    rows = parameters if many else [parameters]
    head, sep, values = statement.partition(" VALUES ")
    names = _PYFORMAT.findall(values)
    if sep and names and all(isinstance(row, Mapping) for row in rows):
        width, flat = len(names), [row[name] for row in rows for name in names]
    elif sep and not names and values.count("%s") and all(isinstance(row, (tuple, list)) for row in rows):
        width, flat = values.count("%s"), [value for row in rows for value in row]
    else:
        return None  # not the shape this is for: the driver's own way
    one = "(" + ", ".join(["?"] * width) + ")"
    dbapi_connection = context.root_connection.connection.dbapi_connection
    prepared = _prepared_cursor(dbapi_connection)
    try:
        with _client_charset_binary(dbapi_connection):
            prepared.execute(head + sep + ", ".join([one] * len(rows)), flat)
    finally:
        prepared.close()
    return True


@contextlib.contextmanager
def _client_charset_binary(dbapi_connection):
    """The connection's client character set ``binary`` meanwhile.

    The driver binds bytes as strings, which the server takes to be in the
    client character set (utf8mb4) and checks character by character
    before storing them in a BLOB column: with summaries' bytes, that check
    was most of what MariaDB spent on a first scan (0.43-0.70 s against
    0.13 s for 38 MB). Declared binary, they are copied as they are; text
    parameters, sent as UTF-8 by the driver, are stored as the same UTF-8.
    Only for these statements: a query comparing a text column with a
    binary string could not use the column's index."""
    restore = "SET character_set_client = @@character_set_connection"  # as SET NAMES left them
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET character_set_client = binary")
        try:
            yield
        except BaseException:
            try:
                cursor.execute(restore)
            except Exception:  # noqa: BLE001 - the statement's own error is the one to raise
                dbapi_connection.close()  # never back in the pool with a binary client
            raise
        cursor.execute(restore)
    finally:
        cursor.close()


def _insert_tuples(conn, table: sa.Table, columns: Sequence[str], rows: list[tuple]):
    """Insert ``rows`` (tuples of ``columns``) into ``table`` as bound
    parameters of a statement made from the schema's own names, past
    SQLAlchemy's processing of every row: for the tens of thousands of field
    rows of a batch, that processing costs more than the driver's work."""
    quote = conn.dialect.identifier_preparer.quote
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    statement = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
                 f"VALUES ({', '.join([mark] * len(columns))})")
    conn.exec_driver_sql(statement, rows, execution_options={BINARY: True})


#: Most values bound in one ``IN (...)``: SQLite before 3.32 takes at most
#: 999 parameters in a statement.
_CHUNK = 500


#: Rows of small values in one INSERT (a few hundred kB of SQL).
_INSERT_ROWS = 5000
#: Most files-by-provider (``feeds`` rows) a window of :meth:`Index.kinds`
#: is answered from, through their field rows; a wider window takes one
#: pass over all field rows instead.
WINDOW_FEEDS = 5000
_FIELD_COLUMNS = ("feed_id", "description_id", "field", "start", "end", "samples")


def _chunks(values: list):
    for i in range(0, len(values), _CHUNK):
        yield values[i:i + _CHUNK]


def _name_ids(conn, names) -> list[int]:
    """The ids of ``names``, as values: a constant list on the indexed
    ``description_id`` lets MariaDB range over the (name, time) indexes,
    where a subquery may lead it through every field row of a year."""
    return [row[0] for row in conn.execute(sa.select(description.c.id).where(description.c.description.in_(names)))]


def _location_query():
    """Index rows joined into what a :class:`Location` holds."""
    return (
        sa.select(description.c.description, fields.c.start, fields.c.end, feeds.c.id, fields.c.samples,
                  files.c.path, feeds.c.description.label("provider"), fields.c.field)
        .select_from(fields)
        .join(description, fields.c.description_id == description.c.id)
        .join(feeds, fields.c.feed_id == feeds.c.id)
        .join(files, feeds.c.file_id == files.c.id)
    )


def _location(row) -> Location:
    name, start, end, feed, samples, path, provider, field = row
    return Location(path, provider, field, name, start, end, feed, samples)


def _chunk_of(t_us: int, level: int) -> int:
    """The rollup chunk holding the time ``t_us`` (µs) at ``level``."""
    return int(t_us // (level * CHUNK_BUCKETS * 1_000_000))


def _chunk_span_us(chunk: int, level: int) -> tuple[int, int]:
    width = level * CHUNK_BUCKETS * 1_000_000
    return chunk * width, (chunk + 1) * width


def _best_summaries(conn, where, keys, level: int) -> dict[tuple[int, str], bytes]:
    """``{(feed id, block): blob}`` at ``level``, or of samples where the
    block has nothing at ``level``; ``where(chunk)`` selects the feeds, for
    each chunk of ``keys``."""
    out, fallback = {}, {}
    for chunk in _chunks(keys):
        rows = conn.execute(
            sa.select(summaries.c.feed_id, summaries.c.block, summaries.c.level, summaries.c.data)
            .where(where(chunk), summaries.c.level.in_([level, SAMPLES_LEVEL]))
        )
        for feed, block, found, data in rows:
            (out if found == level else fallback)[(feed, block)] = bytes(data)
    for key, data in fallback.items():
        out.setdefault(key, data)
    return out


@dataclass
class ScannedFile:
    """One file as :meth:`Index.replace_files` stores it (see
    :meth:`Index.replace_file` for the fields); ``known`` says it may be
    indexed already, so what the index has of it is deleted first."""

    path: str
    size: int
    mtime_ns: int
    ranges: dict
    error: str | None = None
    blobs: list | None = None
    facts: dict | None = None
    known: bool = True


#: ``{(feed id, level): [(block, level found, blob), ...]}``: summaries a
#: pass just stored, kept to build rollups without reading them back. Under
#: a rollup level, every blob of the feed that a rollup at that level may
#: use (the level's and those of samples), in storing order; a feed and
#: level missing are read from the index.
HeldSummaries = Mapping[tuple[int, int], Sequence[tuple[str, int, bytes]]]


@dataclass(frozen=True)
class Rebuilt:
    chunks: int  # of the work asked for, done (from the first)
    names: int   # rollup rows written


#: Raw bytes of blobs in one INSERT: escaped, a statement must stay within
#: the server's packet limit (MariaDB's default is 16 MiB).
_STATEMENT_BYTES = 4 << 20


def _byte_chunks(rows: list[dict]):
    """Rows with a ``data`` blob, in runs of at most ``_CHUNK`` rows and
    about ``_STATEMENT_BYTES`` bytes (a bigger blob goes alone)."""
    run, size = [], 0
    for row in rows:
        if run and (size + len(row["data"]) > _STATEMENT_BYTES or len(run) >= _CHUNK):
            yield run
            run, size = [], 0
        run.append(row)
        size += len(row["data"])
    if run:
        yield run


def _provider_bounds(ranges) -> dict[tuple[int, str], tuple[int, int]]:
    """Each provider's first and last sample in a file."""
    bounds = {}
    for (prov_id, desc, _field), (lo, hi) in ranges.items():
        old_lo, old_hi = bounds.get((prov_id, desc), (lo, hi))
        bounds[(prov_id, desc)] = (min(lo, old_lo), max(hi, old_hi))
    return bounds


def _name_spans(ranges, names: Mapping[str, int]):
    """Per provider description, its span in a file and its names' ids."""
    spans, ids = {}, {}
    for (_, desc, field), (lo, hi) in ranges.items():
        old_lo, old_hi = spans.get(desc, (lo, hi))
        spans[desc] = (min(lo, old_lo), max(hi, old_hi))
        ids.setdefault(desc, set()).add(names[f"{desc}.{field}"])
    return spans, ids


def _rollups_touched(spans: Mapping[str, tuple[int, int]], ids: Mapping[str, set]):
    """A file of these providers over these µs spans changed: the chunks
    ``(provider, level, chunk)`` to rebuild and the rollups ``(name id,
    level, chunk)`` to drop now. The file's whole span counts for every
    provider in it, and every name of the file in each chunk."""
    if not spans:
        return set(), set()
    lo, hi = min(a for a, _ in spans.values()), max(b for _, b in spans.values())
    chunks = {level: range(_chunk_of(lo, level), _chunk_of(hi, level) + 1) for level in ROLLUP_LEVELS}
    todo = {(desc, level, chunk) for desc in spans for level, span in chunks.items() for chunk in span}
    names = set().union(*ids.values()) if ids else set()
    stale = {(name, level, chunk) for name in names for level, span in chunks.items() for chunk in span}
    return todo, stale


def _upsert_todo(conn):
    """An INSERT of ``rollup_todo`` rows that sets the mark of a row already there."""
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert

        statement = insert(rollup_todo)
        return statement.on_conflict_do_update(index_elements=["provider", "level", "chunk"],
                                               set_={"mark": statement.excluded.mark})
    from sqlalchemy.dialects.mysql import insert

    statement = insert(rollup_todo)
    return statement.on_duplicate_key_update(mark=statement.inserted.mark)


def _todo_marks(conn, ranges: Mapping[str, tuple[int, int]]) -> dict[tuple[str, int, int], int]:
    """``{(provider, level, chunk): mark}`` of the rows to do of these providers."""
    out = {}
    for part in _chunks(sorted(ranges)):
        out.update(((p, lv, c), m) for p, lv, c, m in conn.execute(
            sa.select(rollup_todo.c.provider, rollup_todo.c.level, rollup_todo.c.chunk, rollup_todo.c.mark)
            .where(rollup_todo.c.provider.in_(part))))
    return out


def _or_batches(terms):
    """Conditions ``(values, *clauses)`` (the clauses of one joined by AND),
    joined by OR into as few conditions as keep about ``_CHUNK`` values each."""
    batch, size = [], 0
    for values, *clauses in terms:
        if batch and size + values > _CHUNK:
            yield sa.or_(*batch)
            batch, size = [], 0
        batch.append(sa.and_(*clauses))
        size += values
    if batch:
        yield sa.or_(*batch)


def chunks_touched(ranges) -> set[tuple[str, int, int]]:
    """The rollup chunks ``(provider, level, chunk)`` that storing a file
    with these ``ranges`` (:meth:`Index.replace_file`) marks for a rebuild."""
    spans = {}
    for (_, desc, _field), (lo, hi) in ranges.items():
        old_lo, old_hi = spans.get(desc, (lo, hi))
        spans[desc] = (min(lo, old_lo), max(hi, old_hi))
    return _rollups_touched(spans, {})[0]


def chunk_start_us(level: int, chunk: int) -> int:
    return _chunk_span_us(chunk, level)[0]


def _decoded(blobs: Iterable[bytes], memo: dict) -> list[Summary]:
    """The summaries in ``blobs`` (of this format); ``memo`` keeps those
    decoded already, by blob, for the chunks a blob spans."""
    out = []
    for blob in blobs:
        key = id(blob)
        if key not in memo:
            memo[key] = (blob, Summary.decode(blob))  # the blob kept alive, so its id stays its own
        summary = memo[key][1]
        if summary is not None:
            out.append(summary)
    return out


@dataclass(frozen=True)
class Location:
    """Where samples of one full field name live."""

    path: str
    provider: str
    field: str
    name: str
    start: int
    end: int
    feed_id: int
    samples: int = 0

    def samples_in(self, t0: int, t1: int) -> float:
        """About how many of its samples ``[t0, t1]`` µs holds: its count,
        prorated by how much of its span the range covers."""
        if t0 <= self.start and self.end <= t1:  # wholly inside, as most of a panel's files are
            return float(self.samples)
        span = self.end - self.start
        if span <= 0:
            return float(self.samples) if t0 <= self.start <= t1 else 0.0
        covered = (min(self.end, t1) - max(self.start, t0)) / span
        return self.samples * min(max(covered, 0.0), 1.0)


#: How long one attempt waits for another process's set-up of the index,
#: in seconds, before :class:`SetupBusy` hands the wait to the caller.
SETUP_LOCK_WAIT = 60


def _lock_name(database: str) -> str:
    """The server-wide name of one database's set-up lock. Named locks are
    shared by every database of a server, hence the database's name in it;
    MariaDB may refuse names over 64 characters, hence the digest then."""
    name = f"sisock_index_setup.{database}"
    if len(name) > 64:
        name = "sisock_index_setup." + hashlib.sha256(database.encode()).hexdigest()[:40]
    return name


#: The ``sisock_meta`` row bounding how long one provider's stretch of one
#: file may be (µs): at least the longest ever stored (``feeds.end -
#: feeds.start``), kept by whoever stores files, in the same transaction.
#: Files overlapping ``[t0, t1]`` then start in ``[t0 - bound, t1]``: one
#: range of the index on (name, start) per name, however old the range and
#: however long the archive (see :meth:`Index.locations`).
LONGEST = "longest_us"
_META_ROWS = ("schema_version", "generation", LONGEST)


def _meta_values(conn) -> dict[str, str]:
    rows = conn.execute(sa.select(meta.c.name, meta.c.value).where(meta.c.name.in_(_META_ROWS)))
    return dict(rows.all())


def _longest_stored(conn) -> int:
    """The longest provider span of a file in ``feeds`` now (a full pass over it)."""
    return int(conn.execute(sa.select(sa.func.max(feeds.c.end - feeds.c.start))).scalar() or 0)


def _longest_bound(conn) -> int:
    return int(conn.execute(sa.select(meta.c.value).where(meta.c.name == LONGEST)).scalar() or 0)


def _raise_longest(conn, span_us: int):
    """Raise the :data:`LONGEST` bound to ``span_us`` if it is below it.
    The row is locked until the transaction ends, so two writers raising it
    at once leave the larger value."""
    conn.execute(meta.update()
                 .where(meta.c.name == LONGEST, sa.cast(meta.c.value, sa.BigInteger) < span_us)
                 .values(value=str(span_us)))


def _too_new(version: int) -> IndexTooNew:
    return IndexTooNew(f"index schema {version} is newer than this sisock ({SCHEMA_VERSION})")


class Index:
    def __init__(self, url, echo: bool = False):
        self.url = url
        kwargs = {"pool_pre_ping": True}
        if str(url).startswith("sqlite"):
            kwargs = {"connect_args": {"timeout": 30, "check_same_thread": False}}
        self.engine = sa.create_engine(url, echo=echo, **kwargs)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        elif self.engine.dialect.driver == "mysqlconnector":
            sa.event.listen(self.engine, "connect", _no_ping_per_cursor)
            sa.event.listen(self.engine, "do_executemany", _binary_insert)
            sa.event.listen(self.engine, "do_execute", _binary_insert)
        try:
            self.setup()
        except BaseException:
            self.engine.dispose()  # a caller retrying in a loop must not pile up connections
            raise

    def setup(self):
        """Create the tables, or bring an older index up to this version.

        The scanner and every reader call this when they start, often at
        the same moment on a new index, so the work is done under a lock
        that covers all of it: tables, upgrade steps and the meta rows. The
        first process does the work, the others wait for the lock and then
        find nothing left to do; each upgrade step runs once.

        * MariaDB: a named lock (``GET_LOCK``), held by the connection that
          does the work. The server drops it when that connection closes,
          so a process killed half-way cannot leave it behind. DDL commits
          by itself there, so a killed set-up may leave some tables; the
          next one creates the rest (``create_all`` skips what exists).
        * SQLite: ``BEGIN IMMEDIATE`` around everything, chosen over a lock
          file. SQLite's DDL is transactional, so a set-up killed half-way
          is rolled back as a whole; the lock is the database's own write
          lock, which every writer of the file honours (an older sisock
          too, which would ignore a lock file) and which dies with its
          process; and there is no extra file to create beside the index.
          Waiting for it is bounded by the busy timeout, after which
          "database is locked" tells the caller to try again.

        An index that is already current is recognised without the lock, so
        opening one costs a few reads and needs no write access.
        """
        with self.engine.connect() as conn:
            if self._current(conn):
                return
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            self._setup_sqlite()
        elif dialect in ("mysql", "mariadb"):
            self._setup_mariadb()
        else:  # not a supported backend: no lock to take, do it in one go
            with self.engine.begin() as conn:
                self._create_and_upgrade(conn, lambda: None)

    @staticmethod
    def _current(conn) -> bool:
        if not set(metadata.tables) <= set(sa.inspect(conn).get_table_names()):
            return False
        values = _meta_values(conn)
        version = int(values.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise _too_new(version)
        return version == SCHEMA_VERSION and "generation" in values and LONGEST in values

    def _setup_sqlite(self):
        with self.engine.connect() as conn:
            # The driver's own transaction handling would begin a deferred
            # transaction at the first INSERT only, outside the DDL: take
            # over, so one IMMEDIATE transaction holds everything.
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                self._create_and_upgrade(conn, lambda: None)
            except BaseException:
                try:
                    conn.exec_driver_sql("ROLLBACK")
                except sa.exc.DBAPIError:
                    pass  # SQLite already rolled back; the first error is the one to report
                raise
            conn.exec_driver_sql("COMMIT")

    def _setup_mariadb(self):
        with self.engine.connect() as conn:
            name = _lock_name(conn.execute(sa.text("SELECT DATABASE()")).scalar_one())
            got = conn.execute(sa.text("SELECT GET_LOCK(:name, :wait)"),
                               {"name": name, "wait": SETUP_LOCK_WAIT}).scalar()
            conn.commit()
            if got != 1:
                raise SetupBusy(f"another process has been setting up the index for {SETUP_LOCK_WAIT} s "
                                f"(lock {name})")
            try:
                self._create_and_upgrade(conn, conn.commit)
            finally:
                try:
                    conn.rollback()  # nothing after a success; a step cut short otherwise
                    conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
                    conn.commit()
                except sa.exc.SQLAlchemyError:
                    conn.invalidate()  # closing the connection releases the lock on the server

    @staticmethod
    def _create_and_upgrade(conn, commit):
        """The set-up proper, on the connection holding the lock. ``commit``
        ends each step's transaction (MariaDB), or does nothing when one
        transaction holds the whole set-up (SQLite)."""
        metadata.create_all(conn)
        commit()
        values = _meta_values(conn)
        if "schema_version" not in values:
            # The tables are those create_all just made for this version
            # (or made by a set-up that died before writing this row, when
            # nothing could have been indexed yet): there is nothing to upgrade.
            conn.execute(meta.insert().values(name="schema_version", value=str(SCHEMA_VERSION)))
        else:
            version = int(values["schema_version"])
            if version > SCHEMA_VERSION:
                raise _too_new(version)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS.get(step, ()):
                    if callable(statement):
                        statement(conn)
                    else:
                        conn.execute(sa.text(statement))
                # In the step's own transaction: a set-up killed after it
                # does not run it again, one killed during it does.
                conn.execute(meta.update().where(meta.c.name == "schema_version").values(value=str(step)))
                commit()
        if "generation" not in values:
            conn.execute(meta.insert().values(name="generation", value=str(time.time_ns())))
        if LONGEST not in values:  # a new index (0), or one from before schema 4
            conn.execute(meta.insert().values(name=LONGEST, value=str(_longest_stored(conn))))
        commit()

    def dispose(self):
        self.engine.dispose()

    # -- the scanner's side ---------------------------------------------------------

    def file_states(self) -> dict[str, tuple[int, int, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(files.c.path, files.c.size, files.c.mtime_ns, files.c.status))
            return {path: (size, mtime, status) for path, size, mtime, status in rows}

    def replace_file(self, path: str, size: int, mtime_ns: int, ranges, error: str | None = None,
                     blobs=(), known: bool = True, facts=None):
        """Index one file, replacing what was known of it, in one transaction.

        ``ranges`` maps ``(prov_id, provider description, field)`` to the
        first and last sample time in µs; ``facts`` maps the same keys to
        ``(kind, samples)``; ``blobs`` are ``(prov_id, provider description,
        block, level, bytes)`` summaries.
        """
        return self.replace_files([ScannedFile(path, size, mtime_ns, ranges, error, list(blobs), facts, known)])[path]

    def replace_files(self, scanned: Sequence[ScannedFile]) -> dict[str, dict[tuple[int, str], int]]:
        """Index several files in one transaction (each replacing what was
        known of it), with a handful of statements for all of them: each
        commit costs the database a flush to disk, each statement a round
        trip. Returns each file's feed ids by ``(prov_id, provider)``."""
        if not scanned:
            return {}
        with self.engine.begin() as conn:
            for part in _chunks([s.path for s in scanned if s.known]):  # a first scan has nothing to delete
                self._forget(conn, part)
            now = time.time()
            conn.execute(files.insert(), [
                {"path": s.path, "size": s.size, "mtime_ns": s.mtime_ns, "status": OK if s.error is None else PARTIAL,
                 "error": s.error, "scanned": now} for s in scanned])
            file_ids = {}
            for part in _chunks([s.path for s in scanned]):
                file_ids.update(conn.execute(sa.select(files.c.path, files.c.id).where(files.c.path.in_(part))).all())
            feed_rows = []
            for s in scanned:
                for (prov_id, desc), (lo, hi) in sorted(_provider_bounds(s.ranges).items()):
                    feed_rows.append({"file_id": file_ids[s.path], "filename": os.path.basename(s.path),
                                      "path": s.path, "prov_id": prov_id, "description": desc, "scanned": True,
                                      "start": lo, "end": hi})
            feed_ids: dict[int, dict[tuple[int, str], int]] = {}
            if feed_rows:  # one statement for all of them, one to read their ids back
                conn.execute(feeds.insert(), feed_rows)
                _raise_longest(conn, max(row["end"] - row["start"] for row in feed_rows))
                for part in _chunks(sorted(file_ids.values())):
                    for feed, file_id, prov_id, desc in conn.execute(
                            sa.select(feeds.c.id, feeds.c.file_id, feeds.c.prov_id, feeds.c.description)
                            .where(feeds.c.file_id.in_(part))):
                        feed_ids.setdefault(file_id, {})[(prov_id, desc)] = feed
            # The kind of a name is the last file's, as if stored one by one.
            kinds = {}
            for s in scanned:
                facts = s.facts or {}
                kinds.update((f"{desc}.{field}", facts.get((prov_id, desc, field), ("float", 0))[0])
                             for prov_id, desc, field in s.ranges)
            names = self._description_ids(conn, kinds)
            field_rows, blob_rows, todo, stale = [], [], set(), set()
            for s in scanned:
                facts, ids = s.facts or {}, feed_ids.get(file_ids[s.path], {})
                field_rows.extend(
                    (ids[(prov_id, desc)], names[f"{desc}.{field}"], field, lo, hi,
                     int(facts.get((prov_id, desc, field), ("float", 0))[1]))
                    for (prov_id, desc, field), (lo, hi) in s.ranges.items())
                blob_rows.extend(
                    {"feed_id": ids[(prov_id, desc)], "block": block, "level": level, "data": data}
                    for prov_id, desc, block, level, data in s.blobs or () if (prov_id, desc) in ids)
                spans, name_ids = _name_spans(s.ranges, names)
                file_todo, file_stale = _rollups_touched(spans, name_ids)
                todo |= file_todo
                stale |= file_stale
            for i in range(0, len(field_rows), _INSERT_ROWS):
                _insert_tuples(conn, fields, _FIELD_COLUMNS, field_rows[i:i + _INSERT_ROWS])
            for part in _byte_chunks(blob_rows):
                conn.execute(summaries.insert().execution_options(**{BINARY: True}), part)
            self._touch_rollups(conn, todo, stale)
            self._bump(conn)
        return {s.path: feed_ids.get(file_ids[s.path], {}) for s in scanned}

    def mark_unreadable(self, path: str, size: int, mtime_ns: int, reason: str):
        """Leave the file out of the index but remember why (retried next pass)."""
        with self.engine.begin() as conn:
            self._forget(conn, [path])
            conn.execute(files.insert().values(
                path=path, size=size, mtime_ns=mtime_ns, status=ERROR, error=reason[:2000], scanned=time.time(),
            ))
            self._bump(conn)

    def remove(self, paths: Iterable[str]):
        paths = list(paths)
        if not paths:
            return
        with self.engine.begin() as conn:
            named = set()
            for chunk in _chunks(paths):
                named |= self._forget(conn, chunk)
            self._prune_names(conn, named)
            self._bump(conn)

    def _forget(self, conn, paths) -> set[int]:
        """Delete what is indexed of ``paths``; returns the ids of the names they held."""
        # The ids as values, not subqueries: MariaDB runs a DELETE whose
        # condition is a subquery once per row of the table, which made
        # forgetting one file of a year read all of its 8.8 million field
        # rows (25 s), on every rescan of a growing file.
        file_ids = [row[0] for row in conn.execute(sa.select(files.c.id).where(files.c.path.in_(paths)))]
        if not file_ids:
            return set()
        feed_ids = [row[0] for row in conn.execute(sa.select(feeds.c.id).where(feeds.c.file_id.in_(file_ids)))]
        spans, ids = {}, {}
        for desc, name_id, lo, hi in conn.execute(
            sa.select(feeds.c.description, fields.c.description_id, fields.c.start, fields.c.end)
            .select_from(fields).join(feeds, fields.c.feed_id == feeds.c.id).where(feeds.c.file_id.in_(file_ids))
        ):
            old_lo, old_hi = spans.get(desc, (lo, hi))
            spans[desc] = (min(lo, old_lo), max(hi, old_hi))
            ids.setdefault(desc, set()).add(name_id)
        self._touch_rollups(conn, *_rollups_touched(spans, ids))
        for chunk in _chunks(feed_ids):
            conn.execute(summaries.delete().where(summaries.c.feed_id.in_(chunk)))
            conn.execute(fields.delete().where(fields.c.feed_id.in_(chunk)))
        conn.execute(feeds.delete().where(feeds.c.file_id.in_(file_ids)))
        conn.execute(files.delete().where(files.c.id.in_(file_ids)))
        return set().union(*ids.values())

    @staticmethod
    def _prune_names(conn, candidates: set[int]):
        """Drop the names among ``candidates`` that no file holds any more:
        one index probe per name, where asking which names of the whole
        table are unused read every field row (about 1 s for a year)."""
        still = sa.select(fields.c.description_id).where(fields.c.description_id == description.c.id).exists()
        for chunk in _chunks(sorted(candidates)):
            conn.execute(description.delete().where(description.c.id.in_(chunk), ~still))

    def _description_ids(self, conn, kinds: Mapping[str, str]) -> dict[str, int]:
        """Ids of the names (``{name: kind}``), created where new; a name
        whose kind changed takes the new one."""
        names = sorted(kinds)
        known, old_kind = {}, {}
        query = sa.select(description.c.description, description.c.id, description.c.kind)
        for chunk in _chunks(names):
            for name, row_id, kind in conn.execute(query.where(description.c.description.in_(chunk))):
                known[name], old_kind[name] = row_id, kind
        missing = [n for n in names if n not in known]
        if missing:
            conn.execute(description.insert(), [{"description": n, "kind": kinds[n]} for n in missing])
            for chunk in _chunks(missing):
                known.update((name, row_id) for name, row_id, _ in
                             conn.execute(query.where(description.c.description.in_(chunk))))
        changed = [{"row_id": known[n], "new_kind": kinds[n]} for n in old_kind if old_kind[n] != kinds[n]]
        if changed:
            conn.execute(description.update().where(description.c.id == sa.bindparam("row_id"))
                         .values(kind=sa.bindparam("new_kind")), changed)
        return known

    def _touch_rollups(self, conn, todo: set[tuple[str, int, int]], stale: set[tuple[int, int, int]]):
        """Files changed: note the ``(provider, level, chunk)`` of ``todo``
        for a rebuild and drop the ``(name id, level, chunk)`` rollups of
        ``stale`` (:func:`_rollups_touched`), in the files' transaction."""
        if not todo:
            return
        # Written whether or not the row is there (a fresh mark either way):
        # deciding from what this transaction's snapshot showed let a rebuild
        # by another scanner, committed meanwhile, take the row away with
        # rollups that lacked this file, leaving neither.
        mark = secrets.randbits(62)
        rows = [{"provider": p, "level": lv, "chunk": c, "mark": mark} for p, lv, c in sorted(todo)]
        for i in range(0, len(rows), _CHUNK):
            conn.execute(_upsert_todo(conn), rows[i:i + _CHUNK])
        self._delete_rollups(conn, stale)

    @staticmethod
    def _delete_rollups(conn, keys: set[tuple[int, int, int]]):
        """Delete the rollups ``(name id, level, chunk)``, in few statements:
        the chunks of a level sharing a set of names go in one condition."""
        names_of: dict[tuple[int, int], set] = {}
        for name_id, level, chunk in keys:
            names_of.setdefault((level, chunk), set()).add(name_id)
        groups: dict[tuple[int, tuple], list] = {}
        for (level, chunk), ids in names_of.items():
            groups.setdefault((level, tuple(sorted(ids))), []).append(chunk)
        terms = [(len(part) + len(chunks), rollups.c.level == level, rollups.c.chunk.in_(sorted(chunks)),
                  rollups.c.description_id.in_(part))
                 for (level, ids), chunks in sorted(groups.items()) for part in _chunks(list(ids))]
        for condition in _or_batches(terms):
            conn.execute(rollups.delete().where(condition))

    def rollup_work(self) -> list[tuple[str, int, int]]:
        """``(provider, level, chunk)`` whose rollups are to be rebuilt."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                sa.select(rollup_todo.c.provider, rollup_todo.c.level, rollup_todo.c.chunk)
                .order_by(rollup_todo.c.provider, rollup_todo.c.level, rollup_todo.c.chunk))]

    def longest_file_us(self) -> int:
        """The longest time span one provider covers in one file (µs):
        bounds the search for the files overlapping a time range to a range
        of the index on start times."""
        with self.engine.connect() as conn:
            return _longest_bound(conn)

    def rebuild_rollup(self, provider: str, level: int, chunk: int, longest_us: int | None = None) -> int:
        """Rebuild one chunk of a provider's rollups from its files'
        summaries, in one transaction with the removal of its to-do row;
        returns the number of names written. ``longest_us``
        (:meth:`longest_file_us`) lets the file search use the index on
        start times instead of every file of the provider."""
        return self.rebuild_rollups([(provider, level, chunk)], longest_us).names

    def rebuild_rollups(self, work: Sequence[tuple[str, int, int]], longest_us: int | None = None,
                        held: HeldSummaries | None = None, max_bytes: int = 32 << 20) -> Rebuilt:
        """Rebuild chunks ``(provider, level, chunk)`` of rollups, in order,
        in one transaction with the removal of their to-do rows.

        Summaries of feeds in ``held`` (those a pass just stored) are taken
        from there, the others read back from the index: the result is the
        same, the database is spared sending the blobs it was just sent.
        The transaction ends once the rollups written pass ``max_bytes``;
        :attr:`Rebuilt.chunks` says how many of ``work`` were done.
        """
        if not work:
            return Rebuilt(0, 0)
        if longest_us is None:
            longest_us = self.longest_file_us()
        spans = [_chunk_span_us(chunk, level) for _, level, chunk in work]
        ranges: dict[str, tuple[int, int]] = {}
        for (provider, _, _), (lo, hi) in zip(work, spans, strict=True):
            old_lo, old_hi = ranges.get(provider, (lo, hi))
            ranges[provider] = (min(lo, old_lo), max(hi, old_hi))
        with self.engine.begin() as conn:
            # The marks first, so the summaries read after them hold at
            # least the files of each mark seen: on MariaDB this read fixes
            # the transaction's snapshot; where reads see the newest data
            # (SQLite's, outside a write), they are newer still.
            marks = _todo_marks(conn, ranges)
            # The ids first (of all of a provider's chunks at once), then
            # their summaries by key: as one statement with a subquery,
            # MariaDB may scan every summary (blobs and all) instead.
            candidates = {provider: conn.execute(
                sa.select(feeds.c.id, feeds.c.start, feeds.c.end).where(
                    feeds.c.description == provider, feeds.c.start >= lo - longest_us,
                    feeds.c.start < hi, feeds.c.end >= lo)).all() for provider, (lo, hi) in ranges.items()}
            name_ids: dict[str, int] = {}
            rows, done, written, stale, decoded = [], [], 0, set(), {}
            for (provider, level, chunk), (lo_us, hi_us) in zip(work, spans, strict=True):
                ids = sorted(f for f, start, end in candidates[provider]
                             if lo_us - longest_us <= start < hi_us and end >= lo_us)
                series = build_rollup(_decoded(self._summaries_for(conn, ids, level, held), decoded), level, chunk)
                missing = [n for n in (f"{provider}.{field}" for field in series) if n not in name_ids]
                if missing:
                    name_ids.update(self._description_ids_of(conn, missing))
                for field, summary in series.items():
                    name_id = name_ids.get(f"{provider}.{field}")
                    if name_id is None:
                        continue
                    data = summary.encode()
                    rows.append({"description_id": name_id, "level": level, "chunk": chunk, "data": data})
                    stale.add((name_id, level, chunk))
                    written += len(data)
                done.append((provider, level, chunk))
                if written >= max_bytes:
                    break
            self._delete_rollups(conn, stale)
            for part in _byte_chunks(rows):
                conn.execute(rollups.insert().execution_options(**{BINARY: True}), part)
            by_key: dict[tuple[str, int, int], list] = {}
            for key in done:
                if key in marks:
                    by_key.setdefault((key[0], key[1], marks[key]), []).append(key[2])
            for part in _or_batches([(len(chunks), rollup_todo.c.provider == provider, rollup_todo.c.level == level,
                                      rollup_todo.c.mark == mark, rollup_todo.c.chunk.in_(chunks))
                                     for (provider, level, mark), whole in sorted(by_key.items())
                                     for chunks in _chunks(whole)]):
                conn.execute(rollup_todo.delete().where(part))
            self._bump(conn)
        return Rebuilt(len(done), len(rows))

    @staticmethod
    def _summaries_for(conn, feed_ids: list[int], level: int, held: HeldSummaries | None) -> list[bytes]:
        """The blobs a rollup at ``level`` is built from, for these feeds,
        in the order the index keeps them (:func:`_best_summaries`)."""
        held = held or {}
        keyed = {}
        for feed in feed_ids:
            for seq, (block, found, data) in enumerate(held.get((feed, level), ())):
                if found in (level, SAMPLES_LEVEL):
                    keyed.setdefault((feed, block), {})[found] = (seq, data)
        absent = [feed for feed in feed_ids if (feed, level) not in held]
        for part in _chunks(absent):
            for row_id, feed, block, found, data in conn.execute(
                    sa.select(summaries.c.id, summaries.c.feed_id, summaries.c.block, summaries.c.level,
                              summaries.c.data)
                    .where(summaries.c.feed_id.in_(part), summaries.c.level.in_([level, SAMPLES_LEVEL]))):
                keyed.setdefault((feed, block), {})[found] = (row_id, bytes(data))
        # Blobs at the level first, then summaries of samples standing in for
        # a level the block is too sparse for, each by feed and storing order.
        order = []
        for (feed, _block), by_level in keyed.items():
            if level in by_level:
                seq, data = by_level[level]
                order.append((0, feed, seq, data))
            else:
                seq, data = by_level[SAMPLES_LEVEL]
                order.append((1, feed, seq, data))
        order.sort(key=lambda item: item[:3])
        return [data for *_, data in order]

    @staticmethod
    def _description_ids_of(conn, names) -> dict[str, int]:
        out = {}
        for chunk in _chunks(sorted(set(names))):
            out.update(conn.execute(sa.select(description.c.description, description.c.id)
                                    .where(description.c.description.in_(chunk))).all())
        return out

    # -- the reader's side -------------------------------------------------------------

    def rollups(self, names: Iterable[str], level: int, first: int, last: int) -> dict[tuple[str, int], bytes]:
        """``{(name, chunk): blob}`` of the names' rollups at ``level`` for
        chunks ``first`` to ``last``; a chunk being rebuilt is absent."""
        out = {}
        query = (
            sa.select(description.c.description, rollups.c.chunk, rollups.c.data)
            .join(description, rollups.c.description_id == description.c.id)
            .where(rollups.c.level == level, rollups.c.chunk.between(first, last))
        )
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(names))):
                for name, number, data in conn.execute(query.where(description.c.description.in_(chunk))):
                    out[(name, int(number))] = bytes(data)
        return out

    def names(self, start_us: int, end_us: int) -> list[str]:
        """Full field names with samples overlapping ``[start, end]``."""
        return sorted(self.kinds(start_us, end_us))

    def kinds(self, start_us: int, end_us: int) -> dict[str, str]:
        """``{full field name: kind}`` of the names with samples overlapping
        ``[start, end]``; kind is ``float``, ``int``, ``bool`` or ``string``."""
        with self.engine.connect() as conn:
            earliest = start_us - _longest_bound(conn)
            window = (sa.select(feeds.c.id)
                      .where(feeds.c.start >= earliest, feeds.c.start <= end_us, feeds.c.end >= start_us)
                      .with_hint(feeds, "FORCE INDEX (ix_feeds_start)", "mysql")
                      .with_hint(feeds, "FORCE INDEX (ix_feeds_start)", "mariadb")
                      .limit(WINDOW_FEEDS + 1))
            feed_ids = conn.execute(window).scalars().all()
            if len(feed_ids) > WINDOW_FEEDS:
                return self._kinds_by_name(conn, start_us, end_us)
            ids = set()
            for chunk in _chunks(sorted(feed_ids)):
                ids.update(conn.execute(
                    sa.select(fields.c.description_id).distinct()
                    .where(fields.c.feed_id.in_(chunk), fields.c.start <= end_us, fields.c.end >= start_us)).scalars())
            out = {}
            for chunk in _chunks(sorted(ids)):
                out.update(conn.execute(sa.select(description.c.description, description.c.kind)
                                        .where(description.c.id.in_(chunk))).all())
            return out

    @staticmethod
    def _kinds_by_name(conn, start_us: int, end_us: int) -> dict[str, str]:
        """:meth:`kinds` of a window holding much of the archive: one pass
        over the field rows, cheaper there than going file by file."""
        has_samples = (
            sa.select(fields.c.id)
            .where(fields.c.description_id == description.c.id, fields.c.end >= start_us, fields.c.start <= end_us)
            .exists()
        )
        return dict(conn.execute(sa.select(description.c.description, description.c.kind).where(has_samples)).all())

    def summaries(self, feed_ids: Iterable[int], level: int) -> dict[tuple[int, str], bytes]:
        """``{(feed id, block): blob}`` at ``level`` for the given feeds, or
        the block's summary of samples where it is too sparse for ``level``."""
        feed_ids = sorted(set(feed_ids))
        with self.engine.connect() as conn:
            return _best_summaries(conn, lambda chunk: summaries.c.feed_id.in_(chunk), feed_ids, level)

    def generation(self) -> str:
        """Changes whenever the index changes (files added, grown, removed): one
        primary-key read, so readers can check it on every request."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(meta.c.value).where(meta.c.name == "generation")).scalar() or ""

    def _bump(self, conn):
        conn.execute(meta.update().where(meta.c.name == "generation").values(value=str(time.time_ns())))

    def locations(self, names: Iterable[str], start_us: int, end_us: int) -> list[Location]:
        """The files holding ``names`` in ``[start, end]`` µs, in time
        order, read for this range only: a request never reads a name's
        whole history. (A name's newest file, which may have grown into a
        later range, is :meth:`newest_locations`.)"""
        out = []
        with self.engine.connect() as conn:
            # Bounded on both sides of one index, so MariaDB's planner has
            # one choice and each name's range holds only its files near
            # [start, end]. Bounded on the end alone, it probed both
            # (name, time) indexes for every name (half a second for 500
            # names of a year) and, for a range in the past, read the name's
            # every file since (seconds for ten names).
            earliest = start_us - _longest_bound(conn)
            for chunk in _chunks(sorted(set(names))):
                ids = _name_ids(conn, chunk)
                query = (_location_query()
                         .where(fields.c.description_id.in_(ids), fields.c.start >= earliest,
                                fields.c.start <= end_us, fields.c.end >= start_us)
                         .with_hint(fields, "FORCE INDEX (ix_fields_name_start)", "mysql")
                         .with_hint(fields, "FORCE INDEX (ix_fields_name_start)", "mariadb"))
                out.extend(_location(row) for row in conn.execute(query))
        out.sort(key=lambda loc: (loc.start, loc.path))
        return out

    def first_starts(self, names: Iterable[str]) -> dict[str, int]:
        """Each name's first sample time (µs): where its history begins."""
        # Grouped by the id, not the name: MariaDB then takes each minimum
        # from the (name, start) index in one probe ("index for group-by"),
        # where grouping by the joined name read every one of a name's field
        # rows (20 ms for ten names of a year, most of a cold panel's queries).
        out = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(names))):
                ids = dict(conn.execute(sa.select(description.c.id, description.c.description)
                                        .where(description.c.description.in_(chunk))).all())
                if not ids:
                    continue
                query = (sa.select(fields.c.description_id, sa.func.min(fields.c.start))
                         .where(fields.c.description_id.in_(sorted(ids))).group_by(fields.c.description_id))
                out.update((ids[i], start) for i, start in conn.execute(query))
        return out

    def newest_locations(self, names: Iterable[str]) -> dict[str, Location]:
        """Each name's newest file (the one starting last): the only file
        of a name that may still grow past what the index saw."""
        out = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(names))):
                ids = _name_ids(conn, chunk)
                latest = (
                    sa.select(fields.c.description_id, sa.func.max(fields.c.start).label("latest"))
                    .where(fields.c.description_id.in_(ids)).group_by(fields.c.description_id).subquery()
                )
                query = _location_query().join(latest, sa.and_(latest.c.description_id == fields.c.description_id,
                                                               latest.c.latest == fields.c.start))
                for row in conn.execute(query):
                    loc = _location(row)
                    if loc.name not in out or loc.feed_id > out[loc.name].feed_id:
                        out[loc.name] = loc
        return out

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for table in (files, feeds, fields, description, summaries, rollups, rollup_todo)
            }


#: Statements that bring an index from version N-1 to N, run once, under the
#: set-up lock, in the transaction that records version N. On MariaDB a DDL
#: statement commits by itself, so a step holding one must be safe to run a
#: second time (the set-up may be killed between it and the version row).
#: A step is SQL text or a function of the connection.
#: Version 2 added the ``summaries`` table, which create_all makes; files
#: scanned before it have none, so they are marked for a rescan. Version 3
#: keeps M4 statistics with exact times, counts and sums in summaries, each
#: name's kind and each field's sample count: old summaries go and every
#: file is rescanned.
def _add_column(table: str, name: str, ddl: str):
    """A step adding a column unless it is there (so running it twice,
    after a set-up killed between the DDL and the version row, is harmless)."""
    def step(conn):
        if name not in {c["name"] for c in sa.inspect(conn).get_columns(table)}:
            quoted = conn.dialect.identifier_preparer.quote(name)  # "end" is a keyword
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {quoted} {ddl}"))
    return step


def _add_index(index: sa.Index):
    """A step creating an index of the schema unless it is there."""
    def step(conn):
        index.create(conn, checkfirst=True)
    return step


def _drop_index(table: str, name: str):
    """A step dropping an index if it is there."""
    def step(conn):
        if name in {i["name"] for i in sa.inspect(conn).get_indexes(table)}:
            on = f" ON {table}" if conn.dialect.name in ("mysql", "mariadb") else ""
            conn.execute(sa.text(f"DROP INDEX {name}{on}"))
    return step


#: Schema 4 adds the :data:`LONGEST` row, from the feeds stored (set-up
#: writes it with the other meta rows) and ``rollup_todo.mark``, and drops
#: the index of field rows on their start alone, which no query uses any
#: more and every stored field row paid for; nothing is rescanned. Schema 5
#: indexes ``feeds`` on its start: the names of a window come from the
#: files of that window (:meth:`Index.kinds`); nothing is rescanned.
MIGRATIONS: dict[int, list] = {
    2: ["UPDATE files SET size = -1"],
    3: [
        _add_column("description", "kind", "VARCHAR(16) NOT NULL DEFAULT 'float'"),
        _add_column("fields", "samples", "BIGINT NOT NULL DEFAULT 0"),
        _add_column("feeds", "start", "BIGINT NOT NULL DEFAULT 0"),
        _add_column("feeds", "end", "BIGINT NOT NULL DEFAULT 0"),
        _add_index(next(i for i in feeds.indexes if i.name == "ix_feeds_description_start")),
        "DELETE FROM summaries",
        "UPDATE files SET size = -1",
    ],
    4: [_add_column("rollup_todo", "mark", "BIGINT NOT NULL DEFAULT 0"), _drop_index("fields", "ix_fields_start")],
    5: [_add_index(next(i for i in feeds.indexes if i.name == "ix_feeds_start"))],
}


#: Waits of :func:`open_index` between attempts: doubling, then capped.
OPEN_FIRST_DELAY, OPEN_MAX_DELAY = 1.0, 30.0


def open_index(url, log, wait: float | None = None, sleep=time.sleep, clock=time.monotonic) -> Index:
    """The index at ``url``, as soon as it can be opened.

    Services start in any order: the database may refuse connections or
    still be starting, and another process may be creating the schema. All
    of that is waited out, with attempts 1 s apart at first, doubling up to
    30 s. ``log`` (a txaio logger) gets a warning when waiting starts and
    whenever the reason changes, never for an unchanged reason, so an
    outage of hours is a line or two; then one line when the index opens.

    ``wait`` is how long to keep trying, in seconds (None: for as long as it
    takes, what a service wants); past it, :class:`StillUnavailable` is
    raised. Any other error (credentials refused, an unknown database, an
    index newer than this code) is raised at once: waiting cannot cure it.
    """
    where = describe_url(url)
    started = clock()
    backoff = Backoff(OPEN_FIRST_DELAY, OPEN_MAX_DELAY)
    while True:
        try:
            index = Index(url)
        except Exception as exc:
            if not _worth_waiting_at_start(exc):
                raise
            waited = clock() - started
            now = error_reason(exc)
            if wait is not None and waited >= wait:
                raise StillUnavailable(now, waited) from exc
            delay, report = backoff.step(now)
            if report:
                log.warn("cannot open the index {u} yet ({e}); waiting for it", u=where, e=now)
            sleep(delay if wait is None else min(delay, max(wait - waited, 0.0)))
            continue
        if backoff.failing:
            log.info("the index {u} is open, after {s:.0f} s of waiting", u=where, s=clock() - started)
        return index
