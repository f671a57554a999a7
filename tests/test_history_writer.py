"""GHistoryWriter (issue 10 items 7 and 8) and the history reader's formats.

The writer is append-only JSON Lines: a refresh costs one line whatever the
length of the run; a fresh run replaces the file; a resumed run keeps only the
records before its resume point. The reader also reads the version-1 JSON
written by earlier versions and ignores a line torn by a crash.
"""
import json
import os
import time

import numpy as np
import pytest
from full_disk import full_disk_open

from sgs_mm.analysis import history as history_mod
from sgs_mm.analysis import AnalysisInputError, load_g_history
from sgs_mm.analysis.history import (HISTORY_FILE, HISTORY_FORMAT, HISTORY_VERSION,
                                     LEGACY_HISTORY_FILE, GHistoryWriter, read_history_raw)

HEADER = dict(method='nmi', k=5.0, mode='grad', unit='iter')
LAYERS = [f'backbone.layer{i // 4 + 1}.{i % 4}.conv2' for i in range(21)]  # 21 layers


def record(i, n_layers=3, step=4):
    g = np.full((3, 3), 1.0 + i / 100)
    return dict(refresh=i + 1, epoch=0, iter=step * (i + 1),
                layers={f'conv{j}': g.tolist() for j in range(n_layers)})


def write_run(path, n, header=HEADER, step=4):
    writer = GHistoryWriter(str(path), header)
    writer.start()
    for i in range(n):
        writer.append(record(i, step=step))
    return writer


def test_format_is_json_lines(tmp_path):
    path = tmp_path / HISTORY_FILE
    write_run(path, 3)
    lines = path.read_text().splitlines()
    assert len(lines) == 4  # header + one line per refresh
    header = json.loads(lines[0])
    assert header == dict(HEADER, format=HISTORY_FORMAT, version=HISTORY_VERSION)
    assert [json.loads(ln)['iter'] for ln in lines[1:]] == [4, 8, 12]
    hist = load_g_history(str(tmp_path))
    assert (hist.method, hist.k, hist.mode, hist.unit) == ('nmi', 5.0, 'grad', 'iter')
    assert [r.label for r in hist.records] == ['refresh 1\niter 4', 'refresh 2\niter 8',
                                               'refresh 3\niter 12']
    np.testing.assert_allclose(hist.records[-1].layers['conv2'], np.full((3, 3), 1.02))


def test_tensors_and_arrays_are_written_as_lists(tmp_path):
    import torch
    path = tmp_path / HISTORY_FILE
    writer = GHistoryWriter(str(path), HEADER)
    writer.start()
    writer.append(dict(refresh=np.int64(1), epoch=0, iter=3,
                       layers={'a': torch.ones(3, 3, dtype=torch.float64),
                               'b': np.eye(3)}))
    (rec,) = read_history_raw(str(path))['records']
    assert rec['layers']['a'] == [[1.0] * 3] * 3 and rec['refresh'] == 1


def test_append_before_start_is_an_error(tmp_path):
    writer = GHistoryWriter(str(tmp_path / HISTORY_FILE), HEADER)
    with pytest.raises(RuntimeError, match='start'):
        writer.append(record(0))
    with pytest.raises(TypeError):
        GHistoryWriter(str(tmp_path / 'x.jsonl'), dict(k=object()))


def test_fresh_run_replaces_old_history(tmp_path):
    path = tmp_path / HISTORY_FILE
    write_run(path, 5, header=dict(method='autocorr', k=3.0, mode='update', unit='epoch'))
    writer = GHistoryWriter(str(path), HEADER)
    writer.start(None)  # run B in run A's work_dir, not resumed
    data = read_history_raw(str(path))
    assert data['records'] == []
    assert (data['method'], data['k'], data['mode'], data['unit']) == ('nmi', 5.0, 'grad',
                                                                        'iter')
    writer.append(record(0))
    assert [r['iter'] for r in read_history_raw(str(path))['records']] == [4]
    assert not [p for p in os.listdir(tmp_path) if '.tmp' in p]


