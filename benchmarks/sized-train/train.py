"""Write BYTES random bytes to the output (incompressible, so packing cannot shrink it); read the input first."""

import json
import os
import pathlib

params = json.loads(pathlib.Path(os.environ["PHT_PARAMS_FILE"]).read_text())
for path in pathlib.Path(os.environ["PHT_INPUT_DIR"]).rglob("*"):
    if path.is_file():
        path.read_bytes()
pathlib.Path(os.environ["PHT_OUTPUT_DIR"], "blob.bin").write_bytes(os.urandom(int(params.get("BYTES", "16"))))
