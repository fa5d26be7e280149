"""A started local platform whose stations approve and release by themselves, and a train folder for it.

For tests that need finished trains with real hops (records, provenance, exports) without a reviewer's steps:
the process runtime runs the folder as the train (its image is the folder, its digest the folder's).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from dataspace import ConsumerSettings
from local_platform import LocalPlatform, StationSpec
from station import StationPolicy
from station.runtimes.process import IsolationWarning

DOCKERFILE = ('FROM pht/python-base:bookworm\nWORKDIR /train\nCOPY train.py /train/train.py\n'
              'USER 10001:10001\nENTRYPOINT ["python3", "/train/train.py"]\n')


@contextmanager
def self_releasing_platform(tmp: Path, route: Sequence[str], train_source: str,
                            train_folder: str = "train", *,
                            dataspace: ConsumerSettings | None = None,
                            policies: Mapping[str, StationPolicy] | None = None, patients: str | None = None,
                            with_mpu: bool = True) -> Iterator[tuple[LocalPlatform, Path]]:
    """The platform (stopped on exit) under ``tmp`` with a station per ``route`` entry, each with an empty data
    folder, and the train folder ``tmp/train_folder`` whose ``train.py`` is ``train_source``; ``dataspace``: the
    stations' data-space identity, if they run data-space trains. ``policies``: a station's policy by id (default:
    approve and release automatically); ``patients``: the text of a ``patients.csv`` each data folder holds."""
    train = tmp / train_folder
    train.mkdir()
    (train / "Dockerfile").write_text(DOCKERFILE)
    (train / "train.py").write_text(train_source)
    policy = StationPolicy(requires_approval=False, requires_output_review=False)
    specs = []
    for sid in route:
        (tmp / "data" / sid).mkdir(parents=True)
        if patients is not None:
            (tmp / "data" / sid / "patients.csv").write_text(patients)
        specs.append(StationSpec(sid, tmp / "data" / sid, (policies or {}).get(sid, policy), dataspace))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IsolationWarning)
        platform = LocalPlatform(tmp / "platform", specs, runtime="process", poll_interval_s=0.05,
                                 with_mpu=with_mpu)
        platform.start()
    try:
        yield platform, train
    finally:
        platform.stop()
