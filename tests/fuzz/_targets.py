"""The fuzz targets, shared by the hypothesis tests (test_fuzz_loaders.py) and the atheris harness
(fuzz_loaders.py): each takes arbitrary bytes, feeds them to one loader and checks the property

    every input ends in a clear error of the loader's documented type, or in a valid result;

any other exception escapes (a failure for hypothesis, a crash for atheris). Crashes of native code, hangs and
memory blow-ups are the harness's to catch (libFuzzer's -timeout and -rss_limit_mb; hypothesis' deadline).
"""
from __future__ import annotations

import atexit
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from whisper_model.config import ModelDimensions
from whisper_model.errors import AudioError, CheckpointError
from whisper_model.io.audio import AudioDecodeError, load_audio
from whisper_model.io.ct2 import read_ct2_model
from whisper_model.io.weights import check_state_dict, load_checkpoint

try:
    from _seeds import checkpoint_seeds, hf_config_text
except ImportError:  # imported as a package module
    from ._seeds import checkpoint_seeds, hf_config_text

AUDIO_ERRORS = (AudioDecodeError, AudioError)
CHECKPOINT_ERRORS = (CheckpointError,)
_SCRATCH = Path(tempfile.mkdtemp(prefix="whisper-fuzz-"))  # each input is written here, then loaded
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)


def _write(name: str, data: bytes) -> Path:
    path = _SCRATCH / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _check_audio(samples) -> None:
    assert isinstance(samples, np.ndarray) and samples.dtype == np.float32 and samples.ndim == 1, samples
    assert samples.size == 0 or (samples.min() >= -1.0 and samples.max() < 1.0)


def audio_bytes(data: bytes) -> None:
    """``load_audio`` on bytes in memory."""
    try:
        samples = load_audio(data)
    except AUDIO_ERRORS as e:
        assert str(e), "an error without a message"
        return
    _check_audio(samples)


def audio_file(data: bytes, suffix: str = ".wav") -> None:
    """``load_audio`` on a file path (the WAV header check reads the file itself)."""
    path = _write(f"audio{suffix}", data)
    try:
        samples = load_audio(path)
    except AUDIO_ERRORS as e:
        assert str(path) in str(e), str(e)  # the message names the file
        return
    _check_audio(samples)


def _check_checkpoint(result) -> None:
    dims, sd = result
    assert isinstance(dims, ModelDimensions)
    check_state_dict(dims, sd)
    assert all(t.is_floating_point() for t in sd.values())


def _load(path: Path) -> None:
    try:
        result = load_checkpoint(path)
    except CHECKPOINT_ERRORS as e:
        message = str(e)
        assert "\n" not in message and len(message) < 1000, message
        assert str(path) in message or str(path.parent) in message, message
        return
    _check_checkpoint(result)


def ct2_model_bin(data: bytes) -> None:
    """The CTranslate2 reader itself (ValueError naming the file) and ``load_checkpoint`` of a model.bin."""
    path = _write("ct2/model.bin", data)
    try:
        spec, revision, variables = read_ct2_model([path])
    except ValueError as e:
        assert str(path) in str(e), str(e)
    else:
        assert isinstance(spec, str) and all(isinstance(v, torch.Tensor) for v in variables.values())
    _load(path)


def openai_pt(data: bytes) -> None:
    """``load_checkpoint`` of an openai-whisper .pt file."""
    _load(_write("openai/model.pt", data))


def _zip_with_pickle(data: bytes) -> bytes:
    """The openai seed's zip archive with ``data`` as its data.pkl (so the zip itself is valid)."""
    with zipfile.ZipFile(io.BytesIO(checkpoint_seeds()["openai"])) as seed:
        entries = {e.filename: seed.read(e) for e in seed.infolist()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, content in entries.items():
            archive.writestr(name, data if name.endswith("/data.pkl") else content)
    return out.getvalue()


def openai_pickle(data: bytes) -> None:
    """``load_checkpoint`` of a .pt whose pickle (data.pkl) is these bytes, in a valid zip with the seed's tensors."""
    _load(_write("pickle/model.pt", _zip_with_pickle(data)))


def safetensors_weights(data: bytes) -> None:
    """``load_checkpoint`` of a Hugging Face directory: a valid config.json and these bytes as model.safetensors."""
    _write("hf/config.json", hf_config_text().encode())
    _load(_write("hf/model.safetensors", data).parent)


def hf_config(data: bytes) -> None:
    """``load_checkpoint`` of a Hugging Face directory whose config.json is these bytes (and valid weights)."""
    if not (_SCRATCH / "hfc" / "model.safetensors").is_file():
        _write("hfc/model.safetensors", checkpoint_seeds()["safetensors"])
    _load(_write("hfc/config.json", data).parent)


def any_file(data: bytes) -> None:
    """``load_checkpoint`` of a file of unknown kind (routed by its content)."""
    _load(_write("any/checkpoint", data))


TARGETS = {"audio": audio_bytes, "ct2": ct2_model_bin, "openai": openai_pt, "openai_pickle": openai_pickle,
           "safetensors": safetensors_weights, "hf_config": hf_config, "any": any_file}
