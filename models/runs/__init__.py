"""Resumable batch runs: requests and the seed contract, outputs, metadata, the generation loop, sharding."""
