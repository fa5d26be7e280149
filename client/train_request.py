"""A train request: the RDF document a researcher signs when submitting a train, built in one place.

The researcher's client builds it to sign it (``trust.create_proof``), the central service builds it again from
the submitted definition and parameters to verify the proof and store it, and the stations build it again before
deciding (part 2); so all three sign and check the same triples. It holds IRIs only, no blank nodes, so its
RDFC-1.0 canonicalisation is a sort (cheap, and identical in every implementation):

* the definition's content as the registry stores it (:func:`definition_triples`): the definition, its route
  stops ``{definition}/stops/{i}``, parameters ``{definition}/parameters/{name}`` and data-space inputs
  ``{definition}/dataspace-inputs/{name}``, without what the service
  adds when it registers one (``dcterms:created``, ``prov:wasAttributedTo``);
* the request node ``urn:uuid:{uuid4}`` the client chooses (:func:`request_triples`): ``a pht:TrainRequest``,
  ``pht:ofDefinition``, ``pht:requestedBy`` (the researcher's agent IRI), ``dcterms:created``, one
  ``pht:parameterBinding <urn:uuid:{uuid}/parameters/{name}>`` per given parameter (``pht:bindingName``,
  ``pht:bindingValue`` typed as the parameter's datatype) and ``pht:resultRecipient`` (the requester's
  encryption key, the one the final result is encrypted to) and, when the researcher declares them
  (:class:`RequestTerms`), ``pht:purpose`` (a DUO term), ``pht:project``, ``pht:dpMechanism`` and ``pht:epsilon``:
  what a station's consent policy and privacy budget decide on (``station/consent.py``), bound by the signature.

Literals are written in the form the store keeps them (``"01"^^xsd:integer`` becomes ``"1"``), so the stored
request is the signed one, quad for quad.

>>> iris = ResourceIris("https://pht.example.org/id/")
>>> spec = DefinitionSpec("count", "Count", "pht/count", "sha256:" + "0" * 64, "incremental", ["a"],
...                       parameters=[ParameterSpec("min_age", "integer")])
>>> request = TrainRequest("urn:uuid:6f0c4d8e-1b2a-4c3d-9e8f-0123456789ab", "count",
...                        requester="https://pht.example.org/id/agents/alice", created="2026-12-03T10:00:00Z",
...                        parameters={"min_age": "018"}, recipient="https://pht.example.org/id/agents/alice/keys/1")
>>> triples = train_request_triples(iris, spec, request)
>>> sorted(str(t.object) for t in triples if t.predicate == PHT.bindingValue)
['"18"^^<http://www.w3.org/2001/XMLSchema#integer>']
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import Field, StringConstraints
from pyoxigraph import Literal, NamedNode, Quad, Triple

from graph_store import CENTRAL_GRAPH, DCTERMS, PHT, PROV, RDF_TYPE, XSD, ChangeSet, ResourceIris
from trust import create_proof

from .wire import Strict

__all__ = [
    "DataspaceInputSpec",
    "DefinitionSpec",
    "ParameterSpec",
    "RequestSignature",
    "RequestTerms",
    "TrainRequest",
    "dataspace_input_iri",
    "epsilon_lexical",
    "dataspace_inputs",
    "definition_triples",
    "new_request_id",
    "now_created",
    "parameter_datatypes",
    "rdf_literal",
    "request_triples",
    "sign_request",
    "signed_document",
    "signed_request_document",
    "DEFINITION_PARTS",
    "SERVER_ADDED",
    "train_request_triples",
]

UTC_SECOND = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
Iri = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9+.-]*:[^\s<>\"{}|\\^`]+$", max_length=500)]


@dataclass(frozen=True)
class ParameterSpec:
    """A typed parameter of a train definition (``ParameterIn`` on the wire)."""

    name: str
    datatype: str = "string"
    required: bool = False
    default: str | None = None


@dataclass(frozen=True)
class DataspaceInputSpec:
    """A data-space input of a train definition (``DataspaceInputIn`` on the wire): mount name, provider connector
    URL, dataset id."""

    name: str
    connector: str
    dataset: str


@dataclass(frozen=True)
class DefinitionSpec:
    """A train definition's content (``DefinitionIn`` on the wire): what the registry stores and a request signs."""

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
    dataspace_inputs: Sequence[DataspaceInputSpec] = field(default_factory=tuple)
    inputs: str | None = None
    """The input shapes (SHACL, Turtle): the variables the train reads (``client/input_shapes.py``)."""

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> DefinitionSpec:
        """From a definition as JSON (a train file's ``definition`` object, ``DefinitionIn.model_dump()``), with
        the wire model's defaults. The values are taken as given: the service validates them.

        :raises KeyError, TypeError: a field the wire model requires is missing or not of its type.
        """
        return cls(id=body["id"], title=body["title"], image_name=body["image_name"],
                   image_digest=body["image_digest"], mode=body["mode"], route=tuple(body["route"]),
                   rounds=int(body.get("rounds", 1)), entrypoint=body.get("entrypoint"),
                   aggregator=body.get("aggregator"),
                   parameters=tuple(ParameterSpec(p["name"], p.get("datatype", "string"), bool(p.get("required")),
                                                  p.get("default"))
                                    for p in body.get("parameters") or ()),
                   dataspace_inputs=tuple(DataspaceInputSpec(i["name"], i["connector"], i["dataset"])
                                          for i in body.get("dataspace_inputs") or ()),
                   inputs=body.get("inputs"))


