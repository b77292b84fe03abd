"""The network: configs, attention, transformer blocks, diffusion head, embeddings, VAE and text encoder."""
