"""Real OCS agents (the ``ocs`` package's FakeDataAgent and AggregatorAgent)
run against the test router, so feed subscribers and the g3 reader are
tested on what the observatory really publishes and writes, not on our
own idea of it.

How the agents are run, and why:

* A site config (YAML) is written per use: ``ocs-agent-cli`` needs one to map
  an instance-id to its agent class and to find the router. The hub points at
  the router's open, anonymous OCS port; ``address_root`` must be
  ``observatory`` because that is the only prefix the anonymous role may use.
  ``wamp_http`` is left out: only control clients (``ocs.client_http``) use
  it, agents never do.
* Agents start working without a control client: FakeDataAgent's ``--mode acq``
  and AggregatorAgent's ``--initial-state record`` launch the ``acq`` and
  ``record`` processes when the agent joins the realm.
* SIGTERM is a clean stop: the agent stops its running processes (the
  aggregator's ``record`` then writes what it holds and closes its file
  within ~1 s), waits 3 s, stops the reactor, and on leaving the realm waits
  another 3 s. So an agent takes ~6 s to exit, not an instant.
"""

from __future__ import annotations

import glob
import itertools
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from sisock.components.ocs_site import ADDRESS_ROOT, AgentSpec, agent_argv, write_site_config

from procs import Proc, wait_for

SITE_HOST = "sisock-test-host"
FAKE_FEED = "false_temperatures"
_log_serial = itertools.count(1)
#: so3g.HKFrameType values, named as the frame counts in G3FileInfo show them.
_HKAGG_TYPES = {0: "session", 1: "status", 2: "data"}

#: Lines in an agent's log that mean it will not do what the test expects.
#: Reported with the log tail instead of letting the test time out blindly.
_AGENT_FAILURES = (
    "wamp.error.not_authorized",
    "Failed to register basic handlers",
    "Failed to subscribe",
    "procedure_already_exists",
    "Traceback (most recent call last)",
)


class AgentFailed(AssertionError):
    """An agent died, timed out or was refused something by the router."""


class OcsSite:
    """A site config plus the agents started from it, stopped together.

    Agent processes are also added to ``stack.procs`` so the session's
    teardown kills them even if a test dies before stopping its site."""

    def __init__(self, stack, directory, agents: list[AgentSpec], host: str = SITE_HOST):
        self.stack = stack
        self.directory = str(directory)
        self.host = host
        self.agents = {a.instance_id: a for a in agents}
        self.site_file = write_site_config(self.directory, stack.ocs_port, agents, host=host)
        self.procs: dict[str, Proc] = {}

    def start(self, instance_id: str, *extra_args: str) -> Proc:
        """Start one agent; ``extra_args`` override the site config's arguments."""
        name = f"ocs-{instance_id}-{next(_log_serial)}"  # one log per start, not appended runs
        import sys

        cli = os.path.join(os.path.dirname(sys.executable), "ocs-agent-cli")
        p = Proc(name, agent_argv(cli, self.site_file, instance_id, *extra_args, host=self.host),
                 env={**self.stack.env, "PYTHONUNBUFFERED": "1"}, cwd=self.directory,
                 logdir=self.stack.logdir).start()
        self.procs[instance_id] = p
        self.stack.procs.append(p)
        return p

    def wait_for_log(self, instance_id: str, text: str, timeout: float = 30) -> None:
        """Wait for ``text`` in an agent's log, failing early (with the log
        tail) if the agent died or the router refused something."""
        p = self.procs[instance_id]
        failure = []

        def seen():
            out = p.output()
            if text in out:
                return True
            bad = [m for m in _AGENT_FAILURES if m in out]
            if bad or not p.alive:
                # wait_for retries on exceptions, so stop it by returning.
                failure.append(f"agent {instance_id} {'exited' if not p.alive else 'reported ' + repr(bad)}"
                               f" before logging {text!r}; log tail:\n{out[-4000:]}")
                return True
            return False

        try:
            wait_for(seen, timeout, f"{instance_id} to log {text!r}")
        except AssertionError as exc:
            raise AgentFailed(f"{exc}\nlog tail:\n{p.output()[-4000:]}") from None
        if failure:
            raise AgentFailed(failure[0])

    def stop(self, timeout: float = 20) -> dict[str, int | None]:
        """SIGTERM every agent at once (each needs ~6 s to stop cleanly, so
        one after the other would add up); return the exit codes."""
        for p in self.procs.values():
            p.signal(signal.SIGTERM)
        codes = {}
        deadline = time.monotonic() + timeout
        for iid, p in self.procs.items():
            if p.popen is None:
                continue
            try:
                codes[iid] = p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                codes[iid] = None
        return codes


