"""Decoding of 30 s windows: options, language detection, greedy / sampling / beam search, ranking.

Same algorithm as openai-whisper's ``whisper/decoding.py`` (greedy results are token-identical in fp32), on the
decoder's cached mode: caches preallocated once for ``n_audio * n_group`` rows, the cross K/V computed once per
audio (decoder row i reads audio ``i // n_group``), the initial tokens prefilled at positions ``0..n0-1``, then
one token per step; beam search reorders cache rows. Audios of one batch may have their own prompts and
languages (``DecodingTask(prompts=..., languages=...)``): rows with different numbers of initial tokens are
right-aligned with per-row positions (``row_layout.py``), and each row gives the tokens it gives when decoded alone.

Parts with one job each, wired by ``DecodingTask``:

* ``LogitFilter`` (``logit_filters.py``): masks the step's logits;
* ``TokenDecoder`` (``token_decoders.py``): ``GreedyDecoder`` (argmax, or sampling at temperature > 0) or
  ``BeamSearchDecoder``;
* ``SequenceRanker`` (``token_decoders.py``): ``MaximumLikelihoodRanker`` picks one of each audio's candidates.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

from ..io.audio import CHUNK_LENGTH
from ..io.tokenizer import Tokenizer
from .language import detect_language, features_of, resolve_language, tokenizer_for
from .logit_filters import ApplyTimestampRules, LogitFilter, SuppressBlank, SuppressTokens
from .loops import StopRepetitionLoops, sequence_loops, unlooped_first
from .options import DecodingOptions, DecodingResult, compression_ratio
from .protocol import TextDecoder, put_audio
from .row_layout import RowLayout
from .token_decoders import BeamSearchDecoder, GreedyDecoder, MaximumLikelihoodRanker, TokenDecoder

# Called every OBSERVE_EVERY decoding steps with the tokens sampled so far, [n_audio, n_group, t] (CPU): a window's
# progress as it is decoded (the latest timestamp token tells how far into the window the text has come).
StepObserver = Callable[[torch.Tensor], None]
OBSERVE_EVERY = 8


class DecodingTask:
    """Wires tokenizer, initial tokens, logit filters, token decoder and ranker for one ``DecodingOptions``.

    ``tokenizer`` (optional) supplies the vocabulary; language and task come from the options. Per audio
    (one entry each, for exactly that many audios in ``run``): ``prompts`` (str, ids, or None/empty for none)
    in place of ``options.prompt``, and ``languages`` in place of ``options.language`` (which must then be None).
    ``observer``: a ``StepObserver`` told of the tokens sampled so far, every ``OBSERVE_EVERY`` steps.
    """

    def __init__(self, model, options: DecodingOptions, tokenizer: Optional[Tokenizer] = None, *,
                 prompts: Optional[Sequence[Union[str, Sequence[int], None]]] = None,
                 languages: Optional[Sequence[str]] = None, observer: Optional[StepObserver] = None):
        self.model, self.options, self.observer = model, options, observer
        self.tokenizer = tok = tokenizer_for(model, options.language, options.task, tokenizer)
        self.n_rows = self._check_per_audio(prompts, languages)
        self.languages, self.language_tokens = None, None
        if languages is not None:
            codes = [resolve_language(model, lang, options.task) for lang in languages]
            self.languages = [code or "en" for code in codes]
            self.language_tokens = [tok.to_language_token(c) for c in codes] if model.is_multilingual else None
        self.detect = model.is_multilingual and options.language is None and languages is None
        self.n_ctx = model.dims.n_text_ctx
        self.n_group = options.beam_size or options.best_of or 1
        self.sample_len = options.sample_len or self.n_ctx // 2
        self.sot_sequence = tok.sot_sequence_including_notimestamps if options.without_timestamps else tok.sot_sequence
        self.initial_tokens = [self._initial_tokens(p) for p in (prompts if prompts is not None else [options.prompt])]
        self.sample_begin = max(len(t) for t in self.initial_tokens)
        self.ranker = MaximumLikelihoodRanker(options.length_penalty)
        if options.beam_size is not None:
            self.token_decoder: TokenDecoder = BeamSearchDecoder(options.beam_size, tok.eot, options.patience)
        else:
            self.token_decoder = GreedyDecoder(options.temperature, tok.eot, self.n_group)
        self.logit_filters: list[LogitFilter] = []
        if options.suppress_blank:
            self.logit_filters.append(SuppressBlank(tok, self.sample_begin))
        if options.suppress_tokens:
            self.logit_filters.append(SuppressTokens(self._suppress_tokens()))
        if not options.without_timestamps:
            precision = CHUNK_LENGTH / model.dims.n_audio_ctx  # 0.02 s per timestamp step
            max_index = None
            if options.max_initial_timestamp is not None:
                max_index = round(options.max_initial_timestamp / precision)
            self.logit_filters.append(ApplyTimestampRules(tok, self.sample_begin, max_index))
        if options.stop_loops:
            self.logit_filters.append(StopRepetitionLoops(tok, self.sample_begin))

    def _check_per_audio(self, prompts, languages) -> Optional[int]:
        """The number of audios that per-audio ``prompts`` / ``languages`` fix (None when neither is given)."""
        if prompts is not None and self.options.prompt is not None:
            raise ValueError("prompts: give per-audio prompts or DecodingOptions.prompt, not both")
        if languages is not None and self.options.language is not None:
            raise ValueError("languages: give per-audio languages or DecodingOptions.language, not both")
        counts = {name: len(v) for name, v in (("prompts", prompts), ("languages", languages)) if v is not None}
        if any(n == 0 for n in counts.values()):
            raise ValueError(f"{', '.join(counts)}: need one entry per audio, got an empty sequence")
        if len(set(counts.values())) > 1:
            raise ValueError(f"prompts and languages need one entry per audio each, got {counts}")
        return next(iter(counts.values()), None)

    def _encode(self, text_or_ids) -> list[int]:
        if isinstance(text_or_ids, str):
            return self.tokenizer.encode(" " + text_or_ids.strip())
        return [int(t) for t in text_or_ids]

    def _initial_tokens(self, prompt) -> tuple[int, ...]:
        """[<|startofprev|> prompt...] sot_sequence [prefix...]: the prompt keeps its last n_ctx//2 - 1 ids."""
        tokens = list(self.sot_sequence)
        if self.options.prefix:
            prefix = self._encode(self.options.prefix)
            max_prefix_len = self.n_ctx // 2 - self.sample_len
            if max_prefix_len > 0:  # at the default sample_len openai-whisper keeps the whole prefix too
                prefix = prefix[-max_prefix_len:]
            tokens += prefix
        if prompt:
            prompt = self._encode(prompt)
            tokens = [self.tokenizer.sot_prev] + prompt[-(self.n_ctx // 2 - 1):] + tokens
        if len(tokens) > self.n_ctx:
            raise ValueError(f"prefix: {len(tokens)} initial tokens exceed the text context of {self.n_ctx}")
        return tuple(tokens)

    def _suppress_tokens(self) -> tuple[int, ...]:
        spec, tok = self.options.suppress_tokens, self.tokenizer
        ids = [int(t) for t in spec.split(",")] if isinstance(spec, str) else [int(t) for t in spec]
        if -1 in ids:
            ids = [t for t in ids if t >= 0] + list(tok.non_speech_tokens)
        ids += [tok.transcribe, tok.translate, tok.sot, tok.sot_prev, tok.sot_lm, tok.no_speech]
        return tuple(sorted(set(ids)))

    @torch.no_grad()
    def run(self, mel_or_features: torch.Tensor) -> list[DecodingResult]:
        """mel [n_audio, n_mels, 2*n_audio_ctx] or features [n_audio, n_audio_ctx, d] -> one result per audio."""
        tok, model, n_group = self.tokenizer, self.model, self.n_group
        features = features_of(model, mel_or_features)
        n_audio = features.shape[0]
        if self.n_rows is not None and n_audio != self.n_rows:
            raise ValueError(f"prompts/languages: {self.n_rows} per-audio entries for {n_audio} audios")
        shared = len(self.initial_tokens) == 1  # no per-audio prompts (or one audio)
        layout = RowLayout(self.initial_tokens * n_audio if shared else self.initial_tokens)
        n_cols = self.n_ctx + 1 + max(layout.pads)
        tokens = layout.tokens(n_cols, fill=tok.eot)  # written by index
        sot_columns = layout.columns_of(tok.sot)
        rows = torch.arange(n_audio)
        language_columns = torch.tensor(sot_columns) + 1
        languages, language_probs = [tok.language or "en"] * n_audio, [None] * n_audio
        if self.languages is not None:
            languages = self.languages
            if self.language_tokens is not None:
                tokens[rows, language_columns] = torch.tensor(self.language_tokens)
        elif self.detect:
            lang_tokens, language_probs = detect_language(model, features, tok)
            tokens[rows, language_columns] = lang_tokens.cpu()
            languages = [max(p, key=p.get) for p in language_probs]

        tokens = tokens.repeat_interleave(n_group, dim=0)
        positions = layout.positions(n_cols, self.n_ctx, group=n_group, device=features.device)
        tokens, sum_logprobs, no_speech_probs = self._main_loop(features, tokens, positions, sot_columns,
                                                                layout.limits(self.n_ctx))
        length = tokens.shape[1]
        candidates, scores = self.token_decoder.finalize(tokens.reshape(n_audio, n_group, length),
                                                   sum_logprobs.view(n_audio, n_group))
        candidates = [[self._sampled(seq) for seq in group] for group in candidates]
        looped = [[self.options.stop_loops and sequence_loops(c, tok.timestamp_begin) for c in group]
                  for group in candidates]
        chosen = self.ranker.rank(candidates, unlooped_first(scores, looped))
        results = []
        for i, j in enumerate(chosen):
            ids, sum_logprob = candidates[i][j], scores[i][j]
            text = tok.decode(ids).strip()
            results.append(DecodingResult(
                language=languages[i], tokens=ids, text=text, sum_logprob=sum_logprob,
                avg_logprob=sum_logprob / (len(ids) + 1), no_speech_prob=no_speech_probs[i * n_group],
                temperature=self.options.temperature, compression_ratio=compression_ratio(text),
                language_probs=language_probs[i],
                looped=looped[i][j]))
        return results

    def _sampled(self, seq: list[int]) -> list[int]:
        """The sampled part of a candidate: after the initial tokens, up to the first end-of-text."""
        body = seq[self.sample_begin:]
        return body[: body.index(self.tokenizer.eot)] if self.tokenizer.eot in body else body

    def _main_loop(self, features: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor,
                   sot_columns: list[int], limits: list[int]):
        """features [n_audio, n_audio_ctx, d]; tokens [n_batch, n_cols] (n_batch = n_audio * n_group, initial
        tokens filled, right-aligned); positions [n_cols] or [n_batch, n_cols] (``RowLayout.positions``);
        per audio: its sot column and its length limit (``RowLayout.limits``) ->
        (tokens [n_batch, length], sum_logprobs [n_batch], no_speech_probs [n_batch])."""
        decoder, n_batch = self.model.text_decoder, tokens.shape[0]
        decoder.reserve(n_batch)
        put_audio(decoder, features)  # one cross row per audio; decoder row i reads audio i // n_group
        try:
            return self._steps(decoder, tokens, positions, sot_columns, limits, features.shape[0])
        finally:
            decoder.release()

    def _steps(self, decoder: TextDecoder, tokens: torch.Tensor, positions: torch.Tensor, sot_columns: list[int],
               limits: list[int], n_audio: int):
        device, n_batch, n_group = positions.device, tokens.shape[0], self.n_group
        self.token_decoder.reset()
        sum_logprobs = torch.zeros(n_batch, device=device)
        length = self.sample_begin
        sot = torch.tensor(sot_columns, device=device).repeat_interleave(n_group)
        keep = torch.stack([sot, torch.full_like(sot, length - 1)], dim=1)  # the logits the prefill needs
        logits = decoder.step(tokens[:, :length].to(device), positions[..., :length], keep)  # [n_batch, 2, V]
        probs_at_sot = logits[:, 0].float().softmax(dim=-1)
        no_speech_probs = probs_at_sot[:, self.tokenizer.no_speech].tolist()
        logits = logits[:, 1]
        stopped: set[int] = set()  # audios past their text context (rows with shorter prompts go on longer)
        for step in range(self.sample_len):
            if step > 0:
                logits = decoder.step(tokens[:, length - 1: length].to(device), positions[..., length - 1: length])[:, -1]
            for logit_filter in self.logit_filters:
                logit_filter.apply(logits, tokens[:, :length])
            next_tokens, sources, completed = self.token_decoder.update(tokens[:, :length], logits, sum_logprobs)
            if sources is not None:
                tokens[:, :length] = tokens[sources, :length]
                decoder.reorder(torch.tensor(sources, device=device))
            tokens[:, length] = next_tokens
            length += 1
            if completed:
                break
            if self.observer is not None and step % OBSERVE_EVERY == OBSERVE_EVERY - 1:
                self.observer(tokens[:, self.sample_begin:length].view(n_audio, n_group, -1))
            ended = [a for a in range(n_audio) if a not in stopped and length > limits[a]]
            if ended:
                stopped.update(ended)
                if len(stopped) == n_audio:
                    break
                self.token_decoder.close(ended, tokens[:, :length], sum_logprobs)
        return tokens[:, :length], sum_logprobs, no_speech_probs


@torch.no_grad()
def decode(model, mel: torch.Tensor, options: DecodingOptions = DecodingOptions(), *,
           tokenizer: Optional[Tokenizer] = None) -> list[DecodingResult]:
    """Decode 30 s windows: mel [n_audio, n_mels, 2*n_audio_ctx] (or encoder states
    [n_audio, n_audio_ctx, n_audio_state]) -> one ``DecodingResult`` per audio."""
    if not isinstance(mel, torch.Tensor) or mel.dim() != 3:
        raise ValueError(f"mel must be a 3-D tensor [n_audio, n_mels, frames], got {tuple(getattr(mel, 'shape', ()))}")
    return WhisperDecoding(model, tokenizer).decode(mel, options)


class WhisperDecoding:
    """The decoder side of ``model`` (``Whisper`` or the engine's ``AcceleratedWhisper``): 30 s windows' encoder
    states (or their mel) -> text, through the model's decoder seam (``model.text_decoder``).

        decoding = WhisperDecoding(model, tokenizer)
        results = decoding.decode(features, DecodingOptions(beam_size=5))   # [n_audio, n_audio_ctx, d] -> results
        language_tokens, probs = decoding.detect_language(features)
    """

    def __init__(self, model, tokenizer: Optional[Tokenizer] = None):
        self.model, self.tokenizer = model, tokenizer

    def decode(self, mel_or_features: torch.Tensor, options: DecodingOptions = DecodingOptions(), *,
               prompts: Optional[Sequence[Union[str, Sequence[int], None]]] = None,
               languages: Optional[Sequence[str]] = None) -> list[DecodingResult]:
        """One ``DecodingResult`` per audio; per-audio ``prompts`` / ``languages`` as in ``DecodingTask``."""
        return DecodingTask(self.model, options, self.tokenizer, prompts=prompts, languages=languages).run(
            mel_or_features)

    def detect_language(self, mel_or_features: torch.Tensor):
        """``(language tokens [n], [{code: probability}] * n)``: see ``language.detect_language``."""
        return detect_language(self.model, mel_or_features, self.tokenizer)
