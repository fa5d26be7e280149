"""The station's consent policy: which trains may use its data, by purpose, project, researcher and function.

The admin's station policy (``station/policy.py``) names an ODRL policy (``pht:consentPolicy``, an ``odrl:Set``)
and gives the dataset's DUO data use (``pht:dataUse``). Each rule (``odrl:permission`` / ``odrl:prohibition``,
action ``odrl:use``) applies to its assignees (``odrl:assignee``, researchers' agent IRIs; none: everyone) when
all its constraints hold (``odrl:constraint``: ``odrl:leftOperand`` ``pht:purpose`` with ``odrl:isA`` over DUO's
hierarchy, or ``pht:project`` / ``pht:trainDefinition`` / ``pht:imageDigest`` with ``odrl:eq``, ``odrl:isAnyOf``,
``odrl:neq``). The station decides at ``queued`` on what the researcher signed (:func:`declared_terms`):

1. a purpose that is not a vetted DUO term is refused; with a data use, a purpose it does not allow (or none);
2. a matching prohibition refuses, naming it (prohibitions win);
3. a matching permission permits, naming it; if the policy has permissions and none matches, the train is refused;
4. a policy with no rules permits everything (as before consent policies existed).

Every decision is a :class:`Decision` of one sentence naming the rule; the agent records it in the station's own
graph (``station/consent_ledger.py``) and tells the central service (the researcher sees it as the step's reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal as Kind

from pyoxigraph import Literal, NamedNode, Triple

from client.purposes import data_use_terms
from graph_store import PHT, RDF_TYPE, PolicyDocument, PolicyError

from .signed_requests import RequestRefused, parse_ntriples

__all__ = ["ConsentPolicy", "Constraint", "Decision", "Declared", "Rule", "consent_policy", "decide",
           "declared_terms"]

ODRL = "http://www.w3.org/ns/odrl/2/"
_LEFT = {PHT.purpose.value: "purpose", PHT.project.value: "project", PHT.trainDefinition.value: "definition",
         PHT.imageDigest.value: "image"}


@dataclass(frozen=True)
class Declared:
    """What the station decides on, all from the verified signed request: who asks, for what, with which code."""

    requester: str
    definition: str  #: the definition's id
    image: str  #: the image digest
    purpose: str | None = None
    project: str | None = None
    dp_mechanism: str | None = None
    epsilon: Decimal | None = None

    def value(self, operand: str) -> str | None:
        return {"purpose": self.purpose, "project": self.project, "definition": self.definition,
                "image": self.image}[operand]


@dataclass(frozen=True)
class Constraint:
    """``left operator right``: ``right`` holds one value (eq, neq, isA) or several (isAnyOf, isA of any)."""

    left: str  #: purpose, project, definition or image
    operator: str  #: eq, neq, isA or isAnyOf (the ODRL operator's local name)
    right: frozenset[str]

    def holds(self, declared: Declared) -> bool:
        value = declared.value(self.left)
        if self.operator == "neq":
            return value not in self.right
        if value is None:
            return False
        if self.operator == "isA":
            return any(data_use_terms().narrower_or_same(value, r) for r in self.right)
        return value in self.right  # eq, isAnyOf

    def describe(self) -> str:
        shown = " or ".join(sorted(data_use_terms().label(r) if self.left == "purpose" else r for r in self.right))
        return f"{self.left} {self.operator} {shown}"


@dataclass(frozen=True)
class Rule:
    """One permission or prohibition of the consent policy."""

    iri: str
    kind: Kind["permission", "prohibition"]
    assignees: frozenset[str] = frozenset()
    constraints: tuple[Constraint, ...] = ()
    epsilon_budget: Decimal | None = None

    def applies(self, declared: Declared) -> bool:
        return ((not self.assignees or declared.requester in self.assignees)
                and all(c.holds(declared) for c in self.constraints))


@dataclass(frozen=True)
class Decision:
    """Permit or refuse, the rule that decided (None: no rule did) and the reason, one sentence."""

    permitted: bool
    reason: str
    rule: Rule | None = None


@dataclass(frozen=True)
class ConsentPolicy:
    """The station's consent rules and its dataset's DUO data use (empty: any purpose, or none)."""

    rules: tuple[Rule, ...] = ()
    data_use: frozenset[str] = field(default_factory=frozenset)

    @property
    def active(self) -> bool:
        """Whether the station decides on consent at all (else every train is permitted, as before)."""
        return bool(self.rules or self.data_use)


def decide(policy: ConsentPolicy, declared: Declared, *, station: str) -> Decision:
    """The station's decision on ``declared`` (see the module for the order)."""
    duo = data_use_terms()
    refuse = f"station {station} refuses the train"
    if declared.purpose is not None and not duo.known(declared.purpose):
        return Decision(False, f"{refuse}: its purpose {declared.purpose} is not a DUO term the station knows")
    if declared.epsilon is not None and declared.epsilon <= 0:
        return Decision(False, f"{refuse}: its ε {declared.epsilon} is not positive")
    if policy.data_use:
        allowed = " or ".join(sorted(duo.label(t) for t in policy.data_use))
        if declared.purpose is None:
            return Decision(False, f"{refuse}: its dataset may be used for {allowed} only, and the train declares "
                                   "no purpose")
        if not any(duo.allows(t, declared.purpose) for t in policy.data_use):
            return Decision(False, f"{refuse}: its dataset may be used for {allowed} only, not for "
                                   f"{duo.label(declared.purpose)}")
    for rule in policy.rules:
        if rule.kind == "prohibition" and rule.applies(declared):
            return Decision(False, f"{refuse}: the prohibition {rule.iri} of its consent policy applies "
                                   f"({_about(rule, declared)})", rule)
    permissions = [r for r in policy.rules if r.kind == "permission"]
    for rule in permissions:
        if rule.applies(declared):
            return Decision(True, f"permitted by the permission {rule.iri} of station {station}'s consent policy "
                                  f"({_about(rule, declared)})", rule)
    if permissions:
        return Decision(False, f"{refuse}: no permission of its consent policy allows {_declared(declared)}")
    return Decision(True, f"station {station}'s consent policy has no permission to require and no prohibition "
                          "that applies")


