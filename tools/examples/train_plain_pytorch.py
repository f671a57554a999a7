"""SGS in a plain PyTorch loop, no OpenMMLab: torchvision ResNet + SGD.

    python tools/examples/train_plain_pytorch.py --data /path/to/imagenet/train
    torchrun --nproc_per_node=8 tools/examples/train_plain_pytorch.py --data ...   # DDP
    python tools/examples/train_plain_pytorch.py --data ... --epochs 150 \\
        --resume work_dirs/plain_sgs/latest.pth          # continue, or train longer

Without ``--data`` it trains on torchvision's ``FakeData`` (a smoke test).
G is refreshed at epoch ``--warmup`` and every ``--interval`` epochs after it
from 2 training batches; the lr follows a cosine schedule over ``--epochs``.
``<work-dir>/latest.pth`` is saved after every epoch with ``sgs.state_dict()``
and the random number generators' states, atomically (a kill during the
write leaves the previous checkpoint complete); ``--resume`` restores it and
continues as the uninterrupted run would. Resuming with a different
``--epochs`` rebuilds the cosine schedule for the new length at the resumed
epoch (and says so).
"""
import argparse
import itertools
import math
import os
import random

import torch
import torch.distributed as dist
import torchvision
import torchvision.transforms as T
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from sgs_mm.atomic_io import atomic_torch_save
from sgs_mm.sgs import InvalidSGSState, SpatialGradScaler

FAKE_CLASSES = 1000  # FakeData's classes when --num-classes is not given


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--data', help='ImageFolder root, one folder per class (default: FakeData)')
    p.add_argument('--arch', default='resnet18', help='a torchvision.models constructor')
    p.add_argument('--epochs', type=int, default=120,
                   help='total epochs (the cosine schedule\'s length)')
    p.add_argument('--batch-size', type=int, default=32, help='per process')
    p.add_argument('--lr', type=float, default=0.1,
                   help='initial lr (SGD, momentum 0.9, weight decay 1e-4)')
    p.add_argument('--image-size', type=int, default=224, help='RandomResizedCrop size')
    p.add_argument('--fake-size', type=int, default=256, help='FakeData images')
    p.add_argument('--num-classes', type=int,
                   help=f'classifier outputs (default: the ImageFolder\'s number of classes; '
                        f'{FAKE_CLASSES} for FakeData)')
    p.add_argument('--warmup', type=int, default=1, help='first refresh epoch')
    p.add_argument('--interval', type=int, default=5, help='refresh every N epochs')
    p.add_argument('--workers', type=int, default=min(8, os.cpu_count() or 1),
                   help='DataLoader worker processes')
    p.add_argument('--work-dir', default='work_dirs/plain_sgs',
                   help='where latest.pth is written')
    p.add_argument('--resume', help='checkpoint to resume from (e.g. <work-dir>/latest.pth)')
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args(argv)


def cosine_lr(base_lr, epoch, epochs, eta_min=0.0):
    """CosineAnnealingLR's closed form: the lr of ``epoch`` in a run of ``epochs``."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def rebuild_cosine(optimizer, epochs, start):
    """A CosineAnnealingLR over ``epochs`` positioned at epoch ``start``: every group's lr
    is set to the new schedule's value there, from its initial lr."""
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    for group in optimizer.param_groups:
        group['lr'] = cosine_lr(group['initial_lr'], start, epochs, scheduler.eta_min)
    scheduler.last_epoch = start
    scheduler._last_lr = [group['lr'] for group in optimizer.param_groups]
    return scheduler


def rng_state():
    """This process's random number generators: torch (CPU and every CUDA
    device), numpy and Python's ``random``, in types a weights-only
    ``torch.load`` reads back."""
    import numpy as np
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return dict(torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype('int64')), pos=pos,
                           has_gauss=has_gauss, gauss=gauss),
                python=dict(version=version, internal=list(internal), gauss_next=gauss_next))


def set_rng_state(state):
    """Restore :func:`rng_state` (CUDA states only for as many devices as
    were saved and exist)."""
    import numpy as np
    torch.set_rng_state(state['torch'])
    cuda = state.get('cuda') or []
    if cuda and torch.cuda.is_available():
        for i, s in enumerate(cuda[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)
    n = state['numpy']
    np.random.set_state((n['kind'], n['keys'].numpy().astype(np.uint32), n['pos'],
                         n['has_gauss'], n['gauss']))
    p = state['python']
    random.setstate((p['version'], tuple(p['internal']), p['gauss_next']))


def all_rng_states(distributed):
    """Every rank's :func:`rng_state`, by rank (gathered on all ranks)."""
    mine = rng_state()
    if not distributed:
        return [mine]
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, mine)
    return states


