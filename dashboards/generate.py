"""Build the Grafana dashboards of dashboards/grafana/dashboards/ with grafana-foundation-sdk.

Why generated: the SDK's builders and models are generated from Grafana's own dashboard schema (the
``grafana-foundation-sdk`` build for Grafana 11.6, schemaVersion 41), so every panel, option and field here is
one that schema has; and the SPARQL a panel runs is read from ``sparql_queries/NAME.rq`` with its parameters
bound by ``graph_store.bind``, so the dashboards cannot drift from the named queries. The JSON files are
committed (Grafana mounts them as they are); ``tests/test_dashboards.py`` regenerates them and fails if they
differ, round-trips them through the SDK's schema models, and runs every panel's query for real.

    python dashboards/generate.py            # rewrite the JSON files
    python dashboards/generate.py --check    # exit 1 if a committed file is not what this script makes

Data sources (provisioned by ``grafana/provisioning/datasources/pht.yml`` with these uids): Prometheus
(``pht-prometheus``) for the metrics, and the Infinity plugin (``pht-sparql``) for the central service's
``/sparql``: each SPARQL target is a form POST ``query=...`` with ``Accept: application/sparql-results+json``,
its rows read from ``results.bindings`` and each column from ``<variable>.value``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import dashboard as dm
from pyoxigraph import Literal, NamedNode

from graph_store import NO_FILTER, bind, named_query
from orchestrator.page_tokens import REJECTIONS_FIRST

__all__ = ["DASHBOARDS", "OUT", "build_all", "render", "write"]

OUT = Path(__file__).resolve().parent / "grafana" / "dashboards"
PROMETHEUS = dm.DataSourceRef(type_val="prometheus", uid="pht-prometheus")
SPARQL = dm.DataSourceRef(type_val="yesoreyeram-infinity-datasource", uid="pht-sparql")
TRAIN_VARIABLE = "train"  #: the dashboards' variable holding the selected train's IRI


@dataclass(frozen=True)
class GrafanaVariable:
    """A query parameter bound to a dashboard variable whose value is an IRI: ``<${name}>`` in the query."""

    name: str


def sparql(query: str, **parameters: NamedNode | Literal | GrafanaVariable) -> str:
    """The text of ``sparql_queries/QUERY.rq`` as a panel sends it: the leading documentation replaced by one
    line naming the file, each ``$parameter`` bound to a fixed term or to a Grafana variable (bound first to a
    placeholder IRI by ``graph_store.bind``, so only real parameter tokens are replaced)."""
    named = named_query(query)
    placeholders = {p: NamedNode(f"urn:pht:dashboard-parameter:{p}") for p in named.parameters}
    text = bind(named.text, placeholders)
    for p, value in parameters.items():
        term = "<${" + value.name + "}>" if isinstance(value, GrafanaVariable) else str(value)
        text = text.replace(str(placeholders[p]), term)
    lines = text.splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "\n".join([f"# sparql_queries/{query}.rq", *lines])


def sparql_target(query: str, columns: list[tuple[str, str, str]], *, ref_id: str = "A",
                  **parameters: NamedNode | Literal | GrafanaVariable) -> UnknownDataquery:
    """An Infinity target POSTing one named query; ``columns`` are (SPARQL variable, title, Infinity type).
    The SDK has no model of the Infinity plugin's query, so it is kept as an untyped data query."""
    return UnknownDataquery({
        "refId": ref_id,
        "datasource": SPARQL.to_json(),
        "type": "json",
        "source": "url",
        "parser": "backend",
        "format": "table",
        "url": "/sparql",
        "url_options": {
            "method": "POST",
            "body_type": "x-www-form-urlencoded",
            "body_form": [{"key": "query", "value": sparql(query, **parameters)}],
            "headers": [{"key": "Accept", "value": "application/sparql-results+json"}],
            "params": [],
        },
        "root_selector": "results.bindings",
        "columns": [{"selector": f"{var}.value", "text": title, "type": kind} for var, title, kind in columns],
        "filters": [],
    })


