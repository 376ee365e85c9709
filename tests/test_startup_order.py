"""The g3 scanner and the g3-reader start in any order and at the same moment.

Compose, ``sisock up`` and a reboot all start the scanner and the reader
together, often before the database accepts connections and always on an
index nobody has created yet. Whoever comes first creates the schema, the
others wait for it, nobody exits, and the index ends up the same as after a
lone scan. Checked with processes opening the index at the same moment, then
with the real console scripts, on MariaDB and on SQLite.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from sisock.g3 import index as g3_index
from sisock.g3.index import Index, StillUnavailable, database_url, error_reason, open_index
from sisock.servers.g3_reader import GENERATION_TTL

from conftest import MARIADB, node_names
from g3_helpers import assert_index_complete, expected_file_ranges, make_archive, scan, window
from g3_helpers import open_index as open_env
from mariadb_private import PrivateMariaDB
from procs import free_port, wait_for

#: Processes released together in one round of the in-process tests.
OPENERS = 6
ROUNDS = 5
#: Rounds of the real console scripts started together, per backend.
SCRIPT_ROUNDS = 10
SCANNER, READER = "sisock-g3-file-scanner", "sisock-g3-reader-server"
#: What each script logs once it is doing its job: a finished pass, a
#: session on the router (the reader joins only once its index is open).
READY = {SCANNER: "pass done in", READER: " as session "}
WAITING = "cannot open the index"


@pytest.fixture(params=["sqlite", "mariadb"])
def fresh_env(request, tmp_path):
    """A function returning the settings of a new, empty index on each call."""
    if request.param == "sqlite":
        counter = iter(range(1000))
        yield lambda: {"SISOCK_STATE_DIR": str(tmp_path / f"state{next(counter)}")}
        return
    server = request.getfixturevalue("mariadb_server")
    made = []

    def make():
        name = f"sisock_test_{uuid.uuid4().hex[:12]}"
        with server.begin() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))  # name generated above
        made.append(name)
        return {**MARIADB, "SQL_DB": name}

    yield make
    with server.begin() as conn:
        for name in made:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))


@pytest.fixture
def fresh_index(fresh_env):
    """A function returning the URL of a new, empty index on each call."""
    return lambda: database_url(fresh_env())


def _open(url, barrier, results):
    """One process opening the index the moment every other one does."""
    barrier.wait()
    try:
        Index(url).dispose()
        results.put("")
    except Exception as exc:  # noqa: BLE001 - reported to the test, which names it
        results.put(f"{type(exc).__name__}: {error_reason(exc)}")


def open_together(url, n: int = OPENERS) -> list[str]:
    """Open the index at ``url`` from ``n`` processes released at once; the
    error each one met ("" for none)."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(n), context.Queue()
    procs = [context.Process(target=_open, args=(url, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    outcome = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    return outcome


def meta_rows(url) -> list[tuple[str, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(sa.select(g3_index.meta.c.name, g3_index.meta.c.value)).all())
    finally:
        engine.dispose()


def assert_fresh_index(url):
    rows = meta_rows(url)
    assert [name for name, _ in rows] == ["generation", "longest_us", "schema_version"], rows
    assert dict(rows)["schema_version"] == str(g3_index.SCHEMA_VERSION)
    engine = sa.create_engine(url)
    try:
        assert set(g3_index.metadata.tables) <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# -- in-process: many openers of one new index ------------------------------------------


def test_simultaneous_opens_of_a_new_index(fresh_index):
    for _ in range(ROUNDS):
        url = fresh_index()
        errors = [e for e in open_together(url) if e]
        assert errors == []
        assert_fresh_index(url)


def _make_version_1(url, paths):
    """An index as version 1 left it: no summaries, ``schema_version`` 1, files indexed."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE migration_runs (step INTEGER NOT NULL)"))
        Index(url).dispose()
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM migration_runs"))
            conn.execute(g3_index.meta.update().where(g3_index.meta.c.name == "schema_version").values(value="1"))
            conn.execute(g3_index.files.insert(), [
                {"path": p, "size": 100, "mtime_ns": 1, "status": "ok", "error": None, "scanned": 0.0} for p in paths
            ])
    finally:
        engine.dispose()


def test_an_upgrade_runs_once_with_simultaneous_openers(fresh_index, monkeypatch):
    """Every opener of a version-1 index sees that it needs upgrading; one of
    them upgrades it, once (each run of the step leaves a row behind)."""
    steps = [*g3_index.MIGRATIONS[2], "INSERT INTO migration_runs (step) VALUES (2)"]
    monkeypatch.setitem(g3_index.MIGRATIONS, 2, steps)  # inherited by the forked openers
    for _ in range(ROUNDS):
        url = fresh_index()
        _make_version_1(url, ["a.g3", "b.g3"])
        assert [e for e in open_together(url) if e] == []
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT step FROM migration_runs")).all() == [(2,)]
                assert sorted(conn.execute(sa.select(g3_index.files.c.path, g3_index.files.c.size)).all()) == [
                    ("a.g3", -1), ("b.g3", -1)]  # the step itself ran: both files marked for a rescan
        finally:
            engine.dispose()
        assert_fresh_index(url)


def _die_half_way(url):
    """Open the index, but die (SIGKILL, nothing cleaned up) once half of the
    tables exist and the set-up holds whatever lock it takes."""
    tables = list(g3_index.metadata.sorted_tables)
    original = g3_index.metadata.create_all

    def create_half_then_die(bind, **kw):
        original(bind, tables=tables[: len(tables) // 2])
        if bind.dialect.name != "sqlite":
            bind.commit()  # MariaDB commits each DDL statement anyway; SQLite's go with the process
        os.kill(os.getpid(), signal.SIGKILL)

    g3_index.metadata.create_all = create_half_then_die
    Index(url)


def test_a_setup_killed_half_way_is_completed_by_the_next_opener(fresh_index):
    context = multiprocessing.get_context("fork")
    for _ in range(2):
        url = fresh_index()
        dying = context.Process(target=_die_half_way, args=(url,))
        dying.start()
        dying.join(60)
        assert dying.exitcode == -signal.SIGKILL
        engine = sa.create_engine(url)
        try:
            left = set(sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()
        half = {t.name for t in g3_index.metadata.sorted_tables[: len(g3_index.metadata.sorted_tables) // 2]}
        # SQLite undoes the whole set-up; MariaDB keeps the tables it had made.
        assert left == (set() if str(url).startswith("sqlite") else half)
        assert [e for e in open_together(url, 3) if e] == []
        assert_fresh_index(url)


class Recorder:
    """Stands in for a txaio logger: keeps what was logged, formatted."""

    def __init__(self):
        self.lines = []

    def warn(self, fmt, **kw):
        self.lines.append(("warn", fmt.format(**kw)))

    def info(self, fmt, **kw):
        self.lines.append(("info", fmt.format(**kw)))


def test_open_index_backs_off_to_30_s_and_says_why_once():
    """Against a port nobody listens on (real refused connections), on a
    clock of its own: waits of 1, 2, 4... capped at 30 s, one warning for
    the one reason, and the bounded wait ends exactly when it should."""
    url = database_url({"SQL_HOST": f"127.0.0.1:{free_port()}", "SQL_DB": "sisock"})
    now, pauses = [0.0], []

    def sleep(seconds):
        pauses.append(seconds)
        now[0] += seconds

    log = Recorder()
    with pytest.raises(StillUnavailable) as caught:
        open_index(url, log, wait=200, sleep=sleep, clock=lambda: now[0])
    assert pauses == [1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 19]
    assert [level for level, _ in log.lines] == ["warn"]
    assert "Connection refused" in log.lines[0][1] and "Connection refused" in caught.value.reason


# -- the console scripts, started together ----------------------------------------------


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    """Three hours of so3g files, what the index must say of each, and the
    row counts of the index one lone scan makes of them."""
    root = tmp_path_factory.mktemp("startup")
    data = root / "data"
    paths, truth = make_archive(data, hours=3)
    lone = {"SISOCK_STATE_DIR": str(root / "lone")}
    scan(lone, data)
    index = open_env(lone)
    counts = index.counts()
    index.dispose()
    return data, truth, expected_file_ranges(paths, str(data), truth), counts


def start_scripts(stack, tag, scripts, env, data):
    """``scripts`` started one right after the other, on one index."""
    env = {**env, "DATA_DIRECTORY": str(data), "SCAN_WORKERS": "1"}
    procs = [stack.proc(f"{tag}-{i}-{script.removeprefix('sisock-')}", script, env=env)
             for i, script in enumerate(scripts)]
    for p in procs:
        p.start()
    return procs


def wait_until_ready(procs):
    """Each process logged that it is doing its job; none exited meanwhile."""
    for p in procs:
        marker = READY[os.path.basename(p.argv[0])]
        wait_for(lambda p=p, marker=marker: not p.alive or marker in p.output(), 120, f"{p.name} to be ready")
        assert p.alive, f"{p.name} exited with {p.popen.returncode}:\n{p.output()[-3000:]}"


def stop_all(procs):
    for p in procs:
        p.stop()
    for p in procs:
        assert "Traceback" not in p.output(), p.output()[-3000:]


def run_rounds(stack, fresh_env, small_archive, tag, scripts, rounds):
    data, _, reference, counts = small_archive
    for n in range(rounds):
        env = fresh_env()
        # Both orders: either may be the first to reach the new index.
        order = scripts if n % 2 == 0 else scripts[::-1]
        procs = start_scripts(stack, f"{tag}-{n}", order, env, data)
        try:
            wait_until_ready(procs)
            assert_index_complete(env, reference, counts)
            for p in procs:
                assert p.alive, f"round {n}: {p.name} exited:\n{p.output()[-3000:]}"
        finally:
            stop_all(procs)


def test_scanner_and_reader_started_together_on_a_new_index(stack, fresh_env, small_archive, request):
    run_rounds(stack, fresh_env, small_archive, f"together-{request.node.callspec.id}", [SCANNER, READER],
               SCRIPT_ROUNDS)


def test_two_scanners_started_together_on_a_new_index(stack, fresh_env, small_archive, request):
    """Both create the schema, both index every file: each file ends up
    in the index once, whichever stored it last."""
    run_rounds(stack, fresh_env, small_archive, f"scanners-{request.node.callspec.id}", [SCANNER, SCANNER],
               SCRIPT_ROUNDS // 2)


def test_scanner_and_reader_started_before_the_database(stack, client, small_archive, tmp_path):
    """Both wait, saying so once, while nothing listens on the database's
    port; once MariaDB is up the scanner indexes, the reader joins and
    serves, and neither was restarted."""
    data, truth, reference, counts = small_archive
    server = PrivateMariaDB(str(tmp_path / "mariadb")).install().start()
    server.sql("CREATE DATABASE late CHARACTER SET utf8mb4")
    server.stop()  # created, then down: what a restarting or still initialising server looks like
    env = server.env("late")
    wait_for(lambda: "g3_reader" not in node_names(client), 30, "earlier g3 readers to leave the hub")
    procs = start_scripts(stack, "before-db", [SCANNER, READER], env, data)
    try:
        for p in procs:
            wait_for(lambda p=p: not p.alive or WAITING in p.output(), 60, f"{p.name} to wait for the database")
            assert p.alive, p.output()[-3000:]
        server.start()
        wait_until_ready(procs)
        wait_for(lambda: "g3_reader" in node_names(client), 60, "g3_reader to register")
        # The reader may have looked at the index before the scanner's last
        # commit; it sees that commit within GENERATION_TTL, not sooner.
        time.sleep(GENERATION_TTL)
        names = sorted(truth)[:2]
        lo, hi = float(truth[names[0]][0][0]), float(truth[names[0]][0][-1])
        got = client.data("g3_reader", names, lo, hi)
        for name in names:
            t, v = window(truth, name, lo, hi)
            assert np.array_equal(got[name].t, t) and np.array_equal(got[name].values, v)
        assert_index_complete(env, reference, counts)
        for p in procs:
            assert p.alive, p.output()[-3000:]
            warnings = [line.split(WAITING, 1)[1] for line in p.output().splitlines() if WAITING in line]
            # One line per reason, not one per attempt.
            assert warnings and all(a != b for a, b in zip(warnings, warnings[1:], strict=False)), warnings
            assert "is open, after" in p.output()
    finally:
        stop_all(procs)
        server.stop()


# -- mistakes are not waited for ----------------------------------------------------------


def _index_of_version(env, version: int):
    Index(database_url(env)).dispose()
    engine = sa.create_engine(database_url(env))
    try:
        with engine.begin() as conn:
            conn.execute(g3_index.meta.update().where(g3_index.meta.c.name == "schema_version")
                         .values(value=str(version)))
    finally:
        engine.dispose()


MISTAKES = {
    "password": ({**MARIADB, "SQL_PASSWD": "not-the-password", "SQL_DB": "mysql"}, "1045"),
    "database": ({**MARIADB, "SQL_DB": "sisock_no_such_database"}, "1049 (42000): Unknown database"),
}


@pytest.mark.parametrize("script", [SCANNER, READER])
@pytest.mark.parametrize("mistake", [*MISTAKES, "newer", "sqlite-file"])
def test_a_mistake_stops_at_once_with_exit_2(stack, mariadb_server, small_archive, tmp_path, script, mistake):
    """Refused credentials, a database that does not exist, an index newer
    than the code, an SQLite file that cannot be opened: waiting would not
    help, so the process exits 2 (a configuration error) with one line."""
    if mistake in MISTAKES:
        env, said = MISTAKES[mistake]
    elif mistake == "newer":
        env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
        _index_of_version(env, g3_index.SCHEMA_VERSION + 1)
        said = f"index schema {g3_index.SCHEMA_VERSION + 1} is newer than this sisock ({g3_index.SCHEMA_VERSION})"
    else:
        env = {"SISOCK_STATE_DIR": str(tmp_path / "state")}
        os.makedirs(tmp_path / "state" / "g3_index.sqlite")  # where the file should be, a folder
        said = "unable to open database file"
    p = start_scripts(stack, f"mistake-{mistake}", [script], env, small_archive[0])[0]
    try:
        code = p.popen.wait(60)
    finally:
        p.kill()
    lines = p.output().splitlines()
    errors = [line for line in lines if "cannot use the index" in line]
    assert code == 2 and len(errors) == 1 and said in errors[0], lines
    assert WAITING not in p.output() and "Traceback" not in p.output()
