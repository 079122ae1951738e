"""Widen a trained VAE decoder without changing what it computes (Net2WiderNet, Chen et al. 2016).

Widening by k turns every feature channel c of width C into k channels c, c + C, ... carrying
the same value:
  - a layer's output rows are copied (new row j = old row j mod C), and so are the per-channel
    gain and bias of the norms, whose RMS over the channels is unchanged by the duplication;
  - a layer's input columns are split among the copies (old column c -> s_i * w at c + i * C,
    with random shares s_i > 0 summing to 1 per weight), so the sum it computes is unchanged.
The random split makes the copies' gradients differ, so training can pull them apart; the
encoder is left as it is, so the latent space (and the DiT trained on it) is kept.

TemporalUpsample's conv emits its 2C outputs as "(r c)" (two frames of C channels); its rows are
copied per frame: new row r * kC + j <- old row r * C + (j mod C).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .causal_layers import ChannelRMSNorm, TemporalUpsample
from .vae import CausalVAE


def _copied_rows(old_out: int, new_out: int, groups: int) -> torch.Tensor:
    """Index of the old output row feeding each new row (``groups`` blocks of channels)."""
    c_old, c_new = old_out // groups, new_out // groups
    j = torch.arange(new_out)
    return (j // c_new) * c_old + (j % c_new) % c_old


def _split_columns(weight: torch.Tensor, new_in: int, generator: torch.Generator) -> torch.Tensor:
    """[O, C, ...] -> [O, new_in, ...] (new_in a multiple of C) whose columns j, j + C, ...
    sum to the old column j."""
    old_in = weight.shape[1]
    if new_in == old_in:
        return weight
    copies = new_in // old_in
    shares = torch.rand((copies,) + tuple(weight.shape), generator=generator, dtype=torch.float64)
    shares = shares / shares.sum(dim=0, keepdim=True)  # [copies, O, C, ...], sums to 1
    return torch.cat([(weight.double() * s).to(weight.dtype) for s in shares], dim=1)


@torch.no_grad()
def _widen_conv(old: nn.Conv3d, new: nn.Conv3d, groups: int, generator: torch.Generator) -> None:
    rows = _copied_rows(old.out_channels, new.out_channels, groups)
    new.weight.copy_(_split_columns(old.weight[rows], new.in_channels, generator))
    if old.bias is not None:
        new.bias.copy_(old.bias[rows])


@torch.no_grad()
def _widen_norm(old: ChannelRMSNorm, new: ChannelRMSNorm) -> None:
    rows = _copied_rows(old.weight.shape[0], new.weight.shape[0], 1)
    new.weight.copy_(old.weight[rows])
    new.bias.copy_(old.bias[rows])


def widen_decoder(vae: CausalVAE, decoder_base_channels: int, seed: int = 0) -> CausalVAE:
    """A new CausalVAE whose decoder is ``decoder_base_channels`` wide (a multiple of the
    current width) and decodes every latent as ``vae`` does (up to float rounding). The encoder
    and the latent statistics are copied unchanged."""
    config = vae.config
    if not isinstance(vae, CausalVAE):
        raise ValueError(f"widening the decoder needs the causal3d VAE; this model's VAE is "
                         f"{config.architecture}")
    width = config.decoder_width
    if decoder_base_channels < width or decoder_base_channels % width:
        raise ValueError(f"decoder_base_channels must be a multiple of the current decoder width "
                         f"{width} (e.g. {2 * width}), got {decoder_base_channels}")
    wide = CausalVAE(replace(config, decoder_base_channels=decoder_base_channels))
    wide.encoder.load_state_dict(vae.encoder.state_dict())
    wide.latent_mean.copy_(vae.latent_mean)
    wide.latent_std.copy_(vae.latent_std)
    generator = torch.Generator().manual_seed(seed)
    # the nn.Conv3d inside each TemporalUpsample's CausalConv3d emits two frames of channels
    two_frame_convs = {f"{name}.conv.conv" for name, m in vae.decoder.named_modules()
                       if isinstance(m, TemporalUpsample)}
    old_modules = dict(vae.decoder.named_modules())
    for name, new in wide.decoder.named_modules():
        if isinstance(new, nn.Conv3d):
            _widen_conv(old_modules[name], new, 2 if name in two_frame_convs else 1, generator)
        elif isinstance(new, ChannelRMSNorm):
            _widen_norm(old_modules[name], new)
    like = next(vae.parameters())
    return wide.to(device=like.device, dtype=like.dtype)
