"""Files stored several to a transaction, rollups built from the summaries a
pass holds: the index must be what storing the files one by one and
rebuilding every rollup from the stored summaries gives."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import sqlalchemy as sa

from sisock.components.g3_scanner import Scanner, extract
from sisock.demo.g3 import write_file
from sisock.g3 import index as g3_index
from sisock.g3.index import ScannedFile, _byte_chunks
from sisock.g3.summary import CHUNK_BUCKETS, ROLLUP_LEVELS, SAMPLES_LEVEL, Summary, rollup

from g3_helpers import PROVIDERS, START, make_archive, open_index, snapshot

HOURS = 80  # 2 providers, so more than 8 complete 60 s chunks: early builds happen during the pass


def rollups_table(index) -> dict[tuple[str, int, int], bytes]:
    query = (sa.select(g3_index.description.c.description, g3_index.rollups.c.level, g3_index.rollups.c.chunk,
                       g3_index.rollups.c.data)
             .join(g3_index.description, g3_index.rollups.c.description_id == g3_index.description.c.id))
    with index.engine.connect() as conn:
        return {(name, level, int(chunk)): bytes(data) for name, level, chunk, data in conn.execute(query)}


def rollups_from_summaries(index) -> dict[tuple[str, int, int], bytes]:
    """Every rollup, computed here from the summaries table alone: per
    provider and level, each block's summary at the level (or of samples
    where it has none), merged over every chunk their buckets fall in."""
    query = (sa.select(g3_index.feeds.c.description, g3_index.summaries.c.feed_id, g3_index.summaries.c.block,
                       g3_index.summaries.c.level, g3_index.summaries.c.data)
             .join(g3_index.feeds, g3_index.summaries.c.feed_id == g3_index.feeds.c.id)
             .order_by(g3_index.summaries.c.feed_id, g3_index.summaries.c.id))
    with index.engine.connect() as conn:
        rows = conn.execute(query).all()
    out = {}
    for provider in sorted({row[0] for row in rows}):
        for level in ROLLUP_LEVELS:
            exact, samples = {}, {}
            for desc, feed, block, found, data in rows:
                if desc == provider and found in (level, SAMPLES_LEVEL):
                    (exact if found == level else samples)[(feed, block)] = bytes(data)
            blobs = list(exact.values()) + [data for key, data in samples.items() if key not in exact]
            parts = [Summary.decode(blob) for blob in blobs]
            chunks = set()
            for part in parts:
                chunks.update(int(c) for c in np.unique(np.floor(part.keys(level) / CHUNK_BUCKETS)))
            for chunk in sorted(chunks):
                for field, summary in rollup(parts, level, chunk).items():
                    out[(f"{provider}.{field}", level, chunk)] = summary.encode()
    return out


def batched_scanner(index, data, size=7, **settings) -> Scanner:
    """A scanner storing ``size`` files a transaction whatever the timing."""
    scanner = Scanner(index, str(data), workers=2)
    for name, value in settings.items():
        setattr(scanner, name, value)
    real = scanner._batches

    def regrouped(todo):
        pairs = [pair for batch in real(todo) for pair in batch]
        for i in range(0, len(pairs), size):
            yield pairs[i:i + size]

    scanner._batches = regrouped
    return scanner


def assert_rollups_complete(index):
    assert index.rollup_work() == []
    got, want = rollups_table(index), rollups_from_summaries(index)
    assert sorted(got) == sorted(want)
    assert got == want


@pytest.mark.parametrize("settings", [
    {},
    {"EARLY_CHUNKS": 1},  # every complete chunk built as soon as it is
    {"HELD_BYTES": 1},     # nothing kept for long: rollups read the summaries back
], ids=["default", "early", "read-back"])
def test_rollups_of_a_batched_pass_equal_those_rebuilt_from_summaries(tmp_path, index_env, settings):
    data = tmp_path / "data"
    paths, _ = make_archive(data, hours=HOURS, gaps=())
    index = open_index(index_env)
    commits = []
    sa.event.listen(index.engine, "commit", lambda conn: commits.append(1))
    try:
        stats = batched_scanner(index, data, **settings).scan_once()
        assert stats.read == len(paths) and stats.rollups > 0
        assert len(commits) < len(paths) / 2  # several files to a transaction
        assert_rollups_complete(index)

        # A file rewritten with other data and one removed: their rollups
        # are dropped and rebuilt, the next pass holding only the new file.
        changed, removed = paths[30], paths[50]
        t0 = START + 30 * 3600
        write_file(changed, PROVIDERS, t0, t0 + 1800, grid_start=t0, seed=3)
        os.remove(removed)
        stats = batched_scanner(index, data, **settings).scan_once()
        assert stats.read == 1 and stats.removed == 1 and stats.rollups > 0
        assert_rollups_complete(index)
    finally:
        index.dispose()


def test_files_stored_together_equal_files_stored_one_by_one(tmp_path, index_env):
    data = tmp_path / "data"
    paths, _ = make_archive(data, hours=6, gaps=())
    extracts = [(os.path.relpath(p, data), extract(p)) for p in paths]

    def scanned(known):
        return [ScannedFile(rel, e.size, e.mtime_ns, e.ranges, e.error, e.blobs, e.facts, known)
                for rel, e in extracts]

    together = open_index(index_env)
    commits = []
    sa.event.listen(together.engine, "commit", lambda conn: commits.append(1))
    try:
        ids = together.replace_files(scanned(known=False))
        assert len(commits) == 1
        assert set(ids) == {rel for rel, _ in extracts}
        assert all(len(feeds) == len(PROVIDERS) for feeds in ids.values())
        first = snapshot(together), together.counts()
        together.replace_files(scanned(known=True))  # stored again: replaces, never duplicates
        assert (snapshot(together), together.counts()) == first
        work = sorted(together.rollup_work())
    finally:
        together.dispose()

    one_by_one = open_index({"SISOCK_STATE_DIR": str(tmp_path / "one-by-one")})
    try:
        for rel, e in extracts:
            one_by_one.replace_file(rel, e.size, e.mtime_ns, e.ranges, e.error, e.blobs, known=False, facts=e.facts)
        assert (snapshot(one_by_one), one_by_one.counts()) == first
        assert sorted(one_by_one.rollup_work()) == work
    finally:
        one_by_one.dispose()


def test_blob_inserts_are_cut_to_fit_a_statement():
    rows = [{"data": b"x" * n} for n in (3 << 20, 2 << 20, 5 << 20, 10, 10)]
    runs = list(_byte_chunks(rows))
    assert [len(run) for run in runs] == [1, 1, 1, 2]  # 3 + 2 MiB exceeds 4 MiB; a 5 MiB blob goes alone
    assert sum(runs, []) == rows


def test_statements_on_mariadb_cost_no_ping_each(mariadb_env):
    """mysql-connector pings the server whenever a cursor opens, once per
    statement SQLAlchemy runs; the index turns that off (the pool's
    checkout ping stays), and a connection that went away still fails."""
    index = open_index(mariadb_env)
    try:
        with index.engine.connect() as conn:
            def pings():
                return int(conn.execute(sa.text("SHOW SESSION STATUS LIKE 'Com_admin_commands'")).one()[1])

            before = pings()
            for _ in range(20):
                conn.execute(sa.text("SELECT 1"))
            assert pings() == before
        with index.engine.connect() as conn:
            own = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
            with index.engine.connect() as other:
                other.execute(sa.text("KILL :id"), {"id": own})
            with pytest.raises(sa.exc.OperationalError):
                conn.execute(sa.text("SELECT 1"))
        with index.engine.connect() as conn:  # the pool's checkout ping replaced the dead connection
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        index.dispose()


def test_the_mysql_driver_keeps_its_c_extension_when_g3_files_are_read_first(tmp_path, mariadb_env):
    """Reading a g3 file loads libraries that leave no static TLS for the
    driver's C extension loaded after them (the driver then falls back to
    pure Python); sisock.g3.native loads the extension first. Checked in a
    fresh process: this one has the extension loaded already."""
    paths, _ = make_archive(tmp_path / "data", hours=1, gaps=())
    code = ("import sys; from sisock.g3.files import read_hk; read_hk(sys.argv[1]); "
            "from sisock.g3.index import Index, database_url; index = Index(database_url()); "
            "conn = index.engine.connect(); print(type(conn.connection.dbapi_connection).__name__)")
    env = {**os.environ, **mariadb_env}
    out = subprocess.run([sys.executable, "-c", code, str(paths[0])], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["CMySQLConnection"]


def test_blob_inserts_store_bytes_and_text_as_sent_and_leave_the_character_set(mariadb_env):
    """Blob statements run with the client character set ``binary`` (the
    server would otherwise check every blob byte as UTF-8): bytes that are
    no UTF-8 and non-ASCII text must come back as sent, and the connection
    must be back on its own character set afterwards, after a failed
    statement too."""
    index = open_index(mariadb_env)
    table = sa.Table("charset_probe", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("name", sa.String(64)), sa.Column("data", sa.LargeBinary(length=2**32 - 1)))
    blob = bytes(range(256)) * 64 + os.urandom(1 << 16)
    name = "bloc\u00e9-\u2713-\U0001f321"
    try:
        with index.engine.begin() as conn:
            table.create(conn)
            before = conn.execute(sa.text("SELECT @@character_set_client")).scalar()
            g3_index._insert_tuples(conn, table, ("id", "name", "data"), [(1, name, blob), (2, "plain", b"")])
            assert conn.execute(sa.text("SELECT @@character_set_client")).scalar() == before == "utf8mb4"
            with pytest.raises(sa.exc.IntegrityError):
                g3_index._insert_tuples(conn, table, ("id", "name", "data"), [(1, "again", b"x")])
        with index.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT @@character_set_client")).scalar() == "utf8mb4"
            rows = conn.execute(sa.select(table.c.id, table.c.name, table.c.data).order_by(table.c.id)).all()
            assert [(i, n, bytes(d)) for i, n, d in rows] == [(1, name, blob), (2, "plain", b"")]
            # The text went in as UTF-8 text: found through the column's own comparison.
            assert conn.execute(sa.select(table.c.id).where(table.c.name == name)).scalar() == 1
    finally:
        index.dispose()


def test_a_file_stored_during_a_rebuild_leaves_its_chunk_to_do(tmp_path, index_env, monkeypatch):
    """A second scanner stores a file of a chunk while the first rebuilds
    that chunk from what it read before: the chunk stays to do (it is not
    left without a rollup), and rebuilding it again gives every file's."""
    data = tmp_path / "data"
    paths, _ = make_archive(data, hours=3, gaps=())
    extracts = [(os.path.relpath(p, data), extract(p)) for p in paths]

    def scanned(items):
        return [ScannedFile(rel, e.size, e.mtime_ns, e.ranges, e.error, e.blobs, e.facts, known=False)
                for rel, e in items]

    first, second = open_index(index_env), open_index(index_env)
    try:
        first.replace_files(scanned(extracts[:2]))
        work = first.rollup_work()
        assert work
        read_marks = g3_index._todo_marks

        def then_the_second_stores(conn, ranges):
            marks = read_marks(conn, ranges)  # the rebuild's snapshot is taken
            monkeypatch.setattr(g3_index, "_todo_marks", read_marks)
            second.replace_files(scanned(extracts[2:]))  # committed before the rebuild writes
            return marks

        monkeypatch.setattr(g3_index, "_todo_marks", then_the_second_stores)
        try:
            first.rebuild_rollups(work)
        except sa.exc.OperationalError:
            # SQLite: the rebuild's snapshot is older than the database, so
            # its first write fails and nothing of it is kept (the scanner
            # tries again); MariaDB lets it write.
            assert index_env.get("SQL_HOST") is None
        left = first.rollup_work()
        assert set(left) & set(work), "the chunks the second file touched must still be to do"
        first.rebuild_rollups(left)
        assert_rollups_complete(first)
    finally:
        first.dispose()
        second.dispose()
