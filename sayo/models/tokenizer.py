"""An offline tokenizer for the tiny default model.

Real checkpoints ship their tokenizer; the tiny model cannot download one, so we train a small
byte-level BPE here, deterministically, on a fixed corpus that covers the synthetic tasks and the
answer template. It uses Qwen2's pre-tokenisation (digits split one by one, byte-level fallback so
any text encodes) and Qwen2.5-VL's special tokens (which Qwen3-VL keeps), with the chat template of
the architecture it serves (Qwen2.5-VL's, or Qwen3-VL's for `tiny-qwen3-vl`), so every code path that
handles a real Qwen tokenizer handles this one unchanged.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# Qwen2.5-VL's special tokens, in Qwen's order (ids follow the learned vocabulary).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# The answer template's tags are single tokens: cheap to learn and easy to find in a rollout.
TEMPLATE_TOKENS: tuple[str, ...] = ("<think>", "</think>", "<answer>", "</answer>")

# Qwen2's pre-tokeniser pattern: contractions, letter runs, single digits, punctuation runs, spaces.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The chat turns both Qwen-VL templates share: text and image content only (no video, no tools).
_CHAT_TURNS = (
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif content['type'] == 'text' -%}{{ content['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>' + '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant' + '\\n' }}{%- endif -%}"
)

# Qwen2.5-VL's chat template: a default system turn unless the messages start with one.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system' + '\\n' + 'You are a helpful assistant.<|im_end|>' + '\\n' }}"
    "{%- endif -%}" + _CHAT_TURNS
)

# Qwen3-VL's chat template: the same turns and image placeholder, but no default system turn
# (Qwen3-VL writes one only when the messages start with a system message).
QWEN3_VL_CHAT_TEMPLATE = "{%- for message in messages -%}" + _CHAT_TURNS

_WORDS = (
    "what which where how many is are the a an of in on at to inside outside left right top bottom "
    "middle center colour color shape digit number value bar chart line point label title axis "
    "square circle triangle rectangle star red green blue yellow orange purple black white gray "
    "pink brown cyan above below next largest smallest highest lowest first second third last "
    "option options answer question image picture look region box area with and or not than "
    "between total sum difference compare more less equal greater year month percent per cent "
    "A B C D E F G H yes no true false choose select the correct letter think reasoning so "
    "therefore because it this that there I see shows contains has have written drawn labelled"
)


def _training_corpus() -> list[str]:
    """A fixed corpus: template words, numbers and the answer format, each a few times."""
    lines = [_WORDS, _WORDS.upper(), _WORDS.title()]
    lines += [f"The value of bar {c} is {n}." for c in "ABCDEFGH" for n in (0, 5, 12, 37, 50, 85, 100)]
    lines += [f"<think>I look at the {w}.</think><answer>{w}</answer>" for w in _WORDS.split()[:60]]
    lines += [f"{x}, {x}.{x % 10}%, ${x},000" for x in range(0, 101, 7)]
    return lines


def build_tokenizer(vocab_size: int = 1024, chat_template: str = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    """Train the tiny byte-level BPE tokenizer (deterministic) and wrap it for transformers.

    Args:
        vocab_size: target size of the learned vocabulary, special tokens included.
        chat_template: `CHAT_TEMPLATE` (Qwen2.5-VL) or `QWEN3_VL_CHAT_TEMPLATE`; the vocabulary is
            the same either way.
    Returns:
        A fast tokenizer with Qwen2.5-VL's special tokens, `<think>/<answer>` tags and the chat template.
    """
    backend = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_training_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        model_max_length=32768,
        padding_side="left",  # generation pads on the left, as for every decoder-only policy
    )
    tokenizer.add_tokens(list(TEMPLATE_TOKENS))
    tokenizer.chat_template = chat_template
    return tokenizer
