"""The station's consent policy (ODRL in the admin's Turtle, SHACL-validated), its decisions over DUO's hierarchy,
the train request's declared terms and the vetted DUO list. Fast: no services (tests/security/test_consent.py
plays the same rules through real stations)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from rdflib import Graph, URIRef
from rdflib.collection import Collection
from rdflib.namespace import RDFS, SH

from client.purposes import DUO, data_use_terms
from client.train_request import RequestTerms, TrainRequest, epsilon_lexical, request_triples
from graph_store import PHT, PHT_NS, ResourceIris
from station.consent import ConsentPolicy, Constraint, Declared, Rule, decide
from station.consent_ledger import Spend, open_consent_ledger
from station.policy import PolicyError, load_policy
from station.privacy_budget import BudgetExceeded, HeldSpend, spend_on_release

REPO = Path(__file__).resolve().parent.parent
HEAD = """@prefix pht: <https://w3id.org/pht-kg/vocab#> .
@prefix odrl: <http://www.w3.org/ns/odrl/2/> .
@prefix obo: <http://purl.obolibrary.org/obo/> .
@prefix : <https://hospital.example/policies/> .
:pht a pht:StationPolicy ; pht:appliesToStation <https://pht.example.org/id/stations/aachen> ;
    pht:requiresApproval true ; pht:requiresOutputReview true ; pht:consentPolicy :consent .
"""
RULE = """:consent a odrl:Set ; odrl:permission :research .
:research odrl:action odrl:use ; odrl:constraint :c .
:c odrl:leftOperand pht:purpose ; odrl:operator odrl:isA ; odrl:rightOperand obo:DUO_0000006 .
"""
ALICE = "https://pht.example.org/id/agents/alice"
DS, HMB, GRU, POA = (DUO + n for n in ("0000007", "0000006", "0000042", "0000011"))


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "policy.ttl"
    path.write_text(HEAD + body)
    return path


def declared(**terms: object) -> Declared:
    values: dict[str, object] = {"requester": ALICE, "definition": "count", "image": "sha256:" + "0" * 64, **terms}
    return Declared(**values)  # type: ignore[arg-type]


def test_a_consent_policy_is_read_with_its_rules(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, RULE.replace(
        ":research odrl:action odrl:use ;",
        f":research odrl:action odrl:use ; odrl:assignee <{ALICE}> ; pht:epsilonBudget 2.5 ;")
        + ":consent odrl:prohibition :no .\n:no odrl:action odrl:use ; odrl:constraint :p .\n"
          ':p odrl:leftOperand pht:project ; odrl:operator odrl:isAnyOf ; odrl:rightOperand "x" , "y" .\n'
          ":pht pht:dataUse obo:DUO_0000042 .\n"))
    assert policy.consent.data_use == {GRU}
    research, no = sorted(policy.consent.rules, key=lambda r: r.kind)
    assert (research.kind, research.assignees, research.epsilon_budget) == ("permission", {ALICE}, Decimal("2.5"))
    assert research.constraints == (Constraint("purpose", "isA", frozenset({HMB})),)
    assert no.constraints == (Constraint("project", "isAnyOf", frozenset({"x", "y"})),)


FORM = "A station policy names at most one consent policy (pht:consentPolicy), an odrl:Set whose rules"


@pytest.mark.parametrize(("body", "words"), [
    (RULE.replace("odrl:isA", "odrl:gteq"), FORM),
    (RULE.replace("pht:purpose", "pht:colour"), FORM),
    (RULE.replace("odrl:action odrl:use ;", ""), FORM),
    (RULE.replace(":consent a odrl:Set ;", ":consent"), FORM),
    (RULE + ":research pht:epsilonBudget -1.0 .\n", FORM),
    (RULE + ":pht pht:dataUse obo:DUO_0000999 .\n", "The dataset's data use (pht:dataUse) is a DUO term"),
    (RULE.replace("obo:DUO_0000006", "obo:DUO_0000999"), "names http://purl.obolibrary.org/obo/DUO_0000999, which "
                                                         "is not a DUO term of ontology/duo.ttl"),
], ids=["operator", "left-operand", "action", "not-a-set", "negative-budget", "data-use", "unknown-purpose"])
def test_a_bad_consent_policy_refuses_to_load_with_one_sentence(tmp_path: Path, body: str, words: str) -> None:
    with pytest.raises(PolicyError) as refused:
        load_policy(write(tmp_path, body))
    assert words in str(refused.value) and "\n" not in str(refused.value)


def test_purposes_follow_duo_hierarchy() -> None:
    duo = data_use_terms()
    assert duo.allows(GRU, DS) and duo.allows(HMB, DS) and duo.allows(DS, DS) and duo.allows(POA, POA)
    assert not duo.allows(GRU, POA)  # DUO's parent of POA is data use permission: named, or refused
    assert not duo.allows(DS, HMB) and not duo.allows(HMB, POA) and not duo.allows(HMB, DUO + "0000999")


def test_decisions_name_the_rule_and_prohibitions_win() -> None:
    permit = Rule("urn:permit", "permission", constraints=(Constraint("purpose", "isA", frozenset({HMB})),))
    banned = Rule("urn:ban", "prohibition", constraints=(Constraint("definition", "eq", frozenset({"leaky"})),))
    policy = ConsentPolicy((permit, banned), frozenset({GRU, POA}))  # POA named: DUO has it beside GRU
    ok = decide(policy, declared(purpose=DS), station="aachen")
    assert ok.permitted and ok.rule == permit and "urn:permit" in ok.reason
    no = decide(policy, declared(purpose=DS, definition="leaky"), station="aachen")
    assert not no.permitted and no.rule == banned and "the prohibition urn:ban" in no.reason
    assert "no permission of its consent policy allows population origins" in decide(
        policy, declared(purpose=POA), station="aachen").reason
    assert "its ε -1 is not positive" in decide(policy, declared(purpose=DS, epsilon=Decimal(-1)),
                                                station="aachen").reason
    assert decide(ConsentPolicy(), declared(), station="aachen").permitted  # no rules: as before


def test_the_declared_terms_are_signed_triples_and_epsilon_has_one_spelling() -> None:
    iris = ResourceIris("https://pht.example.org/id/")
    request = TrainRequest("urn:uuid:6f0c4d8e-1b2a-4c3d-9e8f-0123456789ab", "count", requester=ALICE,
                           created="2026-12-03T10:00:00Z", parameters={}, recipient=ALICE + "/keys/1",
                           terms=RequestTerms(DS, "cardio", "laplace", epsilon_lexical(0.50)))
    by_predicate = {t.predicate: t.object.value for t in request_triples(iris, request, {})}
    assert by_predicate[PHT.purpose] == DS and by_predicate[PHT.project] == "cardio"
    assert (by_predicate[PHT.dpMechanism], by_predicate[PHT.epsilon]) == ("laplace", "0.5")
    assert epsilon_lexical(1e-5) == "0.00001" and epsilon_lexical("100") == "100"
    with pytest.raises(ValueError, match="not a number"):
        epsilon_lexical("lots")


def test_the_shapes_accept_exactly_the_vetted_duo_terms() -> None:
    """The shapes' closed lists (sh:in) are the terms of ontology/duo.ttl: one list, kept in step."""
    shapes = Graph().parse(REPO / "shapes" / "consent-shapes.ttl")
    lists = [{str(t) for t in Collection(shapes, node)} for prop in shapes.subjects(SH.path, URIRef(PHT.dataUse.value))
             for node in shapes.objects(prop, SH["in"])]
    lists += [{str(t) for t in Collection(shapes, node)} for prop in shapes.subjects(SH.path, URIRef(PHT.purpose.value))
              for node in shapes.objects(prop, SH["in"])]
    assert len(lists) == 2 and all(found == set(data_use_terms().labels) for found in lists)


