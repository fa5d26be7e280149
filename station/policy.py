"""The station admin's policy: which executions run without asking, which outputs leave without asking.

Written in Turtle (``pht:StationPolicy``, see ``ontology/pht.ttl``), validated by the project's shapes
before it takes effect, so a typo cannot silently open the station. One policy per station file.
"""

from dataclasses import dataclass, field
from pathlib import Path

from pyoxigraph import NamedNode, Triple

from graph_store import PHT, PolicyDocument, PolicyError, read_policy_document

from .consent import ConsentPolicy, consent_policy

FAILURE_CATEGORY = "category"    #: pht:FailureCategory: "the train failed at station S", nothing else (the default)
FAILURE_EXIT_CODE = "exit-code"   #: pht:FailureExitCode: and the exit code
FAILURE_MESSAGE = "message"       #: pht:FailureMessage: and the runtime's sentence (exit code, limits, refused files)
_FAILURE_DETAILS = {PHT.FailureCategory.value: FAILURE_CATEGORY, PHT.FailureExitCode.value: FAILURE_EXIT_CODE,
                    PHT.FailureMessage.value: FAILURE_MESSAGE}


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
    approve_commands: frozenset[str] = frozenset()      #: entrypoints (spelled as in the definition) allowed
    failure_detail: str = FAILURE_CATEGORY              #: what a train's failure tells the central service
    shares_check_names: bool = False                    #: whether a release sends the checks' names and results
    checks_differencing: bool = True    #: compare a cohort with earlier releases (with a min_cell_count only)
    withholds_differencing: bool = False  #: withhold what the differencing check flags, without asking the admin
    consent: ConsentPolicy = ConsentPolicy()  #: purposes, projects, researchers, functions, ε budgets (consent.py)
    source: str = field(default="built-in default (approve and review by hand)", compare=False)

    def auto_approval(self, *, image_digest: str, requester: str, definition: str,
                      entrypoint: str | None = None) -> str | None:
        """The reason the execution may run without an admin, or None if an admin must decide.

        ``requester`` is the verified signer of the train request (the agent checks the signature first,
        ``station/signed_requests.py``), so a requester rule cannot be met by a train merely attributed to someone.
        The lists match what runs, not only where it comes from: an execution whose definition overrides the
        image's command (``entrypoint``, which the researcher chooses, e.g. ``sh -c ...``) is auto-approved only
        if that exact command is one of ``approve_commands``."""
        if not self.requires_approval:
            return "the station policy approves every train automatically"
        lists = [(self.approve_images, image_digest, "image digest"),
                 (self.approve_requesters, requester, "requester"),
                 (self.approve_definitions, definition, "train definition")]
        stated = [(allowed, value, what) for allowed, value, what in lists if allowed]
        if not stated or not all(value in allowed for allowed, value, _ in stated):
            return None
        if entrypoint is not None and entrypoint not in self.approve_commands:
            return None
        command = "the image's own command" if entrypoint is None else "an allowed command"
        return ("auto-approved by the station policy (allowed " + ", ".join(w for _, _, w in stated)
                + f"; {command})")

    @property
    def differencing_minimum(self) -> int | None:
        """The minimum cell count the differencing check holds cohorts to, or None if it is off (no minimum cell
        count, or ``pht:checksDifferencing false``)."""
        return self.min_cell_count if self.checks_differencing else None

    def failure_reason(self, station: str, exit_code: int | None, message: str) -> str:
        """What the central service is told when a train fails at this station: by default only that it failed
        (an exit code or an error text is a channel the train controls, e.g. a small count as exit code)."""
        if self.failure_detail == FAILURE_MESSAGE:
            return f"the train failed at station {station}: {message}"
        if self.failure_detail == FAILURE_EXIT_CODE:
            code = f"exit code {exit_code}" if exit_code is not None else "no exit code"
            return f"the train failed at station {station} ({code})"
        return f"the train failed at station {station}"


def load_policy(path: Path, *, station_iri: str | None = None) -> StationPolicy:
    """Read and validate a policy file (Turtle, JSON-LD or N-Triples, by its suffix; every resource named by an
    IRI); :class:`PolicyError` names the problem (nothing half-applied). See :func:`graph_store.read_policy_document`.
    """
    station = NamedNode(station_iri) if station_iri is not None else None
    return _policy(read_policy_document(path, policy_class=PHT.StationPolicy, station=station))


def _policy(document: PolicyDocument) -> StationPolicy:
    def values(predicate: NamedNode) -> list[str]:
        return [v.value for v in document.values(predicate) if not isinstance(v, Triple)]

    def flag(predicate: NamedNode) -> bool:
        return values(predicate) == ["true"] or values(predicate) == ["1"]

    def number(predicate: NamedNode) -> int | None:
        found = values(predicate)
        return int(found[0]) if found else None

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
        approve_commands=frozenset(values(PHT.autoApproveCommand)),
        failure_detail=next((_FAILURE_DETAILS[v] for v in values(PHT.sharesFailureDetail)), FAILURE_CATEGORY),
        shares_check_names=flag(PHT.sharesCheckNames),
        checks_differencing=values(PHT.checksDifferencing) not in (["false"], ["0"]),
        withholds_differencing=flag(PHT.withholdsDifferencing),
        consent=consent_policy(document),
        source=document.source,
    )


__all__ = ["FAILURE_CATEGORY", "FAILURE_EXIT_CODE", "FAILURE_MESSAGE", "PolicyError", "StationPolicy", "load_policy"]