def test_resume_truncates_at_resume_point(tmp_path):
    path = tmp_path / HISTORY_FILE
    write_run(path, 6)  # iters 4 .. 24
    writer = GHistoryWriter(str(path), dict(HEADER, k=7.0))
    writer.start(resume_iter=12)  # checkpoint at iter 12: the refresh at 12 is redone
    data = read_history_raw(str(path))
    assert [r['iter'] for r in data['records']] == [4, 8]
    assert data['k'] == 7.0  # header refreshed
    writer.append(record(2))
    assert [r['iter'] for r in read_history_raw(str(path))['records']] == [4, 8, 12]
    # resuming where no history exists starts a fresh one
    other = tmp_path / 'other' / HISTORY_FILE
    GHistoryWriter(str(other), HEADER).start(resume_iter=100)
    assert read_history_raw(str(other))['records'] == []


def test_resume_after_crash_drops_torn_line(tmp_path):
    path = tmp_path / HISTORY_FILE
    write_run(path, 3)
    with open(path, 'a') as f:
        f.write(json.dumps(record(3))[:50])  # killed while writing refresh 4
    hist = load_g_history(str(path))
    assert [r.iter for r in hist.records] == [4, 8, 12]
    assert any('incomplete' in n and 'ignored' in n for n in hist.notes)
    writer = GHistoryWriter(str(path), HEADER)
    writer.start(resume_iter=16)
    assert any('incomplete' in n for n in writer.notes)
    writer.append(record(3))
    data = read_history_raw(str(path))
    assert [r['iter'] for r in data['records']] == [4, 8, 12, 16] and not data['notes']


def test_damaged_middle_line_is_an_error(tmp_path):
    path = tmp_path / HISTORY_FILE
    write_run(path, 3)
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:30]
    path.write_text('\n'.join(lines) + '\n')
    with pytest.raises(AnalysisInputError, match=r':3: not a JSON line'):
        load_g_history(str(path))


def legacy_history(records, **header):
    """What SpatialGradScalingHook wrote before the JSON Lines format (version 1)."""
    return json.dumps(dict(format=HISTORY_FORMAT, version=1, method='nmi', k=5.0, mode='grad',
                           records=records, **header))


def test_old_format_still_read(tmp_path):
    (tmp_path / LEGACY_HISTORY_FILE).write_text(
        legacy_history([record(i, step=5) for i in range(3)]))
    hist = load_g_history(str(tmp_path))
    assert hist.source.endswith(LEGACY_HISTORY_FILE)
    assert [r.iter for r in hist.records] == [5, 10, 15] and hist.k == 5.0
    assert hist.unit == 'iter'  # no unit in version 1: epoch stays 0, iter moves
    epochs = [dict(record(i), epoch=i + 1) for i in range(2)]
    (tmp_path / 'by_epoch.json').write_text(legacy_history(epochs))
    hist = load_g_history(str(tmp_path / 'by_epoch.json'))
    assert hist.unit == 'epoch' and hist.records[1].label == 'refresh 2\nepoch 2'
    # pretty-printed version 1 (json.dump(indent=...)) too
    (tmp_path / 'pretty.json').write_text(json.dumps(json.loads(legacy_history(epochs)),
                                                     indent=2))
    assert len(load_g_history(str(tmp_path / 'pretty.json')).records) == 2
    # the new file wins over a legacy one left in the same work_dir
    write_run(tmp_path / HISTORY_FILE, 1)
    assert load_g_history(str(tmp_path)).source.endswith(HISTORY_FILE)


