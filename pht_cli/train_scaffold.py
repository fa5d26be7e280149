"""``pht train new NAME``: a train folder that runs as generated, for a researcher to change.

It holds a ``Dockerfile`` like the example trains' (``FROM pht/python-base:bookworm``), a ``train.py`` that uses only
the train I/O contract's variables (``docs/train-contract.md``), and a ``train.json`` train file
(``docs/train-definition.md``) for ``pht train submit``. The image digest cannot be known before the image is
built, so the train file carries :data:`PLACEHOLDER_DIGEST`, which ``pht train submit`` refuses with a sentence
saying what to put there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from .output import console, fail

__all__ = ["PLACEHOLDER_DIGEST", "new_train", "scaffold"]

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
"""What the generated train file names as image digest until the researcher puts the built image's there."""

#: a lower-case Docker repository name component, also a definition id: it names both
_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_MAX_NAME = 60

DOCKERFILE = """\
# {name}: made by `pht train new`; the train reads and writes only the paths of docs/train-contract.md.
FROM pht/python-base:bookworm
WORKDIR /train
COPY train.py /train/train.py
USER 10001:10001
ENTRYPOINT ["python3", "/train/train.py"]
"""

TRAIN_SCRIPT = '''\
"""{name}: an incremental row count, made by `pht train new` (uses only the train I/O contract,
docs/train-contract.md). Replace the analysis in main(); keep to the contract's paths.

Each station counts the rows of its CSV dataset files and adds them to the running total it received from the
previous station (input 0, if any). A station with fewer than MIN_CELL rows (parameter, default 5) contributes
0 and is counted as suppressed, so that a small cohort cannot be told from the difference of two totals.
Output: result.json {{"rows": total, "stations": n, "suppressed": n}}.
"""

import csv
import json
import os
import pathlib
import sys


def main() -> int:
    params = json.loads(pathlib.Path(os.environ["PHT_PARAMS_FILE"]).read_text())  # values are strings
    min_cell = int(params.get("MIN_CELL", "5"))
    rows = 0
    for path in sorted(pathlib.Path(os.environ["PHT_DATA_DIR"]).glob("*.csv")):
        with path.open(newline="") as f:
            rows += sum(1 for _ in csv.DictReader(f))
    total = {{"rows": 0, "stations": 0, "suppressed": 0}}
    previous = pathlib.Path(os.environ["PHT_INPUT_DIR"]) / "0" / "result.json"
    if previous.exists():
        total = json.loads(previous.read_text())
    suppressed = rows < min_cell
    total = {{"rows": total["rows"] + (0 if suppressed else rows), "stations": total["stations"] + 1,
             "suppressed": total["suppressed"] + int(suppressed)}}
    pathlib.Path(os.environ["PHT_OUTPUT_DIR"], "result.json").write_text(json.dumps(total))
    print(f"station {{os.environ.get('PHT_STATION')}}: {{rows}} rows{{' (suppressed)' if suppressed else ''}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def train_file(name: str) -> dict[str, Any]:
    """The train file of a new train: its definition (version 1 of the image, over ``pht setup``'s three
    stations) and its parameter values."""
    return {"definition": {
        "id": f"{name}-1", "title": f"{name} (version 1)", "image_name": f"pht-trains/{name}:1",
        "image_digest": PLACEHOLDER_DIGEST, "mode": "incremental", "route": ["aachen", "leipzig", "cologne"],
        "parameters": [{"name": "MIN_CELL", "datatype": "integer", "required": False, "default": "5"}]},
        "parameters": {"MIN_CELL": "5"}}


def scaffold(name: str, parent: Path) -> Path:
    """Write the train folder ``parent/name``; refuse a bad name, a missing parent or an existing folder with
    ``ValueError`` (one sentence)."""
    if len(name) > _MAX_NAME or not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} cannot name a train: use at most {_MAX_NAME} lower-case letters and digits, "
                         "with single '-', '_' or '.' between them (it names the image and the definition)")
    if not parent.is_dir():
        raise ValueError(f"{parent} is not a folder")
    folder = parent / name
    if folder.exists():
        raise ValueError(f"{folder} exists already; choose another name or --dir")
    folder.mkdir()
    (folder / "Dockerfile").write_text(DOCKERFILE.format(name=name))
    (folder / "train.py").write_text(TRAIN_SCRIPT.format(name=name))
    (folder / "train.json").write_text(json.dumps(train_file(name), indent=2) + "\n")
    return folder


def new_train(name: Annotated[str, typer.Argument(help="The train's name: lower-case letters, digits, '-'.")],
              parent: Annotated[Path, typer.Option("--dir", help="Folder to create it in.")] = Path(".")) -> None:
    """Create a train folder that runs as it is: Dockerfile, train.py (an incremental row count) and train.json.

    Build it, put the digest in train.json, submit (docs/train-definition.md).
    Example: pht train new my-count --dir trains
    """
    try:
        folder = scaffold(name, parent)
    except ValueError as e:
        raise fail(str(e)) from None
    except OSError as e:
        raise fail(f"cannot create {parent / name}: {e.strerror}") from None
    console.print(f"created {folder}/ (Dockerfile, train.py, train.json); next:", highlight=False)
    console.print(f"  pht station build-image {folder} --tag pht-trains/{name}:1   # prints the image digest",
                  highlight=False)
    console.print(f"  put that digest into {folder / 'train.json'} as image_digest, then", highlight=False)
    console.print(f"  pht train submit {folder / 'train.json'} --central URL --token $T", highlight=False)
