"""Grafana's provisioning files and dashboards, checked against Grafana's own schemas.

The Grafana image cannot be built or started here, and Grafana is forgiving in
the worst way: its YAML decoder drops keys it does not know, a datasource
``access`` it does not know becomes ``proxy``, a quoted
``foldersFromFilesStructure`` counts as false, and a dashboard key it does not
know is simply never used. Each of these starts a stack that looks healthy and
does the wrong thing. So the files are validated with JSON Schemas written from
Grafana's sources (tests/schemas/, each naming the Grafana files it comes
from), strict where Grafana is silent, and every schema is also shown to refuse
a broken copy of the real file, so that a schema which accepts anything cannot
pass unnoticed.

tests/test_compose.py already checks what the files must say for this stack
(the bridge URL, the mounts, that every datasource reference in a dashboard
names a provisioned uid and type, the allowed hosts); this module checks only
that Grafana would read them as meant.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections import Counter
from collections.abc import Callable

import jsonschema
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMAS = os.path.join(ROOT, "tests", "schemas")
GRAFANA = os.path.join(ROOT, "docker", "grafana")
DATASOURCES = os.path.join(GRAFANA, "provisioning", "datasources")
DASHBOARD_PROVIDERS = os.path.join(GRAFANA, "provisioning", "dashboards")
DASHBOARDS = os.path.join(GRAFANA, "dashboards")
#: GRID_COLUMN_COUNT in Grafana's public/app/core/constants.ts.
GRID_COLUMNS = 24


# -- reading the files as Grafana does -----------------------------------------


class GrafanaYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, changed where gopkg.in/yaml.v3 (Grafana's decoder)
    reads the same text differently.

    PyYAML follows YAML 1.1, where ``yes``/``no``/``on``/``off`` are booleans;
    yaml.v3 keeps them as text, and Grafana's ParseBool then refuses them, so
    validating PyYAML's reading would pass a file Grafana rejects. yaml.v3 also
    refuses a key given twice in one mapping, where PyYAML keeps the last.
    """


GrafanaYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
GrafanaYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _mapping_without_duplicates(loader: GrafanaYamlLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys = [loader.construct_object(key, deep=deep) for key, _value in node.value]
    for key, count in Counter(keys).items():
        if count > 1:
            raise yaml.constructor.ConstructorError(
                None, None, f"mapping key {key!r} already defined (Grafana's YAML decoder refuses this)",
                node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


GrafanaYamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(text: str):
    return yaml.load(text, Loader=GrafanaYamlLoader)


def read_yaml(path: str):
    with open(path, encoding="utf-8") as f:
        return load_yaml(f.read())


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def files_in(folder: str, suffixes: tuple[str, ...]) -> list[str]:
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(suffixes))


def datasource_files() -> list[str]:
    return files_in(DATASOURCES, (".yaml", ".yml"))


def provider_files() -> list[str]:
    return files_in(DASHBOARD_PROVIDERS, (".yaml", ".yml"))


def dashboard_files() -> list[str]:
    return files_in(DASHBOARDS, (".json",))


def ids(paths: list[str]) -> list[str]:
    return [os.path.relpath(p, ROOT) for p in paths]


# -- validation ------------------------------------------------------------------


_validators: dict[str, jsonschema.Draft202012Validator] = {}


def validator(name: str) -> jsonschema.Draft202012Validator:
    if name not in _validators:
        schema = read_json(os.path.join(SCHEMAS, name + ".json"))
        jsonschema.Draft202012Validator.check_schema(schema)
        _validators[name] = jsonschema.Draft202012Validator(schema)
    return _validators[name]


def schema_errors(name: str, document) -> list[tuple[str, str]]:
    """Every violation with the path it sits at (``a/0/b``), so that a broken
    copy can be required to fail where it was broken and not somewhere else."""
    errors = sorted(validator(name).iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    return [("/".join(map(str, e.absolute_path)), e.message) for e in errors]


def report(errors: list[tuple[str, str]]) -> str:
    return "\n".join(f"  {path or '(top)'}: {message}" for path, message in errors)


def all_panels(dashboard: dict):
    """Every panel, those inside rows included (a collapsed row keeps its panels)."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def layout_problems(dashboard: dict) -> list[str]:
    """What the dashboard schema cannot say: a panel must fit in the grid
    (Grafana moves it otherwise), panel ids are unique within the dashboard and
    refIds within a panel's queries (frames, overrides and expressions are
    matched by them)."""
    problems = []
    panel_ids = Counter(p.get("id") for p in all_panels(dashboard) if "id" in p)
    problems += [f"panel id {i} is used {n} times" for i, n in panel_ids.items() if n > 1]
    for panel in all_panels(dashboard):
        name = panel.get("title") or panel.get("id")
        grid = panel.get("gridPos") or {}
        if isinstance(grid.get("x"), int) and isinstance(grid.get("w"), int) and grid["x"] + grid["w"] > GRID_COLUMNS:
            problems.append(f"panel {name!r}: x {grid['x']} + w {grid['w']} is past the {GRID_COLUMNS}-column grid")
        refs = Counter(t.get("refId") for t in panel.get("targets") or [])
        problems += [f"panel {name!r}: refId {r!r} is used {n} times" for r, n in refs.items() if n > 1]
    return problems


# -- the files as committed ----------------------------------------------------------


def test_every_file_in_the_provisioning_folders_is_one_grafana_reads():
    # Grafana reads only *.yaml/*.yml there and only *.json among the
    # dashboards; any other file is skipped without a word.
    for folder, suffixes in ((DATASOURCES, (".yaml", ".yml")), (DASHBOARD_PROVIDERS, (".yaml", ".yml")),
                             (DASHBOARDS, (".json",))):
        ignored = [n for n in os.listdir(folder) if not n.endswith(suffixes)]
        assert ignored == [], f"Grafana would ignore {ignored} in {os.path.relpath(folder, ROOT)}"
    assert datasource_files() and provider_files() and dashboard_files()


@pytest.mark.parametrize("path", datasource_files(), ids=ids(datasource_files()))
def test_datasource_provisioning_matches_grafanas_schema(path):
    errors = schema_errors("grafana_datasource_provisioning", read_yaml(path))
    assert not errors, f"{os.path.relpath(path, ROOT)}:\n{report(errors)}"


def test_at_most_one_default_datasource_per_organisation():
    # config_reader.go refuses to provision anything otherwise
    # (ErrInvalidConfigToManyDefault), across all files together.
    defaults = Counter()
    for path in datasource_files():
        for ds in read_yaml(path).get("datasources") or []:
            if str(ds.get("isDefault")).lower() in ("true", "1", "t"):
                defaults[str(ds.get("orgId") or 1)] += 1
    assert all(n <= 1 for n in defaults.values()), dict(defaults)


@pytest.mark.parametrize("path", provider_files(), ids=ids(provider_files()))
def test_dashboard_providers_match_grafanas_schema(path):
    errors = schema_errors("grafana_dashboard_provider", read_yaml(path))
    assert not errors, f"{os.path.relpath(path, ROOT)}:\n{report(errors)}"


def test_dashboard_provider_names_are_unique():
    # types.go refuses a name given twice in one file; across files the name
    # is what each provider looks its own dashboards up by (file_reader.go),
    # so two providers of one name would delete each other's as missing.
    names = Counter(p.get("name") for path in provider_files() for p in read_yaml(path).get("providers") or [])
    assert all(n == 1 for n in names.values()), dict(names)


@pytest.mark.parametrize("path", dashboard_files(), ids=ids(dashboard_files()))
def test_dashboards_match_grafanas_dashboard_schema(path):
    dashboard = read_json(path)
    errors = schema_errors("grafana_dashboard", dashboard)
    assert not errors, f"{os.path.relpath(path, ROOT)}:\n{report(errors)}"
    assert layout_problems(dashboard) == []


def test_dashboard_uids_and_titles_are_unique_across_files():
    # validator.go: a uid, or a title within one folder, used by more than one
    # file takes database writes away from every provider involved, so none of
    # their dashboards is updated any more. Every file here goes to one folder.
    dashboards = [read_json(p) for p in dashboard_files()]
    for key in ("uid", "title"):
        used = Counter(d.get(key) for d in dashboards)
        assert all(n == 1 for n in used.values()), (key, dict(used))


def test_every_schema_names_the_grafana_sources_it_was_written_from():
    for name in ("grafana_datasource_provisioning", "grafana_dashboard_provider", "grafana_dashboard"):
        comment = read_json(os.path.join(SCHEMAS, name + ".json"))["$comment"]
        assert "grafana/grafana" in comment and re.search(r"\.(go|cue)\b", comment), name


# -- the schemas refuse what Grafana would misread --------------------------------------
#
# Each case breaks one thing in a copy of the real file and names where the
# schema must object, so a case cannot pass because of some other error.

Mutation = Callable[[dict], None]


def rename(key: str, new: str) -> Callable[[dict], None]:
    def apply(mapping: dict) -> None:
        mapping[new] = mapping.pop(key)
    return apply


def first_datasource(doc: dict) -> dict:
    return doc["datasources"][0]


def first_provider(doc: dict) -> dict:
    return doc["providers"][0]


def first_panel(doc: dict) -> dict:
    return doc["panels"][0]


DATASOURCE_CASES: dict[str, tuple[Mutation, str, str]] = {
    "misspelt key in an entry": (lambda d: rename("isDefault", "isDefualt")(first_datasource(d)),
                                 "datasources/0", "isDefualt"),
    "misspelt jsonData": (lambda d: rename("jsonData", "jsondata")(first_datasource(d)), "datasources/0", "jsondata"),
    "misspelt top-level list": (rename("datasources", "datasource"), "", "datasource"),
    "orgName, which Grafana never merged": (lambda d: first_datasource(d).update(orgName="Main Org."),
                                            "datasources/0", "orgName"),
    "access Grafana would replace with proxy": (lambda d: first_datasource(d).update(access="server"),
                                                "datasources/0/access", ""),
    "isDefault ParseBool refuses": (lambda d: first_datasource(d).update(isDefault="yes"),
                                    "datasources/0/isDefault", ""),
    "orgId that is not an integer": (lambda d: first_datasource(d).update(orgId="main"), "datasources/0/orgId", ""),
    "jsonData as a list": (lambda d: first_datasource(d).update(jsonData=["allowedHosts"]),
                           "datasources/0/jsonData", ""),
    "url as a mapping": (lambda d: first_datasource(d).update(url={"host": "sisock-http"}), "datasources/0/url", ""),
    "nested secureJsonData": (lambda d: first_datasource(d).update(secureJsonData={"a": {"b": 1}}),
                              "datasources/0/secureJsonData/a", ""),
    "entry without a name": (lambda d: first_datasource(d).pop("name"), "datasources/0", "'name' is a required"),
    "apiVersion quoted": (lambda d: d.update(apiVersion="1"), "apiVersion", ""),
    "apiVersion 0 (the old snake_case layout)": (lambda d: d.update(apiVersion=0), "apiVersion", ""),
}

PROVIDER_CASES: dict[str, tuple[Mutation, str, str]] = {
    "misspelt key in a provider": (lambda d: rename("disableDeletion", "disableDeletions")(first_provider(d)),
                                   "providers/0", "disableDeletions"),
    "misspelt option": (lambda d: rename("foldersFromFilesStructure", "foldersFromFileStructure")(
        first_provider(d)["options"]), "providers/0/options", "foldersFromFileStructure"),
    "foldersFromFilesStructure quoted (read as false)": (
        lambda d: first_provider(d)["options"].update(foldersFromFilesStructure="true"),
        "providers/0/options/foldersFromFilesStructure", ""),
    "updateIntervalSeconds with a unit": (lambda d: first_provider(d).update(updateIntervalSeconds="30s"),
                                          "providers/0/updateIntervalSeconds", ""),
    "allowUiUpdates ParseBool refuses": (lambda d: first_provider(d).update(allowUiUpdates="no"),
                                         "providers/0/allowUiUpdates", ""),
    "type other than file": (lambda d: first_provider(d).update(type="files"), "providers/0/type", ""),
    "options without a path": (lambda d: first_provider(d)["options"].pop("path"), "providers/0/options", ""),
    "folder and folderUid with foldersFromFilesStructure": (
        lambda d: (first_provider(d).update(folder="sisock", folderUid="sisock"),
                   first_provider(d)["options"].update(foldersFromFilesStructure=True)),
        "providers/0", "should not be valid"),
    "misspelt top-level list": (rename("providers", "provider"), "", "provider"),
}

DASHBOARD_CASES: dict[str, tuple[Mutation, str, str]] = {
    "misspelt top-level key": (rename("schemaVersion", "schemaVerison"), "", "schemaVerison"),
    "schemaVersion quoted": (lambda d: d.update(schemaVersion=str(d["schemaVersion"])), "schemaVersion", ""),
    "blank title": (lambda d: d.update(title="  "), "title", ""),
    "uid Grafana refuses": (lambda d: d.update(uid="apex/weather"), "uid", ""),
    "uid over 40 characters": (lambda d: d.update(uid="a" * 41), "uid", ""),
    "graphTooltip out of range": (lambda d: d.update(graphTooltip=3), "graphTooltip", ""),
    "time without its end": (lambda d: d["time"].pop("to"), "time", "'to' is a required"),
    "misspelt panel key": (lambda d: rename("gridPos", "gridpos")(first_panel(d)), "panels/0", "gridpos"),
    "panel wider than the grid": (lambda d: first_panel(d)["gridPos"].update(w=25), "panels/0/gridPos/w", ""),
    "panel starting past the grid": (lambda d: first_panel(d)["gridPos"].update(x=24), "panels/0/gridPos/x", ""),
    "gridPos without its height": (lambda d: first_panel(d)["gridPos"].pop("h"), "panels/0/gridPos", "'h'"),
    "panel without a type": (lambda d: first_panel(d).update(type=""), "panels/0/type", ""),
    "datasource as a legacy name string": (lambda d: first_panel(d).update(datasource="sisock"),
                                           "panels/0/datasource", ""),
    "datasource reference with a misspelt key": (lambda d: rename("uid", "UID")(first_panel(d)["datasource"]),
                                                 "panels/0/datasource", "UID"),
    "query without a refId": (lambda d: first_panel(d)["targets"][0].pop("refId"), "panels/0/targets/0", "refId"),
    "fieldConfig without overrides": (lambda d: first_panel(d)["fieldConfig"].pop("overrides"),
                                      "panels/0/fieldConfig", "overrides"),
    "misspelt field-config key": (lambda d: rename("custom", "costum")(first_panel(d)["fieldConfig"]["defaults"]),
                                  "panels/0/fieldConfig/defaults", "costum"),
}


def assert_refused(schema: str, original, mutate: Mutation, path: str, fragment: str) -> None:
    document = copy.deepcopy(original)
    mutate(document)
    errors = schema_errors(schema, document)
    assert errors, f"{schema} accepted the broken copy"
    assert any(p == path and fragment in m for p, m in errors), \
        f"{schema} did not object at {path or '(top)'} ({fragment!r}); it said:\n{report(errors)}"


@pytest.mark.parametrize("case", sorted(DATASOURCE_CASES))
def test_datasource_schema_refuses(case):
    assert_refused("grafana_datasource_provisioning", read_yaml(datasource_files()[0]), *DATASOURCE_CASES[case])


@pytest.mark.parametrize("case", sorted(PROVIDER_CASES))
def test_dashboard_provider_schema_refuses(case):
    assert_refused("grafana_dashboard_provider", read_yaml(provider_files()[0]), *PROVIDER_CASES[case])


@pytest.mark.parametrize("case", sorted(DASHBOARD_CASES))
def test_dashboard_schema_refuses(case):
    assert_refused("grafana_dashboard", read_json(dashboard_files()[0]), *DASHBOARD_CASES[case])


def test_yaml_booleans_grafana_does_not_know_are_refused():
    # PyYAML alone would read `isDefault: yes` as true and the schema would
    # pass it; Grafana reads the text "yes" and fails to start provisioning.
    text = open(datasource_files()[0], encoding="utf-8").read()
    broken = re.sub(r"^(\s*isDefault:).*$", r"\1 yes", text, count=1, flags=re.M)
    assert broken != text
    assert yaml.safe_load(broken)["datasources"][0]["isDefault"] is True
    errors = schema_errors("grafana_datasource_provisioning", load_yaml(broken))
    assert any(p == "datasources/0/isDefault" for p, _m in errors), report(errors)


def test_a_key_given_twice_is_refused():
    text = open(provider_files()[0], encoding="utf-8").read()
    broken = re.sub(r"^(\s*)(folder:.*)$", r"\1\2\n\1folder: other", text, count=1, flags=re.M)
    assert broken != text
    with pytest.raises(yaml.constructor.ConstructorError, match="already defined"):
        load_yaml(broken)


@pytest.mark.parametrize("case", ["overlapping the right edge", "refId twice", "panel id twice"])
def test_layout_problems_the_schema_cannot_see_are_found(case):
    dashboard = copy.deepcopy(read_json(dashboard_files()[0]))
    panel = first_panel(dashboard)
    if case == "overlapping the right edge":
        panel["gridPos"].update(x=12, w=24 - 11)
    elif case == "refId twice":
        panel["targets"].append(copy.deepcopy(panel["targets"][0]))
    else:
        dashboard["panels"].append(copy.deepcopy(panel))
    assert schema_errors("grafana_dashboard", dashboard) == []
    assert layout_problems(dashboard), case
