"""Models: every constructor takes (in_channels, num_classes, image_size, **options).

Two switches apply to any model (config keys, both off by default, neither enters the
constructor):

- ``channels_last: true`` stores conv weights NHWC and makes the model convert its input to
  channels_last (a forward pre-hook that is a no-op when the batch already is, as DeviceBatches
  with ``memory_format=torch.channels_last`` delivers it). With bf16 autocast on a GPU this is
  what makes tensor cores fast (measured on an H100: ResNet-18 19.8k → 53.3k img/s).
- ``compile: true`` compiles the model in place with ``nn.Module.compile`` (torch.compile), which
  keeps the module, its class and its ``state_dict`` keys unchanged (``torch.compile(model)`` would
  wrap it and prefix every key with ``_orig_mod.``), so stored cells load either way. Compilation
  costs seconds to minutes on the first batch; worth it only for long fits on a GPU.

Both are in the model config and therefore in the cell key: a model trained with them is a
different cell (channels_last and compile can change the float rounding, not the maths).
"""

from __future__ import annotations

import torch
from torch import nn

from unlearnlab.registry import instantiate

SWITCHES = ("channels_last", "compile")


def _to_channels_last(module: nn.Module, args):
    x = args[0]
    if isinstance(x, torch.Tensor) and x.dim() == 4 and not x.is_contiguous(memory_format=torch.channels_last):
        return (x.contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def use_channels_last(model: nn.Module) -> nn.Module:
    """NHWC weights, and inputs converted to NHWC on the way in (idempotent)."""
    model.to(memory_format=torch.channels_last)
    if not getattr(model, "_unlearnlab_channels_last", False):
        model.register_forward_pre_hook(_to_channels_last)
        model._unlearnlab_channels_last = True
    return model


def memory_format(model: nn.Module) -> torch.memory_format:
    """The input layout `model` wants: pass it to DeviceBatches to build batches in it directly."""
    return torch.channels_last if getattr(model, "_unlearnlab_channels_last", False) else torch.contiguous_format


def build_model(cfg, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    c, h, _ = input_shape
    options = {k: v for k, v in cfg.items() if k != "name" and k not in SWITCHES}
    model = instantiate(options, in_channels=c, num_classes=num_classes, image_size=h)
    if bool(cfg.get("channels_last", False)):
        use_channels_last(model)
    if bool(cfg.get("compile", False)):
        model.compile()
    return model
