"""Issue 9, item 3: anything that is not a Whisper checkpoint gets one line, "not a Whisper checkpoint: <path>:
<why>", as a ``CheckpointError``, without library internals; pickles are only ever loaded with weights_only=True;
and a file that claims more data than it holds is refused before anything of that size is allocated."""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from _seeds import checkpoint_seeds, ct2_bytes, ct2_variables, hf_config_text, state_dict, tiny_dims
from whisper_model.errors import CheckpointError
from whisper_model.io.export import save_hf, to_openai
from whisper_model.io.weights import load_checkpoint

REPO = Path(__file__).resolve().parents[2]


def refused(path, pattern: str) -> str:
    """The one-line CheckpointError ``load_checkpoint(path)`` raises; it must match ``pattern`` and name the path."""
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith("not a Whisper checkpoint: "), message
    assert "\n" not in message and "weights_only` argument" not in message and "Traceback" not in message, message
    assert len(message) < 1000, message
    assert str(path) in message, message
    assert re.search(pattern, message), message
    return message


def openai_dict(shape=None, **changes) -> dict:
    """A valid openai-whisper checkpoint dict (of ``shape``, default the tiny dims), with ``changes``."""
    shape = shape or tiny_dims()
    return {**to_openai(shape, state_dict(shape)), **changes}


