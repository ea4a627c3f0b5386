"""Reinforcement learning: GRPO advantages and losses by hand, on-policy gradients, KL at
initialisation, the SDE step and sampler against Gaussians and the ODE, rewards, and the four RL
stages running (with what they train, same-noise groups and exact resume)."""

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from thinkgen import flow, tiny_pipeline
from thinkgen.loading import stored_dtype
from thinkgen.rewards import REWARDS, WeightedReward, get_reward, register_reward
from thinkgen.rl.flow_grpo import flow_grpo_loss, gaussian_logprob, sde_sample, sde_step
from thinkgen.rl.grpo import completion_logprobs, group_advantages, grpo_loss
from thinkgen.train import config as C
from thinkgen.train.loop import train
from thinkgen.train.rl_stage import prompt_for
from thinkgen.train.run import build_stage
from thinkgen.world import suites
from thinkgen.world.render import render

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- advantages
def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    std = math.sqrt(4 * 0.25 / 3)  # unbiased std of (1, 0, 0, 1)
    expected = torch.tensor([0.5, -0.5, -0.5, 0.5]) / (std + 1e-4)
    adv = group_advantages(rewards, 4, "group")
    assert torch.allclose(adv[:4], expected) and torch.equal(adv[4:], torch.zeros(4))  # all-equal group: 0
    batch_std = rewards.std().item()  # unbiased, over all 8
    assert torch.allclose(group_advantages(rewards, 4, "batch")[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (batch_std + 1e-4))
    assert torch.equal(group_advantages(rewards, 4, "none"), torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(rewards, 3)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(rewards, 4, "global")


# ----------------------------------------------------------------------------- GRPO loss
def hand_batch():
    # two sequences of 3 and 1 completion tokens (T = 3), advantages +2 and -1
    mask = torch.tensor([[1.0, 1, 1], [1, 0, 0]])
    return torch.zeros(2, 3), mask, torch.tensor([2.0, -1.0])


def test_loss_normalisations_by_hand():
    logp, mask, adv = hand_batch()  # ratio 1 everywhere: per-token loss = -A
    grpo, _ = grpo_loss(logp, logp, adv, mask, normalization="grpo")
    assert grpo.item() == pytest.approx(((-2 * 3) / 3 + (1 * 1) / 1) / 2)  # mean over sequences of token means
    dr, _ = grpo_loss(logp, logp, adv, mask, normalization="dr_grpo", max_completion_length=5)
    assert dr.item() == pytest.approx((-2 * 3 + 1) / (2 * 5))  # token sum / (B * max length)
    dapo, _ = grpo_loss(logp, logp, adv, mask, normalization="dapo")
    assert dapo.item() == pytest.approx((-2 * 3 + 1) / 4)  # token sum / active tokens


def test_clipping_by_hand():
    mask = torch.ones(2, 1)
    old = torch.zeros(2, 1)
    logp = torch.log(torch.tensor([[1.5], [0.5]]))  # ratios 1.5 (A = +1) and 0.5 (A = -1)
    loss, stats = grpo_loss(logp, old, torch.tensor([1.0, -1.0]), mask, epsilon=0.2, epsilon_high=0.28,
                            normalization="dapo")
    # A>0: min(1.5, 1.28) = 1.28 -> -1.28; A<0: min(-0.5, -0.8) = -0.8 -> +0.8
    assert loss.item() == pytest.approx((-1.28 + 0.8) / 2)
    assert stats.clip_fraction == 1.0
    # sequence-level ratio: exp(mean log-ratio) shared by the sequence's tokens
    logp2 = torch.log(torch.tensor([[2.0, 0.5]]))
    seq, _ = grpo_loss(logp2, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), epsilon=10.0,
                       importance="sequence")
    assert seq.item() == pytest.approx(-1.0)  # exp((log 2 + log 0.5) / 2) = 1


def test_on_policy_ratio_is_one_and_gradient_is_policy_gradient(tokenizer):
    from thinkgen.tiny import tiny_qwen3

    model = tiny_qwen3(len(tokenizer), hidden_size=32, num_layers=2, seed=1)
    sequences = [torch.tensor([5, 6, 7, 8, 9]), torch.tensor([5, 6, 10, 11])]
    prompt_lengths = [2, 3]
    advantages = torch.tensor([1.5, -0.5])

    for importance in ("token", "sequence"):
        model.zero_grad()
        logp, mask = completion_logprobs(model, sequences, prompt_lengths, pad_id=0, temperature=0.7)
        assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
        loss, stats = grpo_loss(logp, logp.detach(), advantages, mask, importance=importance)
        assert stats.ratio_mean == 1.0
        loss.backward()
        ours = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        logp, mask = completion_logprobs(model, sequences, prompt_lengths, pad_id=0, temperature=0.7)
        # plain policy gradient: -(1/B) sum_i A_i mean_t log p(o_it)
        plain = -((advantages * (logp * mask).sum(1) / mask.sum(1)).mean())
        plain.backward()
        for a, b in zip(ours, (p.grad for p in model.parameters()), strict=True):
            assert torch.allclose(a, b, atol=1e-6)


def test_completion_logprobs_match_a_manual_forward(tokenizer):
    from thinkgen.tiny import tiny_qwen3

    model = tiny_qwen3(len(tokenizer), hidden_size=32, num_layers=2, seed=1)
    seq = torch.tensor([5, 6, 7, 8])
    logp, _ = completion_logprobs(model, [seq, torch.tensor([5, 6, 9])], [2, 2], pad_id=0, temperature=2.0)
    logits = model(input_ids=seq[None]).logits[0]
    manual = torch.log_softmax(logits / 2.0, -1)
    assert torch.allclose(logp[0], torch.stack([manual[1, 7], manual[2, 8]]), atol=1e-5)


def test_kl_is_zero_at_initialisation():
    logp = torch.randn(3, 4)
    mask = torch.ones(3, 4)
    adv = torch.tensor([1.0, -1.0, 0.5])
    with_kl, stats = grpo_loss(logp, logp, adv, mask, ref_logprobs=logp.clone(), beta=0.5)
    without, _ = grpo_loss(logp, logp, adv, mask)
    assert stats.kl == 0.0 and with_kl.item() == pytest.approx(without.item())
    _, moved = grpo_loss(logp, logp, adv, mask, ref_logprobs=logp + 0.3, beta=0.5)
    assert moved.kl > 0  # and it grows once the policy moves away
    mean = torch.randn(2, 5)
    _, flow_stats = flow_grpo_loss(torch.zeros(2), torch.zeros(2), torch.ones(2), mean=mean, ref_mean=mean.clone(),
                                   std=0.3, beta=0.04)
    assert flow_stats.kl == 0.0


# ----------------------------------------------------------------------------- Flow-GRPO
def reference_step(x, v, sigma, sigma_next, a, sigma_max):
    """REFERENCE §2 by hand, in float64: std_t = a sqrt(sigma / (1 - s)), s = sigma_max at sigma = 1
    (denominator only); mean = x (1 + std^2 dt / 2 sigma) + v (1 + std^2 (1 - sigma) / 2 sigma) dt."""
    s = sigma_max if sigma >= 1 else sigma
    std = a * math.sqrt(sigma / (1 - s))
    dt = sigma_next - sigma
    mean = x.double() * (1 + std**2 * dt / (2 * sigma)) + v.double() * (1 + std**2 * (1 - sigma) / (2 * sigma)) * dt
    return mean, std * math.sqrt(-dt), std


# a 10-step schedule with shift 3, as the recipes use, and a 1-step one
TEN = flow.sigma_schedule(10, shift=3.0)


@pytest.mark.parametrize("where,sigmas", [("first (sigma = 1)", TEN[:2]), ("middle", TEN[4:6]),
                                          ("last", TEN[-2:]), ("one-step schedule", flow.sigma_schedule(1))])
def test_sde_step_and_logprob_match_the_reference_by_hand(where, sigmas):
    torch.manual_seed(0)
    x, v = torch.randn(3, 4, 6), torch.randn(3, 4, 6)
    sigma, sigma_next = float(sigmas[0]), float(sigmas[1])
    sigma_max = float(TEN[1]) if where != "one-step schedule" else float(sigmas[1])
    mean, scale, std = sde_step(x, v, sigmas[0], sigmas[1], noise_level=0.7, sigma_max=sigma_max)
    ref_mean, ref_scale, ref_std = reference_step(x, v, sigma, sigma_next, 0.7, sigma_max)
    assert float(std) == pytest.approx(ref_std, rel=1e-6) and float(scale) == pytest.approx(ref_scale, rel=1e-6)
    torch.testing.assert_close(mean.double(), ref_mean, atol=1e-5, rtol=1e-5)
    sample = mean + scale * torch.randn_like(mean)
    by_hand = (-((sample.double() - ref_mean) ** 2) / (2 * ref_scale**2) - math.log(ref_scale)
               - 0.5 * math.log(2 * math.pi)).flatten(1).mean(1)
    logprob = gaussian_logprob(sample, mean, scale)
    assert torch.isfinite(logprob).all()
    torch.testing.assert_close(logprob.double(), by_hand, atol=1e-4, rtol=1e-5)


def test_first_step_substitutes_sigma_max_in_the_denominator_only():
    """At sigma = 1 (10 steps, shift 3): std = 0.7 sqrt(1 / (1 - sigma_max)), not 0.7 sqrt(sigma_max / (1 - sigma_max))."""
    sigma_max = float(TEN[1])
    _, scale, std = sde_step(torch.zeros(1, 2), torch.zeros(1, 2), TEN[0], TEN[1], 0.7, sigma_max)
    assert float(std) == pytest.approx(0.7 * math.sqrt(1 / (1 - sigma_max)), rel=1e-6)
    assert float(scale) == pytest.approx(0.700, abs=5e-4)  # the step's std; substituting both gave 0.687
    # a one-step schedule has a finite std and log-prob (the old substitution gave 0 and NaN)
    _, scale, std = sde_step(torch.zeros(1, 2), torch.zeros(1, 2), 1.0, 0.0, 0.7, 0.0)
    assert float(std) == pytest.approx(0.7) and float(scale) == pytest.approx(0.7)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_rollouts_take_the_logprob_in_float32(dtype):
    """Model output and sample in half precision: cast to fp32 first, and the log-prob is of the
    fp32 next sample (as flow_grpo's), which the trajectory keeps for training."""
    torch.manual_seed(0)
    weight = torch.randn(6, 6) / 3
    noise = torch.randn(2, 6).to(dtype)
    sigmas = flow.sigma_schedule(4, shift=3.0)

    def velocity(x, sigma):
        return torch.tanh(x.float() @ weight).to(dtype)

    trajectory = sde_sample(velocity, noise, sigmas, noise_level=0.7, generator=torch.Generator().manual_seed(0))
    assert trajectory.sample.dtype == dtype
    for i, x, x_next, logprob in zip(trajectory.steps, trajectory.inputs, trajectory.outputs, trajectory.logprobs,
                                     strict=True):
        assert x_next.dtype == torch.float32
        mean, scale, _ = sde_step(x.float(), velocity(x, None).float(), sigmas[i], sigmas[i + 1], 0.7,
                                  float(sigmas[1]))
        torch.testing.assert_close(logprob, gaussian_logprob(x_next, mean, scale))


def test_kl_divides_by_std_t_squared_not_the_step_variance():
    mean, ref_mean = torch.zeros(2, 4), torch.full((2, 4), 0.1)
    _, _, std = sde_step(torch.zeros(1, 2), torch.zeros(1, 2), TEN[4], TEN[5], 0.7, float(TEN[1]))
    _, stats = flow_grpo_loss(torch.zeros(2), torch.zeros(2), torch.ones(2), mean=mean, ref_mean=ref_mean,
                              std=std, beta=0.04)
    assert stats.kl == pytest.approx(0.01 / (2 * float(std) ** 2), rel=1e-5)


def test_sde_with_noise_level_zero_is_the_ode():
    torch.manual_seed(0)
    weight = torch.randn(6, 6) * 0.3

    def velocity(x, sigma):
        return x @ weight + sigma.view(-1, 1, 1)

    noise = torch.randn(2, 5, 6)
    sigmas = flow.sigma_schedule(8, shift=3.0)
    ode = flow.euler_sample(velocity, noise, sigmas)
    trajectory = sde_sample(velocity, noise, sigmas, noise_level=0.0)
    assert torch.allclose(trajectory.sample, ode, atol=1e-5)
    assert len(trajectory.logprobs) == 8
    window = sde_sample(velocity, noise, sigmas, noise_level=0.7, sde_steps=[3, 4],
                        generator=torch.Generator().manual_seed(0))
    assert window.steps == [3, 4] and len(window.inputs) == 2  # Flow-GRPO-Fast: only the window is recorded


def test_sde_and_ode_agree_on_a_toy_flow():
    """Data N(m, s^2) in 1-D: the exact velocity E[noise - x0 | x_sigma] is known in closed form;
    both samplers must end at mean m and variance s^2."""
    m, s = 1.5, 0.5

    def velocity(x, sigma):
        sigma = sigma.view(-1, 1)
        var = (1 - sigma) ** 2 * s**2 + sigma**2  # variance of x_sigma
        centred = x - (1 - sigma) * m
        x0 = m + (1 - sigma) * s**2 / var * centred
        eps = sigma / var * centred
        return eps - x0

    noise = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0))
    sigmas = flow.sigma_schedule(200)
    ode = flow.euler_sample(velocity, noise, sigmas)
    sde = sde_sample(velocity, noise, sigmas, noise_level=0.7, generator=torch.Generator().manual_seed(1)).sample
    for x in (ode, sde):
        assert x.mean().item() == pytest.approx(m, abs=0.03)
        assert x.var().item() == pytest.approx(s**2, rel=0.06)


