"""The compose stack, checked without a container engine.

``docker-compose config`` (Debian's v1 binary) resolves the file exactly as
compose will; everything else is read from the files themselves: build
contexts and what the Dockerfiles copy, the commands (console scripts of the
package), the variables (documented in README's Environment table or in
docker/env.example), the published ports (loopback only), the router
configuration and the dashboards (equal to what the code generates now), the
Grafana provisioning, and the health probe, which runs against the real
router and bridge of the test stack.
"""

from __future__ import annotations

import ast
import http.server
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import zipfile

import pytest
import yaml

from sisock import server_registry
from sisock.components import cli, crossbar, tls

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOSE_BIN = "/usr/bin/docker-compose"
COMPOSE_FILE = os.path.join(ROOT, "docker-compose.yml")
ENV_EXAMPLE = os.path.join(ROOT, "docker", "env.example")
README = os.path.join(ROOT, "README.md")
DOCS_PAGE = os.path.join(ROOT, "docs", "deployment", "docker.md")
DATASOURCES = os.path.join(ROOT, "docker", "grafana", "provisioning", "datasources")
DASHBOARD_PROVIDERS = os.path.join(ROOT, "docker", "grafana", "provisioning", "dashboards")
DASHBOARDS = os.path.join(ROOT, "docker", "grafana", "dashboards")
SISOCK_IMAGE = "sisock"
#: Variables of third-party images, documented by those images (and named in
#: the deployment guide), not in sisock's Environment table.
THIRD_PARTY_PREFIXES = ("GF_", "MARIADB_", "MYSQL_")
#: Variables the code reads that belong to Python itself.
NOT_SISOCK = {"PYTHONUNBUFFERED"}
#: Console scripts no compose service needs to run: the hub runs inside the
#: router (sisock-crossbar without --no-hub); the thermometry service is the
#: data-feed server with FEED=temperatures, and the guide shows how to add a
#: plain data-feed service; the health probe is the image's HEALTHCHECK.
NOT_A_SERVICE = {"sisock-hub", server_registry.get("data-feed").script, "sisock-healthcheck"}
#: Health probes of the third-party images, which ship them.
THIRD_PARTY_PROBES = {"database": "healthcheck.sh", "grafana": "curl"}


