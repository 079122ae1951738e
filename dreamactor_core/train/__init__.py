"""Training: datasets, the three-stage trainer, checkpoints, torchrun / torch.distributed.

Stages (stages.py): ``vae`` (0: the causal VAE alone), ``1`` (body skeleton + head sphere),
``2`` (face-motion encoder + DiT face attention only), ``3`` (everything but the VAE jointly),
``audio`` (audio-to-motion encoder regressing the frozen face encoder's tokens). Each stage
starts from the previous one's weights with ``--init``.

Single process (CPU or one GPU)::

    python -m dreamactor_core.train --config cfg.json --stage vae --steps 20000 --out runs/vae
    python -m dreamactor_core.train --config cfg.json --stage 1 --steps 20000 --out runs/s1 \\
        --init runs/vae
    python -m dreamactor_core.train --config cfg.json --stage 2 --steps 20000 --out runs/s2 \\
        --init runs/s1
    python -m dreamactor_core.train --config cfg.json --stage 3 --steps 30000 --out runs/s3 \\
        --init runs/s2
    python -m dreamactor_core.train --config cfg.json --stage audio --steps 20000 \\
        --out runs/audio --init runs/s3
    # continue an interrupted run (same command plus --resume):
    python -m dreamactor_core.train --config cfg.json --stage 1 --steps 20000 --out runs/s1 --resume

Multi-GPU, one node (DDP; ``batch_size`` in the config is the global batch, divisible by the
number of processes)::

    torchrun --nproc_per_node 8 -m dreamactor_core.train --config cfg.json --stage 1 \\
        --steps 20000 --out runs/s1 --init runs/vae

Multi-node (run the same command on every node; the output folder must be on a shared
filesystem, rank 0 writes it and every rank reads checkpoints from it)::

    torchrun --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d \\
        --rdzv_endpoint HOST0:29500 --rdzv_id dreamactor-s1 \\
        -m dreamactor_core.train --config cfg.json --stage 3 --steps 30000 --out runs/s3 \\
        --init runs/s2 --fsdp

``--fsdp`` (or ``"fsdp": true`` in the config) shards parameters, gradients and optimizer
state with FSDP (one unit per DiT block) for the paper-size model; without it DDP replicates.
"""
