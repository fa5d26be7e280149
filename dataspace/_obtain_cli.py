"""``python -m dataspace obtain PROVIDER DATASET --out FILE``: a consumer obtaining one dataset, from the shell.

The same path a station takes for a data-space train (:class:`DataspaceConsumer`): the provider's catalog, an
agreement under the dataset's offer, one pull, the SHA-256 checked; the consumer's identity from ``PHT_DSP_*``
(``PARTICIPANT_ID``, ``CALLBACK_URL``, ``LISTEN``, ``ISSUER``, ``ISSUER_KEY``, ``IDENTITY_TOKEN_FILE``). Its
callbacks are served while it runs. Refusals exit 1 with one sentence.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from ._consumer import TransferFailed
from ._obtain import ConsumerSettings, DataspaceConsumer

__all__ = ["obtain_main"]


def obtain_main(argv: Sequence[str], env: Mapping[str, str] = os.environ) -> int:
    """Run ``obtain`` with ``argv`` (after the word ``obtain``); the exit code."""
    parser = argparse.ArgumentParser(prog="python -m dataspace obtain",
                                     description="Negotiate for a provider's dataset and pull it into a file.")
    parser.add_argument("provider", help="the provider connector's base URL")
    parser.add_argument("dataset", help="the dataset's id in the provider's catalog")
    parser.add_argument("--out", type=Path, required=True, help="the file to write (not replaced)")
    args = parser.parse_args(list(argv))
    try:
        if args.out.exists():
            raise ValueError(f"{args.out} exists; choose another file.")
        with tempfile.TemporaryDirectory() as scratch:
            settings = ConsumerSettings.from_env(env, "PHT_DSP_", Path(scratch))
            if settings is None:
                raise ValueError("PHT_DSP_PARTICIPANT_ID is required.")
            consumer = DataspaceConsumer(settings)
            try:
                data = consumer.obtain(args.provider, args.dataset)
            finally:
                consumer.close()
        args.out.write_bytes(data)
    except (ValueError, TransferFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(data)} bytes, SHA-256 checked against the catalog)")
    return 0
