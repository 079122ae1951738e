import math

import pytest
import torch
from einops import rearrange

from dreamactor_core.model import flow
from dreamactor_core.model.pipeline import (encode_references, generate,
                                            resample_tokens_in_time, segment_seed)
from dreamactor_core.model.segments import plan_segments, stitch_segments

torch.set_num_threads(1)


def test_shapes_through_the_pipeline(model, inputs):
    ref, maps, tokens = inputs
    pseudo = [torch.rand(32, 32, 3), torch.rand(32, 32, 3)]
    result = generate(model, ref, maps, tokens, pseudo, steps=2, solver="heun")
    assert result.frames.shape == (21, 32, 32, 3)
    assert result.frames.dtype == torch.float32 and result.frames.device.type == "cpu"
    assert 0 <= result.frames.min() and result.frames.max() <= 1
    assert [(s.start, s.stop) for s in result.segments] == [(0, 9), (8, 17), (16, 21)]
    assert len(result.first_latents) == 3
    assert all(z.shape == (4, 1, 8, 8) for z in result.first_latents)
    info = result.info
    assert info["num_references"] == 3 and info["face_tokens"] == "given"
    assert len(info["seeds"]) == 3 and len(set(info["seeds"])) == 3
    assert [t["segment"] for t in info["timings"]] == [0, 1, 2]
    assert all(t["sample_s"] > 0 and t["decode_s"] > 0 for t in info["timings"])


def test_video_and_audio_driven_tokens_are_interchangeable(model, inputs):
    ref, maps, _ = inputs
    frames = maps.shape[0]
    with torch.no_grad():
        crops = torch.rand(1, frames, 3, 32, 32, generator=torch.Generator().manual_seed(3))
        face_tokens = model.face_encoder(crops)[0]
        t = torch.arange(int(16000 * frames / 25)) / 16000
        audio = {"waveform": torch.sin(2 * math.pi * 220 * t)[None, None], "sample_rate": 16000}
        audio_tokens, _ = model.audio_encoder.encode(audio, frames, 25.0)
    audio_tokens = audio_tokens[0]
    assert face_tokens.shape == audio_tokens.shape == (frames, 2, 32)
    from_face = generate(model, ref, maps, face_tokens, steps=1, seed=5).frames
    from_audio = generate(model, ref, maps, audio_tokens, steps=1, seed=5).frames
    assert from_face.shape == from_audio.shape == (frames, 32, 32, 3)
    assert not torch.equal(from_face, from_audio)  # the tokens do reach the DiT


def test_cfg_one_equals_a_manual_conditional_run(model, inputs):
    ref, maps, tokens = inputs
    maps, tokens = maps[:9], tokens[:9]  # one segment
    steps, shift, seed = 3, 2.0, 11
    got = generate(model, ref, maps, tokens, steps=steps, shift=shift, seed=seed,
                   ref_scale=1.0, motion_scale=1.0).frames

    with torch.no_grad():
        ref_latent = model.vae.encode(rearrange(ref * 2 - 1, "h w c -> 1 c 1 h w"))
        pose = model.pose_encoder(rearrange(maps, "t h w c -> 1 c t h w"))
        noise = flow.sample_noise((1, 4, 3, 8, 8),
                                  torch.Generator().manual_seed(segment_seed(seed, 0)))

        def velocity(x, t):
            return model.dit(x, t, pose_latent=pose, ref_latent=ref_latent,
                             face_tokens=tokens[None])

        latent = flow.sample(velocity, noise, flow.make_schedule(steps, shift), "euler")
        video = ((model.vae.decode(latent, chunk=2) + 1) / 2).clamp(0, 1)
    manual = stitch_segments([rearrange(video[0], "c t h w -> t h w c")],
                             plan_segments(9, 9), reference=ref)
    torch.testing.assert_close(got, manual, atol=1e-5, rtol=0)
    guided = generate(model, ref, maps, tokens, steps=steps, shift=shift, seed=seed).frames
    assert (guided - got).abs().max() > 1e-3  # the default scales (1.5) do change the result


