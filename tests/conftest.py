"""Shared fixtures: every model is built here from a tiny config; nothing reaches a hub."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle threads sleep, never spin
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from thinkgen.thinker import Thinker, ThinkerConfig  # noqa: E402
from thinkgen.tiny import byte_tokenizer, tiny_pipeline, tiny_qwen3  # noqa: E402

torch.set_num_threads(int(os.environ.get("THINKGEN_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def tokenizer():
    return byte_tokenizer()


@pytest.fixture(scope="session")
def thinker_model(tokenizer):
    # init_std 0.5: greedy outputs then differ from prompt to prompt (see tiny_qwen3)
    return tiny_qwen3(len(tokenizer), hidden_size=64, num_layers=3, init_std=0.5, seed=0,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


@pytest.fixture
def make_thinker(thinker_model, tokenizer):
    def make(**overrides) -> Thinker:
        options = {"max_think_tokens": 12, "max_rewrite_tokens": 8, **overrides}
        return Thinker(thinker_model, tokenizer, config=ThinkerConfig(**options))

    return make


@pytest.fixture(scope="session")
def pipe():
    return tiny_pipeline(seed=0)
