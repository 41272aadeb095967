"""Whisper's tokenizer: byte-level BPE (tiktoken) plus Whisper's special tokens.

Token ids are identical to openai-whisper's ``whisper.tokenizer``. Layout of the vocabulary:

* BPE ranks: 50256 (``gpt2``, English-only models) or 50257 (``multilingual``) entries;
* then, in this order, one id each: ``<|endoftext|>``, ``<|startoftranscript|>``, one
  ``<|xx|>`` per language (99, or 100 with ``yue`` from large-v3 on), ``<|translate|>``,
  ``<|transcribe|>``, ``<|startoflm|>``, ``<|startofprev|>``, ``<|nospeech|>``,
  ``<|notimestamps|>``, and 1501 timestamps ``<|0.00|>`` ... ``<|30.00|>`` (0.02 s apart).

The BPE ranks come from a ``.tiktoken`` file (``base64(token) rank`` per line) or from a CTranslate2
vocabulary file (one token per line in id order, written in GPT-2's byte-to-unicode alphabet, the special
tokens following the BPE ranks); ``whisper_model.io.vocab`` knows the file names and where to find them.
"""
from __future__ import annotations

import base64
import os
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import tiktoken

from .vocab import BPE_RANKS, find_vocab_file, vocab_name

LANGUAGES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian",
    "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali",
    "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer",
    "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan",
    "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
    "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese",
    "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
    "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala",
    "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # order matters: it is the order of the language tokens

# language name (or common alias) -> code
TO_LANGUAGE_CODE = {
    **{name: code for code, name in LANGUAGES.items()},
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb",
    "pushto": "ps", "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si",
    "castilian": "es", "mandarin": "zh",
}

TASKS = ("transcribe", "translate")
_PAT_STR = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def special_token_names(num_languages: int = 99) -> List[str]:
    """Special tokens in id order (the first one's id is the number of BPE ranks)."""
    if not 1 <= num_languages <= len(LANGUAGES):
        raise ValueError(f"num_languages must be in 1..{len(LANGUAGES)}, got {num_languages}")
    return [
        "<|endoftext|>", "<|startoftranscript|>",
        *(f"<|{code}|>" for code in list(LANGUAGES)[:num_languages]),
        "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
        "<|nospeech|>", "<|notimestamps|>",
        *(f"<|{i * 0.02:.2f}|>" for i in range(1501)),
    ]


def _byte_alphabet() -> Dict[str, int]:
    """GPT-2's reversible byte->unicode map, inverted: printable Latin-1 bytes stand for
    themselves, the other 68 bytes (controls, space, 0x7F-0xA0, 0xAD) for chr(256 + k)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def _read_tiktoken_ranks(path: Path) -> Dict[bytes, int]:
    ranks = {}
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise ValueError(f"{path}:{n}: expected '<base64 token> <rank>', got {line[:60]!r}")
            ranks[base64.b64decode(parts[0])] = int(parts[1])
    return ranks


# Older Hugging Face / CTranslate2 vocabularies spell two special tokens differently.
_CT2_SPECIAL_ALIASES = {"<|nocaptions|>": "<|nospeech|>", "<|iw|>": "<|he|>"}


def _read_ct2_ranks(path: Path, num_languages: int) -> Dict[bytes, int]:
    """BPE ranks from a CTranslate2 vocabulary file; its special tokens are checked too."""
    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    try:
        n_bpe = lines.index("<|endoftext|>")
    except ValueError:
        raise ValueError(f"{path}: no '<|endoftext|>' line, so this is not a Whisper "
                         f"CTranslate2 vocabulary") from None
    alphabet = _byte_alphabet()
    ranks = {}
    for rank, token in enumerate(lines[:n_bpe]):
        try:
            ranks[bytes(alphabet[ch] for ch in token)] = rank
        except KeyError as e:
            raise ValueError(f"{path}:{rank + 1}: token {token!r} has character {e.args[0]!r} "
                             f"outside GPT-2's byte-level alphabet") from None
    expected = special_token_names(num_languages)
    for i, (got, want) in enumerate(zip(lines[n_bpe:], expected)):
        if _CT2_SPECIAL_ALIASES.get(got, got) != want:
            raise ValueError(f"{path}:{n_bpe + i + 1}: special token {got!r} where {want!r} was "
                             f"expected; does num_languages={num_languages} match this model?")
    return ranks


def load_ranks(path: Union[str, os.PathLike], num_languages: int = 99) -> Dict[bytes, int]:
    """BPE ranks ``{token bytes: rank}`` from a ``.tiktoken`` file or a CTranslate2 vocabulary file.

    The format is sniffed from the first line (``<base64> <rank>`` means tiktoken).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, f"vocabulary file not found: {str(path)!r}", str(path))
    with open(path, "rb") as f:
        first = f.readline().split()
    if len(first) == 2 and first[1].isdigit():
        return _read_tiktoken_ranks(path)
    return _read_ct2_ranks(path, num_languages)


