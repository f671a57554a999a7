"""Applying G to conv weights (SGS_SPEC §4): scale the gradient, or the update."""
from collections import OrderedDict
from typing import Dict, Iterable

import torch
import torch.nn as nn


class ScalingApplier:
    """Holds G per layer and applies it to the layer's weight.

    Args:
        weights: conv weight parameters by layer name.
        mode: ``'grad'`` multiplies each weight gradient by G as autograd
            produces it (a tensor hook, so before DDP's all-reduce, gradient
            clipping, momentum and weight decay; exact under accumulation and
            loss scaling because it is linear). ``'update'`` (the paper's
            Adagrad*) rescales the optimizer's step instead:
            ``W <- W_old + G * (W_new - W_old)`` around ``optimizer.step()``.
    """

    def __init__(self, weights: Dict[str, nn.Parameter], mode: str = 'grad'):
        self.weights = OrderedDict(weights)
        self.mode = mode
        self.scales = OrderedDict(
            (name, torch.ones(w.shape[-2:], dtype=torch.float64, device=w.device))
            for name, w in self.weights.items())
        self._handles = []
        self._saved = {}
        self._cast = {}  # (name, dtype) -> G in a gradient's dtype
        self.active = False  # G is all ones until the first set()

    # -- G ----------------------------------------------------------------
    @torch.no_grad()
    def set(self, name: str, g: torch.Tensor) -> None:
        self.scales[name].copy_(g.to(self.scales[name]))
        self._cast = {key: t for key, t in self._cast.items() if key[0] != name}
        self.active = True

    # -- attaching ---------------------------------------------------------
    def attach(self, optimizers: Iterable[torch.optim.Optimizer] = ()) -> None:
        self.detach()
        if self.mode == 'grad':
            for name, w in self.weights.items():
                self._handles.append(w.register_hook(self._grad_hook(name)))
        else:
            for opt in optimizers:
                self._handles.append(opt.register_step_pre_hook(self._before_step))
                self._handles.append(opt.register_step_post_hook(self._after_step))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _grad_hook(self, name):

        def hook(grad):
            if not self.active:
                return grad
            key = (name, grad.dtype)
            scale = self._cast.get(key)
            if scale is None:
                scale = self._cast[key] = self.scales[name].to(grad.dtype)
            return grad * scale
        return hook

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
            w.sub_(old).mul_(self.scales[name].to(w.dtype)).add_(old)
