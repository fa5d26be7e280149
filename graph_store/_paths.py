"""Where the versioned RDF and SPARQL files live: in the repository, next to the code, loaded locally."""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO_ROOT", "ONTOLOGY_DIR", "SHAPES_DIR", "QUERIES_DIR"]

REPO_ROOT = Path(__file__).resolve().parent.parent
ONTOLOGY_DIR = REPO_ROOT / "ontology"
SHAPES_DIR = REPO_ROOT / "shapes"
QUERIES_DIR = REPO_ROOT / "sparql_queries"