def test_resume_carries_legacy_records_over(tmp_path):
    (tmp_path / LEGACY_HISTORY_FILE).write_text(
        legacy_history([record(i, step=5) for i in range(4)]))  # iters 5 .. 20
    writer = GHistoryWriter(str(tmp_path / HISTORY_FILE), HEADER)
    writer.start(resume_iter=15)
    assert [r['iter'] for r in read_history_raw(str(tmp_path / HISTORY_FILE))['records']] == [
        5, 10]


def test_append_is_constant_time(tmp_path, monkeypatch):
    """10k refreshes of 21 layers: each append opens the file for appending, reads nothing,
    writes one line, and the file grows by exactly that line."""
    path = tmp_path / HISTORY_FILE
    writer = GHistoryWriter(str(path), HEADER)
    writer.start()
    opened = []
    real_open = open

    def tracking_open(file, mode='r', *args, **kwargs):
        opened.append(mode)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(history_mod, 'open', tracking_open, raising=False)
    g = np.random.default_rng(0).random((3, 3)).tolist()
    layers = {name: g for name in LAYERS}
    sizes = [path.stat().st_size]
    start = time.perf_counter()
    for i in range(10_000):
        writer.append(dict(refresh=i + 1, epoch=0, iter=10 * (i + 1), layers=layers))
        if i % 1000 == 999:
            sizes.append(path.stat().st_size)
    elapsed = time.perf_counter() - start
    assert opened == ['a'] * 10_000  # never read, never rewritten
    growth = np.diff(sizes)  # bytes per 1000 appends: the same in the 1st and the 10th
    assert growth.max() - growth.min() < 0.01 * growth.mean()
    assert 60 * 2**20 > sizes[-1] > 30 * 2**20  # ~43 MiB, as in the issue
    # the old rewrite-everything writer needed ~4.8 s per append at this size
    assert elapsed < 120, elapsed
    lines = path.read_text().splitlines()
    assert len(lines) == 10_001 and json.loads(lines[-1])['refresh'] == 10_000


# ------------------------------------------- a write that fails (issue 15 case 7)
def fail_appends(monkeypatch, torn=True):
    """The next append to the history fails with ENOSPC (half the line reaches
    the file when ``torn``); the incomplete marker's append then succeeds."""
    monkeypatch.setattr(history_mod, 'open', full_disk_open(torn=torn, later_ok=True),
                        raising=False)


@pytest.mark.parametrize('torn', [True, False])
def test_failed_append_marks_the_history_incomplete(tmp_path, monkeypatch, torn):
    path = tmp_path / HISTORY_FILE
    writer = write_run(path, 2)
    fail_appends(monkeypatch, torn)
    assert writer.append(record(2)) is False
    assert 'No space left on device' in writer.incomplete
    assert writer.append(record(3)) is False  # nothing more is written
    monkeypatch.undo()
    hist = load_g_history(str(path))
    assert [r.iter for r in hist.records] == [4, 8]
    (note, ) = hist.notes
    assert 'incomplete: writing stopped after refresh 2' in note
    assert read_history_raw(str(path))['incomplete'][0]['at_iter'] == 12


@pytest.mark.parametrize('resume_iter,marked', [(20, True), (12, False), (8, False)])
def test_resume_keeps_the_incomplete_mark_only_for_a_gap_before_it(tmp_path, monkeypatch,
                                                                    resume_iter, marked):
    path = tmp_path / HISTORY_FILE
    writer = write_run(path, 2)  # iters 4, 8
    fail_appends(monkeypatch, torn=False)
    writer.append(record(2))  # iter 12 lost
    monkeypatch.undo()
    writer = GHistoryWriter(str(path), HEADER)
    writer.start(resume_iter=resume_iter)
    writer.append(record(4))  # iter 20
    data = read_history_raw(str(path))
    assert [r['iter'] for r in data['records']] == [r for r in (4, 8) if r < resume_iter] + [20]
    assert bool(data['incomplete']) is marked
    if marked:
        assert data['incomplete'][0]['position'] == 2  # between iter 8 and iter 20
