"""Running parsed statements: each one's result or one-line error.

As in InfluxDB, statements are answered in order and a failed one stops
the query: the rest are answered ``not executed``. Every failure a client or a data
node can cause becomes the statement's ``error``, never an HTTP error.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import txaio
from werkzeug.exceptions import HTTPException

from sisock.link import CallTimeout

from . import select, show
from . import statements as st
from .catalog import DATABASE, RETENTION_POLICY, Catalog
from .conditions import QueryError

log = txaio.make_logger()
#: Statements of one request run at once, at most this many together.
MAX_PARALLEL_STATEMENTS = 4


def _one_line(text) -> str:
    return " ".join(str(text).split())[:300]


def _check_database(name: str | None):
    if not name:
        raise QueryError("database name required")
    if name != DATABASE:
        raise QueryError(f"database not found: {name}")


def _check_sources(stmt, db: str | None, rp: str | None):
    for source in stmt.sources:
        _check_database(source.database or db)
        policy = source.retention or rp
        if policy and policy != RETENTION_POLICY:
            raise QueryError(f"retention policy not found: {policy}")


def _series(stmt, ctx: select.Context, db: str | None, rp: str | None) -> list[dict]:
    catalog = ctx.catalog
    if isinstance(stmt, st.ShowDatabases):
        return show.show_databases()
    if isinstance(stmt, st.ShowRetentionPolicies):
        _check_database(stmt.database or db)
        return show.show_retention_policies()
    if isinstance(stmt, st.Select):
        _check_sources(stmt, db, rp)
        return select.run(stmt, ctx)
    _check_database(stmt.database or db)
    if getattr(stmt, "sources", ()):
        _check_sources(stmt, stmt.database or db, rp)
    if isinstance(stmt, st.ShowMeasurements):
        return show.show_measurements(stmt, catalog)
    if isinstance(stmt, st.ShowFieldKeys):
        return show.show_field_keys(stmt, catalog)
    if isinstance(stmt, st.ShowTagKeys):
        return show.show_tag_keys(stmt, catalog)
    if isinstance(stmt, st.ShowTagValues):
        return show.show_tag_values(stmt, catalog)
    if isinstance(stmt, st.ShowSeries):
        return show.show_series(stmt, catalog)
    raise QueryError("statement not supported")


def _outcome(stmt, ctx, db, rp) -> tuple[list | None, str | None]:
    """``(series, None)`` or ``(None, one-line error)`` of one statement."""
    try:
        return _series(stmt, ctx, db, rp), None
    except (QueryError, ValueError, CallTimeout) as exc:
        return None, _one_line(exc)
    except HTTPException as exc:  # a data node failed (502), or refused to send that much
        return None, _one_line(exc.description or exc)
    except RecursionError:
        return None, "statement nested too deeply (too many conditions or operators in a row)"
    except RuntimeError as exc:  # the router is unreachable
        return None, _one_line(f"router unavailable: {exc}")
    except Exception:  # noqa: BLE001 - a bug must not become a 500 for Grafana
        log.failure("unexpected error running an InfluxQL statement")
        return None, "internal error; see the bridge's log"


def execute(statements: list, datasource, db: str | None, rp: str | None, max_points: int,
            now_ns: int | None = None) -> list[dict]:
    """``results`` of InfluxDB's answer, times as integer nanoseconds.

    A dashboard sends its panel's queries as one request of several
    statements: they are run at once (they only read), and answered in
    order, a failed one turning the rest into ``not executed``."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    if not statements:
        return []
    try:
        ctx = select.Context(datasource, Catalog.of(datasource), now_ns, max_points)
    except RuntimeError as exc:  # the router is unreachable
        outcomes = [(None, _one_line(f"router unavailable: {exc}"))]
    else:
        if len(statements) == 1:
            outcomes = [_outcome(statements[0], ctx, db, rp)]
        else:
            with ThreadPoolExecutor(max_workers=min(len(statements), MAX_PARALLEL_STATEMENTS)) as pool:
                outcomes = list(pool.map(lambda stmt: _outcome(stmt, ctx, db, rp), statements))
    results = []
    failed = False
    for i in range(len(statements)):
        series, error = outcomes[i] if i < len(outcomes) else (None, None)
        if failed:
            results.append({"statement_id": i, "error": "not executed"})
        elif error is not None:
            results.append({"statement_id": i, "error": error})
            failed = True
        else:
            results.append({"statement_id": i, **({"series": series} if series else {})})
    return results
