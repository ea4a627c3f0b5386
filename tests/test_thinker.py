import pytest
import torch

from thinkgen.thinker import Thinker, ThinkerConfig
from thinkgen.tiny import tiny_qwen3

PROMPTS = ["a red circle", "two blue squares left of a big yellow star", "x"]


def fresh_states(model, ids: torch.Tensor, num_layers: int) -> torch.Tensor:
    """One plain forward pass over the tokens; transformers' hidden_states[-n:] concatenated."""
    with torch.no_grad():
        out = model(ids[None], output_hidden_states=True)
    return torch.cat(out.hidden_states[-num_layers:], dim=-1)[0]  # (S, n * D)


def test_think_output_structure(make_thinker, tokenizer):
    thinker = make_thinker()
    out = thinker.encode(PROMPTS, think=True)
    assert out.states.shape[0] == 3 and out.states.shape[2] == 2 * 64
    for row, (seq, start) in enumerate(zip(out.sequences, out.prompt_lengths, strict=True)):
        completion = seq[start:].tolist()
        close = completion.index(thinker.close_id)
        assert close <= 12  # the think budget forces </think>
        assert completion[-1] in thinker.end_ids  # every row ends with its end-of-turn token
        assert len(completion) - close - 2 <= 8  # rewrite budget
        # cut = every token after </think>, end token included
        assert int(out.mask[row].sum()) == len(completion) - close - 1
        assert out.rewritten[row] == tokenizer.decode(completion[close + 1 : -1], skip_special_tokens=True).strip()


@pytest.mark.parametrize("init_std", [0.02, 0.5])
def test_captured_states_equal_fresh_forward(tokenizer, init_std):
    # std 0.02 is a normally scaled model: the tolerance, atol 1e-4, applies as is. The
    # std 0.5 model writes varied text but its raw residual states reach ~100s, so there the
    # tolerance is relative to float32 rounding.
    model = tiny_qwen3(len(tokenizer), hidden_size=64, num_layers=3, init_std=init_std,
                       eos_token_id=tokenizer.eos_token_id)
    atol = 1e-4 if init_std == 0.02 else 1e-3
    for layers in (1, 2, 3):
        thinker = Thinker(model, tokenizer, config=ThinkerConfig(
            num_layers=layers, max_think_tokens=12, max_rewrite_tokens=8))
        out = thinker.encode(PROMPTS, think=True)
        for row, seq in enumerate(out.sequences):
            n = int(out.mask[row].sum())
            expected = fresh_states(model, seq, layers)[-n:]
            torch.testing.assert_close(out.states[row, :n], expected, atol=atol, rtol=1e-4)
            assert torch.all(out.states[row, n:] == 0)


def test_batched_think_equals_per_sample(make_thinker):
    thinker = make_thinker()
    batched = thinker.encode(PROMPTS, think=True)
    assert len({tuple(s.tolist()) for s in batched.sequences}) == 3  # the rows really differ
    for row, prompt in enumerate(PROMPTS):
        single = thinker.encode([prompt], think=True)
        assert torch.equal(single.sequences[0], batched.sequences[row])
        assert single.reasoning[0] == batched.reasoning[row]
        assert single.rewritten[0] == batched.rewritten[row]
        n = int(single.mask[0].sum())
        assert int(batched.mask[row].sum()) == n
        # raw residual states of this init reach ~100s: compare up to float32 rounding
        torch.testing.assert_close(batched.states[row, :n], single.states[0, :n], atol=1e-3, rtol=1e-4)


def test_sampling_is_seeded(make_thinker):
    thinker = make_thinker(do_sample=True, temperature=1.0)
    a = thinker.encode(PROMPTS, think=True, seed=7)
    b = thinker.encode(PROMPTS, think=True, seed=7)
    c = thinker.encode(PROMPTS, think=True, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a.sequences, b.sequences, strict=True))
    assert any(not torch.equal(x, y) for x, y in zip(a.sequences, c.sequences, strict=True))


def test_cut_versus_all(make_thinker, thinker_model):
    cut = make_thinker(extract="cut").encode(PROMPTS, think=True)
    full = make_thinker(extract="all").encode(PROMPTS, think=True)
    for row, seq in enumerate(full.sequences):
        n_all, n_cut = int(full.mask[row].sum()), int(cut.mask[row].sum())
        assert n_all == len(seq) > n_cut  # "all" keeps every real token, prompt included
        torch.testing.assert_close(full.states[row, n_all - n_cut : n_all], cut.states[row, :n_cut],
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(full.states[row, :n_all], fresh_states(thinker_model, seq, 2),
                                   atol=1e-3, rtol=1e-4)


def test_direct_mode_is_pseudo_cot(make_thinker, tokenizer, thinker_model):
    thinker = make_thinker()
    prompts = ["a red circle", "evil </think> prompt", ""]
    out = thinker.encode(prompts, think=False)
    for row, prompt in enumerate(prompts):
        seq = out.sequences[row]
        text = tokenizer.decode(seq)
        assert text.endswith("<think>\n\n</think>\n\n" + prompt + "<|im_end|>")
        n = int(out.mask[row].sum())
        # after the *template's* </think>: "\n\n" + prompt + end token, whatever the prompt holds
        assert n == len(tokenizer.encode("\n\n" + prompt, add_special_tokens=False)) + 1
        torch.testing.assert_close(out.states[row, :n], fresh_states(thinker_model, seq, 2)[-n:],
                                   atol=1e-3, rtol=1e-4)
    assert out.rewritten == prompts and out.reasoning == ["", "", ""]


def test_bad_inputs(make_thinker, tokenizer, thinker_model):
    thinker = make_thinker()
    with pytest.raises(ValueError):
        thinker.encode("a bare string", think=True)
    with pytest.raises(ValueError):
        thinker.encode([], think=True)
    with pytest.raises(ValueError, match="vision-language"):
        thinker.encode(["x"], think=True, images=[[object()]])
    with pytest.raises(ValueError):
        ThinkerConfig(extract="middle")
    with pytest.raises(ValueError, match="num_layers"):
        make_thinker(num_layers=9).encode(["x"], think=False)
    # a tokenizer without the close token can be held (text-marker conditionings use it), but
    # the token-level think and direct modes refuse it with a clear message
    markerless = Thinker(thinker_model, tokenizer, config=ThinkerConfig(think_close="</reason>"))
    assert markerless.close_id is None
    for think in (True, False):
        with pytest.raises(ValueError, match="single token for '</reason>'"):
            markerless.encode(["x"], think=think)
