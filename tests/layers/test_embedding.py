"""Embedding lookup and the tied output projection (logits = x @ W^T)."""
import torch
from parameterized import parameterized

from trtllm_ext import Embedding

from ._helpers import assert_rel_close, load_random, randn, ref_linear


@parameterized.expand([
    ("b1", 11, 4, (1, 1), torch.int64),
    ("odd", 37, 12, (3, 5), torch.int64),
    ("int32", 50, 8, (2, 7), torch.int32),
    ("flat", 5, 3, (9,), torch.int64),
])
def test_embedding_lookup_and_tied_logits(_, vocab, dim, ids_shape, id_dtype):
    emb = Embedding(vocab, dim)
    w = load_random(emb, vocab + dim)
    ids = torch.randint(0, vocab, ids_shape, generator=torch.Generator().manual_seed(vocab), dtype=torch.int64)
    out = emb(ids.to(id_dtype))
    assert out.shape == (*ids_shape, dim)
    assert torch.equal(out, w["weight"].float()[ids])  # a lookup is exact
    x = randn(*ids_shape, dim, seed=dim)
    logits = emb.logits(x.float())
    assert logits.shape == (*ids_shape, vocab)
    assert_rel_close(logits, ref_linear(x, w["weight"]))


def test_logits_are_tied_to_the_embedding_table():
    emb = Embedding(6, 4)
    load_random(emb, 1)
    table = emb(torch.arange(6))
    x = randn(3, 4, seed=2).float()
    assert_rel_close(emb.logits(x), x.double() @ table.double().T)
    # reloading the table changes both the lookup and the projection: one weight
    w2 = load_random(emb, 3)
    assert torch.equal(emb(torch.arange(6)), w2["weight"].float())
    assert_rel_close(emb.logits(x), ref_linear(x, w2["weight"]))
