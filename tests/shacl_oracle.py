"""pySHACL as the oracle for the differential tests: normalised results of a full validation."""

from __future__ import annotations

from collections.abc import Iterable

import pyshacl
import rdflib
from rdflib.namespace import SH

from graph_store import ValidationResult, load_schema

Key = tuple[str, str | None, str | None, str, str, str]


def _path_key(g: rdflib.Graph, path: rdflib.term.Node | None) -> str | None:
    if path is None:
        return None
    if isinstance(path, rdflib.BNode):
        inverse = g.value(path, SH.inversePath)
        return "^" + str(inverse)
    return str(path)


def _value_key(v: rdflib.term.Node | None) -> str | None:
    return None if v is None else v.n3()


def pyshacl_results(data: rdflib.Graph) -> set[tuple[Key, frozenset[str]]]:
    """Validate ``data`` with pySHACL against the project's shapes and ontology (inference none)."""
    schema = load_schema()
    conforms, report, _ = pyshacl.validate(
        data, shacl_graph=schema.shapes, ont_graph=schema.ontology, inference="none", abort_on_first=False,
        allow_warnings=True,
    )
    out = set()
    for r in report.subjects(rdflib.RDF.type, SH.ValidationResult):
        key = (
            str(report.value(r, SH.focusNode)),
            _path_key(report, report.value(r, SH.resultPath)),
            _value_key(report.value(r, SH.value)),
            str(report.value(r, SH.sourceShape)),
            str(report.value(r, SH.sourceConstraintComponent)).removeprefix(str(SH)),
            str(report.value(r, SH.resultSeverity)).removeprefix(str(SH)),
        )
        out.add((key, frozenset(str(m) for m in report.objects(r, SH.resultMessage))))
    return out


def our_keys(results: Iterable[ValidationResult]) -> set[tuple[Key, str]]:
    """Our results in the oracle's normal form (vocabulary-check results are not SHACL and are left out)."""
    out = set()
    for r in results:
        if r.component_name == "UnknownTermConstraintComponent":
            continue
        d = r.to_dict()
        path = d["resultPath"]
        key = (d["focusNode"] if not str(d["focusNode"]).startswith("_:") else d["focusNode"],
               path, None if r.value is None else rdflib_n3(r.value), r.source_shape.value,
               d["sourceConstraintComponent"], d["severity"])
        out.add((key, r.message))
    return out


def rdflib_n3(term: object) -> str:
    from graph_store._convert import to_rdflib
    return to_rdflib(term).n3()  # type: ignore[arg-type]


def same_results(ours: set[tuple[Key, str]], oracle: set[tuple[Key, frozenset[str]]]) -> tuple[bool, str]:
    """Equal keys, and each of our messages among pySHACL's messages for that result."""
    our_map = {k: m for k, m in ours}
    oracle_map = {k: m for k, m in oracle}
    if our_map.keys() != oracle_map.keys():
        only_ours = sorted(map(str, our_map.keys() - oracle_map.keys()))
        only_oracle = sorted(map(str, oracle_map.keys() - our_map.keys()))
        return False, f"only ours: {only_ours}\nonly pySHACL: {only_oracle}"
    for k, m in our_map.items():
        if oracle_map[k] and m not in oracle_map[k]:
            return False, f"message differs for {k}: ours {m!r}, pySHACL {sorted(oracle_map[k])}"
    return True, ""
