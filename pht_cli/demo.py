"""``pht demo``: the whole platform on this machine, end to end, on the embedded default.

The central service (embedded Oxigraph store, HTTP on 127.0.0.1), three hospital stations and an
aggregator station (each its own agent), a local object store, and Docker when an engine and the base
image are there (else local processes, with a warning). It splits the Wisconsin breast cancer data across
the stations, runs an incremental cohort count, an incremental mean/variance and a federated logistic
regression, shows their progress, prints the results next to the pooled (central) computation, answers
two provenance queries, and removes everything it created unless ``--keep DIR`` is given.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from graph_store import REPO_ROOT, tune_garbage_collection
from local_platform import LocalPlatform, StationSpec, detect_runtime, read_pooled, split_breast_cancer
from orchestrator import Role
from station import DEFAULT_PATH, ProcessRuntime, default_unisolated_path

from .train_commands import fetch_result, print_sparql_json, watch_trains

HOSPITALS = ("aachen", "leipzig", "cologne")
COUNT = {"COLUMN": "mean_radius", "OP": "gt", "VALUE": "15", "MIN_CELL": "5"}
COLUMNS = ("mean_radius", "mean_texture", "worst_area")
FEDAVG = {"TARGET": "benign", "LOCAL_EPOCHS": "20", "LEARNING_RATE": "0.5"}
FEDAVG_ROUNDS = 6
FEDERATED = "logistic regression (federated)"


def run(console: Console, *, keep: Path | None = None, serve: bool = False, runtime: str | None = None) -> None:
    """Run the demo; raises on failure (the CLI turns that into one sentence and exit code 1).
    ``runtime``: ``docker`` or ``process``; by default Docker when usable, else processes with a warning."""
    started = time.monotonic()
    why = None
    if runtime is None:
        runtime, why = detect_runtime()
    if why:
        console.print(f"[yellow]warning:[/yellow] {why}.", highlight=False)
    if runtime == "process":
        if ProcessRuntime.can_isolate():
            console.print("Trains run as local processes sandboxed by bubblewrap (no network, read-only system, "
                          "uid 10001).", highlight=False)
        # else the process runtime itself says, once, that nothing isolates them and what to install
    workdir = keep if keep is not None else Path(tempfile.mkdtemp(prefix="pht-demo-"))
    if keep is not None and keep.exists():
        shutil.rmtree(keep)
    try:
        folders = split_breast_cancer(workdir / "data", HOSPITALS)
        aggregator = workdir / "data" / "aggregator"  # holds no patients: it only combines station outputs
        aggregator.mkdir()
        _readable_by_trains(workdir)
        specs = [StationSpec(s, folders[s]) for s in HOSPITALS] + [StationSpec("aggregator", aggregator)]
        console.print(f"Breast cancer data (scikit-learn, 569 patients) split across {', '.join(HOSPITALS)}; "
                      f"runtime: {runtime}.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the process runtime logs its isolation warning instead
            platform = LocalPlatform(workdir / "platform", specs, runtime=runtime)
            platform.start()
            tune_garbage_collection()  # as the services' own entry points do
        try:
            _run_trains(console, platform)
            _where(console, platform, serve)
            if serve:
                console.print("Serving until Ctrl-C ...")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
        finally:
            platform.stop()
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
            console.print("Demo files removed.")
        else:
            console.print(f"Demo files kept in {keep} (store in {keep / 'platform' / 'store'}).")
    console.print(f"Demo finished in {time.monotonic() - started:.1f} s.")


def _readable_by_trains(workdir: Path) -> None:
    """Let the trains read the demo's (public) data: without bubblewrap or Docker they run unisolated as uid 10001
    and read each station's folder at its host path, inside a folder ``tempfile.mkdtemp`` made for root alone."""
    workdir.chmod(0o755)
    for folder, _, files in os.walk(workdir / "data"):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def _run_trains(console: Console, platform: LocalPlatform) -> None:
    alice = platform.client("alice", Role.RESEARCHER)
    images = {name: platform.build_image(REPO_ROOT / "trains" / name, f"pht-trains/{name}:demo")
              for name in ("cohort-count", "mean-variance", "fedavg-logreg")}
    route = list(HOSPITALS)
    for did, image, params, extra in (
            ("cohort-count", images["cohort-count"], list(COUNT), {"mode": "incremental"}),
            ("mean-variance", images["mean-variance"], ["COLUMNS"], {"mode": "incremental"}),
            ("fedavg", images["fedavg-logreg"], list(FEDAVG),
             {"mode": "federated", "rounds": FEDAVG_ROUNDS, "aggregator": "aggregator"})):
        alice.register_definition({"id": did, "title": did, "image_name": image.name, "image_digest": image.digest,
                                   "route": route, "parameters": [{"name": p} for p in params], **extra})
    trains = {"cohort count (incremental)": alice.submit("cohort-count", COUNT),
              "mean/variance (incremental)": alice.submit("mean-variance", {"COLUMNS": ",".join(COLUMNS)})}
    if platform.runtime != "process" or _train_python_has_numpy():
        trains[FEDERATED] = alice.submit("fedavg", FEDAVG)
    else:
        console.print("[yellow]warning:[/yellow] the federated train needs numpy, and the system python3 that "
                      "bubblewrap's sandbox offers has none (apt-get install python3-numpy); running the two "
                      "incremental trains only.", highlight=False)
    final = watch_trains(alice, trains, console, timeout_s=300, interval_s=0.2)
    x, y, names = read_pooled([platform.stations[i].dataset for i in range(len(HOSPITALS))])
    table = Table("train", "through the platform", "pooled, computed centrally", title="Results")
    out = platform.workdir / "results"
    for label, tid in trains.items():
        train = final[tid]
        if train["state"] != "finished":
            why = [e["reason"] for e in alice.events(tid) if e["to_state"] == train["state"] and e["reason"]]
            table.add_row(label, f"[red]{train['state']}[/red]: {why[0] if why else 'no reason recorded'}", "")
            continue
        folder = out / tid
        shutil.rmtree(folder, ignore_errors=True)
        fetch_result(alice, tid, folder)  # as a researcher does: through the link the service hands its requester
        for mine, pooled in _compare(label, folder, x, y, names):
            table.add_row(label, mine, pooled)
    console.print(table)
    tid = trains["cohort count (incremental)"]
    console.print(f"\nProvenance query [bold]train_history[/bold] for the cohort count train {tid} (graph: where "
                  "the state change was recorded: central, by the lifecycle; a station's name, by its MPU):")
    history = alice.named_query("train_history", train=_iri(alice, tid))
    print_sparql_json(history, console, columns=("time", "graph", "stationId", "round", "to", "reason"),
                      only_with="to")
    which = FEDERATED if FEDERATED in trains else "cohort count (incremental)"
    console.print(f"\nProvenance query [bold]station_durations[/bold] for the {which} train (seconds):")
    durations = alice.named_query("station_durations", train=_iri(alice, trains[which]))
    print_sparql_json(durations, console,
                      columns=("stationId", "round", "waitingSeconds", "runningSeconds", "totalSeconds"))
    failed = [label for label, tid in trains.items() if final[tid]["state"] != "finished"]
    if failed:
        raise RuntimeError(f"the demo trains did not all finish: {', '.join(failed)}")


