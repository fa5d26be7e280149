"""Issue 7: the Grafana dashboards in dashboards/ are what their generator makes, fit Grafana's schema, fit their
provisioning, and every panel shows data from a real platform.

The proof runs the demo's trains through ``LocalPlatform`` with real Docker (three stations and an aggregator:
an incremental cohort count, a federated logistic regression, a train the station admin rejects with a reason,
one with a wrong image digest that fails, and a busy train that keeps a container running for a few seconds),
has a REAL Prometheus (Debian's) scrape the central service and every MPU each second with the shipped
``prometheus.yml`` (only targets and interval replaced), and then runs every query of every panel, read from
the dashboard JSON files: PromQL against Prometheus' HTTP API as Grafana would (range or instant, Grafana's
variables substituted), SPARQL as the Infinity data source would send it (form POST with a bearer token, rows
from the root selector, columns from their selectors). A query that returns nothing fails the test.

Why the busy train: the station's CPU, memory and network gauges exist only while a train container runs,
so their panels have data only for a time range in which one ran. The busy train runs 6 s while the MPUs
sample every second and Prometheus scrapes every second; the panels' range queries over the test's window
must then return its series.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import re
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import servers
import yaml
from conftest import in_ci, require_component

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = REPO / "dashboards"
STATIONS = ("aachen", "leipzig", "cologne")
SCRAPE_S = 1
#: Grafana's $__rate_interval: max(4 x the scrape interval, $__interval + scrape interval), with $__interval 1 s
RATE_INTERVAL = f"{4 * SCRAPE_S}s"
REJECTION = "No ethics approval for this cohort definition"
#: Grafana's variable syntax ($name, [[name]], ${name}, ${name:format}); unknown names stay as they are
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pht_dashboards_generate", DASHBOARDS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


GENERATE = _generator()


def boards() -> dict[str, dict[str, Any]]:
    """The shipped dashboards, as Grafana reads them."""
    files = sorted(GENERATE.OUT.glob("*.json"))
    assert [f.stem for f in files] == sorted(GENERATE.DASHBOARDS), "a dashboard file is missing or unexpected"
    return {f.stem: json.loads(f.read_text()) for f in files}


def interpolate(text: str, values: dict[str, str]) -> str:
    """Substitute dashboard variables as Grafana's template service does (an unknown name is left alone)."""
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        return values.get(name, m.group(0))
    return _VARIABLE.sub(one, text)


@dataclasses.dataclass(frozen=True)
class PanelQuery:
    board: str
    panel: str
    target: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.target["datasource"]["type"])


def panel_queries(all_boards: dict[str, dict[str, Any]]) -> list[PanelQuery]:
    """Every target of every panel (rows' nested panels too)."""
    found = []
    for name, board in all_boards.items():
        panels = list(board.get("panels", []))
        while panels:
            panel = panels.pop(0)
            panels.extend(panel.get("panels", []))
            found += [PanelQuery(name, panel["title"], t) for t in panel.get("targets", [])]
    return found


# -- the files ----------------------------------------------------------------------------------------------


def test_the_committed_dashboards_are_what_the_generator_makes() -> None:
    stale = [p.name for p, text in GENERATE.build_all().items() if not p.exists() or p.read_text() != text]
    assert not stale, f"run `python dashboards/generate.py`: {stale} differ from what it makes"


