"""Applying G to conv weights (SGS_SPEC §4, §7): scale the gradient, or the update."""
import weakref
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn

from .sharding import is_sharded, local_shard

# id(weight) -> (weak ref to the weight, weak ref to the applier whose hook is on
# it): a second applier on the same weight would multiply its gradient by G
# twice. Kept outside the Parameter so that the model still pickles and copies.
_ATTACHED: Dict[int, Tuple['weakref.ref', 'weakref.ref']] = {}


def _owner(w: nn.Parameter):
    entry = _ATTACHED.get(id(w))
    if entry is None or entry[0]() is not w:  # none, or a freed weight's id reused
        return None
    return entry[1]()


class ScalingApplier:
    """Holds G per weight and applies it, exactly once per gradient.

    Args:
        weights: one entry per distinct conv weight Parameter (a weight
            shared by several convs appears once).
        mode: ``'grad'`` multiplies each weight gradient by G as autograd
            produces it (a tensor hook, so before DDP's all-reduce, gradient
            clipping, momentum and weight decay; exact under accumulation and
            loss scaling because it is linear). ``'update'`` (the paper's
            Adagrad*) rescales the optimizer's step instead:
            ``W <- W_old + G * (W_new - W_old)`` around ``optimizer.step()``.

    ``fired`` counts, per weight, the gradients that passed the hook since the
    last :meth:`reset_counts` (``'grad'`` mode; the self-check of
    :class:`SpatialGradScaler`).

    Sharded training (FSDP2 ``fully_shard``): the Parameter a module holds
    between steps is a shard (a DTensor) whose gradient is written by the
    reduce-scatter, not by autograd, so a hook on it never fires. The tensor
    the conv really convolves with is the gathered weight FSDP2 puts on the
    module for its forward. With ``modules`` (the convs using each weight),
    ``'grad'`` mode also hooks that tensor of a sharded weight, once, when a
    forward finds it on the module: its gradient is scaled before the
    reduce-scatter, as DDP's is before the all-reduce (exact: G broadcasts
    over the channels the shards split).

    Args:
        weights: see above.
        mode: see above.
        modules: ``{name: [modules whose .weight is weights[name]]}``.
    """

    def __init__(self, weights: Dict[str, nn.Parameter], mode: str = 'grad',
                 modules: Optional[Dict[str, List[nn.Module]]] = None):
        self.weights = OrderedDict(weights)
        self.modules = OrderedDict((name, list(mods)) for name, mods in (modules or {}).items())
        # id(gathered weight) -> (weak ref to it, its hook handle)
        self._gathered: Dict[int, Tuple['weakref.ref', object]] = {}
        ids = [id(w) for w in self.weights.values()]
        if len(set(ids)) != len(ids):
            raise ValueError('ScalingApplier: each weight Parameter must appear once')
        self.mode = mode
        self.scales = OrderedDict(
            (name, torch.ones(w.shape[-2:], dtype=torch.float64, device=w.device))
            for name, w in self.weights.items())
        self.fired = dict.fromkeys(self.weights, 0)
        self._handles = []
        self._saved = {}
        self._cast = {}  # (name, dtype, device) -> G in a gradient's dtype
        self.active = False  # G is all ones until the first set()
        self.unowned: List[str] = []  # update mode: weights no attached optimizer steps
        # weakref.WeakMethod to the owner's detach, called when another applier
        # takes these weights over (see attach)
        self.on_release = None

    # -- G ----------------------------------------------------------------
    @torch.no_grad()
    def set(self, name: str, g: torch.Tensor) -> None:
        self.scales[name].copy_(g.to(self.scales[name]))
        self._cast = {key: t for key, t in self._cast.items() if key[0] != name}
        self.active = True

    def reset_counts(self) -> None:
        self.fired = dict.fromkeys(self.weights, 0)

    # -- attaching ---------------------------------------------------------
    def attach(self, optimizers: Iterable[torch.optim.Optimizer] = ()) -> List[str]:
        """Start applying G (hooks on the weights, or on the optimizers' steps).

        Another applier attached to any of these weights (a scaler built
        earlier on the same model, e.g. by a notebook cell run again) would
        scale their gradients a second time: it is detached first, entirely
        (through its ``release`` callback, so its owner drops its optimizer
        hooks too). The newest attach wins.

        Returns:
            The names of this applier's weights taken over from another one.
        """
        self.detach()
        optimizers = list(optimizers)
        if self.mode == 'update' and not optimizers:
            raise ValueError("SGS mode='update' scales the optimizer's update: pass the "
                             'optimizer(s) to attach()')
        taken, others = [], OrderedDict()
        for name, w in self.weights.items():
            other = _owner(w)
            if other is not None and other is not self:
                taken.append(name)
                others[id(other)] = other
        for other in others.values():
            other.release()
        if self.mode == 'grad':
            for name, w in self.weights.items():
                self._handles.append(w.register_hook(self._grad_hook(name)))
            for name, mods in self.modules.items():
                if not is_sharded(self.weights[name]):
                    continue  # (the model stays picklable: no module hooks then)
                for m in mods:
                    self._handles.append(m.register_forward_pre_hook(self._gathered_hook(name)))
        else:
            owned = set()
            for opt in optimizers:
                owned.update(n for n, _ in self._owned(opt))
                self._handles.append(opt.register_step_pre_hook(self._before_step))
                self._handles.append(opt.register_step_post_hook(self._after_step))
            self.unowned = [n for n in self.weights if n not in owned]
        for w in self.weights.values():
            _ATTACHED[id(w)] = (weakref.ref(w), weakref.ref(self))
        return taken

    def release(self) -> None:
        """Detach on behalf of another applier taking these weights over: the
        owner's ``on_release`` (its full detach) when it is still alive."""
        owner_detach = self.on_release() if self.on_release is not None else None
        if owner_detach is not None:
            owner_detach()
        self.detach()

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        for _, handle in self._gathered.values():
            handle.remove()
        self._gathered = {}
        for w in self.weights.values():
            if _owner(w) is self:
                del _ATTACHED[id(w)]

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def _grad_hook(self, name):

        def hook(grad):
            self.fired[name] += 1
            if not self.active:
                return grad
            key = (name, grad.dtype, grad.device)
            scale = self._cast.get(key)
            if scale is None:
                scale = self._cast[key] = self.scales[name].to(grad.device, grad.dtype)
            return grad * scale
        return hook

    def _gathered_hook(self, name):
        """Forward pre-hook: hook the weight a sharding wrapper put on the module."""

        def pre_forward(module, args):
            w = getattr(module, 'weight', None)
            if (w is None or w is self.weights[name] or not torch.is_grad_enabled()
                    or not isinstance(w, torch.Tensor) or not w.requires_grad):
                return
            entry = self._gathered.get(id(w))
            if entry is not None and entry[0]() is w:
                return  # hooked at an earlier forward (FSDP2 reuses it)
            self._gathered = {k: e for k, e in self._gathered.items() if e[0]() is not None}
            self._gathered[id(w)] = (weakref.ref(w), w.register_hook(self._grad_hook(name)))
        return pre_forward

    def _owned(self, optimizer):
        ids = {id(p) for group in optimizer.param_groups for p in group['params']}
        return [(n, w) for n, w in self.weights.items() if id(w) in ids]

    @torch.no_grad()
    def _before_step(self, optimizer, args, kwargs):
        if self.active:
            self._saved[id(optimizer)] = [(n, w, w.detach().clone())
                                          for n, w in self._owned(optimizer)]

    @torch.no_grad()
    def _after_step(self, optimizer, args, kwargs):
        for name, w, old in self._saved.pop(id(optimizer), []):
            # a sharded weight (DTensor): its local shard, which G scales exactly
            w, old = local_shard(w), local_shard(old)
            w.sub_(old).mul_(self.scales[name].to(w.device, w.dtype)).add_(old)