@lru_cache(maxsize=None)
def get_encoding(name: str = "gpt2", num_languages: int = 99,
                 vocab_path: Union[str, os.PathLike, None] = None) -> tiktoken.Encoding:
    """The tiktoken ``Encoding`` of vocabulary ``name`` with Whisper's special tokens."""
    path = find_vocab_file(name, vocab_path)
    ranks = load_ranks(path, num_languages)
    if len(ranks) != BPE_RANKS[name]:
        raise ValueError(f"{path} has {len(ranks)} BPE ranks but the {name!r} Whisper "
                         f"vocabulary has {BPE_RANKS[name]}; is it the right file "
                         f"(English-only models use gpt2, the others multilingual)?")
    specials = {tok: len(ranks) + i for i, tok in enumerate(special_token_names(num_languages))}
    return tiktoken.Encoding(name=name, pat_str=_PAT_STR, mergeable_ranks=ranks,
                             special_tokens=specials, explicit_n_vocab=len(ranks) + len(specials))


class Tokenizer:
    """tiktoken ``Encoding`` plus Whisper's special-token ids and prompt prefix.

    ``sot_sequence`` is ``(sot,)`` plus the language token and the task token when set,
    e.g. ``(<|startoftranscript|>, <|en|>, <|transcribe|>)``.
    """

    def __init__(self, encoding: tiktoken.Encoding, num_languages: int = 99,
                 language: Optional[str] = None, task: Optional[str] = None):
        self.encoding = encoding
        self.num_languages = num_languages
        self.language = language
        self.task = task
        self.special_tokens: Dict[str, int] = {
            tok: encoding.encode_single_token(tok) for tok in encoding.special_tokens_set}
        seq = [self.sot]
        if language is not None:
            seq.append(self.to_language_token(language))
        if task is not None:
            seq.append(self.transcribe if task == "transcribe" else self.translate)
        self.sot_sequence: Tuple[int, ...] = tuple(seq)

    def __repr__(self) -> str:
        return (f"Tokenizer({self.encoding.name!r}, n_vocab={self.encoding.n_vocab}, "
                f"language={self.language!r}, task={self.task!r})")

    def encode(self, text: str, **kwargs) -> List[int]:
        """Text -> ids. Special-token text is rejected unless ``allowed_special`` permits it."""
        return self.encoding.encode(text, **kwargs)

    def decode(self, token_ids: Sequence[int], **kwargs) -> str:
        """Ids -> text, dropping timestamp tokens (ids >= ``timestamp_begin``)."""
        return self.encoding.decode([t for t in token_ids if t < self.timestamp_begin], **kwargs)

    def decode_with_timestamps(self, token_ids: Sequence[int], **kwargs) -> str:
        """Ids -> text keeping timestamps as text, e.g. ``"<|1.08|>"``."""
        return self.encoding.decode(list(token_ids), **kwargs)

    eot = cached_property(lambda self: self.encoding.eot_token)
    sot = cached_property(lambda self: self.special_tokens["<|startoftranscript|>"])
    translate = cached_property(lambda self: self.special_tokens["<|translate|>"])
    transcribe = cached_property(lambda self: self.special_tokens["<|transcribe|>"])
    sot_lm = cached_property(lambda self: self.special_tokens["<|startoflm|>"])
    sot_prev = cached_property(lambda self: self.special_tokens["<|startofprev|>"])
    no_speech = cached_property(lambda self: self.special_tokens["<|nospeech|>"])
    no_timestamps = cached_property(lambda self: self.special_tokens["<|notimestamps|>"])
    timestamp_begin = cached_property(lambda self: self.special_tokens["<|0.00|>"])

    @cached_property
    def language_token(self) -> int:
        if self.language is None:
            raise ValueError("this tokenizer has no language set (get_tokenizer(language=...))")
        return self.to_language_token(self.language)

    def to_language_token(self, language: str) -> int:
        token = self.special_tokens.get(f"<|{language}|>")
        if token is None:
            raise KeyError(f"language {language!r} is not in this tokenizer's "
                           f"{self.num_languages} languages")
        return token

    @cached_property
    def all_language_tokens(self) -> Tuple[int, ...]:
        return tuple(self.special_tokens[f"<|{c}|>"] for c in list(LANGUAGES)[:self.num_languages])

    @cached_property
    def all_language_codes(self) -> Tuple[str, ...]:
        return tuple(list(LANGUAGES)[:self.num_languages])

    @cached_property
    def sot_sequence_including_notimestamps(self) -> Tuple[int, ...]:
        return (*self.sot_sequence, self.no_timestamps)

    @cached_property
    def non_speech_tokens(self) -> Tuple[int, ...]:
        """Ids to suppress so the model does not emit speaker tags, music notes or other
        annotations (e.g. "[DAVID]", "( FOREIGN )", "♪♪"). Plain punctuation stays allowed;
        " -" and " '" are suppressed only at word starts (their leading-space form)."""
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        # U+2640..U+267F: their UTF-8 forms share the first two bytes, so suppressing the
        # first token of a multi-token encoding is safe for these.
        notes = set("♩♪♫♬♭♮♯")
        enc = self.encoding.encode
        result = {enc(" -")[0], enc(" '")[0]}
        for sym in symbols + sorted(notes):
            for ids in (enc(sym), enc(" " + sym)):
                if len(ids) == 1 or sym in notes:
                    result.add(ids[0])
        return tuple(sorted(result))


