"""A registered public key as every verifier reads it, and the rule of when it verifies a signature.

The central service (``orchestrator.keys.KeyDirectory``), the stations and ``pht verify`` all decide with
:class:`PublicKeyRecord`, so the rule is written once:

* **Old signatures stay verifiable after rotation, new ones need the new key.** A key rotated out at ``expires``
  (``sec:expiration``) verifies what was signed *before* ``expires`` (the proof's ``created``, the batch's
  ``X-PHT-Created``), never what claims a later time.
* **A revoked key verifies nothing from its revocation on.** Once ``now`` has reached ``revoked``
  (``sec:revoked``), the key verifies no signature at all, whenever it claims to have been made.

See docs/security.md, "Key lifecycle".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal as Use

from pyoxigraph import Literal, NamedNode, Quad, QuerySolution, Triple

from .key_claims import ASSERTION_METHOD, CONTROLLER, KEY_AGREEMENT, PUBLIC_KEY_MULTIBASE, SEC_NS

__all__ = ["PublicKeyRecord", "key_records", "parse_time"]

EXPIRATION = NamedNode(SEC_NS + "expiration")
REVOKED = NamedNode(SEC_NS + "revoked")
_CREATED = NamedNode("http://purl.org/dc/terms/created")


def parse_time(value: str) -> datetime:
    """An ``xsd:dateTime`` lexical form with a time zone as an aware datetime (ValueError otherwise)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"the time {value!r} has no time zone")
    return parsed


@dataclass(frozen=True)
class PublicKeyRecord:
    """One registered public key as the registry holds it."""

    iri: str
    controller: str
    use: Use["signing", "encryption"]
    multibase: str
    created: datetime
    expires: datetime | None = None
    revoked: datetime | None = None

    def verifies(self, *, created: datetime, now: datetime) -> bool:
        """Whether this key verifies a signature made at ``created`` when checked at ``now`` (the module's rule)."""
        return self.unusable_because(created=created, now=now) is None

    def unusable_because(self, *, created: datetime, now: datetime) -> Use["revoked", "rotated out"] | None:
        """Why this key does not verify a signature made at ``created`` when checked at ``now`` (None: it does):
        the module's rule, in this one place."""
        if self.revoked is not None and now >= self.revoked:
            return "revoked"
        if self.expires is not None and created >= self.expires:
            return "rotated out"
        return None

    @property
    def current(self) -> bool:
        """Neither rotated out nor revoked: the key new signatures (and encryptions) use."""
        return self.expires is None and self.revoked is None

    @classmethod
    def from_row(cls, row: QuerySolution, *, iri: str | None = None, controller: str | None = None,
                 use: str | None = None) -> PublicKeyRecord:
        """From a row of ``party_keys``, ``verification_method`` or ``station_keys``; ``iri``, ``controller`` and
        ``use`` give what the query took as a parameter or left implicit (``station_keys``: signing keys only)."""

        def value(name: str) -> str | None:
            term = row[name]
            return None if term is None else str(term.value)

        def time(name: str) -> datetime | None:
            text = value(name)
            return None if text is None else parse_time(text)

        created = time("created")
        kind = use or value("use")
        if created is None or kind not in ("signing", "encryption"):
            raise ValueError("a key's row needs its created time and use")
        return cls(iri=iri or str(value("key")), controller=controller or str(value("controller")),
                   use="signing" if kind == "signing" else "encryption", multibase=str(value("multibase")),
                   created=created, expires=time("expires"), revoked=time("revoked"))


def key_records(statements: Iterable[Triple | Quad]) -> dict[str, PublicKeyRecord]:
    """The keys described in ``statements`` (registry RDF: a party's ``sec:assertionMethod``/``sec:keyAgreement``
    link, the key's ``sec:controller``, ``sec:publicKeyMultibase``, ``dcterms:created``, ``sec:expiration``,
    ``sec:revoked``) by IRI; a key lacking a part, or listed by a party that is not its controller, is left out."""
    by_subject: dict[str, dict[NamedNode, list[str]]] = {}
    uses: dict[str, set[tuple[str, str]]] = {}
    for t in statements:
        if isinstance(t.subject, NamedNode) and isinstance(t.object, Literal | NamedNode):
            by_subject.setdefault(t.subject.value, {}).setdefault(t.predicate, []).append(t.object.value)
            if t.predicate in (ASSERTION_METHOD, KEY_AGREEMENT) and isinstance(t.object, NamedNode):
                uses.setdefault(t.object.value, set()).add(
                    (t.subject.value, "signing" if t.predicate == ASSERTION_METHOD else "encryption"))
    found = {}
    for iri, props in by_subject.items():
        controllers, multibases, created = (props.get(p, []) for p in (CONTROLLER, PUBLIC_KEY_MULTIBASE, _CREATED))
        if len(controllers) != 1 or len(multibases) != 1 or len(created) != 1:
            continue
        listed = [use for party, use in uses.get(iri, ()) if party == controllers[0]]
        if len(listed) != 1:
            continue
        try:
            found[iri] = PublicKeyRecord(
                iri=iri, controller=controllers[0], use="signing" if listed[0] == "signing" else "encryption",
                multibase=multibases[0], created=parse_time(created[0]),
                expires=parse_time(props[EXPIRATION][0]) if EXPIRATION in props else None,
                revoked=parse_time(props[REVOKED][0]) if REVOKED in props else None)
        except ValueError:
            continue
    return found
