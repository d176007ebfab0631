"""Build a tiny random-weight Llama that vLLM can serve, with no hub access.

Run inside the vLLM venv (``.venv-vllm/bin/python tests/integration/vllm_model.py DIR``): it
needs ``tokenizers``, ``transformers`` and ``torch``, none of which the project's own venv has.
It writes into DIR, in about 15 s:

* a byte-level BPE tokenizer (vocabulary ~2k) trained on generated text, with ``<s>``/``</s>``
  and a minimal chat template, saved as a ``PreTrainedTokenizerFast``;
* a ``LlamaForCausalLM`` with random weights: hidden 128, 2 layers, 4 heads of 32 (the CPU
  attention backend rejects head_dim 16), 2 KV heads, fp32, a few MB.

The weights are random, so the text is noise; what matters is that vLLM runs real prefill and
decode steps and counts them in its real /metrics. Everything is seeded: the same DIR twice.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

MAX_POSITIONS = 256  # the test serves with --max-model-len 256
VOCAB_SIZE = 2048
SPECIALS = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WORDS = [
    *("token", "cost", "price", "million", "gpu", "hour", "prefill", "decode", "batch", "cache"),
    *("queue", "model", "server", "request", "stream", "user", "latency", "throughput", "memory"),
    *("tensor", "layer", "head", "vector", "budget", "invoice", "cluster", "node"),
]


def corpus(lines: int = 4000, seed: int = 5) -> list[str]:
    """Generated sentences: words, numbers and punctuation, enough for ~2k merges."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(WORDS) if rng.random() < 0.8 else str(rng.randint(0, 9999)) for _ in range(12)]
        out.append(" ".join(words).capitalize() + rng.choice(".?!"))
    return out


def build_tokenizer(out: Path) -> Any:  # a transformers PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: no <unk> in practice
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=SPECIALS[3:],
        model_max_length=MAX_POSITIONS,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast


def build_model(out: Path, tokenizer: Any) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(5)
    vocab = len(tokenizer)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,  # head_dim 32
        num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        dtype="float32",
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(out, safe_serialization=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} DIR", file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out)
    build_model(out, tokenizer)
    files = sorted(p.name for p in out.iterdir())
    size = sum(p.stat().st_size for p in out.iterdir())
    print(json.dumps({"dir": str(out), "vocab": len(tokenizer), "files": files, "bytes": size}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