class Evil:
    """Unpickling this would run code: it must never happen."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _patch_pickle(pt: bytes, old: bytes, new: bytes) -> bytes:
    """``pt`` (a torch.save zip) with ``old`` replaced by ``new`` in its data.pkl, the zip rewritten."""
    with zipfile.ZipFile(io.BytesIO(pt)) as z:
        entries = {e.filename: z.read(e) for e in z.infolist()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries.items():
            z.writestr(name, data.replace(old, new, 1) if name.endswith("data.pkl") else data)
    return out.getvalue()


CASES = {  # name -> (write the input under tmp: returns the path, pattern its message must match)
    "random 1 MB, .pt": (lambda t: _bytes(t / "rand.pt", os.urandom(1 << 20)), r"rand\.pt: unrecognized binary data"),
    "random 1 MB, no suffix": (lambda t: _bytes(t / "rand", os.urandom(1 << 20)),
                               r"unrecognized binary data \(first bytes [0-9a-f ]+\); expected an openai-whisper "
                               r"\.pt file"),
    "random 1 MB, model.bin": (lambda t: _bytes(t / "model.bin", b"\xff" * 8 + os.urandom(1 << 20)),
                               r"corrupt or truncated CTranslate2 model .*model\.bin: unsupported binary version"),
    "a text file": (lambda t: _bytes(t / "notes.txt", b"hello\nworld\n"), r"a text file \(starts 'hello'\)"),
    "an empty file": (lambda t: _bytes(t / "empty.pt", b""), r"an empty file \(0 bytes\)"),
    "a plain pickle": (lambda t: _bytes(t / "p.pt", pickle.dumps({"a": 1})), r"a plain pickle, not a PyTorch"),
    "a non-Whisper .pt": (lambda t: _save(t / "resnet.pt", {"conv1.weight": torch.zeros(2, 3)}),
                          r"a PyTorch file but not an openai-whisper checkpoint .* holds a dict with keys "
                          r"\['conv1\.weight'\]"),
    "a .pt of non-tensors": (lambda t: _save(t / "np.pt", {"dims": np.zeros(3), "model_state_dict": {}}),
                             r"objects other than tensors .*numpy.*weights_only=True"),
    "a legacy-format .pt": (lambda t: _save(t / "old.pt", openai_dict(), _use_new_zipfile_serialization=False),
                            r"legacy format of PyTorch < 1\.6, which is not read"),
    "a truncated .pt": (lambda t: _bytes(t / "cut.pt", checkpoint_seeds()["openai"][:4000]),
                        r"truncated or corrupt zip archive"),
    "mismatched shapes": (lambda t: _save(t / "bad.pt", _resized()),
                          r"'decoder\.blocks\.0\.mlp\.0\.weight'.*shape \[31, 8\], expected \[32, 8\]"),
    "dims of the wrong type": (lambda t: _save(t / "dims.pt", openai_dict(dims=[1, 2])),
                               r"'dims' is a list, expected a dict of n_mels"),
    "a dims value not an int": (lambda t: _save(t / "dims.pt", openai_dict(dims={**tiny_dims().to_dict(),
                                                                                 "n_mels": "80"})),
                                r"dims\['n_mels'\] is '80', expected a positive integer"),
    "a stride-0 tensor": (lambda t: _save(t / "view.pt", _expanded()), r"'encoder\.conv2\.weight' .* not a dense"),
    "tensors sharing one storage": (lambda t: _save(t / "shared.pt", _overlapping()),
                                    r"tensors claim \d+ elements but the files hold only \d+ bytes"),
    "a tensor name with a newline": (lambda t: _save(t / "nl.pt", _renamed("a\nb" + "c" * 5000)),
                                     r"1 unexpected tensors \('a\\nbccc.*\.\.\.ccc+'\)"),
    "a CTranslate2 name of 5000 bytes": (lambda t: _bytes(t / "model.bin", _ct2_with(**{"x" * 5000: 1})),
                                         r"has length 5001 \(expected 1\.\.1024\)"),
    "a CTranslate2 model of another spec": (
        lambda t: _bytes(t / "model.bin", ct2_bytes({"x": torch.zeros(2)}, spec="TransformerSpec")),
        r"spec 'TransformerSpec', not a Whisper model"),
    "a truncated model.bin": (lambda t: _bytes(t / "model.bin", checkpoint_seeds()["ct2"][:3000]),
                              r"corrupt or truncated CTranslate2 model .*needs \d+ bytes but only \d+ remain"),
    "an empty tensor of a huge shape": (lambda t: _bytes(t / "model.bin", _empty_huge()),
                                        r"'encoder/num_heads' has implausible shape \[0, 4294967295, 4294967295\]"),
    "a bad int8 scale": (lambda t: _bytes(t / "model.bin", _bad_scale()), r"linear_0/weight_scale has shape \[3\]"),
    "a CTranslate2 head count of 0": (lambda t: _bytes(t / "model.bin", _ct2_with(**{"encoder/num_heads": 0})),
                                      r"encoder/num_heads is 0, expected a positive number of heads"),
    "a non-Whisper safetensors": (lambda t: _hf(t, {"bert.embeddings.weight": torch.zeros(4, 2)}),
                                  r"no encoder/decoder blocks; \d+ missing tensors .*1 unexpected tensors "
                                  r"\(model\.bert\.embeddings\.weight\)"),
    "safetensors without config.json": (lambda t: _bytes(t / "w.safetensors", checkpoint_seeds()["safetensors"]),
                                        r"w\.safetensors: a safetensors file without a config\.json beside it"),
    "a truncated safetensors": (lambda t: _hf(t, checkpoint_seeds()["safetensors"][:2000]),
                                r"model\.safetensors: cannot read safetensors file"),
    "a config.json of another model": (lambda t: _hf(t, None, {"model_type": "bert"}),
                                       r"model_type 'bert' is not a Whisper model"),
    "a config.json head count not an int": (lambda t: _hf(t, None, {"encoder_attention_heads": "2"}),
                                            r"encoder_attention_heads is '2', expected a positive integer"),
    "a config.json nested 100000 deep": (lambda t: _bytes(_hf(t, None) / "config.json", b"[" * 100000).parent,
                                        r"config\.json: cannot read JSON \(maximum recursion depth"),
    "a dims value nested 100000 deep": (lambda t: _bytes(t / "deep.pt", _patch_pickle(
        checkpoint_seeds()["openai"], b"n_melsq\x03K\x04", b"n_melsq\x03" + b"]" * 100000 + b"a" * 99999)),
        r"dims\['n_mels'\] is \[+\.\.\.\]+, expected a positive integer"),
    "a directory of other files": (lambda t: _dir(t, "a.txt", "b.jpg"),
                                   r"no Whisper checkpoint found \(.*; found a\.txt, b\.jpg\)"),
}


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(path: Path, obj, **kwargs) -> Path:
    torch.save(obj, path, **kwargs)
    return path


def _resized() -> dict:
    ckpt = openai_dict()
    sd = dict(ckpt["model_state_dict"])
    sd["decoder.blocks.0.mlp.0.weight"] = sd["decoder.blocks.0.mlp.0.weight"][:-1].clone()
    return {**ckpt, "model_state_dict": sd}


def _renamed(extra: str) -> dict:
    """A valid checkpoint with one more tensor, named ``extra`` (hypothesis found names with newlines)."""
    ckpt = openai_dict()
    return {**ckpt, "model_state_dict": {**ckpt["model_state_dict"], extra: torch.zeros(1)}}


def _expanded() -> dict:
    ckpt = openai_dict()
    sd = dict(ckpt["model_state_dict"])
    sd["encoder.conv2.weight"] = torch.zeros(1, dtype=torch.float16).expand(sd["encoder.conv2.weight"].shape)
    return {**ckpt, "model_state_dict": sd}


def _overlapping() -> dict:
    """Every tensor a view of the start of one shared storage: each is dense, together they claim far more."""
    ckpt = openai_dict(replace(tiny_dims(), n_audio_state=64, n_text_state=64, n_audio_layer=4, n_text_layer=4))
    base = torch.zeros(max(v.numel() for v in ckpt["model_state_dict"].values()), dtype=torch.float16)
    return {**ckpt, "model_state_dict": {k: base[: v.numel()].view(v.shape)
                                         for k, v in ckpt["model_state_dict"].items()}}


def _ct2_with(**scalars) -> bytes:
    variables = ct2_variables(tiny_dims(), state_dict(tiny_dims()))
    variables.update({k: torch.tensor(v, dtype=torch.int16) for k, v in scalars.items()})
    return ct2_bytes(variables)


def _empty_huge() -> bytes:
    """A variable of shape [0, 2**32 - 1, 2**32 - 1]: 0 bytes, but strides beyond int64 (found by hypothesis)."""
    name = b"encoder/num_heads\0"
    record = struct.pack("<H", len(name)) + name + struct.pack("<B3IBI", 3, 0, 2**32 - 1, 2**32 - 1, 4, 0)
    return ct2_bytes({})[:-8] + struct.pack("<I", 1) + record + struct.pack("<I", 0)


def _bad_scale() -> bytes:
    variables = ct2_variables(tiny_dims(), state_dict(tiny_dims()), int8=True)
    variables["encoder/layer_0/ffn/linear_0/weight_scale"] = torch.ones(3)
    return ct2_bytes(variables)


def _hf(tmp: Path, tensors, config: dict | None = None) -> Path:
    (tmp / "config.json").write_text(json.dumps({**json.loads(hf_config_text()), **(config or {})}))
    data = checkpoint_seeds()["safetensors"] if tensors is None else tensors
    if isinstance(data, dict):
        from safetensors.torch import save

        data = save(data)
    (tmp / "model.safetensors").write_bytes(data)
    return tmp


def _dir(tmp: Path, *names: str) -> Path:
    for name in names:
        (tmp / name).write_bytes(b"x")
    return tmp


@pytest.mark.parametrize("case", list(CASES))
def test_not_a_whisper_checkpoint(case, tmp_path):
    make, pattern = CASES[case]
    refused(make(tmp_path), pattern)


def test_pickle_code_is_never_run(tmp_path):
    """A .pt whose pickle would run a command: refused as holding non-tensors, and the command did not run."""
    marker = tmp_path / "ran"
    torch.save({"dims": Evil(marker), "model_state_dict": {}}, tmp_path / "evil.pt")
    refused(tmp_path / "evil.pt", r"objects other than tensors .*GLOBAL posix\.system.*weights_only=True")
    assert not marker.exists()


def test_the_tiny_seeds_load(tmp_path):
    """The seeds the error cases and the fuzzers start from are valid checkpoints (so a failure is the mutation's)."""
    for name in ("ct2", "ct2_int8"):
        dims, _ = load_checkpoint(_bytes(tmp_path / f"{name}.bin", checkpoint_seeds()[name]))
        assert dims == tiny_dims()
    assert load_checkpoint(_bytes(tmp_path / "x.pt", checkpoint_seeds()["openai"]))[0] == tiny_dims()
    assert load_checkpoint(_hf(tmp_path, None))[0] == tiny_dims()
    hf = save_hf(tiny_dims(), state_dict(tiny_dims()), tmp_path / "hf")
    assert load_checkpoint(hf)[0] == tiny_dims()


def test_whisper_model_and_command_line_say_one_line(tmp_path):
    from whisper_model.pipeline import WhisperModel

    path = _bytes(tmp_path / "rand.bin", os.urandom(1 << 20))
    with pytest.raises(CheckpointError, match=r"^not a Whisper checkpoint: .*rand\.bin: unrecognized binary data"):
        WhisperModel(path, device="cpu")
    run = subprocess.run([sys.executable, "-m", "whisper_model.run", "--model", str(path), "--device", "cpu",
                          str(REPO / "samples" / "jfk.mp3"), "--output_dir", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode != 0
    assert run.stderr.strip().count("\n") == 0 and "not a Whisper checkpoint" in run.stderr, run.stderr


_UNDER_A_MEMORY_LIMIT = r"""
import json, resource, sys
import torch
from whisper_model.io.weights import load_checkpoint
size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (size + (1 << 30), resource.RLIM_INFINITY))   # 1 GiB more than now
try:
    torch.empty(4 << 30, dtype=torch.uint8)
    control = "allocated"
except (RuntimeError, MemoryError):
    control = "refused"
out = {"control": control}
for path in sys.argv[1:]:
    try:
        load_checkpoint(path)
        out[path] = "loaded"
    except Exception as e:
        out[path] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


def _huge_claims(tmp: Path) -> dict[str, str]:
    """Files whose headers claim ~4 GB (or a billion layers) -> the message each must give."""
    ct2 = tmp / "ct2" / "model.bin"
    ct2.parent.mkdir()
    head = ct2_bytes({})[:-8]  # version, spec, revision; the counts follow
    name = b"encoder/conv1/weight\0"
    ct2.write_bytes(head + struct.pack("<I", 1) + struct.pack("<H", len(name)) + name
                    + struct.pack("<BIBI", 1, 4_000_000_000, 1, 4_000_000_000) + b"\0" * 64)
    layers = tmp / "layers" / "model.bin"
    layers.parent.mkdir()
    layers.write_bytes(ct2_bytes({"encoder/layer_999999999/ffn/layer_norm/gamma": torch.zeros(2),
                                  "decoder/layer_999999999/ffn/layer_norm/gamma": torch.zeros(2)}))
    pt = tmp / "claim.pt"  # a pickle whose storage claims 2**30 floats (4 GiB) for a record of 10
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(10)}, buf)
    pt.write_bytes(_patch_pickle(buf.getvalue(), b"K\x0at", b"J" + struct.pack("<i", 1 << 30) + b"t"))
    st = tmp / "hf"
    st.mkdir()
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 30], "data_offsets": [0, 4 << 30]}}).encode()
    _hf(st, struct.pack("<Q", len(header)) + header + b"\0" * 16)
    return {str(ct2): r"data of encoder/conv1/weight needs 4000000000 bytes but only 64 remain",
            str(layers): r"a tensor name claims 1000000000 layers, but there are only 2 tensors",
            str(pt): r"claims a storage of 4294967296 bytes but the file has only \d+",
            str(st): r"cannot read safetensors file \(.*(incomplete|offset|covered)"}


def test_huge_claims_are_refused_before_allocating(tmp_path):
    """Under an address-space limit of 1 GiB more than the process has, a 4 GiB allocation fails (the control):
    the files claiming 4 GiB are refused with their own reason, i.e. before allocating; a billion layers, at once."""
    expected = _huge_claims(tmp_path)
    run = subprocess.run([sys.executable, "-c", _UNDER_A_MEMORY_LIMIT, *expected], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out.pop("control") == "refused"
    for path, pattern in expected.items():
        assert out[path].startswith("CheckpointError: not a Whisper checkpoint: "), out[path]
        assert re.search(pattern, out[path]), out[path]


def test_every_torch_load_is_weights_only():
    """The package calls torch.load in one place (io/torchfile.py), always with weights_only=True."""
    import ast

    calls = []
    for path in sorted((REPO / "whisper_model").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                flags = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                calls.append((path.relative_to(REPO).as_posix(), flags.get("weights_only")))
    assert calls and all(call == ("whisper_model/io/torchfile.py", True) for call in calls), calls
