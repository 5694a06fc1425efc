"""A byte-level BPE tokenizer trained locally on the world's own text.

Like Qwen2's tokenizer it splits every digit into its own token, so two texts from one template with
numbers of the same digit counts have the same token length (what clean/corrupted pairs need), and
it uses the ChatML chat template. Saved as an ordinary Hugging Face tokenizer directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)

# ChatML, as Qwen2.5 writes it, without the default system turn (the world's prompts carry their
# own). Like Qwen3's template it honours `enable_thinking=False` with an empty think block after the
# generation prompt (thinking on, or not set, adds nothing), so think on/off is exercised here.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}"
)


def train_tokenizer(corpus: Iterable[str], *, vocab_size: int = 512):
    """Train the byte-level BPE on `corpus` and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",  # set in the constructor, or transformers 5 does not save it
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer, out_dir: Path) -> None:
    """Write the tokenizer files into `out_dir` (which may also hold the model)."""
    tokenizer.save_pretrained(str(out_dir))
