"""Seconds to load a 10-minute 16 kHz WAV into the scheduler's log-mel (decoding + STFT + mel), for one checkout.

    python bench/bench_front_end.py /path/to/checkout      # best of 3, one thread; prints one line
"""
import sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np, wave, torch
torch.set_num_threads(1)
from whisper_model.encoding import WhisperEncoding
from whisper_model.longform import load_mel
class M:  # what WhisperEncoding needs of a model
    class dims: n_mels = 80
    device = torch.device("cpu")
enc = WhisperEncoding(M())
path = "/tmp/front_10min.wav"
import os
if not os.path.exists(path):
    x = (np.random.default_rng(0).normal(0, 0.05, 600 * 16000) * 32768).astype("<i2")
    with wave.open(path, "wb") as f:
        f.setnchannels(1); f.setsampwidth(2); f.setframerate(16000); f.writeframes(x.tobytes())
best = 1e9
for _ in range(3):
    t = time.perf_counter(); mel = load_mel(enc, path); best = min(best, time.perf_counter() - t)
print(sys.argv[1], f"load_mel of 10 min: {best:.2f} s")