def test_the_documented_consent_policy_loads(tmp_path: Path) -> None:
    """docs/station.md's example is a policy the station accepts, with the rules it describes."""
    block = next(b for b in re.findall(r"```turtle\n(.*?)```", (REPO / "docs" / "station.md").read_text(), re.S)
                 if "pht:consentPolicy" in b)
    (tmp_path / "policy.ttl").write_text(block)
    consent = load_policy(tmp_path / "policy.ttl").consent
    assert consent.data_use == {HMB}
    assert [(r.iri.rsplit("/", 1)[1], r.kind, r.epsilon_budget) for r in consent.rules] == [
        ("no-leaky", "prohibition", None), ("cardio", "permission", None), ("dp-cardio", "permission", Decimal("1.0"))]


def test_a_release_that_would_exceed_the_budget_is_refused_and_a_repeat_spends_nothing(tmp_path: Path) -> None:
    """Two trains queued while the budget allowed each: the first release spends, the second would exceed it and
    is refused at its release (nothing recorded); the first released again (a resumed release) spends nothing."""
    first, second = (HeldSpend(Spend(f"urn:x:executions/{n}", ALICE, "cardio", "patients", Decimal("0.6")),
                               Decimal("1.0"), "urn:x:dp") for n in (1, 2))
    assert spend_on_release(tmp_path, first) == ("privacy budget left for you on project cardio at dataset "
                                                 "patients: ε 0.4 of 1.0")
    with pytest.raises(BudgetExceeded, match=r"the output's ε 0.6 would exceed the privacy budget of the permission "
                                             r"urn:x:dp \(ε 1.0; .*alice has spent 0.6"):
        spend_on_release(tmp_path, second, record=False)
    with pytest.raises(BudgetExceeded):
        spend_on_release(tmp_path, second)
    assert spend_on_release(tmp_path, first).endswith("ε 0.4 of 1.0")
    with open_consent_ledger(tmp_path) as ledger:
        assert [(r.researcher, r.spent, r.releases) for r in ledger.ledger()] == [(ALICE, Decimal("0.6"), 1)]


def test_every_consent_term_is_declared_and_documented() -> None:
    """The pht: terms of the consent shapes are declared in ontology/*.ttl, each new one with a label and a comment."""
    ontology = Graph()
    for path in (REPO / "ontology").glob("*.ttl"):
        ontology.parse(path)
    shapes = Graph().parse(REPO / "shapes" / "consent-shapes.ttl")
    used = {t for triple in shapes for t in triple if isinstance(t, URIRef) and str(t).startswith(PHT_NS)}
    declared = {s for s in ontology.subjects() if isinstance(s, URIRef)}
    assert used and not used - declared, sorted(used - declared)
    consent = Graph().parse(REPO / "ontology" / "consent.ttl")
    own = {s for s in consent.subjects() if isinstance(s, URIRef) and str(s).startswith(PHT_NS)}
    assert all(consent.value(t, RDFS.label) and consent.value(t, RDFS.comment) for t in own)