@dataclass(frozen=True)
class RequestTerms:
    """What the researcher declares the train is for, signed with the request: the purpose (a DUO term IRI from
    ``ontology/duo.ttl``), the project (a short id), and for a differentially private release its mechanism
    (``laplace`` or ``gaussian``, as opendp names them) and its ε (an xsd:decimal lexical form, see
    :func:`epsilon_lexical`). None: not declared."""

    purpose: str | None = None
    project: str | None = None
    dp_mechanism: str | None = None
    epsilon: str | None = None

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> RequestTerms:
        """From a train file's (``TrainIn``'s) ``purpose``, ``project``, ``dp_mechanism`` and ``epsilon``.

        :raises ValueError: ``epsilon`` is not a decimal number.
        """
        epsilon = body.get("epsilon")
        return cls(purpose=body.get("purpose"), project=body.get("project"), dp_mechanism=body.get("dp_mechanism"),
                   epsilon=epsilon_lexical(epsilon) if epsilon is not None else None)


def epsilon_lexical(value: object) -> str:
    """``value`` (a number or its text) as the xsd:decimal lexical form the request signs: the one spelling the
    client, the service and the stations agree on.

    >>> epsilon_lexical(0.5), epsilon_lexical("1e-2"), epsilon_lexical(2)
    ('0.5', '0.01', '2')

    :raises ValueError: it is not a finite number.
    """
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"epsilon {value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"epsilon {value!r} is not a finite number")
    return format(number.normalize(), "f")


@dataclass(frozen=True)
class TrainRequest:
    """The request's own values: its id (``urn:uuid:...``), which definition, who asks, when, with which
    parameter values (strings of the parameters' datatypes) and the IRI of the key the result is encrypted to."""

    id: str
    definition_id: str
    requester: str
    created: str
    """``xsd:dateTime`` lexical form with a time zone, exactly as signed."""
    parameters: Mapping[str, str]
    recipient: str
    terms: RequestTerms = RequestTerms()


