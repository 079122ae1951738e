"""The training stages: which parameters learn, and the loss each stage minimises.

    stage   trains                                     loss
    vae     VAE (encoder + decoder)                    L1 + MSE reconstruction + KL (small);
                                                       optionally weighted up on the head
                                                       and on the mouth
    vae_decoder  VAE decoder only (latent space kept)  the same reconstruction loss
    vae_decoder_sampled  VAE decoder only                the same reconstruction loss, decoding
                                                       the latent the frozen model samples for
                                                       the clip (or, for a share of the samples,
                                                       the clip's own latent)
    vae_reference  the decoder's reference parts only   as vae_decoder_sampled; the rest of the
                   (decoder_reference_channels,         decoder stays as it is, so its new parts
                   decoder_reference_attention)         can learn fast (a high lr) without
                                                       shaking what the decoder knows
    1       DiT (minus face attention) + pose encoder  flow matching, no face tokens
    2       face-motion encoder + DiT face attention   flow matching with face tokens
    3       DiT + pose encoder + face-motion encoder   flow matching with face tokens
    audio   audio-to-motion encoder                    MSE to the frozen face encoder's tokens

The VAE is trained only in its own stages and frozen afterwards: stages 1-3 encode video and
reference with the frozen VAE's posterior mean (normalised latents). "vae_decoder" fine-tunes
only the decoder, so a DiT trained on that latent space stays valid; "vae_decoder_sampled"
does the same on what the pipeline decodes, the DiT's sampled latents, whose errors a decoder
trained only on encoder outputs has never seen (sampled_latents). Before
the first DiT stage the trainer sets the VAE's latent mean/std from data (see trainer.py).
Face attention layers are found by module type (``dit.FaceAttention``), not by name.

Flow matching (flow.py): x_t = (1 - t) x0 + t noise, target v = noise - x0, loss = MSE(v_hat, v).
CFG dropout: each sample independently drops its reference (p_drop_ref) and its motion (pose +
face tokens, p_drop_motion), through the DiT's drop_ref / drop_motion flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..eval.metrics import ssim_map
from ..model.audio_motion import audio_features
from ..model.dit import FaceAttention
from ..model.flow import guided_velocity_fn, make_schedule, sample, sample_timesteps, training_target
from ..model.pipeline import GUIDANCE_SCALE, SHIFT
from ..synthetic.kinematics import FACE_POINTS
from .config import STAGES, TrainConfig
from .datasets import stable_seed

DIT_STAGES = ("1", "2", "3")
SAMPLED_STAGES = ("vae_decoder_sampled", "vae_reference")  # decode what the frozen model samples
VAE_STAGES = ("vae", "vae_decoder") + SAMPLED_STAGES
REFERENCE_PARTS = ("vae.decoder.reference.", "vae.decoder.reference_attention.")  # vae_reference
MOUTH_DIRECTION = FACE_POINTS["mouth"]  # unit vector, head frame
MOUTH_CAP_COS = 0.9  # ~26 degrees around it: the mouth and lips at any opening and width


def check_stage(stage) -> str:
    stage = str(stage)
    if stage == "0":
        stage = "vae"
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES} (0 = vae), got {stage!r}")
    return stage


def face_attention_parameters(dit: nn.Module) -> dict[str, nn.Parameter]:
    """Every parameter of the DiT's face cross-attention layers, by qualified name."""
    params = {}
    for name, module in dit.named_modules():
        if isinstance(module, FaceAttention):
            for pname, p in module.named_parameters():
                params[f"{name}.{pname}"] = p
    return params