def _about(rule: Rule, declared: Declared) -> str:
    parts = [c.describe() for c in rule.constraints]
    if rule.assignees:
        parts.insert(0, f"researcher {declared.requester}")
    return "; ".join(parts) if parts else "it applies to every train"


def _declared(declared: Declared) -> str:
    purpose = data_use_terms().label(declared.purpose) if declared.purpose else "no purpose"
    project = f"project {declared.project}" if declared.project else "no project"
    return (f"{purpose}, {project}, researcher {declared.requester}, definition {declared.definition} and image "
            f"{declared.image}")


def declared_terms(request: str, *, requester: str, definition: str, image: str) -> Declared:
    """The purpose, project and differential-privacy terms of a verified signed request (``WorkItem.request``,
    N-Triples): the station decides on these, never on anything unsigned.

    :raises RequestRefused: the request is not N-Triples, or declares a term twice or an ε that is not a number.
    """
    triples = parse_ntriples(request, "signed request")
    nodes = [t.subject for t in triples if t.predicate == RDF_TYPE and t.object == PHT.TrainRequest]

    def one(predicate: NamedNode) -> str | None:
        values = [t.object.value for t in triples if t.subject in nodes and t.predicate == predicate
                  and isinstance(t.object, NamedNode | Literal)]
        if len(values) > 1:
            raise RequestRefused(f"the train's signed request declares {len(values)} values of {predicate.value}")
        return values[0] if values else None

    epsilon = one(PHT.epsilon)
    try:
        eps = Decimal(epsilon) if epsilon is not None else None
    except ArithmeticError:
        raise RequestRefused(f"the train's signed request declares an ε that is not a number ({epsilon!r})") \
            from None
    return Declared(requester=requester, definition=definition, image=image, purpose=one(PHT.purpose),
                    project=one(PHT.project), dp_mechanism=one(PHT.dpMechanism), epsilon=eps)


def consent_policy(document: PolicyDocument) -> ConsentPolicy:
    """The consent part of a validated station policy document (the shapes checked its form).

    :raises PolicyError: a purpose constraint names a DUO term that is not vetted (``ontology/duo.ttl``).
    """
    data_use = frozenset(v.value for v in document.values(PHT.dataUse) if isinstance(v, NamedNode))
    policies = [p for p in document.values(PHT.consentPolicy) if isinstance(p, NamedNode)]
    rules: list[Rule] = []
    for policy in policies:
        for kind in ("prohibition", "permission"):
            for node in document.values(NamedNode(ODRL + kind), policy):
                if isinstance(node, NamedNode):
                    rules.append(_rule(document, node, kind))
    return ConsentPolicy(tuple(rules), data_use)


def _rule(document: PolicyDocument, node: NamedNode, kind: Kind["permission", "prohibition"]) -> Rule:
    constraints = []
    for c in document.values(NamedNode(ODRL + "constraint"), node):
        left = next((v.value for v in document.values(NamedNode(ODRL + "leftOperand"), c)
                     if isinstance(v, NamedNode)), "")
        operator = next((v.value for v in document.values(NamedNode(ODRL + "operator"), c)
                         if isinstance(v, NamedNode)), "")
        right = frozenset(v.value for v in document.values(NamedNode(ODRL + "rightOperand"), c)
                          if not isinstance(v, Triple))
        constraint = Constraint(_LEFT[left], operator.removeprefix(ODRL), right)
        unknown = sorted(r for r in right if constraint.left == "purpose" and not data_use_terms().known(r))
        if unknown:
            raise PolicyError(f"{document.source}: the constraint {document.name(c)} names {', '.join(unknown)}, "
                              "which is not a DUO term of ontology/duo.ttl")
        constraints.append(constraint)
    budget = next((Decimal(v.value) for v in document.values(PHT.epsilonBudget, node) if isinstance(v, Literal)), None)
    return Rule(node.value, kind, frozenset(v.value for v in document.values(NamedNode(ODRL + "assignee"), node)
                                            if isinstance(v, NamedNode)), tuple(constraints), budget)
