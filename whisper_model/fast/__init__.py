"""The GPU fast path (floor 3): the model's forward on fused Triton kernels with captured CUDA graphs, and engine directories."""
