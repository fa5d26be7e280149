"""The station's side of "will it run?": describe the dataset's variables, and re-check a train's inputs before it runs.

Describing: the station publishes, through its MPU's signed push (``POST /description``, docs/mpu.md), each of its
datasets down to its variables: the CSV tables' column names with the datatype their values parse as, inferred from a
sample of rows (:func:`describe_dataset`), or as the admin wrote them in a description file (``PHT_STATION_DESCRIPTION``,
:func:`read_description_file`: a JSON file of the ``POST /description`` form, for units and code systems, which no
header says). Only names, datatypes, units and code systems leave: never a row or a value.

Re-checking: the central service checked the station's published description before dispatch
(``orchestrator/dispatch_check.py``), but a description can be out of date, or wrong. So before a train runs, the
station checks its real data against the train's signed input shapes (:func:`input_problem`): every variable the
train reads is a column of its tables, and the values of a sample parse as the declared datatype. Failing, the
execution fails with one sentence before the container starts.

>>> _parses("42", "integer"), _parses("4.2", "integer"), _parses("2026-12-04", "date")
(True, False, True)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx
from pyoxigraph import Literal

from client import WorkItem
from client.input_shapes import InputShapesRefused, parse_input_shapes
from graph_store import PHT

from .cohorts import CohortRefused, csv_tables, table_header, table_rows
from .signed_requests import RequestRefused, parse_ntriples

__all__ = ["SAMPLE_ROWS", "describe_dataset", "describe_station", "input_problem", "publish_description"]

log = logging.getLogger("pht.station.describe")

SAMPLE_ROWS = 200
"""Rows of each table whose values are read to infer a datatype (describing) or checked against one (re-checking)."""
_TYPES = ("integer", "decimal", "boolean", "date", "dateTime")  # the narrowest first; else string


def _parses(value: str, datatype: str) -> bool:
    """Whether ``value`` (a CSV cell, not empty) is a lexical form of ``xsd:{datatype}`` as tables write it."""
    text = value.strip()
    try:
        if datatype == "integer":
            int(text)
        elif datatype == "decimal":
            if not Decimal(text).is_finite():
                return False
        elif datatype == "boolean":
            return text.lower() in ("true", "false", "0", "1")
        elif datatype == "date":
            date.fromisoformat(text)
        elif datatype == "dateTime":
            datetime.fromisoformat(text)
    except (ValueError, InvalidOperation):
        return False
    return True


def describe_dataset(folder: Path) -> list[dict[str, str]]:
    """The variables of the dataset in ``folder``: each CSV column once (first table first), with the narrowest
    datatype every non-empty value of a sample parses as (``string`` if none).

    :raises CohortRefused: a table is not CSV.
    """
    found: dict[str, list[str]] = {}
    for table in csv_tables(folder):
        rows = table_rows(table)[:SAMPLE_ROWS]
        for column in table_header(table):
            found.setdefault(column, []).extend(row.get(column) or "" for row in rows)
    return [{"name": name, "datatype": _narrowest([v for v in values if v.strip()])}
            for name, values in found.items()]


def _narrowest(values: list[str]) -> str:
    for datatype in _TYPES:
        if values and all(_parses(v, datatype) for v in values):
            return datatype
    return "string"


def describe_station(datasets: Mapping[str, Path], description_file: Path | None = None) -> dict[str, Any]:
    """The body of the MPU's ``POST /description``: the admin's description file if there is one, else every dataset
    described from its tables (:func:`describe_dataset`).

    :raises ValueError: the description file cannot be read or is not JSON.
    """
    if description_file is not None:
        try:
            body: dict[str, Any] = json.loads(description_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"the station's description file {description_file} cannot be read as JSON: {e}") from None
        return body
    described = []
    for did, folder in datasets.items():
        try:
            described.append({"id": did, "variables": describe_dataset(folder)})
        except (CohortRefused, OSError) as e:
            log.warning("dataset %s is published without variables: %s", did, e)
            described.append({"id": did})
    return {"datasets": described}


def publish_description(mpu_url: str | None, body: Mapping[str, Any], *, ingest_token: str | None = None) -> bool:
    """Post ``body`` to the MPU's ``/description`` (it pushes it, signed, to the central service); False, logged,
    if there is no MPU or it refuses."""
    if not mpu_url:
        return False
    headers = {"Authorization": f"Bearer {ingest_token}"} if ingest_token else None
    try:
        response = httpx.post(mpu_url.rstrip("/") + "/description", json=dict(body), headers=headers, timeout=10)
    except httpx.HTTPError as e:
        log.warning("the station's description was not published (MPU unreachable): %s", e)
        return False
    if response.status_code >= 400:
        log.warning("the MPU refused the station's description (%s): %s", response.status_code, response.text[:300])
        return False
    return True


def input_problem(work: WorkItem, dataset: Path, station: str) -> str | None:
    """Why ``dataset`` cannot feed the train's signed input shapes (one sentence), or None: no shapes, an
    aggregation (it reads outputs, not a dataset), or every required column is there and a sample of its values
    parses as the declared datatype."""
    if work.stop is None or not work.request:
        return None
    try:
        texts = [t.object.value for t in parse_ntriples(work.request, "signed request")
                 if t.predicate == PHT.inputShapes and isinstance(t.object, Literal)]
        if not texts:
            return None
        shapes = parse_input_shapes(texts[0])
    except (RequestRefused, InputShapesRefused) as e:
        return f"station {station} cannot read the train's input shapes: {e}"
    try:
        tables = {table.name: (table_header(table), table_rows(table)[:SAMPLE_ROWS]) for table in csv_tables(dataset)}
    except (CohortRefused, OSError) as e:
        return f"station {station} cannot read its dataset to check the train's inputs: {e}"
    for variable in shapes.variables:
        holding = [(name, rows) for name, (header, rows) in tables.items() if variable.name in header]
        if not holding:
            return (f"station {station}'s data lacks variable {variable.text()} (required by the train's input "
                    "shape); the train did not run")
        datatype = variable.datatype_name
        for name, rows in holding:
            bad = next((row.get(variable.name) or "" for row in rows if (row.get(variable.name) or "").strip()
                        and datatype is not None and not _parses(row.get(variable.name) or "", datatype)), None)
            if bad is not None:
                return (f"station {station}'s variable {variable.name} in {name} has values that are not "
                        f"xsd:{datatype} (required by the train's input shape); the train did not run")
    return None

