"""SGS in a plain PyTorch loop, no OpenMMLab: torchvision ResNet + SGD.

    python tools/examples/train_plain_pytorch.py --data /path/to/imagenet/train
    torchrun --nproc_per_node=8 tools/examples/train_plain_pytorch.py --data ...   # DDP

Without ``--data`` it trains on torchvision's ``FakeData`` (a smoke test).
G is refreshed at epoch ``--warmup`` and every ``--interval`` epochs after it
from 2 training batches; checkpoints carry ``sgs.state_dict()`` and
``--resume`` restores it.
"""
import argparse
import itertools
import os

import torch
import torch.distributed as dist
import torchvision
import torchvision.transforms as T
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from sgs_mm.sgs import SpatialGradScaler


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', help='ImageFolder root (default: FakeData)')
    p.add_argument('--arch', default='resnet18')
    p.add_argument('--epochs', type=int, default=120)
    p.add_argument('--batch-size', type=int, default=32, help='per process')
    p.add_argument('--lr', type=float, default=0.1)
    p.add_argument('--image-size', type=int, default=224)
    p.add_argument('--fake-size', type=int, default=256, help='FakeData images')
    p.add_argument('--num-classes', type=int, default=1000)
    p.add_argument('--warmup', type=int, default=1, help='first refresh epoch')
    p.add_argument('--interval', type=int, default=5, help='refresh every N epochs')
    p.add_argument('--work-dir', default='work_dirs/plain_sgs')
    p.add_argument('--resume', help='checkpoint to resume from')
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args(argv)


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

    model = getattr(torchvision.models, args.arch)(num_classes=args.num_classes).to(device)
    if distributed:
        model = DistributedDataParallel(model, device_ids=[local_rank] if cuda else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9,
                                weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)
    transform = T.Compose([T.RandomResizedCrop(args.image_size), T.RandomHorizontalFlip(),
                           T.ToTensor()])
    dataset = (torchvision.datasets.ImageFolder(args.data, transform) if args.data else
               torchvision.datasets.FakeData(args.fake_size, (3, args.image_size,
                                                              args.image_size),
                                             args.num_classes, T.ToTensor()))
    sampler = DistributedSampler(dataset, seed=args.seed) if distributed else None
    loader = DataLoader(dataset, args.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=min(8, os.cpu_count() or 1), drop_last=True)

    sgs = SpatialGradScaler(model, k=5)  # method='nmi'; the DDP wrapper is unwrapped
    sgs.attach(optimizer)
    start = 0
    if args.resume:
        ckpt = torch.load(args.resume, map_location=device, weights_only=True)
        (model.module if distributed else model).load_state_dict(ckpt['model'])
        optimizer.load_state_dict(ckpt['optimizer'])
        scheduler.load_state_dict(ckpt['scheduler'])
        sgs.load_state_dict(ckpt['sgs'])
        start = ckpt['epoch']

    os.makedirs(args.work_dir, exist_ok=True)
    for epoch in range(start, args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        if epoch == args.warmup or (epoch > args.warmup and epoch % args.interval == 0):
            batches = [x.to(device) for x, _ in itertools.islice(loader, 2)]
            report = sgs.refresh(batches)  # eval + no_grad inside; all ranks get one G
            if rank == 0:
                print(f'epoch {epoch}: SGS refresh #{report.refresh} '
                      f'({report.seconds:.2f}s, {len(report.updated)} layers)')
        model.train()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # each KxK conv weight gradient is multiplied by its G
            optimizer.step()
        scheduler.step()
        if rank == 0:
            print(f'epoch {epoch}: loss {loss.item():.4f}')
            torch.save(dict(epoch=epoch + 1,
                            model=(model.module if distributed else model).state_dict(),
                            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                            sgs=sgs.state_dict()),
                       os.path.join(args.work_dir, 'latest.pth'))
    if distributed:
        dist.destroy_process_group()
    return model, sgs


if __name__ == '__main__':
    main()