def _train_python_has_numpy() -> bool:
    """Whether the python3 process-runtime trains run with has numpy: unisolated, this station's own Python
    (numpy is a dependency of the station software); under bubblewrap, the system's on its default PATH."""
    path = DEFAULT_PATH if ProcessRuntime.can_isolate() else default_unisolated_path()
    python = shutil.which("python3", path=path)
    return python is not None and subprocess.run([python, "-c", "import numpy"], capture_output=True).returncode == 0


def _iri(client: Any, tid: str) -> Any:
    from pyoxigraph import NamedNode
    return NamedNode(client.train(tid)["iri"])


def _compare(label: str, folder: Path, x: np.ndarray, y: np.ndarray, names: list[str]) -> list[tuple[str, str]]:
    if label.startswith("cohort"):
        got = json.loads((folder / "result.json").read_text())
        expected = int((x[:, names.index(COUNT["COLUMN"])] > float(COUNT["VALUE"])).sum())
        return [(f"{got['count']} patients with {COUNT['COLUMN']} > {COUNT['VALUE']}", f"{expected}")]
    if label.startswith("mean"):
        got = json.loads((folder / "result.json").read_text())["columns"]
        rows = []
        for c in COLUMNS:
            col = x[:, names.index(c)]
            rows.append((f"{c}: mean {got[c]['mean']:.6f}, variance {got[c]['variance']:.6f}",
                         f"mean {col.mean():.6f}, variance {col.var():.6f}"))
        return rows
    model = json.loads((folder / "model.json").read_text())
    z = (x - np.array(model["mean"])) / np.array(model["std"])
    accuracy = float((((z @ np.array(model["weights"]) + model["bias"]) > 0).astype(int) == y).mean())
    return [(f"accuracy {accuracy:.3f} after {model['round']} rounds", f"accuracy {_central_accuracy(x, y):.3f} "
             "(scikit-learn LogisticRegression)")]


def _central_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    z = StandardScaler().fit_transform(x)
    return float(LogisticRegression(max_iter=5000).fit(z, y).score(z, y))


def _where(console: Console, platform: LocalPlatform, serve: bool) -> None:
    tense = "is" if serve else "was (while the demo ran)"
    console.print(f"\nThe SPARQL endpoint {tense} {platform.url}/sparql, the web pages {platform.url}/ui, "
                  f"the metrics {platform.url}/metrics (with an operator's token: PHT_DEMO=1 pht token issue "
                  f"--sub ops --role operator), the API documentation {platform.url}/docs."
                  + ("" if serve else " Run `pht demo --serve` to keep them up, or `pht serve` for a service of "
                                      "your own."))


__all__ = ["run"]