def normalize_language(language: Optional[str]) -> Optional[str]:
    """Language code from a code, name or alias (case-insensitive); ValueError if unknown."""
    if language is None:
        return None
    key = language.lower()
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise ValueError(f"unsupported language {language!r}; use a code or name from "
                     f"whisper_model.io.tokenizer.LANGUAGES / TO_LANGUAGE_CODE (e.g. 'en', 'zh', "
                     f"'spanish'); print(sorted(LANGUAGES)) lists all {len(LANGUAGES)} codes")


@lru_cache(maxsize=None)
def get_tokenizer(multilingual: bool, *, num_languages: int = 99, language: Optional[str] = None,
                  task: Optional[str] = None,
                  vocab_path: Union[str, os.PathLike, None] = None) -> Tokenizer:
    """Cached Whisper tokenizer.

    Multilingual models default to ``language="en"``, ``task="transcribe"``; English-only
    models (``multilingual=False``) always have ``language=task=None`` (any given are ignored,
    as in openai-whisper). ``num_languages`` is 99, or 100 for large-v3 / turbo.
    ``vocab_path``: see ``find_vocab_file``.
    """
    language = normalize_language(language)
    if task is not None and task not in TASKS:
        raise ValueError(f"unsupported task {task!r}; expected one of {TASKS}")
    if multilingual:
        language, task = language or "en", task or "transcribe"
        if language not in list(LANGUAGES)[:num_languages]:
            raise ValueError(f"language {language!r} needs a model with more than "
                             f"{num_languages} languages (e.g. large-v3 for 'yue')")
    else:
        language, task = None, None
    encoding = get_encoding(vocab_name(multilingual), num_languages, vocab_path)
    return Tokenizer(encoding, num_languages=num_languages, language=language, task=task)
