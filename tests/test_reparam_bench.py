"""benchmarks/bench_reparam.py: the paper's refresh count and one probe of
each kind of arm, in this process at a tiny size."""
import pytest

from conftest import load_script


@pytest.fixture(scope='module')
def bench():
    return load_script('benchmarks/bench_reparam.py')


def test_paper_schedule_refreshes(bench):
    # epoch 1 (after the 1-epoch warm-up), then 5, 10, ..., 115 of 0..119
    assert bench.refresh_count(120, 1, 5) == 24
    assert bench.refresh_count(10, 1, 5) == 2


@pytest.mark.slow
@pytest.mark.parametrize('arm', ['sgs', 'dbb'])
def test_probe(bench, arm):
    args = bench.parse_args(['--device', 'cpu', '--batch', '2', '--size', '32', '--steps', '1',
                             '--warmup', '0', '--probe', f'18:{arm}'])
    out = bench.probe(args)
    assert out['model'] == 'ResNet-18' and out['step_s'] > 0 and out['peak_bytes'] > 0
    assert ('refresh_s' in out) == (arm == 'sgs')
    assert out['params'] == (11689512 if arm == 'sgs' else 26306423)  # DBB: the paper's 26.3 M
