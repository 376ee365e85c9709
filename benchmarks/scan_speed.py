"""The g3 scanner's first scan against the previous scanner's, in one run.

    .venv/bin/python benchmarks/scan_speed.py [--archive DIR] [--runs 3] [--previous 5b5c8f9] [--previous-pure]

1. Writes the reference archive of ``g3_archive.py`` (7 days at 1 Hz,
   2 providers x 10 fields, 1-hour files), into ``--archive DIR`` if given
   (and reuses it there the next time).
2. Extracts the previous scanner from git (``git archive``) into a temporary
   folder, with its ``components/`` and ``servers/`` inside its ``sisock``
   package, as an installation would place them.
3. Runs both scanners' first scan of the archive into MariaDB (``SQL_*``, or
   root@127.0.0.1), alternately, ``--runs`` times each, every run in a
   fresh process on a fresh database whose schema exists before the timing
   starts (as in a deployment). The scan is timed in that process: one
   ``scan_once()``, summaries and (for the current scanner) rollups included;
   so3g is loaded before the clock starts, as in ``g3_archive.py`` (where
   writing the archive loads it): a cost of the process, not of the scan.
4. Prints both medians, the SQL statements and commits per file of each,
   and the ratio previous / current it is judged by (target >= 2).

Both scanners use the mysql-connector installed here, with its C extension
(loaded before so3g, whose libraries otherwise leave it no static TLS; see
``sisock.g3.native``). ``--previous-pure`` runs the previous one on the
driver's pure-Python path instead, as the version pinned at 5b5c8f9 ran here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATABASES = {"previous": "sisock_scan_speed_previous", "current": "sisock_scan_speed_current"}


def write_reference(directory: str) -> None:
    from g3_archive import PROVIDERS, SPIKE_EVERY, SPIKE_SIZE

    from sisock.demo.g3 import write_archive

    end = float(int(time.time() // 3600) * 3600)
    write_archive(directory, end - 7 * 86400, end, PROVIDERS, file_seconds=3600, frame_seconds=300,
                  spike_every=SPIKE_EVERY, spike_size=SPIKE_SIZE)


def g3_files(directory: str) -> list[str]:
    return [os.path.join(r, n) for r, _, ns in os.walk(directory) for n in ns if n.endswith(".g3")]


def extract_previous(commit: str, directory: str) -> str:
    """The scanner of ``commit`` as an importable ``sisock`` package under
    ``directory``; returns what PYTHONPATH must hold."""
    archive = subprocess.run(["git", "-C", REPO, "archive", commit], check=True, capture_output=True).stdout
    os.makedirs(directory)
    subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)
    for sub in ("components", "servers"):
        shutil.copytree(os.path.join(directory, sub), os.path.join(directory, "sisock", sub))
    return directory


def admin_env(database: str) -> dict:
    env = dict(os.environ, LOGLEVEL="warn")
    env.setdefault("SQL_HOST", "127.0.0.1")
    env.setdefault("SQL_USER", "root")
    env["SQL_DB"] = database
    return env


def fresh_database(name: str) -> None:
    import sqlalchemy as sa

    from sisock.g3.index import database_url

    admin = sa.create_engine(database_url(admin_env("mysql")))
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    admin.dispose()


def drop_database(name: str) -> None:
    import sqlalchemy as sa

    from sisock.g3.index import database_url

    admin = sa.create_engine(database_url(admin_env("mysql")))
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


def child(archive: str) -> None:
    """One first scan, in this process, with whichever ``sisock`` the path
    gives; prints its figures as JSON."""
    try:  # the driver's C extension before so3g, as sisock.g3.native loads it (older trees lack that module)
        import _mysql_connector  # noqa: F401
    except ImportError:
        pass
    import so3g  # noqa: F401 - the process's one-time cost, loaded before the clock as in g3_archive.py
    import sqlalchemy as sa

    if os.environ.get("SCAN_SPEED_PURE"):
        create_engine = sa.create_engine  # the index calls it through the module: use the driver's pure path
        sa.create_engine = lambda url, **kw: create_engine(url, **{**kw, "connect_args": {"use_pure": True}})

    from sisock.components.g3_scanner import Scanner
    from sisock.g3.index import Index, database_url

    index = Index(database_url())
    counts = {"statements": 0, "commits": 0}

    def statement(*_args):
        counts["statements"] += 1

    def commit(*_args):
        counts["commits"] += 1

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", statement)
    sa.event.listen(sa.engine.Engine, "commit", commit)
    t0 = time.perf_counter()
    stats = Scanner(index, archive).scan_once()
    seconds = time.perf_counter() - t0
    index.dispose()
    import sisock.components.g3_scanner as module

    print(json.dumps({"seconds": seconds, "files": stats.read, "rollups": getattr(stats, "rollups", 0),
                      "module": module.__file__, **counts}))


def run(which: str, archive: str, pythonpath: str | None, pure: bool = False) -> dict:
    database = DATABASES[which]
    fresh_database(database)
    env = admin_env(database)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    if pure:
        env["SCAN_SPEED_PURE"] = "1"
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", archive], env=env, check=True,
                         capture_output=True, text=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", help="where the reference archive is kept: written there if it holds no .g3 "
                                          "file, reused otherwise (default: a temporary folder, removed)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--previous", default="5b5c8f9", help="the commit of the previous scanner")
    parser.add_argument("--previous-pure", action="store_true",
                        help="run the previous scanner on mysql-connector's pure-Python path, as its own pinned "
                             "version (26.10.0, whose C extension does not load here) did")
    parser.add_argument("--child", metavar="ARCHIVE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    work = tempfile.mkdtemp(prefix="sisock-scan-speed-")
    try:
        archive = args.archive or os.path.join(work, "archive")
        files = g3_files(archive)
        if not files:
            write_reference(archive)
            files = g3_files(archive)
        size = sum(os.path.getsize(f) for f in files)
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        driver = " (pure-Python driver)" if args.previous_pure else ""
        print(f"archive: {len(files)} files, {size / 1e6:.0f} MB; current code {head}, previous {args.previous}"
              f"{driver}", flush=True)
        previous = extract_previous(args.previous, os.path.join(work, "previous"))
        results = {"previous": [], "current": []}
        for i in range(args.runs):
            for which, path in (("previous", previous), ("current", None)):
                r = run(which, archive, path, pure=args.previous_pure and which == "previous")
                results[which].append(r)
                print(f"run {i + 1} {which:>8}: {r['seconds']:.2f} s, {r['files']} files, "
                      f"{r['statements']} statements, {r['commits']} commits, {r['rollups']} rollup chunks", flush=True)
        for which in results:
            drop_database(DATABASES[which])
        prev = statistics.median(r["seconds"] for r in results["previous"])
        cur = statistics.median(r["seconds"] for r in results["current"])
        print(f"\nfirst scan, MariaDB, median of {args.runs}:")
        for which, median in (("previous", prev), ("current", cur)):
            r = results[which][-1]
            print(f"  {which:>8}: {median:.2f} s ({size / 1e6 / median:.0f} MB/s), "
                  f"{r['statements'] / max(r['files'], 1):.1f} statements and "
                  f"{r['commits'] / max(r['files'], 1):.2f} commits per file")
        print(f"  ratio previous / current {prev / cur:.2f} (target >= 2)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