def trainable_names(modules: nn.Module, stage: str) -> set[str]:
    """Qualified parameter names (``dit.blocks.0.face.attn.q.weight``...) trained in a stage."""
    stage = check_stage(stage)
    face_attn = {f"dit.{n}" for n in face_attention_parameters(modules.dit)}
    names = set()
    for name, _ in modules.named_parameters():
        component = name.split(".", 1)[0]
        if stage == "vae":
            keep = component == "vae"
        elif stage in ("vae_decoder", "vae_decoder_sampled"):
            keep = name.startswith("vae.decoder.")
        elif stage == "vae_reference":
            keep = name.startswith(REFERENCE_PARTS)
        elif stage == "1":
            keep = component == "pose_encoder" or (component == "dit" and name not in face_attn)
        elif stage == "2":
            keep = component == "face_encoder" or name in face_attn
        elif stage == "3":
            keep = component in ("dit", "pose_encoder", "face_encoder")
        else:
            keep = component == "audio_encoder"
        if keep:
            names.add(name)
    return names


def freeze_for_stage(modules: nn.Module, stage: str) -> list[nn.Parameter]:
    """Sets requires_grad per stage; returns the trainable parameters in a stable order."""
    keep = trainable_names(modules, stage)
    trainable = []
    for name, p in modules.named_parameters():
        p.requires_grad_(name in keep)
        if name in keep:
            trainable.append(p)
    return trainable


@dataclass
class Draws:
    """Per-sample random choices of one step, drawn from (seed, step, global sample position)
    so that a batch split over any number of ranks sees exactly the same randomness."""

    t: torch.Tensor  # [B] flow time
    noise: torch.Tensor  # [B, C, T', h, w]
    drop_ref: torch.Tensor  # [B] bool
    drop_motion: torch.Tensor  # [B] bool
    clean_first: bool = False  # the whole batch's latent frame 0 is clean context

    def to(self, device) -> "Draws":
        return Draws(self.t.to(device), self.noise.to(device), self.drop_ref.to(device),
                     self.drop_motion.to(device), self.clean_first)


def make_draws(config: TrainConfig, step: int, positions: list[int],
               latent_shape: tuple[int, ...]) -> Draws:
    ts, noises, refs, motions = [], [], [], []
    for pos in positions:
        gen = torch.Generator().manual_seed(stable_seed(config.seed, step, pos, 7))
        ts.append(sample_timesteps(1, gen, shift=config.timestep_shift,
                                   logit_normal=config.logit_normal))
        u = torch.rand(2, generator=gen)
        refs.append(bool(u[0] < config.p_drop_ref))
        motions.append(bool(u[1] < config.p_drop_motion))
        noises.append(torch.randn(latent_shape, generator=gen))
    # One choice per step, not per sample: the DiT takes the clean-frame count per batch.
    gen = torch.Generator().manual_seed(stable_seed(config.seed, step, 11))
    clean_first = bool(torch.rand(1, generator=gen) < config.p_clean_first)
    return Draws(torch.cat(ts), torch.stack(noises), torch.tensor(refs), torch.tensor(motions),
                 clean_first)


