"""Differentially private mean of one column with opendp (uses only the train I/O contract, docs/train-contract.md).

Parameters (params.json): COLUMN (a numeric column of the station's CSV files), LOWER and UPPER (the clamping
bounds: values outside are moved to them, so one person changes the sum by at most max(|LOWER|, |UPPER|)), EPSILON
(the privacy loss of the whole release; declare the same value as the train request's ``epsilon``, which the
station counts against your privacy budget). Half of ε goes to the sum, half to the count, each with the Laplace
mechanism (opendp ``then_laplace``, scales found by ``binary_search_chain``); the mean is their quotient, so the
release is ε-differentially private under add/remove-one-person (basic composition).
Output: result.json {"mean", "sum", "count", "epsilon", "mechanism": "laplace"}, all noisy.
"""

import csv
import json
import os
import pathlib
import sys

import opendp.prelude as dp


def main() -> int:
    params = json.loads(pathlib.Path(os.environ["PHT_PARAMS_FILE"]).read_text())
    column, epsilon = params["COLUMN"], float(params["EPSILON"])
    lower, upper = float(params.get("LOWER", "0")), float(params["UPPER"])
    values = [float(row[column]) for path in sorted(pathlib.Path(os.environ["PHT_DATA_DIR"]).glob("*.csv"))
              for row in csv.DictReader(path.open(newline=""))]
    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()
    bounded_sum = space >> dp.t.then_clamp((lower, upper)) >> dp.t.then_sum()
    noisy_sum = dp.binary_search_chain(lambda s: bounded_sum >> dp.m.then_laplace(s), d_in=1, d_out=epsilon / 2)
    noisy_count = dp.binary_search_chain(lambda s: space >> dp.t.then_count() >> dp.m.then_laplace(s), d_in=1,
                                         d_out=epsilon / 2)
    total, count = noisy_sum(values), noisy_count(values)
    result = {"mean": total / max(count, 1), "sum": total, "count": count, "epsilon": epsilon, "mechanism": "laplace"}
    pathlib.Path(os.environ["PHT_OUTPUT_DIR"], "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