def test_flow_grpo_loss_clips_and_clamps():
    adv = torch.tensor([10.0, -1.0])  # the first is clamped to 5
    loss, stats = flow_grpo_loss(torch.log(torch.tensor([1.5, 1.0])), torch.zeros(2), adv, clip_range=1e-4)
    # A = 5, ratio 1.5: max(-7.5, -5 * 1.0001) = -5.0005; A = -1, ratio 1: 1
    assert loss.item() == pytest.approx((-5.0005 + 1.0) / 2)
    assert stats.clip_fraction == 0.5


# ----------------------------------------------------------------------------- rewards
def test_rewards_registry_and_shapeworld_rules():
    item = suites.build("composition", 6, "train")[0]
    right = Image.fromarray(render(item.scene, 32))
    wrong = Image.new("RGB", (32, 32), "white")  # nothing drawn
    assert get_reward("shapeworld")([item, item], [right, wrong], ["", ""]) == [1.0, 0.0]
    assert get_reward("instruction")([item], [None], [item.canonical]) == [1.0]
    with pytest.raises(ValueError, match="unknown reward"):
        get_reward("nope")
    assert get_reward("thinkgen.rewards:instruction_reward", allow_external=True) is REWARDS["instruction"]
    with pytest.raises(ValueError, match="allow_external_rewards"):  # an import path runs code: opt in only
        get_reward("os:system")
    with pytest.raises(ValueError, match="not a function"):
        get_reward("math:pi", allow_external=True)

    @register_reward("constant_test")
    def constant(items, images, rewrites):
        return [0.25] * len(items)

    total, parts = WeightedReward({"shapeworld": 1.0, "constant_test": 2.0})([item], [right], [""])
    assert total == [1.5] and parts == {"shapeworld": 1.0, "constant_test": 0.25}
    text = suites.build("text", 1, "train")[0]
    read = get_reward("shapeworld")([text], [Image.fromarray(render(text.scene, 64))], [""])
    assert read == [1.0]


