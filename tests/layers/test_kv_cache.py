"""KVCache: update at positions, write a prefix, reorder rows, reset."""
import pytest
import torch

from trtllm_ext import KVCache

from ._helpers import randn


def _kv(b, h, t, d, seed):
    return randn(b, h, t, d, seed=seed).float(), randn(b, h, t, d, seed=seed + 1).float()


def test_kv_cache_starts_zero_and_is_not_a_weight():
    c = KVCache(2, 3, 5, 4)
    assert c.k.shape == c.v.shape == (2, 3, 5, 4)
    assert not c.k.any() and not c.v.any()
    assert len(c.state_dict()) == 0  # state, not weights


def test_kv_cache_update_writes_positions_and_returns_rows():
    c = KVCache(3, 2, 6, 4)
    k, v = _kv(2, 2, 2, 4, 1)
    pos = torch.tensor([1, 4])
    kr, vr = c.update(pos, k, v)
    assert kr.shape == vr.shape == (2, 2, 6, 4)
    torch.testing.assert_close(kr[:, :, pos], k, rtol=0, atol=0)
    torch.testing.assert_close(vr[:, :, pos], v, rtol=0, atol=0)
    others = [0, 2, 3, 5]
    assert not kr[:, :, others].any() and not vr[:, :, others].any()
    assert not c.k[2].any()  # rows beyond the batch are untouched
    # the returned rows are views of the cache (no copy per step)
    assert kr.data_ptr() == c.k.data_ptr()
    # a later update at another position keeps the earlier ones
    k2, v2 = _kv(2, 2, 1, 4, 3)
    kr, vr = c.update(torch.tensor([0]), k2, v2)
    torch.testing.assert_close(kr[:, :, [0]], k2, rtol=0, atol=0)
    torch.testing.assert_close(kr[:, :, pos], k, rtol=0, atol=0)


def test_kv_cache_update_casts_to_cache_dtype():
    c = KVCache(1, 1, 3, 2, dtype=torch.float16)
    k, v = _kv(1, 1, 1, 2, 5)
    kr, _ = c.update(torch.tensor([2]), k.double(), v.double())
    assert kr.dtype == torch.float16
    torch.testing.assert_close(kr[:, :, 2:], k.half(), rtol=0, atol=0)


def test_kv_cache_write_prefix():
    c = KVCache(3, 2, 8, 4)
    k, v = _kv(3, 2, 8, 4, 7)
    c.write(k, v)
    k2, v2 = _kv(2, 2, 5, 4, 9)
    kr, vr = c.write(k2, v2)
    assert kr.shape == vr.shape == (2, 2, 5, 4)
    torch.testing.assert_close(kr, k2, rtol=0, atol=0)
    torch.testing.assert_close(vr, v2, rtol=0, atol=0)
    torch.testing.assert_close(c.k[:2, :, 5:], k[:2, :, 5:], rtol=0, atol=0)  # beyond t: untouched
    torch.testing.assert_close(c.k[2], k[2], rtol=0, atol=0)  # beyond b: untouched


@pytest.mark.parametrize("index", [[2, 0, 1], [1, 1, 1], [0, 1, 2], [3, 0], [0, 0, 0, 0]])
def test_kv_cache_reorder_gives_reordered_rows(index):
    c = KVCache(4, 2, 5, 3)
    k, v = _kv(4, 2, 5, 3, 11)
    c.write(k, v)
    idx = torch.tensor(index)
    c.reorder(idx)
    n = len(index)
    torch.testing.assert_close(c.k[:n], k[idx], rtol=0, atol=0)
    torch.testing.assert_close(c.v[:n], v[idx], rtol=0, atol=0)
    torch.testing.assert_close(c.k[n:], k[n:], rtol=0, atol=0)  # rows past len(index) are kept


def test_kv_cache_reset_zeroes_everything():
    c = KVCache(2, 2, 4, 3)
    c.write(*_kv(2, 2, 4, 3, 13))
    c.reset()
    assert not c.k.any() and not c.v.any()
    assert c.k.shape == (2, 2, 4, 3)


def test_kv_cache_update_per_row_positions():
    """input_pos [b, t]: row i's token j lands at position input_pos[i, j] of row i only."""
    c = KVCache(3, 2, 6, 4)
    k, v = _kv(2, 2, 3, 4, 21)
    pos = torch.tensor([[4, 0, 2], [1, 5, 3]])
    kr, vr = c.update(pos, k, v)
    assert kr.shape == vr.shape == (2, 2, 6, 4) and kr.data_ptr() == c.k.data_ptr()
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(kr[i, :, pos[i, j]], k[i, :, j], rtol=0, atol=0)
            torch.testing.assert_close(vr[i, :, pos[i, j]], v[i, :, j], rtol=0, atol=0)
        others = [p for p in range(6) if p not in pos[i].tolist()]
        assert not kr[i][:, others].any() and not vr[i][:, others].any()
    assert not c.k[2].any()
    # shared positions [t] still write the same positions in every row
    k2, v2 = _kv(2, 2, 1, 4, 23)
    kr, _ = c.update(torch.tensor([1]), k2, v2)
    torch.testing.assert_close(kr[:, :, [1]], k2, rtol=0, atol=0)
    torch.testing.assert_close(kr[0, :, 4], k[0, :, 0], rtol=0, atol=0)  # the rest kept


def test_kv_cache_recall_takes_back_what_forget_dropped():
    c = KVCache(3, 2, 10, 4)
    k, v = randn(2, 2, 6, 4, seed=1).float(), randn(2, 2, 6, 4, seed=2).float()
    c.write(k, v)
    c.forget()
    with pytest.raises(RuntimeError, match="nothing written"):
        c.written()
    c.recall(2, 6)
    got_k, got_v = c.written()
    assert torch.equal(got_k, k) and torch.equal(got_v, v)
    with pytest.raises(ValueError, match="max_batch"):
        c.recall(4, 6)
    with pytest.raises(ValueError, match="length 11"):
        c.recall(2, 11)
