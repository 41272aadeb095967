"""Layer tests use tiny tensors: one intra-op thread avoids OpenMP spin-wait stalls on a busy machine
(a small attention forward goes from ~0.1 ms to ~40 ms with 2 threads under load)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