# ----------------------------------------------------------------------------- the stages
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_rl") / "pipe"
    tiny_pipeline(seed=0, max_think_tokens=6, max_rewrite_tokens=6).save_pretrained(folder)
    return folder


def rl_config(tiny_dir, out, stage, steps=2, **rl):
    return C.from_dict({
        "stage": stage, "output_dir": str(out), "init": str(tiny_dir),
        "run": {"steps": steps, "batch_size": 2, "log_every": 1, "save_every": 100, "seed": 5},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "rl": {"num_generations": 3, "images_per_prompt": 2, "pool_size": 8, "render_steps": 2, "train_steps": 3,
               "scenarios": {"composition": 1.0, "reasoning": 1.0}, "rewards": {"brightness": 1.0,
                                                                                  "instruction": 1.0}, **rl},
    })


def parts(stage):
    pipe = stage.pipe
    return {"thinker": {k: v.clone() for k, v in pipe.thinker.model.state_dict().items()},
            "dit": {k: v.clone() for k, v in pipe.transformer.state_dict().items()}}


def changed(before, after):
    return any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name, thinker_moves, dit_moves", [
    ("thinker_grpo", True, False), ("dit_flow_grpo", False, True), ("dual_grpo", True, True),
])
def test_each_stage_trains_what_it_should(tiny_dir, tmp_path, name, thinker_moves, dit_moves):
    config = rl_config(tiny_dir, tmp_path, name, beta=0.1, flow_beta=0.1)
    stage = build_stage(config)
    before = parts(stage)
    train(config, stage, progress=False)
    after = parts(stage)
    assert changed(before["thinker"], after["thinker"]) == thinker_moves
    assert changed(before["dit"], after["dit"]) == dit_moves
    assert (tmp_path / "final" / "model_index.json").exists() and (tmp_path / "rollouts.jsonl").exists()
    assert "reward" in stage.metrics
    for model, moves in (("thinker", thinker_moves), ("dit", dit_moves)):
        assert (f"{model}/frac_reward_zero_std" in stage.metrics) == moves
    stage._advantages(torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5]), 2, "dit")  # groups: equal, not, equal
    assert stage.metrics["dit/frac_reward_zero_std"] == pytest.approx(2 / 3)


