"""Prompts of an exact caption length, and the small tokenizer used with synthetic weights.

The transformer's cost depends on how many caption tokens reach it (the prompt's tokens after the
chat template, unpadded); the text encoder always sees the prompt padded to max_sequence_length.
A probe config asks for a caption length, so the prompt is built to tokenize to exactly that.
"""
from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PROMPT_WORD = "photo"  # one token on its own and after a space, for both tokenizers used here
# No system prompt or role markers: every word of the prompt is one caption token.
PLAIN_CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
WORDS = ["[PAD]", "[UNK]", PROMPT_WORD, "a", "of", "the", "cat", "on", "mountain", "at", "sunset"]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer: every whitespace-separated word is one token ([UNK] if unknown).

    Its ids are a handful, far below the Qwen vocabulary size, so it drives the text encoder of
    the exact architecture (weights are synthetic, so which ids does not matter).
    """
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")
    tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    return tokenizer


def caption_length(tokenizer, prompt: str) -> int:
    """Tokens of `prompt` as ZImagePipeline feeds it to the text encoder (chat template applied),
    before padding: the caption length that reaches the transformer."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        tokenize=False, add_generation_prompt=True, enable_thinking=True,
    )
    return len(tokenizer(text)["input_ids"])


def caption_prompt(tokenizer, tokens: int) -> str:
    """A prompt that reaches the transformer as exactly `tokens` caption tokens.

    The chat template adds a fixed number of tokens (none for the word tokenizer, about ten for
    Qwen's); the rest are repetitions of one single-token word. ValueError if it cannot be exact.
    """
    overhead = caption_length(tokenizer, "")
    words = tokens - overhead
    if words < 1:
        raise ValueError(
            f"caption_tokens {tokens}: this tokenizer's chat template alone gives {overhead} tokens"
        )
    prompt = " ".join([PROMPT_WORD] * words)
    got = caption_length(tokenizer, prompt)
    if got != tokens:
        raise ValueError(f"caption_tokens {tokens}: a prompt of {words} words gave {got} tokens")
    return prompt


def negative_prompt(tokenizer) -> str:
    """The negative prompt of a CFG run: the pipeline's default "" (the chat template's tokens
    alone), or one word where the template adds none (an empty caption cannot run)."""
    return "" if caption_length(tokenizer, "") else PROMPT_WORD
