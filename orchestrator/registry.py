"""Registering stations, datasets and train definitions: each one validated write of the central graph.

Input arrives as plain data (the REST layer's JSON models); here it becomes triples of the project
vocabulary, and the shapes decide whether it is acceptable (a refused write carries the SHACL report).
Rules the shapes cannot express are checked here: a federated definition names an aggregator station;
identifiers are not reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyoxigraph import Literal, NamedNode, Quad

from graph_store import CENTRAL_GRAPH, PHT, ChangeSet, GraphStore

from .lifecycle import Forbidden, Iris, LifecycleError
from .principal import Principal, Role

__all__ = ["Registry", "StationSpec", "DatasetSpec", "DefinitionSpec", "ParameterSpec", "AlreadyExists"]

G = CENTRAL_GRAPH
RDF_TYPE = NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
DCT = "http://purl.org/dc/terms/"
PROV = "http://www.w3.org/ns/prov#"
XSD = "http://www.w3.org/2001/XMLSchema#"
RUNTIMES = {"docker": PHT.DockerRuntime, "podman": PHT.PodmanRuntime, "kubernetes": PHT.KubernetesRuntime,
            "process": PHT.ProcessRuntime}
DATATYPES = {"integer", "decimal", "string", "boolean", "double", "dateTime", "anyURI"}


class AlreadyExists(LifecycleError):
    status = 409


@dataclass(frozen=True)
class StationSpec:
    id: str
    title: str
    owner: str
    public_keys: Sequence[str]
    runtimes: Sequence[str] = ("docker",)


@dataclass(frozen=True)
class DatasetSpec:
    id: str
    title: str
    station: str


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    datatype: str = "string"
    required: bool = False
    default: str | None = None


@dataclass(frozen=True)
class DefinitionSpec:
    id: str
    title: str
    image_name: str
    image_digest: str
    mode: str
    route: Sequence[str]
    rounds: int = 1
    entrypoint: str | None = None
    aggregator: str | None = None
    parameters: Sequence[ParameterSpec] = field(default_factory=tuple)


def _lit(value: str | int | bool, dt: str | None = None) -> Literal:
    if dt is not None:
        return Literal(str(value).lower() if isinstance(value, bool) else str(value), datatype=NamedNode(XSD + dt))
    return Literal(str(value))


class Registry:
    """Writes registrations; reads go through the named queries."""

    def __init__(self, store: GraphStore, iris: Iris) -> None:
        self.store = store
        self.iris = iris

    def _new(self, iri: NamedNode, what: str, ident: str) -> None:
        if self.store.quads(iri, RDF_TYPE, None, G):
            raise AlreadyExists(f"{what} {ident!r} already exists")

    def station(self, principal: Principal, spec: StationSpec) -> NamedNode:
        """Register a station (operators only)."""
        if not principal.has(Role.OPERATOR):
            raise Forbidden("only operators register stations")
        s = self.iris.station(spec.id)
        self._new(s, "station", spec.id)
        owner = self.iris.agent(f"org-{spec.id}")
        unknown = sorted(set(spec.runtimes) - set(RUNTIMES))
        if unknown:
            raise LifecycleError(f"unknown runtime(s) {', '.join(unknown)}; use {', '.join(sorted(RUNTIMES))}")
        quads = [Quad(s, RDF_TYPE, PHT.Station, G), Quad(s, NamedNode(DCT + "identifier"), _lit(spec.id), G),
                 Quad(s, NamedNode(DCT + "title"), _lit(spec.title), G), Quad(s, PHT.ownedBy, owner, G),
                 Quad(owner, RDF_TYPE, NamedNode("http://www.w3.org/ns/org#Organization"), G),
                 Quad(owner, NamedNode("http://www.w3.org/2000/01/rdf-schema#label"), _lit(spec.owner), G)]
        quads += [Quad(s, PHT.publicKey, _lit(k), G) for k in spec.public_keys]
        quads += [Quad(s, PHT.runtime, RUNTIMES[r], G) for r in spec.runtimes]
        self.store.apply(ChangeSet(insert=quads))
        return s

    def dataset(self, principal: Principal, spec: DatasetSpec) -> NamedNode:
        """Register a dataset held by a station (operators, or that station's admin)."""
        station_admin = principal.has(Role.STATION_ADMIN) and principal.station == spec.station
        if not (principal.has(Role.OPERATOR) or station_admin):
            raise Forbidden("only operators or the station's admin register its datasets")
        d = self.iris.dataset(spec.id)
        self._new(d, "dataset", spec.id)
        quads = [Quad(d, RDF_TYPE, NamedNode("http://www.w3.org/ns/dcat#Dataset"), G),
                 Quad(d, NamedNode(DCT + "identifier"), _lit(spec.id), G),
                 Quad(d, NamedNode(DCT + "title"), _lit(spec.title), G),
                 Quad(d, PHT.heldBy, self.iris.station(spec.station), G)]
        self.store.apply(ChangeSet(insert=quads))
        return d

    def definition(self, principal: Principal, spec: DefinitionSpec) -> NamedNode:
        """Register a train definition (researchers and operators)."""
        if not principal.has(Role.RESEARCHER, Role.OPERATOR):
            raise Forbidden("only researchers and operators register train definitions")
        d = self.iris.definition(spec.id)
        self._new(d, "train definition", spec.id)
        if spec.mode not in ("incremental", "federated"):
            raise LifecycleError(f"mode must be 'incremental' or 'federated', not {spec.mode!r}")
        if spec.mode == "federated" and not spec.aggregator:
            raise LifecycleError("a federated train definition needs an aggregator station")
        if not spec.route:
            raise LifecycleError("the route needs at least one station")
        if len(set(spec.route)) != len(spec.route) and spec.mode == "federated":
            raise LifecycleError("a federated route lists each station once")
        names = [p.name for p in spec.parameters]
        if len(set(names)) != len(names):
            raise LifecycleError("parameter names must be unique")
        bad = sorted({p.datatype for p in spec.parameters} - DATATYPES)
        if bad:
            raise LifecycleError(f"unknown parameter datatype(s) {', '.join(bad)}; use {', '.join(sorted(DATATYPES))}")
        quads = [Quad(d, RDF_TYPE, PHT.TrainDefinition, G), Quad(d, NamedNode(DCT + "identifier"), _lit(spec.id), G),
                 Quad(d, NamedNode(DCT + "title"), _lit(spec.title), G),
                 Quad(d, NamedNode(DCT + "created"),
                      _lit(datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"), "dateTime"), G),
                 Quad(d, NamedNode(PROV + "wasAttributedTo"), self.iris.agent(principal.subject), G),
                 Quad(d, PHT.imageName, _lit(spec.image_name), G), Quad(d, PHT.imageDigest, _lit(spec.image_digest), G),
                 Quad(d, PHT.mode, PHT.Incremental if spec.mode == "incremental" else PHT.Federated, G),
                 Quad(d, PHT.rounds, _lit(spec.rounds, "integer"), G)]
        if spec.aggregator and not self.store.quads(self.iris.station(spec.aggregator), RDF_TYPE, PHT.Station, G):
            raise LifecycleError(f"the aggregator {spec.aggregator!r} is not a registered station")
        if spec.entrypoint:
            quads.append(Quad(d, PHT.entrypoint, _lit(spec.entrypoint), G))
        if spec.aggregator:
            quads.append(Quad(d, PHT.aggregator, self.iris.station(spec.aggregator), G))
        for i, sid in enumerate(spec.route):
            stop = NamedNode(f"{d.value}/stops/{i}")
            quads += [Quad(d, PHT.routeStop, stop, G), Quad(stop, RDF_TYPE, PHT.RouteStop, G),
                      Quad(stop, PHT.stopIndex, _lit(i, "integer"), G),
                      Quad(stop, PHT.station, self.iris.station(sid), G)]
        for p in spec.parameters:
            pi = NamedNode(f"{d.value}/parameters/{p.name}")
            quads += [Quad(d, PHT.parameter, pi, G), Quad(pi, RDF_TYPE, PHT.Parameter, G),
                      Quad(pi, PHT.parameterName, _lit(p.name), G),
                      Quad(pi, PHT.datatype, NamedNode(XSD + p.datatype), G),
                      Quad(pi, PHT.required, _lit(p.required, "boolean"), G)]
            if p.default is not None:
                quads.append(Quad(pi, PHT.defaultValue, _lit(p.default, p.datatype), G))
        self.store.apply(ChangeSet(insert=quads))
        return d