# -- reading an archive back ----------------------------------------------------------------------


@dataclass
class G3FileInfo:
    path: str
    frames: dict[str, int]  # hkagg frame type name -> count
    data_samples: int  # samples of all data blocks in the file
    t_first: float | None  # first / last sample time in the file (unix seconds)
    t_last: float | None
    # False if the last frame was cut short. A closed file has no end marker
    # (G3Writer ends the file on EndProcessing without writing that frame),
    # so this is the only sign of a file still being written.
    complete: bool


@dataclass
class Archive:
    """What the aggregator wrote, as so3g itself reads it back; the reference
    the g3 reader and scanner are compared with."""

    data_dir: str
    files: list[str]
    file_info: list[G3FileInfo]
    hkagg_versions: set[int]
    session_descriptions: set[str]  # the aggregator's HKSessionHelper description ("HK data")
    providers: set[str]  # provider descriptions, e.g. "observatory.fake-data1.feeds.false_temperatures"
    fields: dict  # HKArchive.get_fields()[0]: full field name -> info
    timelines: dict  # HKArchive.get_fields()[1]
    data: dict = field(repr=False)  # HKArchive.get_data()[0]: full field name -> numpy array
    data_timelines: dict = field(repr=False)  # HKArchive.get_data()[1]: group -> {"t", "fields", "finalized_until"}
    fake_provider: str = ""
    fake_fields: list[str] = field(default_factory=list)
    sample_rate: float = 0.0
    record_start: float = 0.0  # wall-clock bounds of the aggregator's record process
    record_stop: float = 0.0
    agent_logs: dict[str, str] = field(default_factory=dict, repr=False)
    exit_codes: dict[str, int | None] = field(default_factory=dict)

    def times(self, full_field: str):
        for tl in self.data_timelines.values():
            if full_field in tl["fields"]:
                return tl["t"]
        raise KeyError(full_field)


def g3_files(data_dir) -> list[str]:
    """The aggregator's files in time order (names are ``<5 digits>/<unix time>.g3``)."""
    files = glob.glob(os.path.join(str(data_dir), "*", "*.g3"))
    return sorted(files, key=lambda p: int(os.path.basename(p)[:-3]))


def describe_file(path: str) -> tuple[G3FileInfo, set[int], set[str], set[str]]:
    """Walk one file's frames. A file still being written may end in a
    partial frame; what precedes it is reported and ``complete`` is False."""
    import so3g  # noqa: F401 - registers the HK frame types with spt3g
    from spt3g import core

    counts: dict[str, int] = {}
    versions, sessions, providers = set(), set(), set()
    samples, t0, t1, complete = 0, None, None, True
    try:
        for frame in core.G3File(path):
            if frame.type != core.G3FrameType.Housekeeping:
                counts[str(frame.type)] = counts.get(str(frame.type), 0) + 1
                continue
            versions.add(int(frame["hkagg_version"]))
            kind = _HKAGG_TYPES.get(int(frame["hkagg_type"]), str(frame["hkagg_type"]))
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "session":
                sessions.add(_text(frame["description"]))
            elif kind == "status":
                providers.update(_text(p["description"]) for p in frame["providers"])
            elif kind == "data":
                for block in frame["blocks"]:
                    times = [t.time / core.G3Units.s for t in block.times]
                    if times:
                        samples += len(times)
                        t0 = times[0] if t0 is None else min(t0, times[0])
                        t1 = times[-1] if t1 is None else max(t1, times[-1])
    except RuntimeError:  # "Failed to read N bytes from input stream"
        complete = False
    return G3FileInfo(path, counts, samples, t0, t1, complete), versions, sessions, providers


def count_files_with_data(data_dir) -> int:
    return sum(1 for path in g3_files(data_dir) if describe_file(path)[0].data_samples)


def _text(value) -> str:
    """G3String inside a G3MapFrameObject stays wrapped (and its str() is quoted)."""
    return value.value if hasattr(value, "value") else str(value)


