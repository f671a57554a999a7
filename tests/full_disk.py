"""A full disk for the G history writer's tests: an ``open`` to monkeypatch
into :mod:`sgs_mm.analysis.history`."""
import builtins

ENOSPC = (28, 'No space left on device')


def full_disk_open(n_ok=0, torn=True, later_ok=False, path_part=''):
    """An ``open`` whose appends (mode ``'a'``) to paths containing
    ``path_part`` succeed ``n_ok`` times; the next one fails with ENOSPC
    (half of its text reaches the file when ``torn``); appends after that
    succeed (``later_ok``: e.g. the incomplete marker) or fail at open."""
    appends = [0]

    class FailingWrite:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            if torn:
                self.f.write(text[:len(text) // 2])
                self.f.flush()
            raise OSError(*ENOSPC)

        def flush(self):
            pass

    def fake_open(path, mode='r', *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        if mode != 'a' or path_part not in str(path):
            return f
        appends[0] += 1
        if appends[0] == n_ok + 1:
            return FailingWrite(f)
        if appends[0] > n_ok + 1 and not later_ok:
            f.close()
            raise OSError(*ENOSPC)
        return f
    return fake_open
