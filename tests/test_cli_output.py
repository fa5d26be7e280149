"""How every ``pht`` command shows a SHACL refusal and a table (``pht_cli/output.py``): each violation with its
focus node, path, value and message, whether the report came from the central service's API (JSON) or from the
local validator; tables within the terminal's width, values neither cut inside a word nor read as markup."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from api_helpers import ALICE, register_world
from central_thread import central_service
from rich.console import Console

from pht_cli.output import print_table

REPO = Path(__file__).resolve().parent.parent
PHT = [sys.executable, "-m", "pht_cli.main"]
BAD_DEFINITION = {"id": "bad", "title": "bad", "image_name": "x", "image_digest": "latest", "mode": "incremental",
                  "route": ["aachen"]}


def pht(*args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PHT_")}, "PHT_TOKEN": token, "COLUMNS": "200"}
    return subprocess.run([*PHT, *args], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)


def test_a_refused_train_file_shows_each_violations_focus_node_path_value_and_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"definition": BAD_DEFINITION, "parameters": {}}))
    with central_service() as central:
        with httpx.Client(base_url=central.url) as http:
            register_world(http)
            api = http.post("/api/definitions", headers=ALICE, json=BAD_DEFINITION)  # what the API sends
        alice, keys = ALICE["Authorization"].split()[1], str(tmp_path / "keys")
        assert pht("keys", "init", "--dir", keys, "--central", central.url, token=alice).returncode == 0
        done = pht("train", "submit", str(path), "--central", central.url, "--keys", keys, token=alice)
    assert api.status_code == 422
    results = api.json()["report"]["results"]
    assert results and all(r["focusNode"] and r["resultPath"] and r["value"] for r in results)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    for r in results:
        line = next((line for line in done.stderr.splitlines() if r["message"] in line), None)
        assert line is not None, done.stderr
        assert r["focusNode"] in line and r["resultPath"] in line and r["value"] in line, line


def test_a_file_the_local_validator_refuses_is_reported_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "station.ttl"
    path.write_text('@prefix pht: <https://w3id.org/pht-kg/vocab#> .\n'
                    '<https://x.org/s> a pht:Station ; pht:runtime "teleport" .\n')
    done = pht("validate", str(path))
    assert done.returncode == 1 and "does not conform" in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert lines and all("focus https://x.org/s" in line for line in lines), done.stderr
    assert any("value " in line and "path https://w3id.org/pht-kg/vocab#" in line for line in lines), done.stderr


def render(headers: list[str], rows: list[list[str]], width: int = 80, **options: object) -> list[str]:
    out = io.StringIO()
    print_table(Console(file=out, width=width), headers, rows, **options)  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    assert lines and max(len(line) for line in lines) <= width, out.getvalue()
    return lines


def test_a_table_that_fits_keeps_short_values_whole_and_wraps_text_at_spaces() -> None:
    execution = "3f2c0a61-6fc4-4b0f-a5d8-d6fe2354a721.r1-s1"
    reason = "the train failed at station leipzig: it exited with code 3; see the [b]log[/b] there"
    lines = render(["time", "execution", "reason"], [["2026-12-03 06:56:42", execution, reason]])
    assert any("2026-12-03 06:56:42" in line for line in lines) and any(execution in line for line in lines)
    assert all(any(word in line for line in lines) for word in reason.split()), "a word of the reason was cut"


def test_a_table_too_wide_for_the_terminal_becomes_one_block_per_row() -> None:
    headers = [f"column{i}" for i in range(12)]
    rows = [[f"value-{r}-{i}-of-a-long-identifier" for i in range(12)] for r in range(2)]
    lines = render(headers, rows, hint="choose them with --columns")
    assert "12 columns do not fit 80 characters" in lines[0] and "--columns" in " ".join(lines[:2])
    for row in rows:
        for header, value in zip(headers, row):
            assert any(line.split() == [header, value] for line in lines), (header, value)


def test_columns_empty_in_every_row_are_left_out_only_when_asked() -> None:
    assert "unused" not in " ".join(render(["a", "unused"], [["x", ""]], drop_empty=True))
    assert "unused" in " ".join(render(["a", "unused"], [["x", ""]]))
