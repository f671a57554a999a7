"""Console progress of the pipeline: what each running stage is doing, read
from its mmengine log lines, and a status line per stage at least every few
seconds."""
import re
import sys
import threading
import time
from typing import Dict, Optional

__all__ = ['StageStatus', 'Console']

_LOG_POS = re.compile(r'(Epoch|Iter)\((train|val|test)\)\s+(?:\[\s*(\d+)\])?'
                      r'\[\s*(\d+)/(\d+)\]')
_LOG_ETA = re.compile(r'\beta: (\d+ days?, [\d:]+|[\d:]+)')
_LOG_REFRESH = re.compile(r'SGS refresh #(\d+) at (\w+ \d+) \(([\d.]+s)'
                          r'.*?(\d+) layers')


class StageStatus:
    """What one running stage is doing, from its mmengine log lines."""

    def __init__(self, label: str, total: Optional[int] = None,
                 unit: Optional[str] = None):
        self.label, self.total, self.unit = label, total, unit
        self.phase, self.pos, self.eta = 'starting', '', None

    def set_phase(self, phase: str) -> None:
        self.phase, self.pos, self.eta = phase, '', None

    def feed(self, line: str) -> Optional[str]:
        """Update from one log line; return an event worth printing now
        (an SGS refresh), else None."""
        m = _LOG_REFRESH.search(line)
        if m:
            return (f'{self.label}: SGS refresh #{m.group(1)} at '
                    f'{m.group(2)} ({m.group(4)} layers, {m.group(3)})')
        m = _LOG_POS.search(line)
        if not m:
            return None
        kind, split, outer, i, n = m.groups()
        total = f'/{self.total}' if self.total else ''
        if split == 'train':
            if kind == 'Epoch':
                self.pos = (f'epoch {outer}{total if self.unit == "epoch" else ""}'
                            f', iter {i}/{n}')
            else:
                self.pos = f'iter {i}{total if self.unit == "iter" else "/" + n}'
            eta = _LOG_ETA.search(line)
            self.eta = eta.group(1) if eta else self.eta
            self.phase = 'training'
        else:
            self.pos = f'{"validating" if split == "val" else "testing"} ' \
                f'{i}/{n}'
            self.eta = None
        return None

    def line(self) -> str:
        what = self.pos or self.phase
        if self.pos and self.phase not in ('training', ):
            what = self.pos if self.pos.startswith(('validating', 'testing')) \
                else f'{self.phase} {self.pos}'
        eta = f', ETA {self.eta}' if self.eta else ''
        return f'{self.label}: {what}{eta}'


class Console:
    """Pipeline messages with the elapsed time, and a status line per
    running stage at least every ``interval`` seconds (0: none)."""

    def __init__(self, interval: float = 20.0, stream=None,
                 prefix: str = 'pipeline'):
        self.interval = float(interval or 0)
        self.stream = stream
        self.prefix = prefix
        self.t0 = time.time()
        self.lock = threading.RLock()
        self.active: Dict[str, StageStatus] = {}
        self._stop = threading.Event()
        self._thread = None
        self._last_beat = time.time()

    def say(self, text: str) -> None:
        with self.lock:
            el = int(time.time() - self.t0)
            stream = self.stream or sys.stdout
            stream.write(f'[{self.prefix} {el // 60:02d}:{el % 60:02d}] '
                         f'{text}\n')
            stream.flush()

    def add(self, key: str, status: StageStatus) -> None:
        with self.lock:
            self.active[key] = status

    def remove(self, key: str) -> None:
        with self.lock:
            self.active.pop(key, None)

    def beat(self) -> None:
        with self.lock:
            for st in self.active.values():
                self.say(st.line())
            self._last_beat = time.time()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            if time.time() - self._last_beat >= self.interval:
                self.beat()

    def __enter__(self):
        if self.interval > 0:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name='pipeline-progress')
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        return False
