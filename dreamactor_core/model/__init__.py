"""The generator: causal 3D VAE, pose encoder, DreamActor DiT, face/audio motion encoders,
flow-matching samplers and the segment pipeline. Import the submodules directly."""