def test_the_dashboards_fit_grafanas_schema_models() -> None:
    """Round trip through grafana-foundation-sdk's models (generated from Grafana 11.6's schema): they drop
    what the schema does not know and may only add defaults, so nothing of the file may be lost or changed."""
    from grafana_foundation_sdk.cog import runtime
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()

    def lost(original: Any, again: Any, path: str) -> list[str]:
        if isinstance(original, dict):
            if not isinstance(again, dict):
                return [path]
            return [p for k, v in original.items() for p in ([f"{path}.{k}"] if k not in again
                                                              else lost(v, again[k], f"{path}.{k}"))]
        if isinstance(original, list):
            if not isinstance(again, list) or len(again) != len(original):
                return [path]
            return [p for i, (a, b) in enumerate(zip(original, again, strict=True)) for p in lost(a, b, f"{path}[{i}]")]
        return [] if original == again else [path]

    for name, board in boards().items():
        again = json.loads(GENERATE.render(Dashboard.from_json(board)))
        assert lost(board, again, name) == [], f"{name}: fields the dashboard schema does not keep"
        assert board["schemaVersion"] == 41 and board["uid"] == f"pht-{name}"
        for panel in board["panels"]:
            assert runtime.panelcfg_config(panel["type"]) is not None, f"{name}: unknown panel type {panel['type']}"
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"]), f"{name}: panel ids not unique"


