"""What a multi-process launcher (``torchrun``, ``accelerate launch``, ``mpirun``) tells each
process: how many processes it started and which one this is. torchrun and accelerate set
``WORLD_SIZE``/``RANK``; MPI launchers set their own names (Intel MPI/MPICH's ``PMI_*``, Open
MPI's ``OMPI_COMM_WORLD_*``, MVAPICH's ``MV2_COMM_WORLD_*``). A command run on its own is one
process of rank 0."""

from __future__ import annotations

import os

WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def _first_set(names: tuple[str, ...], default: int) -> int:
    for name in names:
        if os.environ.get(name):
            return int(os.environ[name])
    return default


def launched_processes() -> int:
    """How many processes the launcher started (1 when the command runs on its own)."""
    return _first_set(WORLD_SIZE_VARIABLES, 1)


def process_rank() -> int:
    """This process's rank under a multi-process launch; 0 when the command runs on its own."""
    return _first_set(RANK_VARIABLES, 0)
