"""The station admin's policy: which executions run without asking, which outputs leave without asking.

Written in Turtle (``pht:StationPolicy``, see ``ontology/pht.ttl``), validated by the project's shapes
before it takes effect, so a typo cannot silently open the station. One policy per station file.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyoxigraph import NamedNode, Quad, Triple

from graph_store import CENTRAL_GRAPH, PHT, RDF_TYPE, ChangeSet, EmbeddedStore, GraphStoreError, parse_rdf


class PolicyError(ValueError):
    """The policy file cannot be used; ``str(e)`` says why (with the SHACL report's sentences)."""


@dataclass(frozen=True)
class StationPolicy:
    """What the station decides by itself. The defaults are the safe ones: ask the admin for everything."""

    requires_approval: bool = True
    requires_output_review: bool = True
    approve_images: frozenset[str] = frozenset()        #: image digests, ``sha256:<hex>``
    approve_requesters: frozenset[str] = frozenset()    #: requester agent IRIs
    approve_definitions: frozenset[str] = frozenset()   #: definition ids (last path segment of the IRI)
    max_output_bytes: int | None = None
    max_file_bytes: int | None = None
    allowed_file_types: frozenset[str] = frozenset()    #: extensions, lower case, without the dot
    min_cell_count: int | None = None
    source: str = field(default="built-in default (approve and review by hand)", compare=False)

    def auto_approval(self, *, image_digest: str, requester: str, definition: str) -> str | None:
        """The reason the execution may run without an admin, or None if an admin must decide."""
        if not self.requires_approval:
            return "the station policy approves every train automatically"
        lists = [(self.approve_images, image_digest, "image digest"),
                 (self.approve_requesters, requester, "requester"),
                 (self.approve_definitions, definition, "train definition")]
        stated = [(allowed, value, what) for allowed, value, what in lists if allowed]
        if stated and all(value in allowed for allowed, value, _ in stated):
            return "auto-approved by the station policy (allowed " + ", ".join(w for _, _, w in stated) + ")"
        return None


def load_policy(path: Path, *, station_iri: str | None = None) -> StationPolicy:
    """Read and validate a policy file; :class:`PolicyError` names the problem (nothing half-applied)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PolicyError(f"cannot read the station policy {path}: {e.strerror}") from None
    try:
        quads = parse_rdf(data, path.suffix.lstrip(".").lower() or "ttl", CENTRAL_GRAPH)
        with EmbeddedStore() as store:
            report = store.validate(ChangeSet(insert=quads))
    except GraphStoreError as e:
        raise PolicyError(f"{path}: {e}") from None
    # The station itself is described in the central graph, not in the policy file, so the shapes' sh:class
    # check of pht:appliesToStation cannot be made here; the station IRI is compared below instead.
    results = [r for r in report.results
               if not (r.path == PHT.appliesToStation and r.component_name == "ClassConstraintComponent")]
    if results:
        raise PolicyError(f"{path} violates the policy shapes: " + "; ".join(r.message for r in results))
    policies = sorted({q.subject.value for q in quads if q.predicate == RDF_TYPE and q.object == PHT.StationPolicy
                       and not isinstance(q.subject, Triple)})
    if len(policies) != 1:
        raise PolicyError(f"{path} must describe exactly one pht:StationPolicy, found {len(policies)}")
    return _policy(NamedNode(policies[0]), quads, path, station_iri)


def _policy(subject: NamedNode, quads: Sequence[Quad], path: Path, station_iri: str | None) -> StationPolicy:
    def values(predicate: NamedNode) -> list[str]:
        return [q.object.value for q in quads if q.subject == subject and q.predicate == predicate
                and not isinstance(q.object, Triple)]

    def flag(predicate: NamedNode) -> bool:
        return values(predicate) == ["true"] or values(predicate) == ["1"]

    def number(predicate: NamedNode) -> int | None:
        found = values(predicate)
        return int(found[0]) if found else None

    station = values(PHT.appliesToStation)
    if station_iri is not None and station != [station_iri]:
        raise PolicyError(f"{path} governs {', '.join(station) or 'no station'}, not this station ({station_iri})")
    return StationPolicy(
        requires_approval=flag(PHT.requiresApproval),
        requires_output_review=flag(PHT.requiresOutputReview),
        approve_images=frozenset(values(PHT.autoApproveImage)),
        approve_requesters=frozenset(values(PHT.autoApproveRequester)),
        approve_definitions=frozenset(v.rsplit("/", 1)[-1] for v in values(PHT.autoApproveDefinition)),
        max_output_bytes=number(PHT.maxOutputBytes),
        max_file_bytes=number(PHT.maxFileBytes),
        allowed_file_types=frozenset(v.lower() for v in values(PHT.allowedFileType)),
        min_cell_count=number(PHT.minCellCount),
        source=str(path),
    )


__all__ = ["PolicyError", "StationPolicy", "load_policy"]