class Target(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder wrapper for a ready data query (the panel builders take builders)."""

    def __init__(self, query: cogvariants.Dataquery) -> None:
        self._query = query

    def build(self) -> cogvariants.Dataquery:
        return self._query


def promql(expr: str, legend: str = "", *, instant: bool = False, ref_id: str = "A") -> prometheus.Dataquery:
    """A Prometheus target: a range query (time series) unless ``instant`` (stat and bar gauge panels)."""
    query = prometheus.Dataquery().expr(expr).ref_id(ref_id).datasource(PROMETHEUS).legend_format(legend or "__auto")
    return query.instant() if instant else query.range()


def train_variable() -> db.QueryVariable:
    """``$train``: the IRIs of the newest 500 trains, newest first (``list_trains.rq``); Grafana selects the
    first."""
    target = sparql_target("list_trains", [("id", "__text", "string"), ("train", "__value", "string")],
                           ref_id="variable").to_json()
    return (db.QueryVariable(TRAIN_VARIABLE).label("Train").datasource(SPARQL)
            .query({"queryType": "infinity", "refId": "variable", "infinityQuery": target})
            .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD).sort(dm.VariableSort.DISABLED).allow_custom_value(False))


def _base(uid: str, title: str, description: str) -> db.Dashboard:
    return (db.Dashboard(title).uid(uid).description(description).tags(["pht"]).refresh("10s")
            .time("now-6h", "now").timezone("browser").editable())


def train_progress() -> db.Dashboard:
    """Trains by state, where each train is, one train's timeline and events, failures and rejections."""
    return (
        _base("pht-train-progress", "PHT: train progress",
              "Trains by state (Prometheus), where each train is and what happened to it (the knowledge graph).")
        .with_variable(train_variable())
        .with_panel(bargauge.Panel().title("Trains by state").datasource(PROMETHEUS).span(12).height(8)
                    .description("pht_trains: every train in the graph by lifecycle state").min(0)
                    .with_target(promql("sum by (state) (pht_trains)", "{{state}}", instant=True)))
        .with_panel(timeseries.Panel().title("Active trains").datasource(PROMETHEUS).span(12).height(8)
                    .description("Trains not yet in a final state, by state").min(0)
                    .with_target(promql('sum by (state) (pht_trains{state=~"submitted|queued|running|aggregating"})',
                                        "{{state}}")))
        .with_panel(table.Panel().title("Where each train is").datasource(SPARQL).span(24).height(9)
                    .description("Trains in flight and the 100 newest: each one's active executions, or where it "
                                 "was last (train_positions.rq)")
                    .with_target(Target(sparql_target("train_positions", [
                        ("trainId", "Train", "string"), ("definitionId", "Definition", "string"),
                        ("trainState", "Train state", "string"), ("stationId", "Station", "string"),
                        ("executionState", "Execution state", "string"), ("round", "Round", "number"),
                        ("since", "Since", "timestamp")]))))
        .with_panel(statetimeline.Panel().title("Timeline of train ${train:text}").datasource(SPARQL).span(24).height(9)
                    .description("States of the selected train and of its executions per station and round "
                                 "(train_timeline.rq)")
                    .with_transformation(dm.DataTransformerConfig(id_val="partitionByValues",
                                                                  options={"fields": ["lane"]}))
                    .with_target(Target(sparql_target("train_timeline", [
                        ("time", "Time", "timestamp"), ("lane", "lane", "string"), ("state", "State", "string")],
                        train=GrafanaVariable(TRAIN_VARIABLE)))))
        .with_panel(table.Panel().title("Events of train ${train:text}").datasource(SPARQL).span(24).height(10)
                    .description("Every event about the train in any graph, station events included "
                                 "(train_history.rq)")
                    .with_target(Target(sparql_target("train_history", [
                        ("time", "Time", "timestamp"), ("type", "Event", "string"), ("stationId", "Station", "string"),
                        ("round", "Round", "number"), ("to", "To state", "string"), ("agent", "By", "string"),
                        ("reason", "Reason", "string")], train=GrafanaVariable(TRAIN_VARIABLE)))))
        .with_panel(table.Panel().title("Failures and rejections").datasource(SPARQL).span(24).height(9)
                    .description("Rejected, withheld and failed executions and trains with the reason, newest first "
                                 "(rejections.rq)")
                    .with_target(Target(sparql_target("rejections", [
                        ("time", "Time", "timestamp"), ("trainId", "Train", "string"),
                        ("stationId", "Station", "string"), ("round", "Round", "number"),
                        ("state", "Outcome", "string"), ("reason", "Reason", "string"), ("agent", "By", "string")],
                        onlyRequester=NO_FILTER, **REJECTIONS_FIRST))))
    )


def station_load() -> db.Dashboard:
    """Per station: executions, running containers and their usage, run and waiting times, the MPU outbox."""
    return (
        _base("pht-station-load", "PHT: station load",
              "What the stations do (their MPUs' metrics) and how long trains wait and run there (the graph).")
        .with_variable(train_variable())
        .with_panel(bargauge.Panel().title("Executions per station by last state").datasource(PROMETHEUS)
                    .span(12).height(9).min(0)
                    .description("pht_station_executions: executions each station reported, by their last state")
                    .with_target(promql("sum by (station, state) (pht_station_executions)", "{{station}} {{state}}",
                                        instant=True)))
        .with_panel(timeseries.Panel().title("Running train containers").datasource(PROMETHEUS).span(12).height(9)
                    .min(0).with_target(promql("sum by (station) (pht_station_running_train_containers)",
                                               "{{station}}")))
        .with_panel(timeseries.Panel().title("CPU per execution").datasource(PROMETHEUS).unit("percent")
                    .span(8).height(8).min(0)
                    .description("Percent of one core, sampled while the train container runs")
                    .with_target(promql("max by (station, execution) (pht_station_train_cpu_percent)",
                                        "{{station}} {{execution}}")))
        .with_panel(timeseries.Panel().title("Memory per execution").datasource(PROMETHEUS).unit("bytes")
                    .span(8).height(8).min(0)
                    .with_target(promql("max by (station, execution) (pht_station_train_memory_bytes)",
                                        "{{station}} {{execution}}")))
        .with_panel(timeseries.Panel().title("Network per execution").datasource(PROMETHEUS).unit("Bps")
                    .span(8).height(8).min(0)
                    .description("Trains run without a network: anything but 0 deserves a look")
                    .with_target(promql(
                        "max by (station, execution, direction) (pht_station_train_network_bytes_per_second)",
                        "{{station}} {{execution}} {{direction}}")))
        .with_panel(stat.Panel().title("Mean train run time").datasource(PROMETHEUS).unit("s").span(8).height(6)
                    .with_target(promql("sum by (station) (pht_station_train_run_duration_seconds_sum) / "
                                        "sum by (station) (pht_station_train_run_duration_seconds_count)",
                                        "{{station}}", instant=True)))
        .with_panel(timeseries.Panel().title("MPU outbox depth").datasource(PROMETHEUS).span(8).height(6).min(0)
                    .description("Events waiting for delivery to the central graph")
                    .with_target(promql("max by (station) (pht_mpu_outbox_depth)", "{{station}}")))
        .with_panel(timeseries.Panel().title("Oldest event in the outbox").datasource(PROMETHEUS).unit("s")
                    .span(8).height(6).min(0)
                    .with_target(promql("max by (station) (pht_mpu_outbox_oldest_age_seconds)", "{{station}}")))
        .with_panel(table.Panel().title("Waiting and running times of train ${train:text}").datasource(SPARQL)
                    .span(16).height(8).unit("s")
                    .description("Per execution: waiting before approval (queued to approved), the admin's decision, "
                                 "running, output review, the whole stay (station_durations.rq)")
                    .with_target(Target(sparql_target("station_durations", [
                        ("stationId", "Station", "string"), ("round", "Round", "number"),
                        ("waitingSeconds", "Waiting before approval", "number"),
                        ("decisionSeconds", "Admin decision", "number"), ("runningSeconds", "Running", "number"),
                        ("reviewSeconds", "Output review", "number"), ("totalSeconds", "Total", "number")],
                        train=GrafanaVariable(TRAIN_VARIABLE)))))
        .with_panel(stat.Panel().title("Metadata events received").datasource(PROMETHEUS).span(8).height(8)
                    .description("Events the central service wrote to each station's graph")
                    .with_target(promql("sum by (station) (pht_metadata_events_total)", "{{station}}",
                                        instant=True)))
    )


def platform_health() -> db.Dashboard:
    """The central service's latency and load, the lifecycle's pace, the graph's size, scrape and push health."""
    return (
        _base("pht-platform-health", "PHT: platform health",
              "API latency and traffic, lifecycle steps, the graph's size, and whether everything answers.")
        .with_panel(timeseries.Panel().title("API latency p95 by route").datasource(PROMETHEUS).unit("s")
                    .span(12).height(8).min(0)
                    .with_target(promql("histogram_quantile(0.95, sum by (le, route) "
                                        "(rate(pht_http_request_duration_seconds_bucket[$__rate_interval])))",
                                        "{{route}}")))
        .with_panel(timeseries.Panel().title("API requests per second by status").datasource(PROMETHEUS)
                    .unit("reqps").span(12).height(8).min(0)
                    .with_target(promql("sum by (status) (rate(pht_http_request_duration_seconds_count"
                                        "[$__rate_interval]))", "{{status}}")))
        .with_panel(timeseries.Panel().title("Lifecycle steps per second").datasource(PROMETHEUS).span(12).height(8)
                    .min(0).with_target(promql("sum by (kind) (rate(pht_lifecycle_steps_total[$__rate_interval]))",
                                               "{{kind}}")))
        .with_panel(timeseries.Panel().title("Graph size").datasource(PROMETHEUS).unit("short").span(12).height(8)
                    .min(0).description("Triples per named graph (pht_store_triples, re-counted every 30 s)")
                    .with_target(promql("sum by (graph) (pht_store_triples)", "{{graph}}")))
        .with_panel(stat.Panel().title("Graph store answers").datasource(PROMETHEUS).span(6).height(6)
                    .description("pht_store_up: 1 if the store answered the last scrape's queries")
                    .with_target(promql("min(pht_store_up)", "store", instant=True)))
        .with_panel(stat.Panel().title("Scrape targets up").datasource(PROMETHEUS).span(6).height(6)
                    .with_target(promql('sum by (job) (up{job=~"pht-central|pht-mpu"})', "{{job}}", instant=True)))
        .with_panel(timeseries.Panel().title("MPU batches pushed per second").datasource(PROMETHEUS)
                    .span(12).height(6).min(0)
                    .with_target(promql("sum by (station, outcome) (rate(pht_mpu_pushes_total[$__rate_interval]))",
                                        "{{station}} {{outcome}}")))
    )


DASHBOARDS = {"train-progress": train_progress, "station-load": station_load, "platform-health": platform_health}


def render(board: db.Dashboard | dm.Dashboard) -> str:
    """The JSON text Grafana reads (sorted keys, two-space indent, final newline: stable diffs)."""
    model = board.build() if isinstance(board, db.Dashboard) else board
    for number, panel in enumerate(model.panels or [], start=1):  # Grafana wants unique panel ids
        if panel.id_val is None:
            panel.id_val = number
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build_all() -> dict[Path, str]:
    """File path -> JSON text of every dashboard."""
    return {OUT / f"{name}.json": render(make()) for name, make in DASHBOARDS.items()}


def write() -> list[Path]:
    """Write the files; returns those that changed."""
    OUT.mkdir(parents=True, exist_ok=True)
    changed = []
    for path, text in build_all().items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        stale = [str(p) for p, text in build_all().items() if not p.exists() or p.read_text() != text]
        print("stale: " + ", ".join(stale) if stale else "the dashboards are up to date")
        return 1 if stale else 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    for path in write():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