def read_archive(data_dir) -> Archive:
    """Read every file with ``HKArchiveScanner`` (one ``process_file`` per
    file, as the g3 reader does) and with a plain frame walk for what the
    scanner does not expose (provider descriptions, versions, per file spans)."""
    from so3g.hk import HKArchiveScanner

    files = g3_files(data_dir)
    scanner = HKArchiveScanner()
    infos, versions, sessions, providers = [], set(), set(), set()
    for path in files:
        scanner.process_file(path)
        info, v, s, p = describe_file(path)
        infos.append(info)
        versions |= v
        sessions |= s
        providers |= p
    arc = scanner.finalize()
    fields, timelines = arc.get_fields()
    data, data_timelines = arc.get_data()
    return Archive(str(data_dir), files, infos, versions, sessions, providers, fields, timelines, data,
                   data_timelines)


# -- the aggregator run ---------------------------------------------------------------------------


def aggregator_archive(stack, tmp_path, seconds: float = 4.0, *, min_data_files: int = 2, time_per_file: int = 2,
                       frame_length: int = 1, sample_rate: float = 5.0, num_channels: int = 2,
                       fake_id: str = "fake-data1", aggregator_id: str = "aggregator",
                       timeout: float = 60) -> Archive:
    """Record a FakeDataAgent with an AggregatorAgent and return the archive.

    Recording runs for at least ``seconds`` after the aggregator first sees
    the feed and until ``min_data_files`` files hold data, then both agents
    are stopped cleanly. Counting from first data rather than from start
    matters: the feed is only published every ~2 s (1 s reports, 1 s
    buffer), so the aggregator's first file may close before any data and
    hold nothing but a session frame -- a real case readers must handle.

    Knobs, all whole seconds where the agents want ints: ``frame_length``
    (the fake feed's ``agg_params``, min 1) gives a data frame every ~2 s as
    the aggregator loop ticks once a second; ``time_per_file`` closes a file
    at the first tick after it is older than that (0 would give one file per
    tick, and names are ``<unix second>.g3``, so keep >= 1). Stopping takes
    ~6 s (ocs waits 3 s twice). The defaults take ~15 s and give 3 files, 2
    or 3 of them with data.

    The aggregator records every ``record=True`` feed under
    ``observatory..feeds.``; agents other tests leave running would become
    extra providers, so compare via ``archive.fake_provider``."""
    tmp_path = str(tmp_path)
    data_dir = os.path.join(tmp_path, "hk")
    os.makedirs(data_dir, exist_ok=True)
    provider = f"{ADDRESS_ROOT}.{fake_id}.feeds.{FAKE_FEED}"
    fake = AgentSpec(fake_id, "FakeDataAgent", ["--mode", "acq", "--num-channels", num_channels,
                                                "--sample-rate", sample_rate, "--frame-length", frame_length])
    agg = AgentSpec(aggregator_id, "AggregatorAgent", ["--data-dir", data_dir, "--initial-state", "record",
                                                       "--time-per-file", time_per_file])
    site = OcsSite(stack, os.path.join(tmp_path, "ocs-site"), [fake, agg])

    try:
        site.start(fake_id)
        site.start(aggregator_id)
        site.wait_for_log(fake_id, "Starting acquisition")
        site.wait_for_log(aggregator_id, "startup-op: launching record")
        record_start = time.time()
        site.wait_for_log(aggregator_id, f"Adding provider {provider}")
        time.sleep(seconds)
        # The aggregator flushes after every tick, so the files can be read
        # while it writes them.
        wait_for(lambda: count_files_with_data(data_dir) >= min_data_files, timeout,
                 f"{min_data_files} files with data", interval=0.5)
        record_stop = time.time()
    finally:
        codes = site.stop()
    logs = {iid: p.output() for iid, p in site.procs.items()}
    if "Aggregation has ended" not in logs[aggregator_id]:
        raise AssertionError(f"aggregator did not stop cleanly (exit {codes.get(aggregator_id)}); log tail:\n"
                             f"{logs[aggregator_id][-4000:]}")
    archive = read_archive(data_dir)
    archive.fake_provider = provider
    archive.fake_fields = [f"{archive.fake_provider}.channel_{i:02d}" for i in range(num_channels)]
    archive.sample_rate = sample_rate
    archive.record_start, archive.record_stop = record_start, record_stop
    archive.agent_logs = logs
    archive.exit_codes = codes
    return archive


@pytest.fixture(scope="session")
def ocs_archive(stack, tmp_path_factory) -> Archive:
    """One recorded archive per test run, shared by every test that only
    reads it (recording costs ~15 s). Import it into a test module to use."""
    return aggregator_archive(stack, tmp_path_factory.mktemp("ocs-archive"))