def test_dual_grpo_scores_reflection_traces_by_their_verdicts(tiny_dir, tmp_path):
    """Dual-GRPO over a scenario that draws and reflection: the drawn prompt's J traces get K images
    each (the DiT's part); the reflection prompt's traces are scored without images and join the
    thinker's groups. A batch of reflection prompts alone has no DiT part, and trains the thinker only."""
    scenarios = {"composition": 1.0, "reflection": 1.0}
    stage = build_stage(rl_config(tiny_dir, tmp_path / "mixed", "dual_grpo", scenarios=scenarios,
                                  rewards={"shapeworld": 1.0}))
    calls = []
    scorer = stage.rewards

    def recorded(items, images, rewrites):
        calls.append(([i.suite for i in items], images))
        return scorer(items, images, rewrites)

    stage.rewards = recorded
    items = [stage.pools["composition"][0], stage.pools["reflection"][0]]
    thinker_part, dit_part = stage._dual_rollout(items, 0, 0)
    assert sum(len(part["rows"]) for part in dit_part["parts"]) == 3 * 2  # J = 3 traces x K = 2, one prompt
    assert thinker_part["advantages"].shape == (2 * 3,)  # both prompts' traces
    drawn, judged = calls
    assert drawn[0] == ["composition"] * 6 and all(image is not None for image in drawn[1])
    assert judged[0] == ["reflection"] * 3 and judged[1] == [None] * 3
    assert "reward/reflection" in stage.metrics and "reward" in stage.metrics

    config = rl_config(tiny_dir, tmp_path / "judged", "dual_grpo", scenarios={"reflection": 1.0},
                       rewards={"shapeworld": 1.0}, beta=0.1)
    stage = build_stage(config)
    assert set(stage.batch(0, 0, 2)) == {"phase", "thinker"}
    before = parts(stage)
    train(config, stage, progress=False)
    assert not changed(before["dit"], parts(stage)["dit"])