def load_regenerate():
    spec = importlib.util.spec_from_file_location("docker_regenerate", os.path.join(ROOT, "docker", "regenerate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


regenerate = load_regenerate()


# -- fixtures --------------------------------------------------------------


def require_compose_binary():
    if not os.access(COMPOSE_BIN, os.X_OK):
        pytest.fail(f"{COMPOSE_BIN} is missing: the compose file is checked with Debian's docker-compose "
                    "(`apt-get install docker-compose`, which `make compose-check` and `make test` do)")


@pytest.fixture(scope="module")
def env_file(tmp_path_factory) -> str:
    """docker/env.example with test values for the secrets it leaves empty."""
    path = str(tmp_path_factory.mktemp("compose") / "test.env")
    regenerate.env_file_with_placeholders(path)
    return path


@pytest.fixture(scope="module")
def compose(env_file) -> dict:
    """docker-compose.yml as compose itself resolves it."""
    require_compose_binary()
    return regenerate.resolved_compose(env_file, [COMPOSE_BIN])


@pytest.fixture(scope="module")
def raw() -> dict:
    """The file as written (YAML anchors expanded, ``${...}`` not)."""
    with open(COMPOSE_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def run_compose(env_file: str) -> subprocess.CompletedProcess:
    require_compose_binary()
    env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    return subprocess.run([COMPOSE_BIN, "--env-file", env_file, "-f", COMPOSE_FILE, "config", "--quiet"],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def sisock_services(compose) -> dict:
    return {n: s for n, s in compose["services"].items() if s.get("image", "").split(":")[0] == SISOCK_IMAGE}


def console_scripts() -> set[str]:
    return {ep.name for ep in importlib.metadata.distribution("sisock").entry_points if ep.group == "console_scripts"}


def env_example() -> dict[str, str]:
    values = {}
    with open(ENV_EXAMPLE, encoding="utf-8") as f:
        for line in f:
            match = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
            if match:
                values[match.group(1)] = match.group(2)
    return values


def readme_variables() -> set[str]:
    """The variable names of README's Environment table."""
    text = open(README, encoding="utf-8").read()
    section = re.search(r"^## Environment\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## Environment' section"
    names = set()
    for line in section.group(1).splitlines():
        if line.startswith("|") and not line.startswith("| ---"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    assert len(names) > 10, "could not read README's Environment table"
    return names


# -- Dockerfiles -----------------------------------------------------------


def dockerfile_instructions(path: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined."""
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def copy_sources(args: str) -> tuple[list[str], str, dict]:
    """Sources, destination and ``--flags`` of a COPY/ADD."""
    if args.startswith("["):
        parts = json.loads(args)
    else:
        parts = args.split()
    flags = {}
    while parts and parts[0].startswith("--"):
        key, _, value = parts.pop(0)[2:].partition("=")
        flags[key] = value
    return parts[:-1], parts[-1], flags


def stages(path: str) -> list[list[tuple[str, str]]]:
    out = []
    for word, rest in dockerfile_instructions(path):
        if word == "FROM":
            out.append([])
        out[-1].append((word, rest))
    return out


def dockerfiles(compose) -> dict[str, tuple[str, str]]:
    """Dockerfile path -> (context, service) for every service that builds."""
    out = {}
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = build["context"] if isinstance(build, dict) else build
            dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            out[os.path.normpath(os.path.join(context, dockerfile))] = (context, name)
    return out


def ignore_patterns(context: str) -> list[str]:
    path = os.path.join(context, ".dockerignore")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    return [line for line in lines if line and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def excluded(relpath: str, patterns: list[str]) -> bool:
    """.dockerignore semantics: the last pattern matching the path or one of
    its parent folders decides; ``!`` re-includes."""
    parts = relpath.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw.lstrip("!").strip("/"))
        regex = _pattern_regex(pattern)
        if any(regex.match(c) for c in candidates):
            result = not negate
    return result


def context_files(context: str) -> list[str]:
    """Relative paths of the files the build context sends."""
    patterns = ignore_patterns(context)
    negated = [p.lstrip("!").strip("/") for p in patterns if p.startswith("!")]
    out = []
    for root, dirs, files in os.walk(context):
        rel_root = os.path.relpath(root, context)
        keep = []
        for d in dirs:
            rel = os.path.normpath(os.path.join(rel_root, d))
            # Prune what is excluded and cannot be re-included below.
            if excluded(rel, patterns) and not any(n == rel or n.startswith(rel + "/") for n in negated):
                continue
            keep.append(d)
        dirs[:] = keep
        for name in files:
            rel = os.path.normpath(os.path.join(rel_root, name))
            if not excluded(rel, patterns):
                out.append(rel)
    return out


# -- compose: the file resolves ----------------------------------------------


def test_compose_config_passes(compose):
    assert {
        "certs", "sisock-crossbar", "sisock-http", "weather", "sensors", "apex-weather", "ucsc-radiometer",
        "thermometry", "g3-reader", "g3-file-scanner", "database", "grafana",
    } <= set(compose["services"])


def required_variables() -> set[str]:
    text = open(COMPOSE_FILE, encoding="utf-8").read()
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):?\?", text))


def test_secrets_are_required_and_never_defaulted():
    text = open(COMPOSE_FILE, encoding="utf-8").read()
    secrets = {"WAMP_SECRET", "SQL_PASSWD", "MARIADB_ROOT_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}
    assert secrets <= required_variables()
    for name in secrets:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses and all(u.startswith(":?") for u in uses), f"{name} must always be ${{{name}:?...}}"
        assert env_example()[name] == "", f"docker/env.example must not suggest a value for {name}"


@pytest.mark.parametrize("variable", sorted(required_variables()))
def test_compose_refuses_to_run_without_each_required_variable(tmp_path, variable):
    regenerate.env_file_with_placeholders(str(tmp_path / "env"))
    lines = (tmp_path / "env").read_text().splitlines()
    (tmp_path / "env").write_text("\n".join(f"{variable}=" if line.startswith(variable + "=") else line
                                            for line in lines) + "\n")
    result = run_compose(str(tmp_path / "env"))
    assert result.returncode != 0
    assert variable in result.stderr and ".env" in result.stderr


def test_every_substituted_variable_is_in_env_example_and_back():
    text = open(COMPOSE_FILE, encoding="utf-8").read()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    documented = set(env_example())
    assert used - documented == set(), "add these to docker/env.example"
    assert documented - used == set(), "docker/env.example documents variables the compose file does not use"


def test_images_built_here_are_tagged_with_the_package_version(compose):
    version = importlib.metadata.version("sisock")
    built = {s["image"] for s in compose["services"].values() if "build" in s}
    assert built == {f"sisock:{version}", f"sisock-grafana:{version}"}


def test_restart_policies(compose):
    for name, service in compose["services"].items():
        expected = "no" if name == "certs" else "unless-stopped"
        assert service.get("restart") == expected, name


def test_healthy_dependencies_have_health_checks(compose):
    for name, service in compose["services"].items():
        for target, how in (service.get("depends_on") or {}).items():
            if how.get("condition") == "service_healthy":
                assert "healthcheck" in compose["services"][target], f"{name} waits for {target}'s health"
    clients = [n for n, s in sisock_services(compose).items() if "SISOCK_CERT" in (s.get("environment") or {})]
    for name in clients:
        condition = compose["services"][name]["depends_on"]["sisock-crossbar"]["condition"]
        assert condition == "service_healthy", name
    assert compose["services"]["sisock-crossbar"]["depends_on"]["certs"]["condition"] == \
        "service_completed_successfully"


# -- builds ------------------------------------------------------------------


def test_build_contexts_and_dockerfiles_exist(compose):
    files = dockerfiles(compose)
    assert os.path.join(ROOT, "docker", "Dockerfile") in files
    assert os.path.join(ROOT, "docker", "grafana", "Dockerfile") in files
    for dockerfile, (context, service) in files.items():
        assert os.path.isdir(context), f"{service}: no build context {context}"
        assert os.path.isfile(dockerfile), f"{service}: no {dockerfile}"


def test_every_copy_source_exists_and_is_sent_with_the_context(compose):
    for dockerfile, (context, _service) in dockerfiles(compose).items():
        sent = set(context_files(context))
        for word, args in dockerfile_instructions(dockerfile):
            if word not in ("COPY", "ADD"):
                continue
            sources, _dest, flags = copy_sources(args)
            if "from" in flags:
                continue
            for source in sources:
                assert not re.match(r"^[a-z]+://", source), f"{dockerfile}: {word} of a URL is not pinned"
                path = os.path.normpath(os.path.join(context, source))
                assert os.path.exists(path), f"{dockerfile}: {word} {source}: no such file in {context}"
                rel = os.path.relpath(path, context)
                within = [f for f in sent if f == rel or f.startswith(rel + "/")]
                assert within, f"{dockerfile}: {word} {source} is excluded by .dockerignore"
                if os.path.isdir(path):
                    py = [f for f in within if f.endswith(".py")]
                    assert py, f"{dockerfile}: {word} {source} sends no Python file"


def test_context_leaves_out_secrets_and_local_state():
    patterns = ignore_patterns(ROOT)
    for path in (".env", ".git/config", ".venv/bin/python", ".sisock/server_key.pem", ".crossbar/server_key.pem",
                 "components/http/static/vendor/uPlot.min.css", "web/node_modules/uplot/package.json",
                 "data/g3/x.g3", "tests/conftest.py", "components/__pycache__/cli.cpython-311.pyc"):
        assert excluded(path, patterns), f"{path} would be sent to the image build"
    for path in ("setup.py", "README.md", "sisock/base.py", "components/http/static/quicklook.js",
                 "servers/weather_data", "web/package-lock.json"):
        assert not excluded(path, patterns), f"{path} would be left out of the image build"


def test_every_file_the_context_allows_exists():
    """An allow-list entry naming nothing is a file someone meant to ship
    and did not (or a leftover that would let a new file in unseen)."""
    for pattern in ignore_patterns(ROOT):
        if pattern.startswith("!") and not any(c in pattern for c in "*?["):
            path = os.path.join(ROOT, pattern[1:].strip("/"))
            assert os.path.exists(path), f".dockerignore allows {pattern[1:]}, which does not exist"


def _requirement_name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")


def constraints() -> dict[str, str]:
    pins = {}
    with open(os.path.join(ROOT, "constraints.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, sep, version = line.partition("==")
                assert sep and version, f"constraints.txt: {line!r} is not an exact pin"
                pins[_requirement_name(name)] = version
    return pins


def test_every_dependency_is_pinned_for_the_image_and_the_venv():
    """Two builds a month apart install the same versions: every
    requirement of setup.py has one exact version in constraints.txt, which
    the image build and `make` both install with."""
    pins = constraints()
    for req in importlib.metadata.requires("sisock"):
        assert _requirement_name(req) in pins, f"{req} (setup.py) has no pin in constraints.txt"
    for tool in ("pip", "setuptools", "wheel", "numpy", "bjdata"):
        assert tool in pins, tool
    dockerfile = os.path.join(ROOT, "docker", "Dockerfile")
    build = next(stage for stage in stages(dockerfile) if " AS build" in stage[0][1] or " as build" in stage[0][1])
    text = "\n".join(f"{w} {r}" for w, r in build)
    assert re.search(r"PIP_CONSTRAINT=(\S+)", text), "the image build must install with PIP_CONSTRAINT"
    copied = [copy_sources(r)[0] for w, r in build if w == "COPY" and "constraints.txt" in r]
    assert copied, "the image build must copy constraints.txt"
    makefile = open(os.path.join(ROOT, "Makefile"), encoding="utf-8").read()
    recipe = re.search(r"^\$\(STAMP\):.*?\n((?:\t.*\n)+)", makefile, re.M).group(1)
    installs = [line for line in recipe.splitlines() if "pip install" in line]
    assert installs and all("-c constraints.txt" in line for line in installs), installs


def test_image_build_context_makes_a_complete_package(tmp_path):
    """What ``pip install '.[all]'`` sees in the image: the files the context
    sends plus the charting library where the web stage copies it. The wheel
    must hold every console script and every file the bridge and the
    example server read at run time."""
    dockerfile = os.path.join(ROOT, "docker", "Dockerfile")
    ctx = tmp_path / "context"
    for rel in context_files(ROOT):
        os.makedirs(ctx / os.path.dirname(rel), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), ctx / rel)
    web = [copy_sources(args) for word, args in dockerfile_instructions(dockerfile)
           if word == "COPY" and copy_sources(args)[2].get("from") == "web"]
    (sources, dest, _flags), = web
    makefile = open(os.path.join(ROOT, "Makefile"), encoding="utf-8").read()
    assets = re.search(r"^ASSETS\s*:=\s*(.*)$", makefile, re.M).group(1).split()
    assert sorted(os.path.basename(s) for s in sources) == sorted(os.path.basename(a) for a in assets), \
        "the image must bundle the same uPlot files as `make web`"
    os.makedirs(ctx / dest, exist_ok=True)
    for source in sources:
        (ctx / dest / os.path.basename(source)).write_text("/* stand-in */\n")

    out = tmp_path / "wheel"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out),
         str(ctx)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("sisock-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    for script in console_scripts():
        assert re.search(rf"^{re.escape(script)} =", entry_points, re.M), script
    static = "sisock/components/http/static/"
    for name in ("quicklook.html", "quicklook.js", "quicklook.css", *(f"vendor/{os.path.basename(s)}"
                                                                     for s in sources)):
        assert static + name in names, name
    assert any(n.startswith("sisock/servers/weather_data/") and n.endswith(".dat") for n in names)


def from_images(dockerfile: str) -> list[str]:
    names = [rest.split()[0] for stage in stages(dockerfile) for word, rest in stage if word == "FROM"]
    aliases = {rest.split()[-1] for stage in stages(dockerfile) for word, rest in stage
               if word == "FROM" and " as " in rest.lower()}
    return [n for n in names if n not in aliases]


def test_base_images_and_plugin_are_pinned(compose):
    exact = re.compile(r"^[a-z0-9./-]+:\d+\.\d+\.\d+(-[a-z0-9.-]+)?$")
    for dockerfile in dockerfiles(compose):
        for image in from_images(dockerfile):
            assert exact.match(image), f"{dockerfile}: FROM {image} is not an exact version"
    for name, service in compose["services"].items():
        if "build" not in service:
            assert exact.match(service["image"]), f"{name}: image {service['image']} is not an exact version"
    grafana = os.path.join(ROOT, "docker", "grafana", "Dockerfile")
    text = " ".join(rest for _w, rest in dockerfile_instructions(grafana))
    assert re.search(r"plugins install yesoreyeram-infinity-datasource \d+\.\d+\.\d+\b", text)


def test_image_runs_unprivileged_unbuffered_with_a_health_check():
    dockerfile = os.path.join(ROOT, "docker", "Dockerfile")
    final = stages(dockerfile)[-1]
    text = "\n".join(f"{w} {r}" for w, r in final)
    assert re.search(r"useradd .*--uid 9000 .*ocs", text) and re.search(r"groupadd --gid 9000 ocs", text)
    users = [r for w, r in final if w == "USER"]
    assert users and users[-1] in ("9000", "9000:9000", "ocs", "ocs:ocs")
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", text)
    (check,) = [r for w, r in final if w == "HEALTHCHECK"]
    assert json.loads(check[check.index("CMD") + 3:].strip())[0] == "sisock-healthcheck"
    assert "sisock-healthcheck" in console_scripts()
    (cmd,) = [r for w, r in final if w == "CMD"]
    assert json.loads(cmd)[0] in console_scripts()
    assert not any(w in ("ENTRYPOINT",) for w, _r in final)


# -- commands ----------------------------------------------------------------


def test_every_command_is_an_installed_console_script(compose):
    scripts = console_scripts()
    used = set()
    for name, service in sisock_services(compose).items():
        command = service.get("command")
        assert isinstance(command, list) and command, f"{name}: give the command as a list"
        assert command[0] in scripts, f"{name}: {command[0]} is not a console script of sisock"
        assert "entrypoint" not in service, name
        used.add(command[0])
    assert scripts - NOT_A_SERVICE - used == set(), "console scripts without a compose service"
    # The table of servers, not only what was installed from it: a line
    # added there without a service (or a reinstall) is caught too.
    registered = {script for server in server_registry.SERVERS for script in (server.script, *server.companions)}
    assert registered - scripts == set(), "servers of sisock/server_registry.py not installed: pip install -e ."
    assert registered - NOT_A_SERVICE - used == set(), "servers of sisock/server_registry.py without a compose service"


def test_command_arguments_parse(compose):
    services = compose["services"]
    router = services["sisock-crossbar"]["command"]
    args = crossbar.build_parser().parse_args(router[1:])
    assert args.tls_dir and not args.no_hub, "the router runs the hub and uses the mounted pair"
    certs = services["certs"]["command"]
    assert certs[:2] == ["sisock", "tls"]
    parsed = cli.build_parser().parse_args(certs[1:])
    assert os.path.normpath(parsed.dir) == os.path.normpath(args.tls_dir)


def test_health_checks_are_the_image_probe_or_the_third_party_images_own(compose):
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        if not check:
            continue
        test = check["test"]
        assert test[0] == "CMD"
        expected = THIRD_PARTY_PROBES.get(name, "sisock-healthcheck")
        assert test[1] == expected, name
    health = load_healthcheck()
    assert compose["services"]["sisock-crossbar"]["healthcheck"]["test"][2:] == ["router"]
    assert compose["services"]["sisock-http"]["healthcheck"]["test"][2:] == ["http"]
    for name in ("sisock-crossbar", "sisock-http"):
        mode = compose["services"][name]["healthcheck"]["test"][2]
        assert health.detect(compose["services"][name]["command"]) == mode


# -- variables ---------------------------------------------------------------


def test_every_variable_a_service_sets_is_documented(compose):
    documented = readme_variables()
    guide = open(DOCS_PAGE, encoding="utf-8").read()
    for name, service in compose["services"].items():
        for variable in service.get("environment") or {}:
            if variable.startswith(THIRD_PARTY_PREFIXES):
                assert f"`{variable}`" in guide, f"{name}: {variable} is not named in docs/deployment/docker.md"
            else:
                assert variable in documented, f"{name}: {variable} is not in README's Environment table"


def variables_the_code_reads() -> dict[str, set[str]]:
    """Names read from the environment anywhere in sisock/, components/ and
    servers/: ``env.get("X")``, ``os.environ["X"]``, ``os.getenv("X")`` and
    the shared parsers (``positive_number("X", ...)``, ``whole_number("X", ...)``, ``_int(env, "X", ...)``)."""
    name = re.compile(r"^[A-Z][A-Z0-9_]+$")

    def is_env(node) -> bool:
        text = ast.unparse(node)
        return text in ("env", "os") or text.endswith("environ")

    found: dict[str, set[str]] = {}
    for top in ("sisock", "components", "servers"):
        for root, _dirs, files in os.walk(os.path.join(ROOT, top)):
            for filename in files:
                if not filename.endswith(".py"):
                    continue
                path = os.path.join(root, filename)
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    strings = []
                    if isinstance(node, ast.Call):
                        args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                        func = node.func
                        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                        if isinstance(func, ast.Attribute) and called in ("get", "getenv", "pop", "setdefault") \
                                and is_env(func.value):
                            strings = args[:1]
                        elif called in ("positive_number", "whole_number", "_int"):
                            strings = args
                    elif isinstance(node, ast.Subscript) and is_env(node.value) \
                            and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                        strings = [node.slice.value]
                    for s in strings:
                        if name.match(s):
                            found.setdefault(s, set()).add(os.path.relpath(path, ROOT))
    return found


def test_every_variable_the_code_reads_is_documented():
    read = variables_the_code_reads()
    assert {"WAMP_SECRET", "SQL_HOST", "DATA_DIRECTORY", "PORT"} <= set(read), "the scan finds nothing"
    missing = {v: sorted(paths) for v, paths in read.items() if v not in readme_variables() | NOT_SISOCK}
    assert missing == {}, "add these to README's Environment table"


# -- ports and certificates ----------------------------------------------------


def published(service) -> list[tuple[str, str, str]]:
    """``(host ip, host port, container port)`` of every published port."""
    out = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            out.append((entry.get("host_ip", ""), str(entry.get("published", "")), str(entry["target"])))
            continue
        # A substituted port (``${X:-8001}``) holds colons of its own.
        text = re.sub(r"\$\{[^}]*\}", "${}", str(entry))
        parts = text.split("/")[0].rsplit(":", 2)
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
        else:
            out.append(("", parts[0] if len(parts) == 2 else "", parts[-1]))
    return out


def test_every_published_port_is_bound_to_loopback(raw, compose):
    for services in (raw["services"], compose["services"]):
        for name, service in services.items():
            for host_ip, _host, _container in published(service):
                assert host_ip == "127.0.0.1", f"{name} publishes a port on {host_ip or 'every address'}"
    ports = {name: [(h, c) for _ip, h, c in published(s)] for name, s in compose["services"].items()
             if s.get("ports")}
    assert ports == {"sisock-crossbar": [("8001", "8001")], "sisock-http": [("5000", "5000")],
                     "grafana": [("3000", "3000")]}


def mounts(service) -> dict[str, tuple[str, str]]:
    """target -> (source, mode)."""
    out = {}
    for entry in service.get("volumes") or []:
        source, target, *mode = entry.split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def test_certificates_are_made_once_and_mounted_read_only(compose):
    services = compose["services"]
    assert mounts(services["certs"])["/certs"] == ("certs", "rw")
    names = set(tls.DEFAULT_NAMES)
    command = services["certs"]["command"]
    names.update(command[i + 1] for i, a in enumerate(command) if a == "--host")
    for name, service in sisock_services(compose).items():
        if name == "certs":
            continue
        env = service.get("environment") or {}
        for source, mode in mounts(service).values():
            if source == "certs":
                assert mode == "ro", f"{name} may not write the certificate"
        if "SISOCK_CERT" in env:
            folder = os.path.dirname(env["SISOCK_CERT"])
            assert mounts(service).get(folder) == ("certs", "ro"), name
            assert os.path.basename(env["SISOCK_CERT"]) == tls.CERT_NAME
            assert env["CROSSBAR_HOST"] in names, f"{name} reaches the router by a name its certificate lacks"
    router = services["sisock-crossbar"]
    tls_dir = crossbar.build_parser().parse_args(router["command"][1:]).tls_dir
    assert mounts(router)[tls_dir] == ("certs", "ro")


def test_router_config_equals_the_committed_file(compose):
    committed = open(regenerate.ROUTER_CONFIG, encoding="utf-8").read()
    assert regenerate.router_config_text(compose) == committed, \
        "docker/crossbar/config.json is stale: run `.venv/bin/python docker/regenerate.py router`"
    config = json.loads(committed)
    endpoint = config["workers"][0]["transports"][0]["endpoint"]
    assert endpoint["interface"] == "0.0.0.0"
    assert endpoint["tls"] == {"certificate": "/certs/server_cert.pem", "key": "/certs/server_key.pem"}
    assert "placeholder" not in committed, "the secret must never be written into the configuration"


def test_the_router_would_accept_the_compose_settings(compose):
    """sisock-crossbar refuses the public default secret off loopback; the
    compose file binds 0.0.0.0, so it must pass WAMP_SECRET through."""
    from sisock.config import Settings

    env = compose["services"]["sisock-crossbar"]["environment"]
    settings = Settings.from_env({k: str(v) for k, v in env.items()})
    assert settings.bind_host == "0.0.0.0" and not settings.uses_default_secret
    settings.check_router_secret()


# -- Grafana -----------------------------------------------------------------


def provisioned_datasources() -> list[dict]:
    out = []
    for name in sorted(os.listdir(DATASOURCES)):
        with open(os.path.join(DATASOURCES, name), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        assert doc["apiVersion"] == 1
        out.extend(doc["datasources"])
    return out


def test_datasource_provisioning_points_at_the_bridge():
    ds, influx = sorted(provisioned_datasources(), key=lambda d: d["type"] == "influxdb")
    assert ds["type"] == "yesoreyeram-infinity-datasource"
    assert ds["uid"] == "sisock" and ds["url"] == regenerate.GRAFANA_BRIDGE_URL
    assert ds["jsonData"]["allowedHosts"] == [regenerate.GRAFANA_BRIDGE_URL]
    assert influx["type"] == "influxdb" and influx["uid"] == "sisock-influxdb"
    assert influx["url"] == regenerate.GRAFANA_BRIDGE_URL + "/influxdb"
    assert influx["jsonData"]["version"] == "InfluxQL" and influx["jsonData"]["dbName"] == "ocs_feeds"


def test_grafana_mounts_match_the_provisioning(compose):
    grafana = mounts(compose["services"]["grafana"])
    assert grafana["/etc/grafana/provisioning/datasources"] == (DATASOURCES, "ro")
    assert grafana["/etc/grafana/provisioning/dashboards"] == (DASHBOARD_PROVIDERS, "ro")
    (provider_file,) = os.listdir(DASHBOARD_PROVIDERS)
    with open(os.path.join(DASHBOARD_PROVIDERS, provider_file), encoding="utf-8") as f:
        (provider,) = yaml.safe_load(f)["providers"]
    assert grafana[provider["options"]["path"]] == (DASHBOARDS, "ro")
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert os.path.dirname(home) == provider["options"]["path"]
    assert os.path.isfile(os.path.join(DASHBOARDS, os.path.basename(home)))


def datasource_refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from datasource_refs(value)


def test_dashboards_use_the_provisioned_datasource():
    provisioned = {(d["uid"], d["type"]): d for d in provisioned_datasources()}
    files = sorted(f for f in os.listdir(DASHBOARDS) if f.endswith(".json"))
    assert files
    for name in files:
        with open(os.path.join(DASHBOARDS, name), encoding="utf-8") as f:
            doc = json.load(f)
        assert doc["uid"] and doc["title"] and doc["panels"]
        refs = [r for r in datasource_refs(doc) if r.get("type") != "grafana"]
        assert refs, name
        for ref in refs:
            ds = provisioned.get((ref["uid"], ref["type"]))
            assert ds, f"{name}: no provisioned datasource {ref}"
        for panel in doc["panels"]:
            for target in panel["targets"]:
                assert any(target["url"].startswith(h + "/") for h in ds["jsonData"]["allowedHosts"]), target["url"]


def test_committed_dashboards_are_what_sisock_dashboard_makes_now(stack, bridge, tmp_path):
    assert sorted(f for f in os.listdir(DASHBOARDS) if f.endswith(".json")) == sorted(regenerate.DASHBOARDS)
    for name, args in regenerate.DASHBOARDS.items():
        out = tmp_path / name
        assert cli.main(["dashboard", "--url", stack.http, *args, "-o", str(out)]) == 0
        committed = open(os.path.join(DASHBOARDS, name), encoding="utf-8").read()
        assert out.read_text(encoding="utf-8") == committed, \
            f"{name} is stale: run `.venv/bin/python docker/regenerate.py dashboards`"


# -- the health probe ----------------------------------------------------------


def load_healthcheck():
    from sisock.components import healthcheck

    return healthcheck


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probe_finds_the_service_from_process_one():
    health = load_healthcheck()
    assert health.detect(["/opt/sisock/bin/python", "/opt/sisock/bin/sisock-http"]) == "http"
    assert health.detect(["/sbin/docker-init", "--", "sisock-http"]) == "http"
    assert health.detect(["/sbin/docker-init", "--", "sisock-crossbar", "--tls-dir", "/certs"]) == "router"
    assert health.detect(["/opt/sisock/bin/python", "/opt/sisock/bin/crossbar", "start"]) == "router"
    assert health.detect(["/sbin/docker-init", "--", "sisock-weather-server", "--replay"]) == "process"
    assert health.main(["process"], env={}) == 0
    assert health.main(["bogus"], env={}) == 2


def test_probe_passes_for_the_real_bridge_and_router(stack, bridge, capsys):
    health = load_healthcheck()
    assert health.main(["http"], env={"PORT": str(stack.http_port)}) == 0
    env = {"CROSSBAR_TLS_PORT": str(stack.tls_port), "CROSSBAR_OCS_PORT": str(stack.ocs_port), "BIND_HOST": "0.0.0.0"}
    assert health.main(["router"], env=env) == 0
    assert capsys.readouterr().out == ""


def test_probe_fails_for_closed_ports(capsys):
    health = load_healthcheck()
    assert health.main(["http"], env={"PORT": str(closed_port())}) == 1
    assert health.main(["router"], env={"CROSSBAR_TLS_PORT": str(closed_port())}) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 2 and out.startswith("unhealthy (http)")


def test_probe_fails_for_a_bridge_without_its_router(capsys):
    """A bridge that lost the router answers 503: the container is unhealthy."""

    class Disconnected(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"message": "not connected to the WAMP router"}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Disconnected)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        health = load_healthcheck()
        assert health.main(["http"], env={"PORT": str(server.server_address[1])}) == 1
    finally:
        server.shutdown()
        server.server_close()
    out = capsys.readouterr().out
    assert "503" in out and "not connected" in out


def test_probe_fails_for_a_port_that_does_not_speak_tls(stack, capsys):
    """The OCS port is plain websocket: a TLS handshake there must fail."""
    health = load_healthcheck()
    env = {"CROSSBAR_TLS_PORT": str(stack.ocs_port), "CROSSBAR_OCS_PORT": str(stack.ocs_port)}
    assert health.main(["router"], env=env) == 1
    assert "TLS" in capsys.readouterr().out


def test_docs_page_exists_with_a_title():
    text = open(DOCS_PAGE, encoding="utf-8").read()
    assert text.startswith("# ")
    for needle in ("docker compose up -d", "127.0.0.1:3000", "8001", "env.example", "regenerate.py"):
        assert needle in text, needle