class RequestSignature(Strict):
    """What a signed submission adds to the train file's fields (``TrainIn.signature``): the request's own values
    and the Data Integrity proof's. With the definition and the parameters they give the whole signed document."""

    request: Annotated[str, StringConstraints(
        pattern=r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")] = Field(
        description="the request's IRI, urn:uuid: and a random UUID the client chose; usable for one train only")
    created: Annotated[str, StringConstraints(pattern=UTC_SECOND)] = Field(
        description="when the request was signed, in UTC to the second (2026-12-03T10:00:00Z: the form the store "
                    "keeps, so the stored proof is the signed one): the request's dcterms:created and the proof's "
                    "created")
    requested_by: Iri = Field(description="the requester's agent IRI (the party GET /api/keys names)")
    result_recipient: Iri = Field(description="the IRI of the requester's current encryption key (X25519), the key "
                                              "the final result is encrypted to")
    verification_method: Iri = Field(description="the IRI of the requester's signing key that made the proof")
    proof_value: Annotated[str, StringConstraints(pattern=r"^z[1-9A-HJ-NP-Za-km-z]{1,100}$")] = Field(
        description="multibase base58-btc of the Ed25519 signature (eddsa-rdfc-2022)")

    def train_request(self, definition_id: str, parameters: Mapping[str, str],
                      terms: RequestTerms = RequestTerms()) -> TrainRequest:
        """The request these values and the submission's definition, parameters and declared terms make."""
        return TrainRequest(self.request, definition_id, requester=self.requested_by, created=self.created,
                            parameters=dict(parameters), recipient=self.result_recipient, terms=terms)


def new_request_id() -> str:
    """A fresh request IRI, ``urn:uuid:`` and a random UUID: unique without asking the service."""
    return f"urn:uuid:{uuid.uuid4()}"


def sign_request(iris: ResourceIris, definition: Sequence[Triple], request: TrainRequest, key: Ed25519PrivateKey, *,
                 verification_method: str) -> RequestSignature:
    """Sign ``request`` for the definition whose content triples are ``definition`` (:func:`definition_triples` of
    a whole definition, or the registered one's as ``definition_content.rq`` reads it) with the researcher's
    signing ``key``, registered as ``verification_method``: the values a submission sends as ``signature``.

    :raises trust.ProofError: ``request.created`` is not an xsd:dateTime with a time zone.
    :raises ValueError: an IRI of the request is not an IRI.
    """
    triples = signed_document(definition, request_triples(iris, request, parameter_datatypes(definition)))
    proof = create_proof(triples, key, verification_method=verification_method,
                         created=datetime.fromisoformat(request.created.replace("Z", "+00:00")))
    assert proof.proof_value is not None  # create_proof always signs
    return RequestSignature(request=request.id, created=request.created, requested_by=request.requester,
                            result_recipient=request.recipient, verification_method=verification_method,
                            proof_value=proof.proof_value)


def parameter_datatypes(definition: Iterable[Triple | Quad]) -> dict[str, str]:
    """Each parameter's datatype (xsd local name) by name, read from a definition's content triples."""
    definition = list(definition)
    names = {t.subject: t.object.value for t in definition
             if t.predicate == PHT.parameterName and isinstance(t.object, Literal)}
    return {names[t.subject]: t.object.value.rsplit("#", 1)[-1] for t in definition
            if t.predicate == PHT.datatype and t.subject in names and isinstance(t.object, NamedNode)}


def now_created() -> str:
    """The current time as a request's ``created``: UTC, whole seconds (the form the store keeps)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def rdf_literal(value: str | int | bool, dt: str | None = None) -> Literal:
    """``value`` as a literal, typed ``xsd:{dt}`` if given (booleans in their lexical form, ``true``/``false``):
    the one way the registry and the train request write their values."""
    if dt is not None:
        return Literal(str(value).lower() if isinstance(value, bool) else str(value), datatype=XSD[dt])
    return Literal(str(value))


def definition_triples(iris: ResourceIris, spec: DefinitionSpec) -> list[Triple]:
    """The definition's content triples exactly as the registry stores them (without ``dcterms:created`` and
    ``prov:wasAttributedTo``, which the service adds). ``spec`` is assumed checked (``Registry`` checks it)."""
    d = iris.definition(spec.id)
    triples = [Triple(d, RDF_TYPE, PHT.TrainDefinition), Triple(d, DCTERMS.identifier, rdf_literal(spec.id)),
               Triple(d, DCTERMS.title, rdf_literal(spec.title)),
               Triple(d, PHT.imageName, rdf_literal(spec.image_name)),
               Triple(d, PHT.imageDigest, rdf_literal(spec.image_digest)),
               Triple(d, PHT.mode, PHT.Incremental if spec.mode == "incremental" else PHT.Federated),
               Triple(d, PHT.rounds, rdf_literal(spec.rounds, "integer"))]
    if spec.entrypoint:
        triples.append(Triple(d, PHT.entrypoint, rdf_literal(spec.entrypoint)))
    if spec.aggregator:
        triples.append(Triple(d, PHT.aggregator, iris.station(spec.aggregator)))
    if spec.inputs:
        triples.append(Triple(d, PHT.inputShapes, rdf_literal(spec.inputs)))
    for i, sid in enumerate(spec.route):
        stop = NamedNode(f"{d.value}/stops/{i}")
        triples += [Triple(d, PHT.routeStop, stop), Triple(stop, RDF_TYPE, PHT.RouteStop),
                    Triple(stop, PHT.stopIndex, rdf_literal(i, "integer")),
                    Triple(stop, PHT.station, iris.station(sid))]
    for p in spec.parameters:
        pi = NamedNode(f"{d.value}/parameters/{p.name}")
        triples += [Triple(d, PHT.parameter, pi), Triple(pi, RDF_TYPE, PHT.Parameter),
                    Triple(pi, PHT.parameterName, rdf_literal(p.name)), Triple(pi, PHT.datatype, XSD[p.datatype]),
                    Triple(pi, PHT.required, rdf_literal(p.required, "boolean"))]
        if p.default is not None:
            triples.append(Triple(pi, PHT.defaultValue, rdf_literal(p.default, p.datatype)))
    for inp in spec.dataspace_inputs:
        node = dataspace_input_iri(d, inp.name)
        triples += [Triple(d, PHT.dataspaceInput, node), Triple(node, RDF_TYPE, PHT.DataspaceInput),
                    Triple(node, PHT.mountName, rdf_literal(inp.name)),
                    Triple(node, PHT.providerConnector, rdf_literal(inp.connector, "anyURI")),
                    Triple(node, PHT.providerDataset, rdf_literal(inp.dataset, "anyURI"))]
    return triples


def dataspace_input_iri(definition: NamedNode, name: str) -> NamedNode:
    """The IRI of a definition's data-space input ``name``."""
    return NamedNode(f"{definition.value}/dataspace-inputs/{name}")