def test_sep_grpo_alternates_rounds(tiny_dir, tmp_path):
    config = rl_config(tiny_dir, tmp_path, "sep_grpo", steps=3, rounds=[["thinker", 2], ["dit", 1]])
    stage = build_stage(config)
    assert [stage.phase(s) for s in range(6)] == ["thinker", "thinker", "dit"] * 2
    batch = stage.batch(2, 0, 2)
    assert set(batch) == {"phase", "dit"}


def test_group_rollouts_share_their_noise(tiny_dir, tmp_path):
    stage = build_stage(rl_config(tiny_dir, tmp_path, "thinker_grpo", scenarios={"composition": 1.0},
                                  rewards={"shapeworld": 1.0}))
    seen = []
    original = stage.pipe.initial_noise

    def record(seeds, height, width):
        noise = original(seeds, height, width)
        seen.append(noise)
        return noise

    stage.pipe.initial_noise = record
    stage.batch(0, 0, 2)
    noise = torch.cat(seen)  # (P G, N, C): G = 3 rollouts per prompt
    assert noise.shape[0] == 6
    assert torch.equal(noise[0], noise[1]) and torch.equal(noise[0], noise[2])
    assert torch.equal(noise[3], noise[5]) and not torch.equal(noise[0], noise[3])


def test_identical_rollouts_are_drawn_once(tiny_dir, tmp_path):
    """Rows with the same item, noise seed and states bit for bit share one drawing; any difference
    (another item, seed or state) draws again. The shared image is the one drawn alone."""
    stage = build_stage(rl_config(tiny_dir, tmp_path, "thinker_grpo", scenarios={"composition": 1.0},
                                  rewards={"shapeworld": 1.0}))
    a, b = suites.build("composition", 2, "train")[:2]
    states = torch.randn(1, 5, stage.pipe.thinker.state_dim).repeat(7, 1, 1)
    mask = torch.ones(7, 5, dtype=torch.long)
    states[2, 1, 0] += 1e-3  # one number differs
    mask[3:5, 4] = 0  # rows 3 and 4: a shorter text (so not row 0's), whose padding...
    states[3, 4] = 7.0  # ...holds something else in row 3: padding does not count
    seen = record_noise(stage)
    items, seeds = [a, a, a, a, a, b, a], [1, 1, 1, 1, 1, 1, 2]
    images = stage._images(items, states, mask, seeds)
    assert seen == [[1, 1, 1, 1, 2]]  # rows 0, 2, 3, 5 (another item), 6 (another seed); 1 = 0 and 4 = 3
    assert stage.metrics["render/unique_share"] == pytest.approx(5 / 7)
    arrays = [np.asarray(image) for image in images]
    assert np.array_equal(arrays[0], arrays[1]) and np.array_equal(arrays[3], arrays[4]) and images[0] is not images[1]
    half = states.bfloat16()  # states captured under bf16 autocast: keys too, exactly
    half[2, 1, 0] += 0.5  # (the 1e-3 above is below bf16's resolution there)
    keys = [stage._draw_key(a, 1, half[r], mask[r]) for r in (0, 1, 2)]
    assert keys[0] == keys[1] and keys[0] != keys[2]
    alone = np.asarray(stage._images([a], states[:1], mask[:1], [1])[0])
    assert np.abs(alone.astype(int) - arrays[0].astype(int)).max() <= 1


