"""openai-whisper reference models holding our converted weights, loaded once per test session."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def models(name: str):
    """(ours, openai-whisper's) fp32 models holding the same weights."""
    import whisper

    from whisper_model.model import Whisper
    from whisper_model.weights import load_checkpoint, to_openai

    dims, sd = load_checkpoint(name)
    ours = Whisper.from_state_dict(dims, sd)
    ckpt = to_openai(dims, sd)
    ref = whisper.model.Whisper(whisper.model.ModelDimensions(**ckpt["dims"]))
    ref.load_state_dict(ckpt["model_state_dict"], strict=True)
    return ours, ref.eval()
