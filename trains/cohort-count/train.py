"""Incremental cohort count (uses only the train I/O contract, docs/train-contract.md).

Parameters (params.json): COLUMN, OP (one of lt le gt ge eq), VALUE (a number), MIN_CELL (minimum cell
size, default 5). Each station counts the rows of its CSV dataset files where COLUMN OP VALUE holds,
and adds the count to the running total it received from the previous station (input 0, if any).
A station whose own count is below MIN_CELL contributes 0 and is listed as suppressed, so a small
cohort cannot be inferred from the difference of two totals.
Output: result.json {"count": total, "stations": n, "suppressed": n}.
"""

import csv
import json
import operator
import os
import pathlib
import sys

OPS = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge, "eq": operator.eq}


def main() -> int:
    params = json.loads(pathlib.Path(os.environ["PHT_PARAMS_FILE"]).read_text())
    column, op, value = params["COLUMN"], OPS[params.get("OP", "gt")], float(params["VALUE"])
    min_cell = int(params.get("MIN_CELL", "5"))
    count = 0
    for path in sorted(pathlib.Path(os.environ["PHT_DATA_DIR"]).glob("*.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if op(float(row[column]), value):
                    count += 1
    previous = {"count": 0, "stations": 0, "suppressed": 0}
    first_input = pathlib.Path(os.environ["PHT_INPUT_DIR"]) / "0" / "result.json"
    if first_input.exists():
        previous = json.loads(first_input.read_text())
    suppressed = count < min_cell
    result = {"count": previous["count"] + (0 if suppressed else count), "stations": previous["stations"] + 1,
              "suppressed": previous["suppressed"] + int(suppressed)}
    pathlib.Path(os.environ["PHT_OUTPUT_DIR"], "result.json").write_text(json.dumps(result))
    print(f"station {os.environ.get('PHT_STATION')}: {count} matching rows{' (suppressed)' if suppressed else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
