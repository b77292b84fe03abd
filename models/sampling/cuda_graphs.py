"""CUDA-graph replay of the diffusion-head loop.

Each AR step runs the small head 25 times (× CFG) on a few dozen tokens: thousands of tiny kernels whose
launch cost, not their arithmetic, dominates generation on a fast GPU. A CUDA graph records one whole loop
and replays it with a single launch. The graph runs the very kernels of the eager loop on the same inputs,
so results are bit-identical; only the host overhead goes.

A graph is specific to its input shapes and to the values baked in at capture (the CFG scale, the sigma
schedule), so graphs are cached under those keys; steps that predict the same number of tokens, and every
later image of a run, replay a graph that already exists. On the fused kernels the sampler pads each step's
token count up to a multiple of a few sizes (`HEAD_PAD_ROWS` in `models.sampling.sampler`), so few keys arise.
"""

from functools import partial

import torch


class HeadGraphCache:
    """Captured head loops keyed by (shapes, dtype, CFG scale, schedule); all graphs share one memory pool."""

    def __init__(self) -> None:
        self._graphs: dict[tuple, tuple] = {}
        self._pool = None
        self._stream: torch.cuda.Stream | None = None

    def __len__(self) -> int:
        return len(self._graphs)

    @staticmethod
    def _key(solve: partial, noise: torch.Tensor, z: torch.Tensor) -> tuple:
        # `solve` is `partial(denoise_tokens, head, scheduler, sigmas, time_embeddings, scale, **options)`. The
        # CFG scale, the sigmas and the options are baked into the graph's kernels, so they are part of the key;
        # the time embeddings follow from the sigmas, the scheduler config, the head and the row count (z's shape).
        head, scheduler, sigmas, _, scale = solve.args
        options = tuple(sorted(solve.keywords.items()))
        return (id(head), scheduler.config, tuple(sigmas.tolist()), scale, options, tuple(noise.shape), tuple(z.shape),
                noise.dtype)

    def run(self, solve: partial, noise: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """`solve(noise, z)`, replayed from a graph (captured on first use of its key).

        The cache belongs to one model whose parameters stay where they are: a graph reads them in place.
        """
        key = self._key(solve, noise, z)
        if key not in self._graphs:
            self._graphs[key] = self._capture(solve, noise, z)
        graph, static_noise, static_z, static_out, _ = self._graphs[key]
        static_noise.copy_(noise)
        static_z.copy_(z)
        graph.replay()
        return static_out.clone()

    def _capture(self, solve: partial, noise: torch.Tensor, z: torch.Tensor):
        head, scheduler, sigmas, time_embeddings, scale = solve.args
        # The graph reads the time embeddings from device memory at every replay, so it owns its own copy.
        static_time_embeddings = time_embeddings.clone()
        solve = partial(solve.func, head, scheduler, sigmas, static_time_embeddings, scale, **solve.keywords)
        static_noise, static_z = noise.clone(), z.clone()
        if self._stream is None:
            # Lazy library state (cuBLAS workspaces, cuDNN handles) must exist on the capture stream before
            # a capture; one eager run there creates it for every later graph.
            self._stream = torch.cuda.Stream(noise.device)
            self._stream.wait_stream(torch.cuda.current_stream(noise.device))
            with torch.cuda.stream(self._stream):
                solve(static_noise, static_z)
            torch.cuda.current_stream(noise.device).wait_stream(self._stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, stream=self._stream):
            static_out = solve(static_noise, static_z)
        self._pool = graph.pool()
        return graph, static_noise, static_z, static_out, static_time_embeddings