def test_seed_reproducible_and_distinct(model, inputs):
    ref, maps, tokens = inputs
    maps, tokens = maps[:13], tokens[:13]
    a = generate(model, ref, maps, tokens, steps=2, seed=3, segment_frames=9)
    b = generate(model, ref, maps, tokens, steps=2, seed=3, segment_frames=9)
    c = generate(model, ref, maps, tokens, steps=2, seed=4, segment_frames=9)
    assert torch.equal(a.frames, b.frames)
    assert (a.frames - c.frames).abs().max() > 1e-3
    assert a.info["seeds"] == b.info["seeds"] != c.info["seeds"]


def test_next_segment_starts_from_the_previous_last_frame_encoded_alone(model, inputs,
                                                                       monkeypatch):
    """Segment k+1's latent frame 0 is exactly the VAE encoding of segment k's last decoded
    frame (a first-frame latent, as the causal VAE makes them), held on its flow path at every
    model call (also Heun's intermediate evaluations) of a model without clean context."""
    ref, maps, tokens = inputs
    seen = []  # (x_t frame 0, t) of every DiT call
    forward = type(model.dit).forward

    def spy(self, x_t, timestep, *args, **kwargs):
        seen.append((x_t[:1, :, :1].clone(), torch.as_tensor(timestep)[0].item()))
        return forward(self, x_t, timestep, *args, **kwargs)

    monkeypatch.setattr(type(model.dit), "forward", spy)
    steps, seed = 2, 9
    result = generate(model, ref, maps, tokens, steps=steps, solver="heun", seed=seed,
                      stitch=False)
    assert len(result.segments) == 3
    assert result.info["latent_anchor"].startswith("noised path")
    contexts = [encode_references(model, [video[-1]]) for video in result.segment_videos[:2]]
    for k in range(2):
        assert torch.equal(result.first_latents[k + 1], contexts[k][0])

    calls_per_segment = 2 * steps  # Heun: two evaluations per step
    assert len(seen) == 3 * calls_per_segment
    for k in (1, 2):
        latent_frames = (result.segments[k].length - 1) // 4 + 1  # 3, then 2 (last: 5 frames)
        noise = flow.sample_noise((1, 4, latent_frames, 8, 8),
                                  torch.Generator().manual_seed(segment_seed(seed, k)))
        for x0, t in seen[k * calls_per_segment:(k + 1) * calls_per_segment]:
            torch.testing.assert_close(x0, (1 - t) * contexts[k - 1] + t * noise[:, :, :1],
                                       atol=1e-5, rtol=0)


def test_a_clean_context_model_continues_from_the_clean_previous_frame(make_model, inputs,
                                                                      monkeypatch):
    """A DiT trained with clean context sees the previous segment's last frame, encoded
    alone, unchanged as frame 0 of every call of the next segment, told so by
    num_clean_frames=1; the first segment has no context frame."""
    model = make_model()
    model.config.dit.clean_context = True
    ref, maps, tokens = inputs
    seen = []  # (x_t frame 0, num_clean_frames) of every DiT call
    forward = type(model.dit).forward

    def spy(self, x_t, timestep, *args, **kwargs):
        seen.append((x_t[:1, :, :1].clone(), kwargs.get("num_clean_frames", 0)))
        return forward(self, x_t, timestep, *args, **kwargs)

    monkeypatch.setattr(type(model.dit), "forward", spy)
    steps = 2
    result = generate(model, ref, maps, tokens, steps=steps, solver="heun", seed=9,
                      stitch=False)
    assert result.info["latent_anchor"] == "clean context frame"
    calls = 2 * steps
    assert [n for _, n in seen] == [0] * calls + [1] * (2 * calls)
    for k in (1, 2):
        context = encode_references(model, [result.segment_videos[k - 1][-1]])
        assert torch.equal(result.first_latents[k], context[0])
        for x0, _ in seen[k * calls:(k + 1) * calls]:
            assert torch.equal(x0, context)


def test_mismatched_token_count_refused_or_resampled(model, inputs):
    ref, maps, tokens = inputs
    with pytest.raises(ValueError, match=r"face_tokens cover 15 frames but guidance_maps have 21"):
        generate(model, ref, maps, tokens[:15], steps=1)
    result = generate(model, ref, maps, tokens[:15], steps=1, resample_tokens=True)
    assert result.frames.shape[0] == 21
    assert result.info["face_tokens"] == "resampled from 15 to 21 frames"


