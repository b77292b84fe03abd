"""Training: LINA's objective, optimiser and EMA, cached latents, the DDP loop, VAE and text stages, export."""
