"""FID, Inception Score, precision/recall and KID of generated images against ADM's ImageNet reference batches.

`score.score_fid` is the entry point. The modules below it, one concept each: `constants` (the protocol's
defaults and download addresses), `images` and `adm_npz` (sample sets), `download` and `reference` (the
reference argument and the lina cache), `inception` (torch-fidelity's InceptionV3), `statistics` (Fréchet
distance) and `metrics` (Inception Score, precision/recall, KID). This package file imports nothing, so the
CLI can read `constants` without loading numpy or torch.
"""