def test_resample_tokens_in_time_is_linear_and_keeps_ends():
    tokens = torch.arange(3.0)[:, None, None].expand(3, 2, 4)  # values 0, 1, 2 over time
    out = resample_tokens_in_time(tokens, 5)
    assert out.shape == (5, 2, 4)
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0]))
    assert resample_tokens_in_time(tokens[:1], 4).shape == (4, 2, 4)


def test_on_step_counts_all_segments_and_cancels_within_a_step(model, inputs):
    ref, maps, tokens = inputs
    calls = []
    generate(model, ref, maps, tokens, steps=3, on_step=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 9) for i in range(1, 10)]

    class Cancelled(Exception):
        pass

    seen = []

    def cancel_at_four(done, total):
        seen.append(done)
        if done == 4:
            raise Cancelled

    with pytest.raises(Cancelled):
        generate(model, ref, maps, tokens, steps=3, on_step=cancel_at_four)
    assert seen == [1, 2, 3, 4]


@pytest.mark.parametrize("change, message", [
    (dict(guidance_maps=torch.rand(9, 30, 32, 6)), "multiples of 8"),
    (dict(guidance_maps=torch.rand(9, 32, 32, 3)), r"\[T, H, W, 6\]"),
    (dict(guidance_maps=torch.rand(9, 32, 32, 6) * 255), "guidance_maps"),
    (dict(reference_image=torch.rand(16, 16, 3)), "reference_image is 16x16"),
    (dict(reference_image=(torch.rand(32, 32, 3) * 255).to(torch.uint8)), "divide 8-bit"),
    (dict(face_tokens=torch.randn(9, 2, 31)), r"face_tokens must be \[T, N, 32\]"),
    (dict(pseudo_references=[torch.rand(16, 32, 3)]), r"pseudo_references\[0\]"),
    (dict(steps=0), "steps"),
    (dict(solver="rk4"), "solver"),
    (dict(segment_frames=10), "segment_frames"),
    (dict(face_mask=torch.ones(8, dtype=torch.bool)), "face_mask"),
])
def test_bad_inputs_are_refused_clearly(model, change, message):
    args = dict(reference_image=torch.rand(32, 32, 3), guidance_maps=torch.rand(9, 32, 32, 6),
                face_tokens=torch.randn(9, 2, 32), steps=1)
    args.update(change)
    with pytest.raises(ValueError, match=message):
        generate(model, **args)


def test_unstitched_segments_stitch_to_the_same_video(model):
    from dreamactor_core.model.segments import stitch_segments

    torch.manual_seed(0)
    ref = torch.rand(32, 32, 3)
    maps = torch.rand(13, 32, 32, 6)
    whole = generate(model, ref, maps, steps=2, seed=5)
    parts = generate(model, ref, maps, steps=2, seed=5, stitch=False)
    assert parts.frames is None and len(parts.segment_videos) == len(parts.segments) == 2
    assert [v.shape[0] for v in parts.segment_videos] == [s.length for s in parts.segments]
    joined = stitch_segments(parts.segment_videos, parts.segments, reference=ref)
    assert torch.equal(joined, whole.frames)


@pytest.mark.parametrize("uses_reference", [False, True])
def test_the_decoder_gets_the_reference_image_when_it_reads_one(make_model, inputs, monkeypatch,
                                                                uses_reference):
    model = make_model()
    ref, maps, tokens = inputs
    given = []  # the reference of every decode call
    decode = type(model.vae).decode

    def spy(self, latent, chunk=None, normalized=True, reference=None):
        given.append(reference)
        return decode(self, latent, chunk=chunk, normalized=normalized)

    monkeypatch.setattr(type(model.vae), "decode", spy)
    monkeypatch.setattr(type(model.vae), "uses_reference", property(lambda self: uses_reference))
    generate(model, ref, maps, tokens, steps=1, seed=3)
    assert len(given) == 3  # one decode per segment
    for reference in given:
        if uses_reference:
            torch.testing.assert_close(reference, rearrange(ref, "h w c -> 1 c h w") * 2 - 1)
        else:
            assert reference is None