def test_the_provisioning_fits_the_dashboards_and_the_compose_file() -> None:
    compose = yaml.safe_load((DASHBOARDS / "docker-compose.yml").read_text())
    sources = yaml.safe_load((DASHBOARDS / "grafana/provisioning/datasources/pht.yml").read_text())["datasources"]
    provider = yaml.safe_load((DASHBOARDS / "grafana/provisioning/dashboards/pht.yml").read_text())["providers"][0]
    scrape = yaml.safe_load((DASHBOARDS / "prometheus/prometheus.yml").read_text())
    by_uid = {s["uid"]: s for s in sources}
    used = {(q.target["datasource"]["type"], q.target["datasource"]["uid"]) for q in panel_queries(boards())}
    assert used == {(s["type"], uid) for uid, s in by_uid.items()}, "panels and provisioned data sources differ"
    grafana, prometheus = compose["services"]["grafana"], compose["services"]["prometheus"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    for source in [*mounts, *(v.split(":", 1)[0] for v in prometheus["volumes"] if v.startswith("./"))]:
        assert (DASHBOARDS / source).exists(), f"docker-compose.yml mounts a missing {source}"
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert by_uid["pht-sparql"]["type"] in grafana["environment"]["GF_INSTALL_PLUGINS"]
    assert by_uid["pht-prometheus"]["jsonData"]["timeInterval"] == scrape["global"]["scrape_interval"]
    jobs = {j["job_name"] for j in scrape["scrape_configs"]}
    assert jobs == {"pht-central", "pht-mpu"}
    assert all("station" in c["labels"] for j in scrape["scrape_configs"] if j["job_name"] == "pht-mpu"
               for c in j["static_configs"])


# -- the proof: a real platform, a real Prometheus, every panel's query ------------------------------------------


@dataclasses.dataclass
class Run:
    platform: Any
    prometheus: servers.PrometheusServer
    token: str
    start: float  #: Unix time when Prometheus began scraping
    trains: dict[str, str]  #: definition -> train id


def prometheus_config(platform: Any, central_token: Path) -> str:
    """The shipped prometheus.yml with this platform's targets, a 1 s interval and the central service's
    token in ``central_token`` (jobs, labels and the authorization kept)."""
    config = yaml.safe_load((DASHBOARDS / "prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval=f"{SCRAPE_S}s", evaluation_interval=f"{SCRAPE_S}s")
    for job in config["scrape_configs"]:
        if job["job_name"] == "pht-central":
            job["static_configs"] = [{"targets": [platform.url.removeprefix("http://")]}]
            assert job["authorization"]["type"] == "Bearer", "the central /metrics needs a token"
            job["authorization"]["credentials_file"] = str(central_token)
        else:
            job["static_configs"] = [{"targets": [url.removeprefix("http://")], "labels": {"station": sid}}
                                     for sid, url in platform.mpu_urls.items()]
            assert job["authorization"]["type"] == "Bearer", "the MPUs' /metrics need a token"
            job["authorization"]["credentials_file"] = str(mpu_token(platform))
    return yaml.safe_dump(config)


def mpu_token(platform: Any) -> Path:
    """A file with the MPUs' metrics token (PHT_MPU_METRICS_TOKEN, the same for the platform's MPUs)."""
    path = platform.workdir / "pht-mpu-metrics.token"
    path.write_text(platform.mpu_metrics_token)
    return path


def usage_policy(folder: Path) -> Path:
    """The MPUs' default filter policy, but publishing usage samples as they are (a rule above the default's
    Deny, as its comment says), so that the per-execution panels have data: under the default the MPUs'
    ``/metrics`` carry no per-execution series (``tests/security/test_mpu_side_channels.py``)."""
    from station_mpu import DEFAULT_POLICY

    path = folder / "mpu-policy.ttl"
    text = DEFAULT_POLICY.read_text()
    path.write_text(text.replace("    pht:rule\n", "    pht:rule\n        [ a pht:FilterRule ; pht:effect pht:Allow ; "
                                 "pht:priority 110 ; pht:eventClass pht:UsageSample ] ,\n", 1))
    assert path.read_text() != text
    return path


def central_token(platform: Any, folder: Path) -> Path:
    """A file with an operator's token for the central ``/metrics`` (the platform sets no PHT_METRICS_TOKEN)."""
    from orchestrator.principal import Role

    path = folder / "pht-metrics.token"
    path.write_text(platform.token("prometheus", Role.OPERATOR))
    return path


def prom(run: Run, path: str, **params: Any) -> Any:
    r = httpx.get(f"{run.prometheus.base_url}/api/v1/{path}", params=params, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    require_component("docker")
    require_component("prometheus")
    from local_platform import LocalPlatform, StationSpec, detect_runtime, split_breast_cancer
    from local_platform.platform import AUTOMATIC
    from orchestrator.principal import Role

    runtime, why = detect_runtime()
    if runtime != "docker":
        message = f"real component 'docker' unusable: {why}"
        if in_ci():
            pytest.fail(f"{message} (CI=true: real components must not be skipped)", pytrace=False)
        pytest.skip(message)
    tmp = tmp_path_factory.mktemp("dashboards")
    folders = split_breast_cancer(tmp / "data", STATIONS)
    (tmp / "data" / "aggregator").mkdir()
    # cologne asks its admin about any definition but the two demo analyses
    held = dataclasses.replace(AUTOMATIC, requires_approval=True, approve_definitions=frozenset({"cohort-count", "fedavg"}),
                               source="dashboards test: the admin decides about unknown definitions")
    specs = [StationSpec("aachen", folders["aachen"]), StationSpec("leipzig", folders["leipzig"]),
             StationSpec("cologne", folders["cologne"], held), StationSpec("aggregator", tmp / "data" / "aggregator")]
    with LocalPlatform(tmp / "platform", specs, runtime="docker", mpu_policy=usage_policy(tmp)) as platform, \
            servers.prometheus_server(prometheus_config(platform, central_token(platform, tmp))) as prometheus:
        alice = platform.client("alice")
        count = platform.build_image(REPO / "trains" / "cohort-count", "pht-trains/cohort-count:test")
        fedavg = platform.build_image(REPO / "trains" / "fedavg-logreg", "pht-trains/fedavg-logreg:test")
        busy = platform.build_image(REPO / "tests" / "fixtures" / "trains" / "busy", "pht-test/busy:test")
        counting = [{"name": n} for n in ("COLUMN", "OP", "VALUE", "MIN_CELL")]
        for did, route in (("cohort-count", list(STATIONS)), ("unreviewed-count", ["cologne"])):
            alice.register_definition({"id": did, "title": did, "image_name": count.name, "image_digest": count.digest,
                                       "mode": "incremental", "route": route, "parameters": counting})
        alice.register_definition({"id": "forged", "title": "wrong digest", "image_name": count.name,
                                   "image_digest": "sha256:" + "0" * 64, "mode": "incremental", "route": ["aachen"],
                                   "parameters": []})
        alice.register_definition({"id": "fedavg", "title": "FedAvg", "image_name": fedavg.name,
                                   "image_digest": fedavg.digest, "mode": "federated", "route": list(STATIONS),
                                   "rounds": 2, "aggregator": "aggregator",
                                   "parameters": [{"name": "TARGET"}, {"name": "LOCAL_EPOCHS"}, {"name": "LEARNING_RATE"}]})
        alice.register_definition({"id": "busy", "title": "busy", "image_name": busy.name, "image_digest": busy.digest,
                                   "mode": "incremental", "route": ["aachen"], "parameters": [{"name": "SECONDS"}]})
        start = time.time()
        cohort = {"COLUMN": "mean_radius", "OP": "gt", "VALUE": "15", "MIN_CELL": "5"}
        trains = {"cohort-count": alice.submit("cohort-count", cohort),
                  "fedavg": alice.submit("fedavg", {"TARGET": "benign", "LOCAL_EPOCHS": "20", "LEARNING_RATE": "0.5"}),
                  "forged": alice.submit("forged"),
                  "unreviewed-count": alice.submit("unreviewed-count", cohort)}
        held_train = next(t for ts in alice.watch([trains["unreviewed-count"]], timeout_s=60)
                          for t in ts.values()
                          if t["executions"] and t["executions"][0]["state"] == "waiting-for-approval")
        admin = platform.client("cologne-admin", Role.STATION_ADMIN, "cologne")
        admin.step(held_train["executions"][0]["id"], "rejected", reason=REJECTION)
        ends = {did: alice.wait(tid, 120)["state"] for did, tid in trains.items()}
        assert ends == {"cohort-count": "finished", "fedavg": "finished", "forged": "failed",
                        "unreviewed-count": "rejected"}
        trains["busy"] = alice.submit("busy", {"SECONDS": "6"})
        assert alice.wait(trains["busy"], 60)["state"] == "finished"
        # the viewer is alice: the SPARQL data source forwards the viewer's own token (oauthPassThru)
        result = Run(platform, prometheus, platform.token("alice", Role.RESEARCHER), start, trains)
        wait_for_scrapes(result)
        yield result


def test_the_sparql_data_source_forwards_each_viewers_identity_and_holds_no_token() -> None:
    """Grafana viewers are researchers too: no shared token that reads everyone's trains."""
    sources = yaml.safe_load((DASHBOARDS / "grafana/provisioning/datasources/pht.yml").read_text())["datasources"]
    sparql = next(s for s in sources if s["uid"] == "pht-sparql")
    assert sparql["jsonData"]["oauthPassThru"] is True and sparql["jsonData"]["auth_method"] == "oauthPassThru"
    assert "secureJsonData" not in sparql and "bearerToken" not in json.dumps(sparql)
    grafana = yaml.safe_load((DASHBOARDS / "docker-compose.yml").read_text())["services"]["grafana"]["environment"]
    assert grafana["GF_AUTH_GENERIC_OAUTH_ENABLED"] == "true" and grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "PHT_GRAFANA_TOKEN" not in grafana and "bearer" not in json.dumps(grafana).lower()


def wait_for_scrapes(run: Run, timeout_s: float = 30) -> None:
    """Until Prometheus has scraped the final train counts (the central service caches them 5 s)."""
    deadline, seen = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        seen = {r["metric"].get("state"): float(r["value"][1]) for r in prom(run, "query", query="pht_trains")}
        if seen.get("finished") == 3 and seen.get("rejected") == 1 and seen.get("failed") == 1:
            time.sleep(2 * SCRAPE_S)  # and a couple more scrapes of everything else
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus did not scrape the final train counts within {timeout_s} s: {seen}")


def run_promql(run: Run, target: dict[str, Any]) -> list[dict[str, Any]]:
    """The target's expression as Grafana sends it: range over the test's window (step 1 s) or instant now."""
    end = time.time()
    builtins = {"__rate_interval": RATE_INTERVAL, "__interval": f"{SCRAPE_S}s",
                "__range": f"{math.ceil(end - run.start)}s"}
    expr = interpolate(target["expr"], builtins)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    if target.get("instant"):
        return prom(run, "query", query=expr, time=end)
    return prom(run, "query_range", query=expr, start=run.start, end=end, step=SCRAPE_S)


def samples(result: list[dict[str, Any]]) -> list[float]:
    values = [float(v) for r in result for v in ([r["value"][1]] if "value" in r else [x[1] for x in r["values"]])]
    return [v for v in values if math.isfinite(v)]


def run_sparql(run: Run, target: dict[str, Any], variables: dict[str, str]) -> list[dict[str, Any]]:
    """The target as the Infinity data source sends it; returns its rows as {column title: value or None}."""
    options = target["url_options"]
    assert (target["type"], target["source"], target["parser"]) == ("json", "url", "backend")
    assert (options["method"], options["body_type"]) == ("POST", "x-www-form-urlencoded")
    form = {f["key"]: interpolate(f["value"], variables) for f in options["body_form"]}
    assert "${" not in form["query"], f"a Grafana variable the test does not know: {form['query'][:200]}"
    headers = {h["key"]: h["value"] for h in options["headers"]} | {"Authorization": f"Bearer {run.token}"}
    r = httpx.post(run.platform.url + target["url"], data=form, headers=headers, timeout=30)
    assert r.status_code == 200, r.text

    def select(node: Any, path: str) -> Any:
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return node

    rows = select(r.json(), target["root_selector"])
    assert isinstance(rows, list), f"root selector {target['root_selector']} selects no list"
    table = [{c["text"]: select(row, c["selector"]) for c in target["columns"]} for row in rows]
    for row in table:  # the column types Infinity will parse the values as
        for c in target["columns"]:
            value = row[c["text"]]
            if value is not None and c["type"] == "number":
                float(value)
            elif value is not None and c["type"] == "timestamp":
                datetime.fromisoformat(value)
    return table


def train_values(run: Run, board: dict[str, Any]) -> list[str]:
    """The ``train`` variable's values (its own query, newest train first)."""
    variable = next(v for v in board["templating"]["list"] if v["name"] == "train")
    rows = run_sparql(run, variable["query"]["infinityQuery"], {})
    assert rows, "the train variable's query returned nothing"
    return [str(r["__value"]) for r in rows]


@pytest.mark.real_component("docker", "prometheus")
def test_every_panel_query_returns_data(run: Run) -> None:
    all_boards = boards()
    queries = panel_queries(all_boards)
    assert {q.kind for q in queries} == {"prometheus", "yesoreyeram-infinity-datasource"}
    empty: list[str] = []
    for q in queries:
        where = f"{q.board} / {q.panel}"
        if q.kind == "prometheus":
            if not samples(run_promql(run, q.target)):
                empty.append(f"{where}: {q.target['expr']}")
            continue
        uses_train = "${train}" in json.dumps(q.target)
        values = train_values(run, all_boards[q.board]) if uses_train else [""]
        assert len(values) == (len(run.trains) if uses_train else 1)
        rows: list[dict[str, Any]] = []
        for value in values:  # whichever train is selected, the panel shows something
            found = run_sparql(run, q.target, {"train": value})
            if not found:
                empty.append(f"{where} (train {value}): no rows")
            rows += found
        blank = [c["text"] for c in q.target["columns"] if all(r[c["text"]] is None for r in rows)]
        if blank:
            empty.append(f"{where}: columns never filled: {blank}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def panel(board: str, title_start: str) -> dict[str, Any]:
    return next(p for p in boards()[board]["panels"] if p["title"].startswith(title_start))


@pytest.mark.real_component("docker", "prometheus")
def test_the_panels_show_what_happened(run: Run) -> None:
    """Not just something: the right things (read through the panels' own queries)."""
    by_state = {r["metric"]["state"]: float(r["value"][1])
                for r in run_promql(run, panel("train-progress", "Trains by state")["targets"][0])}
    assert (by_state["finished"], by_state["rejected"], by_state["failed"]) == (3, 1, 1)

    failures = run_sparql(run, panel("train-progress", "Failures and rejections")["targets"][0], {})
    assert {(r["Station"], r["Reason"]) for r in failures if r["Station"]} >= {("cologne", REJECTION)}
    assert any(r["Train"] == run.trains["forged"] and "0000000000" in (r["Reason"] or "") for r in failures)

    where = run_sparql(run, panel("train-progress", "Where each train is")["targets"][0], {})
    rejected = [(r["Station"], r["Execution state"]) for r in where if r["Train"] == run.trains["unreviewed-count"]]
    assert rejected == [("cologne", "rejected")]
    assert {r["Train"] for r in where} == set(run.trains.values())

    iri = next(v for v in train_values(run, boards()["train-progress"]) if v.endswith(run.trains["unreviewed-count"]))
    timeline = run_sparql(run, panel("train-progress", "Timeline of train")["targets"][0], {"train": iri})
    assert [r["State"] for r in timeline if r["lane"] == "cologne (round 1)"] == ["waiting-for-approval", "rejected"]
    assert [r["State"] for r in timeline if r["lane"] == "train"] == ["submitted", "queued", "running", "rejected"]

    waits = run_sparql(run, panel("station-load", "Waiting and running times")["targets"][0], {"train": iri})
    assert [r["Station"] for r in waits] == ["cologne"] and float(waits[0]["Admin decision"]) > 0

    busy = [r for r in run_promql(run, panel("station-load", "CPU per execution")["targets"][0])
            if r["metric"]["execution"].startswith(run.trains["busy"] + ".")]
    assert busy and busy[0]["metric"]["station"] == "aachen" and max(samples(busy)) > 10, busy

    steps = run_promql(run, panel("platform-health", "Lifecycle steps per second")["targets"][0])
    assert {r["metric"]["kind"] for r in steps} == {"train", "execution"} and max(samples(steps)) > 0

    graphs = {r["metric"]["graph"] for r in run_promql(run, panel("platform-health", "Graph size")["targets"][0])}
    assert {f"https://w3id.org/pht-kg/graph/{g}" for g in ("central", "ontology", "shapes")} <= graphs

    up = {r["metric"]["job"]: float(r["value"][1])
          for r in run_promql(run, panel("platform-health", "Scrape targets up")["targets"][0])}
    assert up == {"pht-central": 1, "pht-mpu": 4}


@pytest.mark.real_component("docker", "prometheus")
def test_another_viewer_sees_none_of_the_trains_through_the_sparql_panels(run: Run) -> None:
    """Bob opens the same dashboards: the SPARQL panels, run with his forwarded token, show no train of Alice's
    (before, one shared researcher token read every graph, so every viewer saw every train)."""
    from orchestrator.principal import Role

    bob = dataclasses.replace(run, token=run.platform.token("bob", Role.RESEARCHER))
    all_boards = boards()
    shown: list[str] = []
    for q in panel_queries(all_boards):
        if q.kind == "prometheus":
            continue
        values = [""]
        if "${train}" in json.dumps(q.target):
            variable = next(v for v in all_boards[q.board]["templating"]["list"] if v["name"] == "train")
            assert run_sparql(bob, variable["query"]["infinityQuery"], {}) == []  # no train to pick
            values = train_values(run, all_boards[q.board])  # even Alice's values typed in by hand
        for value in values:
            text = json.dumps(run_sparql(bob, q.target, {"train": value}))
            shown += [f"{q.board} / {q.panel}: {tid}" for tid in run.trains.values() if tid in text]
    assert not shown, "Bob's panels show Alice's trains:\n" + "\n".join(shown)
