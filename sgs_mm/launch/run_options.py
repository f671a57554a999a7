"""How a pipeline run is carried out: one object for every option of
:func:`sgs_mm.launch.pipeline.run_pipeline` (``tools/pipeline.py`` fills it
from its command line)."""
import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional

__all__ = ['RunOptions', 'LAUNCHERS']

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


@dataclass
class RunOptions:
    """The options of one pipeline run.

    Args:
        work_root: where the stages' folders go (None: the spec's
            ``work_root``).
        only: run only the stages of these names (None: all).
        launcher: how each stage process starts: ``'none'``,
            ``'pytorch'`` (torchrun), ``'slurm'`` (srun) or ``'mpi'``.
        nproc: processes (GPUs) per stage under a distributed launcher (a
            stage's own ``nproc`` in the spec wins).
        port: the first torchrun master port (stage slot ``k`` uses
            ``port + k``).
        force: rerun the selected stages even where finished (the old
            results are kept until the rerun has finished).
        dry_run: check every stage's inputs and print its commands only.
        quiet: stage output to the stage's ``pipeline.log`` only (the
            console gets the status lines).
        slurm_partition: the partition for ``launcher='slurm'``.
        cfg_options: config options added to every stage.
        seeds: ``1``: one run with the configs' own seeds; ``N``: the whole
            chain with ``randomness.seed`` = 0..N-1, each in
            ``<work_root>/seed<k>/``.
        jobs: run up to this many stages at once.
        env: variables added to every stage process's environment.
        progress: seconds between the status lines of the running stages
            (0: none).
        check_data: check every stage's dataset paths before it starts.
        console: where messages and status lines go (None: a new
            :class:`~sgs_mm.launch.progress.Console`).

    Raises:
        ValueError: ``seeds`` or ``jobs`` below 1, or an unknown launcher.
    """
    work_root: Optional[str] = None
    only: Optional[List[str]] = None
    launcher: str = 'none'
    nproc: int = 1
    port: int = 29500
    force: bool = False
    dry_run: bool = False
    quiet: bool = False
    slurm_partition: Optional[str] = None
    cfg_options: Optional[dict] = None
    seeds: int = 1
    jobs: int = 1
    env: Optional[Dict[str, str]] = None
    progress: float = 20.0
    check_data: bool = True
    console: Optional[object] = None

    def __post_init__(self):
        if int(self.seeds) < 1:
            raise ValueError(f'seeds must be >= 1, got {self.seeds}')
        if int(self.jobs) < 1:
            raise ValueError(f'jobs must be >= 1, got {self.jobs}')
        if self.launcher not in LAUNCHERS:
            raise ValueError(f'launcher must be one of {LAUNCHERS}, got '
                             f'{self.launcher!r}')

    def replace(self, **changes) -> 'RunOptions':
        """A copy with ``changes`` (field names; an unknown one raises
        ``TypeError``)."""
        return dataclasses.replace(self, **changes)
