"""A word-level tokenizer for the ShapeWorld thinker, built with the ``tokenizers`` library.

Pre-tokenisation marks each space as ``▁`` on the piece after it (as SentencePiece does), keeps
newlines as pieces, and isolates every capital letter, digit and punctuation mark (with its
``▁``), so the random strings of the text suite ("3N2P") are spelled character by character and
no ShapeWorld text is ever out of vocabulary. Because the spaces are in the pieces, decoding gives
the text exactly as written ("So I draw", not "S o I draw"). The vocabulary is every piece seen
in the corpora. Saved as a standard ``tokenizer.json`` with a chat template and
``<think>``/``</think>``.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from ..tiny import CHAT_TEMPLATE

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<unk>"]
ROLES = ["system", "user", "assistant"]


SPACE = "\u2581"  # ▁, SentencePiece's mark for "a space before this piece"


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
        pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="never", split=True),
        pre_tokenizers.Split(Regex(f"{SPACE}?[A-Z0-9]"), behavior="isolated"),  # "▁S" "o", "▁3" "N" "2" "P"
        pre_tokenizers.Split(Regex(f"{SPACE}?[^\\w{SPACE}\\s]"), behavior="isolated"),  # punctuation
    ])


def word_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary covers ``texts`` (and the chat template's words)."""
    pre = _pre_tokenizer()
    words: dict[str, None] = {}
    for text in list(texts) + ROLES + ["\n"]:
        for piece, _ in pre.pre_tokenize_str(text):
            words.setdefault(piece, None)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(words):
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre
    backend.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="never", split=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[:5],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
