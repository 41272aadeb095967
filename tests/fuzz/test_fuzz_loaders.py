"""Issue 9, item 6: hypothesis property tests over the loaders (the property is in _targets.py: a clear error of
the loader's type, or a valid result). Bounded and deterministic for CI (a fixed number of examples, derandomized,
a deadline per example); ``FUZZ_SCALE=20`` runs twenty times the examples, randomized. The atheris harness
(fuzz_loaders.py, test_fuzz_harness.py) explores further, guided by coverage."""
from __future__ import annotations

import json
import os
import struct
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _targets
from _seeds import audio_files, checkpoint_seeds, hf_config_text
from whisper_model.io.weights import bundled_parts

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def fuzz(examples: int, deadline_ms: int = 5000):
    """Settings of one property test: ``examples`` x FUZZ_SCALE examples, each within ``deadline_ms``."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=deadline_ms, derandomize=SCALE == 1,
                    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutated(draw, data: bytes, header: int = 512):
    """``data`` truncated, bit-flipped (mostly in its first ``header`` bytes, where the sizes are), overwritten
    with random bytes, or with bytes inserted / removed: each alone or a few together."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "flip", "flip", "overwrite", "insert", "delete"]))
        where = draw(st.one_of(st.integers(0, min(header, len(data))), st.integers(0, len(data))))
        if op == "truncate":
            data = data[:where]
        elif op == "flip" and where < len(data):
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[where:where + len(chunk)] = chunk
        elif op == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[where:where + draw(st.integers(1, 16))]
    return bytes(data)


# ---------------------------------------------------------------------------------------------
# audio
AUDIO = {p.name if p.parent.name == "audio" else f"{p.parent.name}/{p.name}": p for p in audio_files()}


@lru_cache(maxsize=None)
def _read(path: Path) -> bytes:
    return path.read_bytes()


@fuzz(300)
@given(st.binary(max_size=4096))
def test_audio_random_bytes(data):
    _targets.audio_bytes(data)


@pytest.mark.parametrize("name", sorted(AUDIO))
@fuzz(25)
@given(data=st.data(), via_path=st.booleans())
def test_audio_truncated_and_bit_flipped(name, data, via_path):
    """Every shared clip (wav at 8 / 16 / 24 / 48 kHz, mp3) cut and bit-flipped, from memory or from a file."""
    if not AUDIO[name].is_file():
        pytest.skip(f"{AUDIO[name]} is absent")
    blob = data.draw(mutated(_read(AUDIO[name]), header=128))
    (_targets.audio_file(blob, AUDIO[name].suffix) if via_path else _targets.audio_bytes(blob))


# ---------------------------------------------------------------------------------------------
# the CTranslate2 reader
@fuzz(400)
@given(data=st.data(), seed=st.sampled_from(["ct2", "ct2_int8"]))
def test_ct2_mutated(data, seed):
    _targets.ct2_model_bin(data.draw(mutated(checkpoint_seeds()[seed], header=4096)))


def _string(value: bytes) -> bytes:
    return struct.pack("<H", len(value)) + value


@st.composite
def ct2_records(draw):
    """A model.bin built field by field from arbitrary values: versions, name lengths, ranks, dims, dtype ids and
    byte counts that need not agree with each other or with the data that follows."""
    u32 = st.one_of(st.integers(0, 16), st.integers(0, 2**32 - 1))
    out = [struct.pack("<I", draw(st.one_of(st.integers(1, 6), u32))),
           _string(draw(st.sampled_from([b"WhisperSpec\0", b"Other\0", b"", b"x"]))), struct.pack("<I", 1)]
    records = draw(st.lists(st.tuples(
        st.sampled_from([b"encoder/num_heads\0", b"decoder/embeddings/weight\0", b"encoder/layer_7/x\0", b"\xff\0"]),
        st.integers(0, 9), st.lists(u32, max_size=9), st.integers(0, 8), u32, st.integers(0, 64)), max_size=4))
    out.append(struct.pack("<I", draw(st.one_of(st.just(len(records)), u32))))
    for name, rank, dims, dtype, size, payload in records:
        out += [_string(name), bytes([rank]), b"".join(struct.pack("<I", d) for d in dims[:rank]),
                bytes([dtype]), struct.pack("<I", size), bytes(payload)]
    out.append(draw(st.binary(max_size=32)))
    return b"".join(out)


@fuzz(400)
@given(ct2_records())
def test_ct2_arbitrary_records(blob):
    _targets.ct2_model_bin(blob)


@lru_cache(maxsize=None)
def _tiny_en() -> bytes:
    return bundled_parts("tiny.en")[0].read_bytes()


@fuzz(12, deadline_ms=20000)
@given(data=st.data())
def test_real_model_bin_cut_and_flipped(data):
    """The bundled tiny.en model.bin (75 MB), cut or flipped (mostly in the first variables' headers)."""
    _targets.ct2_model_bin(data.draw(mutated(_tiny_en(), header=1 << 16)))


# ---------------------------------------------------------------------------------------------
# openai .pt and Hugging Face
@fuzz(300)
@given(data=st.data())
def test_openai_pt_mutated(data):
    _targets.openai_pt(data.draw(mutated(checkpoint_seeds()["openai"], header=1 << 15)))


@lru_cache(maxsize=None)
def _seed_pickle() -> bytes:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(checkpoint_seeds()["openai"])) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))


@fuzz(300)
@given(data=st.data())
def test_openai_pickle_mutated(data):
    """The pickle inside a valid zip: what the weights-only unpickler and the checks after it see."""
    _targets.openai_pickle(data.draw(mutated(_seed_pickle(), header=len(_seed_pickle()))))


@fuzz(300)
@given(data=st.data())
def test_safetensors_mutated(data):
    _targets.safetensors_weights(data.draw(mutated(checkpoint_seeds()["safetensors"], header=4096)))


@fuzz(200)
@given(st.dictionaries(st.sampled_from(["model.encoder.conv1.weight", "model.decoder.embed_tokens.weight", "x"]),
                       st.fixed_dictionaries({
                           "dtype": st.sampled_from(["F16", "F32", "BF16", "I8", "U8", "BOOL", "F64", "C64", "?"]),
                           "shape": st.lists(st.one_of(st.integers(0, 8), st.integers(0, 2**62)), max_size=4),
                           "data_offsets": st.lists(st.one_of(st.integers(0, 64), st.integers(0, 2**63)),
                                                    min_size=2, max_size=2)}), max_size=3),
       st.binary(max_size=64))
def test_safetensors_arbitrary_header(header, payload):
    raw = json.dumps(header).encode()
    _targets.safetensors_weights(struct.pack("<Q", len(raw)) + raw + payload)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=6)


@fuzz(200)
@given(st.dictionaries(st.sampled_from(sorted(json.loads(hf_config_text()))), JSON, max_size=4))
def test_hf_config_values(changes):
    """A valid Hugging Face directory whose config.json has some values replaced by arbitrary JSON."""
    _targets.hf_config(json.dumps({**json.loads(hf_config_text()), **changes}).encode())


MAGIC = [b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19",
         b"\x06\x00\x00\x00\x0c\x00WhisperSpec\x00", b"\x10\x00\x00\x00\x00\x00\x00\x00{", b"{\"a\": 1}"]


@fuzz(300)
@given(st.sampled_from(MAGIC), st.binary(max_size=2048))
def test_any_file(magic, rest):
    """A file of unknown kind, often starting like one of the kinds the loaders know."""
    _targets.any_file(magic + rest)
