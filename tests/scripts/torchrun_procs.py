"""Start torchrun launchers from a test and never leave one behind.

torchrun starts each worker in a new session (``start_new_session=True``), so
killing the launcher's process group does not reach its workers. ``Launch``
therefore remembers every descendant of its launcher it has seen (read from
``/proc``) and :func:`kill_all` SIGKILLs exactly those processes and the
launcher's own group: only what the test started, by process id.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / 'tests'
TOY_CFG = TESTS / 'configs' / 'toy_sgs_torchrun.py'
TRAIN = REPO / 'tools' / 'train.py'


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def toy_env(**extra) -> Dict[str, str]:
    """The environment for tools/train.py with the toy config: tests/ and
    tests/scripts/ importable (the config's custom_imports), one thread, no
    GPU (the gloo path of ``--launcher pytorch``, also on a GPU machine)."""
    env = dict(os.environ)
    for key in ('SGS_TEST_CRASH_AT_ITER', 'SGS_TEST_PROBE_DIR'):
        env.pop(key, None)
    path = [str(TESTS), str(TESTS / 'scripts'), str(REPO)]
    if env.get('PYTHONPATH'):
        path.append(env['PYTHONPATH'])
    env.update(PYTHONPATH=os.pathsep.join(path), OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONUNBUFFERED='1', CUDA_VISIBLE_DEVICES='')
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _children(pid: int) -> List[int]:
    out = []
    try:
        for tid in os.listdir(f'/proc/{pid}/task'):
            with open(f'/proc/{pid}/task/{tid}/children') as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


class Launch:
    """One launcher process (its own session), output to ``log``."""

    def __init__(self, cmd: Sequence[str], env: Dict[str, str], log: Path):
        self.cmd, self.log = [str(c) for c in cmd], Path(log)
        self._log = open(self.log, 'w')
        self.proc = subprocess.Popen(self.cmd, env=env, cwd=REPO, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.seen = set()

    def note_descendants(self) -> None:
        todo = [self.proc.pid]
        while todo:
            kids = _children(todo.pop())
            self.seen.update(kids)
            todo += kids

    def output(self) -> str:
        self._log.flush()
        return self.log.read_text(errors='replace')

    def kill(self) -> None:
        self.note_descendants()
        for pid in [self.proc.pid, *self.seen]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        self._log.close()


def wait_all(launches: Sequence[Launch], timeout: float) -> List[int]:
    """Return codes of all launchers; raise TimeoutError (with their output)
    when they are not all done within ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        for launch in launches:
            launch.note_descendants()
        codes = [launch.proc.poll() for launch in launches]
        if all(c is not None for c in codes):
            return codes
        if time.monotonic() > end:
            raise TimeoutError(f'launchers still running after {timeout:.0f}s:\n' +
                               '\n'.join(tail(launch) for launch in launches))
        time.sleep(0.2)


def kill_all(launches: Sequence[Launch]) -> None:
    for launch in launches:
        launch.kill()


def tail(launch: Launch, n: int = 4000) -> str:
    return f'--- {" ".join(launch.cmd)}\n{launch.output()[-n:]}'


def torchrun_cmd(args: Sequence[str], *, nproc: int, nnodes: int = 1,
                 node_rank: Optional[int] = None, port: int,
                 rdzv: bool = False) -> List[str]:
    """``python -m torch.distributed.run`` for tools/train.py with ``args``;
    ``rdzv=True``: the c10d rendezvous at 127.0.0.1:``port`` (multi-node)."""
    cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}',
           f'--nnodes={nnodes}']
    if rdzv:
        cmd += ['--rdzv_backend=c10d', f'--rdzv_endpoint=127.0.0.1:{port}',
                '--rdzv_conf=join_timeout=90']
    else:
        cmd += ['--master_addr=127.0.0.1', f'--master_port={port}']
    if node_rank is not None:
        cmd += [f'--node_rank={node_rank}']
    return cmd + [str(TRAIN), *map(str, args)]
