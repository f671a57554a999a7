"""The multi-node path (issue 10): two torchrun launchers, one per "node", on
localhost (``--nnodes=2 --nproc_per_node=1``, c10d rendezvous, gloo), train
the toy config (tests/configs/toy_sgs_torchrun.py, 2 epochs, SGS refresh at
epoch 1) through ``tools/train.py --launcher pytorch``.

Each process has LOCAL_RANK 0 and a different global RANK, so anything that
takes the local rank for the global one (samplers, seeds, the rank-aware
refresh draw) shows up here: the ranks would train on and refresh with the
same samples. The probe hook (tests/scripts/sgs_torchrun_hooks.py) dumps what
each rank saw; G must be identical on both ranks and equal to one process's G
on the union of both ranks' refresh batches. The run uses
``randomness.diff_rank_seed=True`` (mmengine adds the global rank to the seed):
the refresh draw must still split the data between the ranks.
"""
import sys
from pathlib import Path

import pytest
import torch

from sgs_mm.sgs import SpatialGradScaler
from toy_runner import SGSToyNet

sys.path.insert(0, str(Path(__file__).parent / 'scripts'))
from torchrun_procs import (TOY_CFG, Launch, free_port, kill_all, tail, toy_env,  # noqa: E402
                            torchrun_cmd, wait_all)

LAYERS = ['conv1', 'conv2', 'conv3']


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_nodes_one_process_each_global_rank_and_union_g(tmp_path):
    probe, port = tmp_path / 'probe', free_port()
    env = toy_env(SGS_TEST_PROBE_DIR=probe)
    launches = []
    try:
        for node in (0, 1):
            args = [TOY_CFG, '--launcher', 'pytorch', '--work-dir', tmp_path / f'node{node}',
                    '--cfg-options', 'train_cfg.max_epochs=2', 'randomness.diff_rank_seed=True']
            cmd = torchrun_cmd(args, nproc=1, nnodes=2, node_rank=node, port=port, rdzv=True)
            launches.append(Launch(cmd, env, tmp_path / f'node{node}.log'))
        codes = wait_all(launches, 300)
        assert codes == [0, 0], '\n'.join(tail(launch) for launch in launches)
    finally:
        kill_all(launches)

    ranks = [torch.load(probe / f'rank{r}.pt', weights_only=False) for r in (0, 1)]
    for r, res in enumerate(ranks):
        env = res['env']
        # what torchrun set: one process per node, so LOCAL_RANK 0 on both
        assert (env['RANK'], env['LOCAL_RANK'], env['WORLD_SIZE'], env['LOCAL_WORLD_SIZE']) \
            == (str(r), '0', '2', '1'), env
        # every rank-aware piece uses the global rank
        assert res['dist_rank'] == res['runner_rank'] == res['sampler_rank'] == r
        assert res['dist_world_size'] == res['runner_world_size'] \
            == res['sampler_world_size'] == 2
        assert res['backend'] == 'gloo' and res['model_device'] == 'cpu'
        assert res['wrapper'] == 'MMDistributedDataParallel'
        # 32 samples, batch 4, 2 ranks: 4 iterations per epoch; refresh at epoch 1
        assert (res['epoch'], res['iter'], res['num_refreshes']) == (2, 8, 1)
        assert res['n_refresh_samples'] == 8
    assert {ranks[0]['env']['GROUP_RANK'], ranks[1]['env']['GROUP_RANK']} == {'0', '1'}
    # diff_rank_seed=True: mmengine adds the global rank to the seed
    assert ranks[1]['seed'] == ranks[0]['seed'] + 1

    # the training sampler split the data between the ranks
    idx0, idx1 = ranks[0]['sampler_indices'], ranks[1]['sampler_indices']
    assert len(idx0) == len(idx1) == 16
    assert sorted(idx0 + idx1) == list(range(32))

    # one G on both ranks, after training and after the probe's refresh
    for key in ('trained_g', 'refresh_g'):
        assert list(ranks[0][key]) == LAYERS
        for name in LAYERS:
            assert torch.equal(ranks[0][key][name], ranks[1][key][name]), (key, name)
            assert not torch.equal(ranks[0][key][name], torch.ones_like(ranks[0][key][name]))

    # the refresh's own draw (rank-dependent seeds under diff_rank_seed) gave
    # the ranks different samples: 16 distinct images
    union = ranks[0]['union_batches']
    assert len(union) == 4
    images = torch.cat([b['inputs'] for b in union]).flatten(1)
    assert len(images) == 16 and len(torch.unique(images, dim=0)) == 16

    # one process on the CPU (as the gloo ranks ran, also on a GPU machine), the
    # same weights and buffers, the union of both ranks' batches
    net = SGSToyNet()
    net.load_state_dict(ranks[0]['state_dict'])
    sgs = SpatialGradScaler(net)
    sgs.refresh(union, forward=lambda m, b: m(**m.data_preprocessor(b, True), mode='tensor'))
    single = sgs.scales()
    assert list(single) == LAYERS
    for name in LAYERS:
        torch.testing.assert_close(single[name], ranks[0]['refresh_g'][name], rtol=0, atol=1e-12)