def record_noise(stage):
    seen = []
    original = stage.pipe.initial_noise

    def record(seeds, height, width):
        seen.append(list(seeds))
        return original(seeds, height, width)

    stage.pipe.initial_noise = record
    return seen


@pytest.mark.parametrize("name, per_prompt", [("dit_flow_grpo", 2), ("dual_grpo", 6)])
def test_dit_rollouts_share_noise_per_prompt_and_place_the_window(tiny_dir, tmp_path, name, per_prompt):
    """share_noise: a prompt's K images (Dual: its J x K tree) start from one noise; other prompts
    from another. Without it every image has its own. sde_window_range bounds the window's start."""
    scenarios = {"composition": 1.0}
    shared = build_stage(rl_config(tiny_dir, tmp_path / "a", name, scenarios=scenarios, share_noise=True,
                                   sde_window=1, sde_window_range=[1, 1]))
    seen = record_noise(shared)
    batch = shared.batch(0, 0, 2)
    seeds = [s for call in seen for s in call]  # P = 2 prompts, K = 2 (Dual: J = 3 traces of K = 2)
    assert len(seeds) == 2 * per_prompt
    assert len(set(seeds[:per_prompt])) == 1 and len(set(seeds[per_prompt:])) == 1 and seeds[0] != seeds[-1]
    assert all(part["steps"] == [1] for part in batch["dit"]["parts"])
    own = build_stage(rl_config(tiny_dir, tmp_path / "b", name, scenarios=scenarios))
    seen = record_noise(own)
    own.batch(0, 0, 2)
    assert len({s for call in seen for s in call}) == 2 * per_prompt
    with pytest.raises(C.ConfigError, match="sde_window_range"):
        rl_config(tiny_dir, tmp_path, name, sde_window=2, sde_window_range=[0, 2])  # 2 + 2 > 3 train_steps


def test_state_anchor_reads_what_the_dit_reads_and_grows_with_training(tiny_dir, tmp_path):
    """The anchor's teacher-forced states are the ones generation handed the bridge; the drift is
    0 at the start and positive once the thinker has moved."""
    stage = build_stage(rl_config(tiny_dir, tmp_path, "thinker_grpo", state_beta=1.0))
    thought, vision = stage._sample_thoughts(stage._items(0)[:2], 3, seed=1)
    part = stage._thinker_part(thought, vision, torch.ones(6))
    for row, ref in enumerate(part["ref_states"]):
        length = int(thought.mask[row].sum())
        assert ref.shape == (length, thought.states.shape[-1])
        torch.testing.assert_close(ref, thought.states[row, :length], rtol=1e-4, atol=1e-4)
    stage.thinker_loss(part)
    assert stage.metrics["thinker/state_drift"] == 0.0
    with torch.no_grad():
        for parameter in stage.pipe.thinker.model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    loss = stage.thinker_loss(part)
    assert stage.metrics["thinker/state_drift"] > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stage.pipe.thinker.model.parameters())