def main(argv=None):
    args = parse_args(argv)
    distributed = int(os.environ.get('WORLD_SIZE', '1')) > 1
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if distributed:
        dist.init_process_group('nccl' if cuda else 'gloo')
    rank = dist.get_rank() if distributed else 0
    device = torch.device('cuda', local_rank) if cuda else torch.device('cpu')
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(args.seed)

    def say(*text):
        if rank == 0:
            print(*text, flush=True)

    transform = T.Compose([T.RandomResizedCrop(args.image_size), T.RandomHorizontalFlip(),
                           T.ToTensor()])
    if args.data:
        dataset = torchvision.datasets.ImageFolder(args.data, transform)
        num_classes = args.num_classes or len(dataset.classes)
        if num_classes < len(dataset.classes):
            raise SystemExit(f'--num-classes {num_classes}: {args.data} has '
                             f'{len(dataset.classes)} classes (folders)')
        say(f'{args.data}: {len(dataset)} images in {len(dataset.classes)} classes; '
            f'{num_classes} outputs')
    else:
        num_classes = args.num_classes or FAKE_CLASSES
        dataset = torchvision.datasets.FakeData(args.fake_size, (3, args.image_size,
                                                                 args.image_size),
                                                num_classes, T.ToTensor())
    sampler = DistributedSampler(dataset, seed=args.seed) if distributed else None
    loader = DataLoader(dataset, args.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=args.workers, drop_last=True)
    if len(loader) == 0:
        raise SystemExit(f'{len(dataset)} images make no full batch of --batch-size '
                         f'{args.batch_size}')

    model = getattr(torchvision.models, args.arch)(num_classes=num_classes).to(device)
    if distributed:
        model = DistributedDataParallel(model, device_ids=[local_rank] if cuda else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9,
                                weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)

    sgs = SpatialGradScaler(model, k=5)  # method='nmi'; the DDP wrapper is unwrapped
    sgs.attach(optimizer)
    start = 0
    refresh_now = False  # a resume past the warm-up without G for every layer
    rng_states = None  # every rank's generators where the checkpoint stopped
    if args.resume:
        ckpt = torch.load(args.resume, map_location='cpu', weights_only=True)
        (model.module if distributed else model).load_state_dict(ckpt['model'])
        optimizer.load_state_dict(ckpt['optimizer'])
        try:
            restored = sgs.load_state_dict(ckpt['sgs']) if 'sgs' in ckpt else 0
        except InvalidSGSState as e:  # a damaged G: treated like a missing one
            say(f'{e} SGS starts afresh.')
            restored = 0
        start = ckpt['epoch']
        sampler_state = ckpt.get('sampler', {})
        if sampler_state.get('seed', args.seed) != args.seed:
            say(f'--seed {args.seed} ignored: the data order continues with the checkpoint\'s '
                f'seed {sampler_state["seed"]}')
        args.seed = sampler_state.get('seed', args.seed)
        if sampler is not None:
            sampler.seed = args.seed
        world = dist.get_world_size() if distributed else 1
        saved_rng = ckpt.get('rng') or []
        if len(saved_rng) == world:
            rng_states = saved_rng
        else:
            say(f'the checkpoint holds the random number generators of {len(saved_rng)} '
                f'process(es), this run has {world}: the resumed run draws other random '
                'numbers (data order and augmentation) than an uninterrupted one')
        if start > args.warmup and (restored < len(sgs.scales()) or not sgs.num_refreshes):
            refresh_now = True
            say(f'the checkpoint restored G of {restored} of {len(sgs.scales())} layers: '
                f'SGS refreshes at the resume point (epoch {start})')
        trained_for = ckpt.get('epochs', ckpt['scheduler']['T_max'])
        say(f'resumed {args.resume}: {start} of {trained_for} epochs done, '
            f'SGS refresh #{sgs.num_refreshes}')
        initial_lr = optimizer.param_groups[0].get('initial_lr', args.lr)
        if not math.isclose(initial_lr, args.lr):
            say(f'--lr {args.lr:g} ignored: the schedule continues from the checkpoint\'s '
                f'initial lr {initial_lr:g}')
        if start >= args.epochs:
            say(f'nothing to train: the checkpoint has {start} epochs and --epochs is '
                f'{args.epochs}; pass a larger --epochs to train longer')
            if distributed:
                dist.destroy_process_group()
            return model, sgs
        if trained_for == args.epochs:
            scheduler.load_state_dict(ckpt['scheduler'])
        else:  # the saved scheduler would keep the old length (its T_max)
            scheduler = rebuild_cosine(optimizer, args.epochs, start)
            say(f'--epochs {args.epochs} differs from the checkpoint\'s {trained_for}: '
                f'cosine lr schedule rebuilt over {args.epochs} epochs at epoch {start} '
                f'(lr {scheduler.get_last_lr()[0]:.6g})')

    os.makedirs(args.work_dir, exist_ok=True)
    if rng_states is not None:  # last, after everything that draws random numbers
        set_rng_state(rng_states[rank])
    for epoch in range(start, args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        scheduled = epoch == args.warmup or (epoch > args.warmup and epoch % args.interval == 0)
        if scheduled or (refresh_now and epoch == start):
            batches = [x.to(device) for x, _ in itertools.islice(loader, 2)]
            report = sgs.refresh(batches)  # eval + no_grad inside; all ranks get one G
            say(f'epoch {epoch}: SGS refresh #{report.refresh} '
                f'({report.seconds:.2f}s, {len(report.updated)} layers)')
        lr = optimizer.param_groups[0]['lr']
        model.train()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # each KxK conv weight gradient is multiplied by its G
            optimizer.step()
        scheduler.step()
        say(f'epoch {epoch}: lr {lr:.6g} loss {loss.item():.4f}')
        rngs = all_rng_states(distributed)
        if rank == 0:  # a temporary file, then renamed: a kill leaves the old one complete
            atomic_torch_save(dict(epoch=epoch + 1, epochs=args.epochs,
                                   model=(model.module if distributed else model).state_dict(),
                                   optimizer=optimizer.state_dict(),
                                   scheduler=scheduler.state_dict(), sgs=sgs.state_dict(),
                                   sampler=dict(seed=args.seed, epoch=epoch + 1), rng=rngs),
                              os.path.join(args.work_dir, 'latest.pth'))
    say(f'done: {args.epochs} epochs; checkpoint {os.path.join(args.work_dir, "latest.pth")}')
    if distributed:
        dist.destroy_process_group()
    return model, sgs


if __name__ == '__main__':
    main()