def dataspace_inputs(statements: Iterable[Triple | Quad]) -> list[DataspaceInputSpec]:
    """The data-space inputs a definition's content declares (e.g. a verified signed request's), by mount name."""
    statements = list(statements)
    declared = {t.object for t in statements if t.predicate == PHT.dataspaceInput}
    values: dict[object, dict[NamedNode, str]] = {}
    for t in statements:
        if t.subject in declared and isinstance(t.object, Literal):
            values.setdefault(t.subject, {})[t.predicate] = t.object.value
    found = [DataspaceInputSpec(v.get(PHT.mountName, ""), v.get(PHT.providerConnector, ""),
                                v.get(PHT.providerDataset, "")) for v in values.values()]
    return sorted(found, key=lambda i: i.name)


def request_triples(iris: ResourceIris, request: TrainRequest, datatypes: Mapping[str, str]) -> list[Triple]:
    """The request node and its parameter bindings, each value typed as its parameter's datatype (``datatypes``:
    name -> xsd local name; a name the definition lacks is typed ``xsd:string``, for the service to refuse).

    :raises ValueError: the request id or an IRI it names is not an IRI.
    """
    node = NamedNode(request.id)
    triples = [Triple(node, RDF_TYPE, PHT.TrainRequest),
               Triple(node, PHT.ofDefinition, iris.definition(request.definition_id)),
               Triple(node, PHT.requestedBy, NamedNode(request.requester)),
               Triple(node, DCTERMS.created, Literal(request.created, datatype=XSD.dateTime)),
               Triple(node, PHT.resultRecipient, NamedNode(request.recipient))]
    terms = request.terms
    if terms.purpose is not None:
        triples.append(Triple(node, PHT.purpose, NamedNode(terms.purpose)))
    if terms.project is not None:
        triples.append(Triple(node, PHT.project, rdf_literal(terms.project)))
    if terms.dp_mechanism is not None:
        triples.append(Triple(node, PHT.dpMechanism, rdf_literal(terms.dp_mechanism)))
    if terms.epsilon is not None:
        triples.append(Triple(node, PHT.epsilon, rdf_literal(terms.epsilon, "decimal")))
    for name, value in sorted(request.parameters.items()):
        binding = NamedNode(f"{request.id}/parameters/{name}")
        triples += [Triple(node, PHT.parameterBinding, binding), Triple(binding, PHT.bindingName, rdf_literal(name)),
                    Triple(binding, PHT.bindingValue, rdf_literal(value, datatypes.get(name, "string")))]
    return triples