def test_direct_state_anchor_rebuilds_direct_mode_states_and_grows_with_training(tiny_dir, tmp_path):
    """rl.direct_state_beta: the reference's direct-mode states are the pipeline's own direct-mode
    states of each prompt; the teacher-forced rebuild matches them (drift 0) until the thinker moves,
    and the drift then has a gradient."""
    stage = build_stage(rl_config(tiny_dir, tmp_path, "thinker_grpo", direct_state_beta=1.0))
    items = stage._items(0)[:2]
    thought, vision = stage._sample_thoughts(items, 3, seed=1)
    part = stage._thinker_part(thought, vision, torch.zeros(6), items)  # no policy gradient: only the anchor's
    assert "ref_states" not in part and len(part["direct"]["ref_states"]) == 2  # one per prompt, not per rollout
    direct = stage.pipe.thinker.encode([prompt_for(i) for i in items], think=False)
    for row, ref in enumerate(part["direct"]["ref_states"]):
        torch.testing.assert_close(ref, direct.states[row, : int(direct.mask[row].sum())], rtol=1e-4, atol=1e-4)
    stage.thinker_loss(part)
    assert stage.metrics["thinker/direct_state_drift"] < 1e-8
    with torch.no_grad():
        for parameter in stage.pipe.thinker.model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    loss = stage.thinker_loss(part)
    assert stage.metrics["thinker/direct_state_drift"] > 1e-4
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stage.pipe.thinker.model.parameters())


def test_thinker_that_sees_is_shown_the_source_in_rl_and_the_training_pass_rereads_it(tmp_path):
    """With a vision-language thinker, RL over the five scenarios shows it the source image of
    edits and reflection items (the judge prompt says the image is attached), and the
    teacher-forced pass that GRPO trains on, given those images, rebuilds the very states the
    rollout handed the DiT; without the images its log-probs differ."""
    from thinkgen.tiny import tiny_vl_pipeline

    tiny_vl_pipeline(seed=0, max_think_tokens=4, max_rewrite_tokens=4).save_pretrained(tmp_path / "vl")
    scenarios = {s: 1.0 for s in ("composition", "reasoning", "editing", "reflection")}
    config = rl_config(tmp_path / "vl", tmp_path / "out", "thinker_grpo", scenarios=scenarios,
                       rewards={"shapeworld": 1.0}, state_beta=1.0)
    stage = build_stage(config)
    items = [next(i for i in stage.pools[s]) for s in ("composition", "editing", "reflection")]
    shown = stage._thinker_images(items)
    assert [len(group) for group in shown] == [0, 1, 1]
    assert "what is attached" in prompt_for(items[2], sees=True)
    assert "what is attached" not in prompt_for(items[2], sees=False)
    thought, vision = stage._sample_thoughts(items, 2, seed=3)
    assert vision["image_grid_thw"].shape[0] == 4  # edit and reflection images, two copies each
    part = stage._thinker_part(thought, vision, torch.ones(6))
    for row, ref in enumerate(part["ref_states"]):  # teacher-forced with the images = generated
        torch.testing.assert_close(ref, thought.states[row, : int(thought.mask[row].sum())], rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        logp, mask = completion_logprobs(stage.pipe.thinker.model, thought.sequences, thought.prompt_lengths,
                                         stage.pipe.thinker.pad_id, 1.0, vision)
        blind, _ = completion_logprobs(stage.pipe.thinker.model, thought.sequences, thought.prompt_lengths,
                                       stage.pipe.thinker.pad_id, 1.0,
                                       {**vision, "pixel_values": torch.zeros_like(vision["pixel_values"])})
    assert not torch.allclose(logp[1:] * mask[1:], blind[1:] * mask[1:])  # the images are read
    stage.thinker_loss(part).backward()
    assert stage.metrics["thinker/state_drift"] < 1e-8
    train(config, stage, progress=False)  # a rollout batch over all four scenarios trains


def test_rl_resume_is_exact(tiny_dir, tmp_path):
    from tests.test_train import stop_at

    straight = build_stage(rl_config(tiny_dir, tmp_path / "a", "thinker_grpo", steps=4))
    train(rl_config(tiny_dir, tmp_path / "a", "thinker_grpo", steps=4), straight, progress=False)
    first = stop_at(build_stage(rl_config(tiny_dir, tmp_path / "b", "thinker_grpo", steps=4)), 2)
    with pytest.raises(KeyboardInterrupt):
        train(rl_config(tiny_dir, tmp_path / "b", "thinker_grpo", steps=4), first, progress=False)
    resumed = build_stage(rl_config(tiny_dir, tmp_path / "b", "thinker_grpo", steps=4))
    train(rl_config(tiny_dir, tmp_path / "b", "thinker_grpo", steps=4), resumed, resume=True, progress=False)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dual_grpo_trains_on_two_processes(tiny_dir, tmp_path):
    """DDP on CPU (gloo), two ranks with a prompt each: Dual-GRPO with the dapo normalisation (an
    all_reduce of the global token count inside the loss) trains both models; rank 0 alone logs."""
    from thinkgen import ThinkGenPipeline

    out = tmp_path / "two"
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump({
        "stage": "dual_grpo", "output_dir": str(out), "init": str(tiny_dir),
        "run": {"steps": 2, "batch_size": 2, "log_every": 1, "save_every": 100, "seed": 5, "threads": 1},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "rl": {"num_generations": 2, "images_per_prompt": 2, "pool_size": 8, "train_steps": 3, "loss_type": "dapo",
               "scenarios": {"composition": 1.0}, "rewards": {"brightness": 1.0, "instruction": 1.0}},
    }))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29534",
                           "-m", "thinkgen.cli", "train", str(path)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training on 2 processes" in done.stdout + done.stderr
    assert len((out / "rollouts.jsonl").read_text().splitlines()) == 2
    before = ThinkGenPipeline.from_pretrained(tiny_dir)
    after = ThinkGenPipeline.from_pretrained(out / "final")
    for name in ("thinker", "transformer"):
        start = getattr(before, name).model if name == "thinker" else before.transformer
        end = getattr(after, name).model if name == "thinker" else after.transformer
        a, b = start.state_dict(), end.state_dict()
        assert any(not torch.equal(a[k], b[k]) for k in a), f"{name} did not train"


