"""Registering stations, datasets and train definitions: each one validated write of the central graph.

Input arrives as plain data (the REST layer's JSON models); here it becomes triples of the project
vocabulary, and the shapes decide whether it is acceptable (a refused write carries the SHACL report).
Rules the shapes cannot express are checked here: a federated definition names an aggregator station;
identifiers are not reused, and a train definition never changes (the same content again is accepted).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pyoxigraph import NamedNode, Quad

from client.input_shapes import InputShapesRefused, parse_input_shapes
from client.train_request import DataspaceInputSpec, DefinitionSpec, ParameterSpec, definition_triples, rdf_literal
from graph_store import CENTRAL_GRAPH, DCAT, DCTERMS, ORG, PHT, PROV, RDF_TYPE, RDFS, XSD, ChangeSet, GraphStore

from .errors import Forbidden, LifecycleError
from .key_registry import station_key_quads
from .keys import multikey_of
from .lifecycle import DefinitionWrite
from .list_positions import DEFINITIONS, position_quad
from .naming import Iris
from .principal import Principal, Role
from .signed_requests import definition_content

__all__ = ["Registry", "StationSpec", "DatasetSpec", "DataspaceInputSpec", "DefinitionSpec", "ParameterSpec",
           "AlreadyExists"]

G = CENTRAL_GRAPH
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
    public_keys: Sequence[str] = ()
    """Ed25519 (signing) and X25519 (encryption) public keys, each a Multikey or PEM; usually none: the station
    enrolls its keys with a one-time token (``orchestrator.key_registry``)."""
    runtimes: Sequence[str] = ("docker",)


@dataclass(frozen=True)
class DatasetSpec:
    id: str
    title: str
    station: str


class Registry:
    """Writes registrations; reads go through the named queries."""

    def __init__(self, store: GraphStore, iris: Iris) -> None:
        self.store = store
        self.iris = iris

    def _new(self, iri: NamedNode, what: str, ident: str) -> None:
        if self.store.quads(iri, RDF_TYPE, None, G):
            raise AlreadyExists(f"{what} {ident!r} already exists")

    def station(self, principal: Principal, spec: StationSpec) -> NamedNode:
        """Register a station (operators only), with the public keys the operator vouches for, if any."""
        if not principal.has(Role.OPERATOR):
            raise Forbidden("only operators register stations")
        s = self.iris.station(spec.id)
        self._new(s, "station", spec.id)
        owner = self.iris.agent(f"org-{spec.id}")
        unknown = sorted(set(spec.runtimes) - set(RUNTIMES))
        if unknown:
            raise LifecycleError(f"unknown runtime(s) {', '.join(unknown)}; use {', '.join(sorted(RUNTIMES))}")
        quads = [Quad(s, RDF_TYPE, PHT.Station, G), Quad(s, DCTERMS.identifier, rdf_literal(spec.id), G),
                 Quad(s, DCTERMS.title, rdf_literal(spec.title), G), Quad(s, PHT.ownedBy, owner, G),
                 Quad(owner, RDF_TYPE, ORG.Organization, G),
                 Quad(owner, RDFS.label, rdf_literal(spec.owner), G)]
        quads += station_key_quads(s, [multikey_of(k) for k in spec.public_keys])
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
        quads = [Quad(d, RDF_TYPE, DCAT.Dataset, G),
                 Quad(d, DCTERMS.identifier, rdf_literal(spec.id), G),
                 Quad(d, DCTERMS.title, rdf_literal(spec.title), G),
                 Quad(d, PHT.heldBy, self.iris.station(spec.station), G)]
        self.store.apply(ChangeSet(insert=quads))
        return d

    def definition(self, principal: Principal, spec: DefinitionSpec) -> DefinitionWrite:
        """Register a train definition (researchers and operators). Definitions are immutable: the same
        content again changes nothing (the result's ``insert`` is empty), other content under its id is refused."""
        prepared = self.prepare_definition(principal, spec)
        if prepared.insert:
            self.store.apply(ChangeSet(insert=prepared.insert))
        return prepared

    def prepare_definition(self, principal: Principal, spec: DefinitionSpec) -> DefinitionWrite:
        """Check a definition and make its quads without writing them, so that a train can be submitted with it
        in one change set (``Lifecycle.submit``). Refused with 409 if its id names a definition with other
        content, the message naming what differs; its ``insert`` is empty if the same one is registered."""
        if not principal.has(Role.RESEARCHER, Role.OPERATOR):
            raise Forbidden("only researchers and operators register train definitions")
        d = self.iris.definition(spec.id)
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
        mounts = [i.name for i in spec.dataspace_inputs]
        if len(set(mounts)) != len(mounts):
            raise LifecycleError("the names of the data-space inputs must be unique")
        bad = sorted({p.datatype for p in spec.parameters} - DATATYPES)
        if bad:
            raise LifecycleError(f"unknown parameter datatype(s) {', '.join(bad)}; use {', '.join(sorted(DATATYPES))}")
        if spec.inputs is not None:
            try:
                parse_input_shapes(spec.inputs)
            except InputShapesRefused as e:
                raise LifecycleError(f"{e}; nothing was registered") from None
        if spec.aggregator and not self.store.quads(self.iris.station(spec.aggregator), RDF_TYPE, PHT.Station, G):
            raise LifecycleError(f"the aggregator {spec.aggregator!r} is not a registered station")
        quads = [Quad(t.subject, t.predicate, t.object, G) for t in definition_triples(self.iris, spec)]
        parameters = {p.name: (NamedNode(f"{d.value}/parameters/{p.name}"), XSD[p.datatype], p.required)
                      for p in spec.parameters}
        registered = self._definition_quads(d)
        if registered:
            self._refuse_other_content(spec.id, d, registered, quads)
            return DefinitionWrite(d, (), parameters, tuple(quads))
        content = tuple(quads)
        quads += [Quad(d, DCTERMS.created,
                       rdf_literal(datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"), "dateTime"), G),
                  Quad(d, PROV.wasAttributedTo, self.iris.agent(principal.subject), G),
                  position_quad(self.store, d, DEFINITIONS)]  # the newest position and one (the definitions list)
        return DefinitionWrite(d, tuple(quads), parameters, content)

    def _definition_quads(self, d: NamedNode) -> list[Quad]:
        """The registered definition ``d``, its route stops and parameters (empty if there is none)."""
        return definition_content(self.store, d)

    def _refuse_other_content(self, ident: str, d: NamedNode, registered: Sequence[Quad],
                              given: Sequence[Quad]) -> None:
        """Raise 409 naming each field whose registered and given values differ (none: the same definition)."""
        # Compare as the store keeps them: a ChangeSet canonicalises literals the way the store does.
        before, after = (_describe(d, ChangeSet(insert=quads).insert, self.iris) for quads in (registered, given))
        differences = [f"{name} (registered {before.get(name) or 'none'}, given {after.get(name) or 'none'})"
                       for name in FIELDS if before.get(name) != after.get(name)]
        if differences:
            raise AlreadyExists(f"train definition {ident!r} is already registered with other content: "
                                f"{'; '.join(differences)}; a definition cannot change, so give this one a new id")


FIELDS = ("title", "image_name", "image_digest", "mode", "route", "rounds", "entrypoint", "aggregator", "parameters",
          "dataspace_inputs", "inputs")
"""The fields of a definition (``DefinitionIn``) in the order a refusal names them."""


def _describe(d: NamedNode, quads: Iterable[Quad], iris: Iris) -> dict[str, str]:
    """A definition's fields as short text, read from its quads (registered or new), to say what differs."""
    by_subject: dict[Any, dict[NamedNode, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for q in quads:
        by_subject[q.subject][q.predicate].append(q.object)
    own = by_subject[d]

    def one(node: Any, predicate: NamedNode) -> str:
        return ", ".join(sorted(term.value for term in by_subject[node][predicate]))

    stops = sorted(own[PHT.routeStop], key=lambda stop: int(one(stop, PHT.stopIndex) or 0))
    parameters = sorted(
        f"{one(p, PHT.parameterName)} ({one(p, PHT.datatype).rsplit('#', 1)[-1]}"
        f"{', required' if one(p, PHT.required) == 'true' else ''}"
        f"{', default ' + one(p, PHT.defaultValue) if by_subject[p][PHT.defaultValue] else ''})"
        for p in own[PHT.parameter])
    return {"title": one(d, DCTERMS.title), "image_name": one(d, PHT.imageName),
            "image_digest": one(d, PHT.imageDigest), "mode": one(d, PHT.mode).rsplit("#", 1)[-1].lower(),
            "route": ", ".join(iris.local(by_subject[stop][PHT.station][0], "stations") for stop in stops
                               if by_subject[stop][PHT.station]),
            "rounds": one(d, PHT.rounds), "entrypoint": one(d, PHT.entrypoint),
            "aggregator": ", ".join(iris.local(a, "stations") for a in own[PHT.aggregator]),
            "parameters": "; ".join(parameters),
            "dataspace_inputs": "; ".join(sorted(
                f"{one(i, PHT.mountName)} ({one(i, PHT.providerDataset)} at {one(i, PHT.providerConnector)})"
                for i in own[PHT.dataspaceInput])),
            "inputs": ("input shapes sha256:" + hashlib.sha256(one(d, PHT.inputShapes).encode()).hexdigest()[:12]
                       if own[PHT.inputShapes] else "")}