def latent_shape(model_config, video_shape) -> tuple[int, int, int, int]:
    """[B, 3, T, H, W] video -> (C, T', h, w) of its latent."""
    vae = model_config.vae
    t, h, w = video_shape[-3:]
    return (vae.latent_channels, vae.num_latent_frames(t), h // vae.spatial_factor,
            w // vae.spatial_factor)


def head_weight(guidance: torch.Tensor, extra: float) -> torch.Tensor:
    """[B, 6, T, H, W] guidance -> [B, 1, T, H, W] per-pixel loss weight: 1, plus ``extra`` on
    the head (where the head sphere is drawn, grown by 2 pixels to take in hair and chin). At
    64x64 a face is ~2 % of the frame: without this the reconstruction loss barely sees it."""
    head = (guidance[:, 3:6].amax(dim=1, keepdim=True) > 0).float()  # [B, 1, T, H, W]
    head = F.max_pool3d(head, kernel_size=(1, 5, 5), stride=1, padding=(0, 2, 2))
    return 1.0 + extra * head


def mouth_mask(guidance: torch.Tensor) -> torch.Tensor:
    """[B, 6, T, H, W] guidance -> [B, 1, T, H, W] bool: the head-sphere pixels whose normal in
    the head frame (decoded from the sphere's colour, RGB = (n + 1) / 2) lies within
    MOUTH_CAP_COS of the mouth's direction. Found from the guidance alone, so it works for any
    clip with a head sphere; at 64x64 that is ~5-20 pixels of a frame."""
    sphere = guidance[:, 3:6].float()  # [B, 3, T, H, W]
    on_head = sphere.amax(dim=1, keepdim=True) > 0  # [B, 1, T, H, W]
    direction = torch.as_tensor(MOUTH_DIRECTION, dtype=sphere.dtype, device=sphere.device)
    cos = F.cosine_similarity(sphere * 2 - 1, direction.view(1, 3, 1, 1, 1), dim=1)  # [B, T, H, W]
    return on_head & (cos[:, None] > MOUTH_CAP_COS)


def vae_weight(guidance: torch.Tensor, head_extra: float, first_frame: float,
               mouth_extra: float = 0.0) -> torch.Tensor | None:
    """[B, 6, T, H, W] guidance -> [B, 1, T, H, W] per-pixel reconstruction weight (head_weight,
    plus ``mouth_extra`` on mouth_mask, times ``first_frame`` on frame 0), or None when all are
    neutral. Frame 0 is one pixel frame in T but a whole latent frame, and the one every
    reference image goes through: at weight 1 a 17-frame clip gives it 1/17 of the loss and it
    reconstructs several dB worse. The mouth is two pixels tall at 64x64: unweighted, the
    autoencoder smears it and the audio-driven mouth cannot be read back from its decodes."""
    if head_extra == 0 and first_frame == 1 and mouth_extra == 0:
        return None
    weight = head_weight(guidance, head_extra)  # [B, 1, T, H, W]
    if mouth_extra != 0:
        weight = weight + mouth_extra * mouth_mask(guidance).float()
    if first_frame != 1:
        weight = weight.clone()
        weight[:, :, 0] *= first_frame
    return weight


def latent_weight(guidance: torch.Tensor, latent_shape: tuple[int, ...], head_extra: float,
                  mouth_extra: float) -> torch.Tensor | None:
    """[B, 6, T, H, W] guidance -> [B, 1, T', h, w] flow-loss weight per latent cell: 1, plus
    ``head_extra`` where the cell covers any head pixel (head_weight's mask) and ``mouth_extra``
    where it covers any mouth pixel (mouth_mask); None when both are 0. Latent frame 0 holds
    pixel frame 0 alone, latent frame k the ``factor`` frames before and at pixel frame
    k * factor (the causal and the frame-stacking VAEs alike)."""
    if head_extra == 0 and mouth_extra == 0:
        return None
    t_lat, h, w = latent_shape[-3:]
    b, _, t = guidance.shape[:3]
    factor = (t - 1) // max(t_lat - 1, 1)
    if (t_lat - 1) * factor + 1 != t:
        raise ValueError(f"guidance has {t} frames, which does not pack into {t_lat} latent "
                         f"frames")
    weight = torch.ones(b, 1, t_lat, h, w, device=guidance.device)
    for extra, mask_of in ((head_extra, lambda g: head_weight(g, 1.0) - 1.0),
                           (mouth_extra, lambda g: mouth_mask(g).float())):
        if extra == 0:
            continue
        cells = F.adaptive_max_pool3d(mask_of(guidance), (t, h, w))  # [B, 1, T, h, w]
        if t_lat > 1:  # latent k > 0: the max over its pixel frames
            rest = cells[:, :, 1:].reshape(b, 1, t_lat - 1, factor, h, w).amax(dim=3)
            cells = torch.cat([cells[:, :, :1], rest], dim=2)  # [B, 1, T', h, w]
        weight = weight + extra * cells
    return weight


def reconstruction_loss(recon: torch.Tensor, video: torch.Tensor,
                        weight: torch.Tensor | None = None,
                        temporal_weight: float = 0.0,
                        ssim_weight: float = 0.0) -> tuple[torch.Tensor, dict]:
    """L1 + MSE of recon against video [B, 3, T, H, W], each optionally weighted per pixel by
    ``weight`` [B, 1, T, H, W], plus ``temporal_weight`` times the mean L1 between recon's and
    video's frame-to-frame changes, plus ``ssim_weight`` times 1 - SSIM (the eval's: per frame
    and channel, gaussian window, pixels 0..1); the logged l1 / mse (and temporal / ssim, when
    weighted) are unweighted, comparable across runs."""
    err = recon.float() - video  # [B, 3, T, H, W]
    l1, mse = err.abs().mean(), err.pow(2).mean()
    if weight is None:
        loss = l1 + mse
    else:
        loss = (weight * (err.abs() + err.pow(2))).mean()
    metrics = {"l1": l1.detach(), "mse": mse.detach()}
    if temporal_weight and video.shape[2] > 1:
        temporal = (err[:, :, 1:] - err[:, :, :-1]).abs().mean()  # = |d recon - d video|
        loss = loss + temporal_weight * temporal
        metrics["temporal"] = temporal.detach()
    if ssim_weight:
        h, w = video.shape[-2:]
        x = ((recon.float() + 1) / 2).reshape(-1, 1, h, w)  # [B*3*T, 1, H, W] in 0..1
        y = ((video + 1) / 2).reshape(-1, 1, h, w)
        try:
            ssim = ssim_map(x, y).mean()
        except ValueError as err:
            raise ValueError(f"vae_ssim_weight: {err}; set vae_ssim_weight to 0 or use larger "
                             f"frames") from None
        loss = loss + ssim_weight * (1 - ssim)
        metrics["ssim"] = ssim.detach()
    return loss, metrics


def vae_loss(vae: nn.Module, video: torch.Tensor, noise: torch.Tensor, kl_weight: float,
             weight: torch.Tensor | None = None, temporal_weight: float = 0.0,
             ssim_weight: float = 0.0, reference: torch.Tensor | None = None):
    """reconstruction_loss of a posterior sample's decoding (with ``reference`` [B, 3, H, W]
    for a decoder that reads it) + KL."""
    posterior = vae.encode_distribution(video)
    z = posterior.mean + posterior.std * noise.to(posterior.mean.dtype)
    loss, metrics = reconstruction_loss(vae.decode(z, normalized=False, reference=reference),
                                        video, weight, temporal_weight, ssim_weight)
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    return loss + kl_weight * kl, {**metrics, "kl": kl.detach()}


@torch.no_grad()
def sampled_latents(modules: nn.Module, batch: dict, config: TrainConfig,
                    step: int, positions: list[int]) -> dict:
    """The batch plus ``decode_latent`` [B, C, T', h, w]: what the SAMPLED_STAGES decode. Per
    sample, with probability ``config.sampled_true_fraction`` the clip's own
    (normalised posterior-mean) latent; otherwise the latent the frozen model samples for the
    clip as the pipeline samples a first segment: reference latent + pose latent of the clip's
    skeleton / head-sphere maps + its face-motion tokens, Euler over ``config.sampled_steps``
    steps with shift SHIFT, reference and motion guidance GUIDANCE_SCALE, from noise drawn per
    sample from (seed, step, position). Computed once per loaded batch: data_echo steps reuse it.
    """
    video = batch["video"]
    latent = modules.vae.encode(video)  # [B, C, T', h, w]
    use_true, noises = [], []
    for pos in positions:
        gen = torch.Generator().manual_seed(stable_seed(config.seed, step, pos, 13))
        use_true.append(bool(torch.rand(1, generator=gen) < config.sampled_true_fraction))
        noises.append(torch.randn(latent.shape[1:], generator=gen))
    pick = torch.tensor([not t for t in use_true], device=video.device)  # [B] sampled ones
    decode_latent = latent.clone()
    if pick.any():
        cond = {"pose_latent": modules.pose_encoder(batch["guidance"][pick]),
                "ref_latent": modules.vae.encode(batch["reference"][pick][:, :, None]),
                "face_tokens": modules.face_encoder(batch["face_crops"][pick]),
                "face_mask": batch["face_mask"][pick]}
        velocity = guided_velocity_fn(modules.dit, cond, GUIDANCE_SCALE, GUIDANCE_SCALE)
        noise = torch.stack(noises)[pick.cpu()].to(device=latent.device, dtype=latent.dtype)
        decode_latent[pick] = sample(velocity, noise, make_schedule(config.sampled_steps, SHIFT),
                                     "euler")
    return {**batch, "decode_latent": decode_latent}


def flow_loss(modules: nn.Module, batch: dict, draws: Draws, stage: str,
              head_extra: float = 0.0, mouth_extra: float = 0.0):
    with torch.no_grad():  # the VAE is frozen in every DiT stage
        x0 = modules.vae.encode(batch["video"])  # [B, C, T', h, w]
        ref = modules.vae.encode(batch["reference"][:, :, None])  # [B, C, 1, h, w]
        weight = latent_weight(batch["guidance"], x0.shape, head_extra, mouth_extra)
    pose = modules.pose_encoder(batch["guidance"])  # [B, C_pose, T', h, w]
    face_tokens = face_mask = None
    if stage in ("2", "3"):
        face_tokens = modules.face_encoder(batch["face_crops"])  # [B, T, N, D]
        face_mask = batch["face_mask"]
    x_t, target = training_target(x0, draws.noise.to(x0.dtype), draws.t)
    # A continued segment, as the pipeline runs it: its first frame (encoded alone, as the
    # pipeline re-encodes the previous segment's last frame) is clean, the rest is learnt.
    clean = int(draws.clean_first and x0.shape[2] > 1)
    if clean:
        x_t = torch.cat([x0[:, :, :clean], x_t[:, :, clean:]], dim=2)
    pred = modules.dit(x_t, draws.t, pose_latent=pose, ref_latent=ref, face_tokens=face_tokens,
                       face_mask=face_mask, drop_ref=draws.drop_ref, drop_motion=draws.drop_motion,
                       num_clean_frames=clean)
    err = (pred[:, :, clean:].float() - target[:, :, clean:].float()).pow(2)  # [B, C, T'-c, h, w]
    if weight is None:
        return err.mean(), {}
    return (weight[:, :, clean:] * err).mean(), {}


def audio_loss(modules: nn.Module, batch: dict):
    frames = batch["face_crops"].shape[1]
    window = modules.audio_encoder.config.window
    features = []
    with torch.no_grad():
        targets = modules.face_encoder(batch["face_crops"])  # [B, T, N, D], frozen
        for wave, fps in zip(batch["audio"], batch["fps"].tolist()):
            audio = {"waveform": wave[None].float().cpu(), "sample_rate": batch["sample_rate"]}
            features.append(audio_features(audio, frames, fps, window)[0][0])  # [T, W, 80]
    pred = modules.audio_encoder(torch.stack(features).to(targets.device))
    loss = modules.audio_encoder.regression_loss(pred.float(), targets.float(), batch["face_mask"])
    return loss, {}


def stage_loss(modules: nn.Module, batch: dict, draws: Draws | None, stage: str,
               config: TrainConfig):
    """(scalar loss, dict of detached extra metrics) for one local batch."""
    stage = check_stage(stage)
    if stage in VAE_STAGES:
        weight = vae_weight(batch["guidance"], config.vae_head_weight,
                            config.vae_first_frame_weight, config.vae_mouth_weight)
        if stage in SAMPLED_STAGES:
            decoded = modules.vae.decode(batch["decode_latent"], reference=batch.get("reference"))
            return reconstruction_loss(decoded, batch["video"], weight,
                                       config.vae_temporal_weight, config.vae_ssim_weight)
        return vae_loss(modules.vae, batch["video"], draws.noise, config.vae_kl_weight, weight,
                        config.vae_temporal_weight, config.vae_ssim_weight,
                        batch.get("reference"))
    if stage in DIT_STAGES:
        return flow_loss(modules, batch, draws, stage, config.dit_head_weight,
                         config.dit_mouth_weight)
    return audio_loss(modules, batch)