def test_rl_config_errors(tiny_dir):
    with pytest.raises(C.ConfigError, match="suite"):
        C.from_dict({"stage": "thinker_grpo", "output_dir": "x", "rl": {"scenarios": {"poems": 1.0}}})
    with pytest.raises(C.ConfigError, match="loss_type"):
        C.from_dict({"stage": "thinker_grpo", "output_dir": "x", "rl": {"loss_type": "ppo"}})
    with pytest.raises(C.ConfigError, match="rounds"):
        C.from_dict({"stage": "sep_grpo", "output_dir": "x", "rl": {"rounds": [["both", 3]]}})
    with pytest.raises(C.ConfigError, match="init"):
        build_stage(C.from_dict({"stage": "thinker_grpo", "output_dir": "x"}))
    with pytest.raises(C.ConfigError, match="lora_rank"):
        build_stage(C.from_dict({"stage": "thinker_grpo", "output_dir": "x", "init": str(tiny_dir),
                                 "thinker": {"lora_rank": 8}}))
    with pytest.raises(C.ConfigError, match="unknown reward"):
        build_stage(C.from_dict({"stage": "thinker_grpo", "output_dir": "x", "init": str(tiny_dir),
                                 "rl": {"rewards": {"clip_scroe": 1.0}}}))


def test_rl_trains_in_float32_and_saves_in_the_stored_precision(tiny_dir, tmp_path):
    from thinkgen import ThinkGenPipeline

    half = tmp_path / "half"
    ThinkGenPipeline.from_pretrained(tiny_dir, torch_dtype=torch.float16).save_pretrained(half)
    config = rl_config(half, tmp_path / "out", "dit_flow_grpo", steps=1)
    stage = build_stage(config)
    assert stage.pipe.transformer.dtype == torch.float32 and stage.pipe.thinker.model.dtype == torch.float32
    train(config, stage, progress=False)
    for part in ("thinker", "bridge", "transformer"):
        assert stored_dtype(tmp_path / "out" / "final" / part) == torch.float16


def test_partial_reward_counts_met_requirements():
    item = next(i for i in suites.build("composition", 60, "train") if i.category == "two_object")
    first_only = Image.fromarray(render(replace(item.scene, objects=item.scene.objects[:1]), 32))
    assert get_reward("shapeworld")([item], [first_only], [""]) == [0.0]
    assert get_reward("shapeworld_partial")([item], [first_only], [""]) == [0.25]  # 1 of 2 met, halved
