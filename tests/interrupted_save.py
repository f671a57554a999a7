"""A ``torch.save`` killed in the middle of writing, for the atomic-write tests."""
import io
import os

import torch


def interrupting_save(monkeypatch, on_call):
    """``torch.save`` that, at its ``on_call``-th call, writes half of the
    checkpoint to its target and raises KeyboardInterrupt: a kill (SIGTERM
    turned into an exception, Ctrl-C) in the middle of the write."""
    real = torch.save
    calls = [0]

    def save(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] != on_call:
            return real(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        real(obj, buf, *args, **kwargs)
        half = buf.getvalue()[:len(buf.getvalue()) // 2]
        if isinstance(f, (str, os.PathLike)):
            with open(f, 'wb') as out:
                out.write(half)
        else:
            f.write(half)
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, 'save', save)