def signed_document(definition: Iterable[Triple | Quad], request: Iterable[Triple]) -> list[Triple]:
    """The document a request's proof signs: the definition's content triples and the request's, literals in the
    form the store keeps them (so what is stored is what was signed), sorted."""
    quads = [Quad(t.subject, t.predicate, t.object, CENTRAL_GRAPH) for t in (*definition, *request)]
    return sorted((Triple(q.subject, q.predicate, q.object) for q in ChangeSet(insert=quads).insert), key=str)


def train_request_triples(iris: ResourceIris, spec: DefinitionSpec, request: TrainRequest) -> list[Triple]:
    """The whole signed document of a request for the definition ``spec`` (what the client signs).

    :raises ValueError: an IRI of the request is not an IRI.
    """
    definition = definition_triples(iris, spec)
    return signed_document(definition, request_triples(iris, request, parameter_datatypes(definition)))


DEFINITION_PARTS = (PHT.routeStop, PHT.parameter, PHT.dataspaceInput)
"""The links from a definition to the nodes of its content: route stops, parameters, data-space inputs."""

SERVER_ADDED = frozenset({DCTERMS.created, PROV.wasAttributedTo, PHT.definitionListPosition})
"""What the registry adds to a definition when it registers one (its registration time, registrant and list
position): not part of its content, so not signed."""


def signed_request_document(statements: Iterable[Triple | Quad], request: NamedNode) -> list[Triple]:
    """The document ``request``'s proof signs, read back from RDF that holds it (the central graph, a work item, a
    train's provenance): the request node and its parameter bindings, and its definition's content (the definition
    without what the registry adds, its route stops and parameters), sorted.

    :raises ValueError: ``request`` is not a train request naming one definition.
    """
    about: dict[object, list[Triple]] = {}
    for s in statements:
        about.setdefault(s.subject, []).append(Triple(s.subject, s.predicate, s.object))
    own = about.get(request, [])
    definitions = [t.object for t in own if t.predicate == PHT.ofDefinition]
    if not any(t.predicate == RDF_TYPE and t.object == PHT.TrainRequest for t in own) or len(definitions) != 1:
        raise ValueError(f"{request.value} is not a train request naming one definition")
    definition = [t for t in about.get(definitions[0], []) if t.predicate not in SERVER_ADDED]
    parts = [t.object for t in (*own, *definition) if t.predicate in (PHT.parameterBinding, *DEFINITION_PARTS)]
    return sorted({*own, *definition, *(t for part in parts for t in about.get(part, []))}, key=str)
