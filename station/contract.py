"""The train I/O contract: where a train finds its inputs and puts its output, in every runtime.

Train authors rely on exactly this (documented in ``docs/train-contract.md``); every runtime mounts the
same paths and sets the same environment variables, so one image runs unchanged under Docker, Podman,
Kubernetes or the local process runtime.
"""

from types import MappingProxyType

DATA_DIR = "/pht/data"          #: the station's dataset, read-only
INPUT_DIR = "/pht/input"        #: previous outputs, read-only: one sub-folder per input (``0``, ``1``, ...)
DATASPACE_DIR = "/pht/dataspace"  #: data-space inputs, read-only: ``{name}/data`` per declared input
DATASPACE_FILE = "data"         #: the file name of a data-space input's bytes in its folder
PARAMS_FILE = "/pht/params.json"  #: the train's parameter values, a JSON object of strings, read-only
OUTPUT_DIR = "/pht/output"      #: the only writable place; everything in it is the output
WORK_DIR = "/tmp"               #: scratch space (small tmpfs), discarded

TRAIN_UID = 10001               #: trains run as this unprivileged user and group

#: environment variable -> value (paths) that every runtime sets; ``PHT_ROLE``, ``PHT_ROUND``,
#: ``PHT_STATION`` and ``PHT_INPUT_COUNT`` are added per run by :func:`run_environment`.
PATH_ENV = MappingProxyType({
    "PHT_DATA_DIR": DATA_DIR,
    "PHT_INPUT_DIR": INPUT_DIR,
    "PHT_DATASPACE_DIR": DATASPACE_DIR,
    "PHT_PARAMS_FILE": PARAMS_FILE,
    "PHT_OUTPUT_DIR": OUTPUT_DIR,
    "HOME": WORK_DIR,
    "TMPDIR": WORK_DIR,
})

ROLE_STATION = "station"        #: the run analyses this station's dataset
ROLE_AGGREGATOR = "aggregator"  #: the run combines the round's station outputs (federated mode)

#: exit codes: 0 = success, output is reviewed; anything else = failure, the execution fails with it.
EXIT_OK = 0


def run_environment(*, role: str, round_: int, station: str, input_count: int) -> dict[str, str]:
    """All environment variables a train sees (paths plus the per-run facts)."""
    env = dict(PATH_ENV)
    env.update({"PHT_ROLE": role, "PHT_ROUND": str(round_), "PHT_STATION": station,
                "PHT_INPUT_COUNT": str(input_count)})
    return env
