import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from thinkgen import flow

SETTINGS = [  # (scheduler kwargs, mu)
    ({"shift": 1.0}, None),
    ({"shift": 3.0}, None),
    ({"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15}, 0.8),
]


def diffusers_sigmas(kwargs, mu, steps):
    scheduler = FlowMatchEulerDiscreteScheduler(**kwargs)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    return scheduler


@pytest.mark.parametrize("kwargs,mu", SETTINGS)
@pytest.mark.parametrize("steps", [1, 7, 28])
def test_sigmas_match_diffusers(kwargs, mu, steps):
    ours = flow.sigma_schedule(steps, shift=kwargs.get("shift", 1.0), mu=mu)
    torch.testing.assert_close(ours, diffusers_sigmas(kwargs, mu, steps).sigmas.float(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kwargs,mu", SETTINGS)
def test_trajectory_matches_diffusers_scheduler_loop(kwargs, mu):
    torch.manual_seed(0)
    weight = torch.randn(6, 6) / 3

    def velocity(x, sigma):  # any smooth function of x and sigma will do
        return torch.tanh(x @ weight) * (1 + sigma.view(-1, 1))

    noise = torch.randn(4, 6)
    steps = 12
    ours = []
    flow.euler_sample(velocity, noise, flow.sigma_schedule(steps, kwargs.get("shift", 1.0), mu),
                      callback=lambda i, x: ours.append(x.clone()))
    scheduler = diffusers_sigmas(kwargs, mu, steps)
    x = noise
    for i, t in enumerate(scheduler.timesteps):
        sigma = (t / 1000).expand(x.shape[0])  # diffusers' pipelines pass t / 1000 to the model
        x = scheduler.step(velocity(x, sigma), t, x).prev_sample
        torch.testing.assert_close(ours[i], x, atol=1e-5, rtol=1e-5)
    assert len(ours) == steps


def test_euler_recovers_a_straight_path():
    """With the exact velocity of a straight path, Euler lands on the data point exactly."""
    target = torch.tensor([[0.3, -0.7]])

    def velocity(x, sigma):
        return (x - target) / sigma.view(-1, 1)  # = noise - x0 on the path

    noise = torch.randn(1, 2)
    out = flow.euler_sample(velocity, noise, flow.sigma_schedule(5, shift=2.0))
    torch.testing.assert_close(out, target)


def test_training_target_and_loss():
    x0, noise = torch.randn(3, 4), torch.randn(3, 4)
    sigma = torch.tensor([0.0, 0.5, 1.0])
    x = flow.add_noise(x0, noise, sigma)
    torch.testing.assert_close(x[0], x0[0])
    torch.testing.assert_close(x[2], noise[2])
    torch.testing.assert_close(x[1], (x0[1] + noise[1]) / 2)
    perfect = flow.flow_loss(lambda xs, s: noise - x0, x0, sigma, noise)
    assert perfect.item() == 0.0
    assert flow.flow_loss(lambda xs, s: torch.zeros_like(xs), x0, sigma, noise).item() > 0


def test_timestep_sampling():
    g = torch.Generator().manual_seed(0)
    uniform = flow.sample_timesteps(20000, "uniform", generator=g)
    logit = flow.sample_timesteps(20000, "logit_normal", generator=torch.Generator().manual_seed(0))
    shifted = flow.sample_timesteps(20000, "logit_normal", shift=3.0, generator=torch.Generator().manual_seed(0))
    for t in (uniform, logit, shifted):
        assert t.min() > 0 and t.max() < 1
    assert abs(uniform.mean() - 0.5) < 0.01 and abs(logit.median() - 0.5) < 0.01
    assert logit.std() < uniform.std()  # logit-normal concentrates in the middle
    assert shifted.mean() > logit.mean() + 0.1  # a shift > 1 spends more time near noise
    again = flow.sample_timesteps(20000, "logit_normal", generator=torch.Generator().manual_seed(0))
    assert torch.equal(logit, again)
    with pytest.raises(ValueError):
        flow.sample_timesteps(4, "cosine")


def test_resolution_shifts():
    assert flow.resolution_shift(64 * 64) == pytest.approx(1.6)
    with pytest.raises(ValueError):
        flow.sigma_schedule(0)


# Qwen-Image's scheduler_config.json: dynamic shifting, exponential time shift, shift_terminal 0.02
QWEN_IMAGE_SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 8192, "max_shift": 0.9,
                        "shift": 1.0, "shift_terminal": 0.02, "time_shift_type": "exponential",
                        "use_dynamic_shifting": True}


@pytest.mark.parametrize("config", [QWEN_IMAGE_SCHEDULER, {**QWEN_IMAGE_SCHEDULER, "time_shift_type": "linear"},
                                    {"shift": 3.0}, {"shift": 2.0, "invert_sigmas": False, "use_karras_sigmas": True}])
@pytest.mark.parametrize("steps,tokens", [(1, 64), (2, 4096), (13, 300)])
def test_scheduler_sigmas_are_diffusers_own(config, steps, tokens):
    """Every config field is honoured: the sigmas equal what QwenImagePipeline computes."""
    from diffusers.pipelines.qwenimage.pipeline_qwenimage import calculate_shift, retrieve_timesteps

    theirs = FlowMatchEulerDiscreteScheduler(**config)
    mu = calculate_shift(tokens, theirs.config.get("base_image_seq_len", 256), theirs.config.get("max_image_seq_len", 4096),
                         theirs.config.get("base_shift", 0.5), theirs.config.get("max_shift", 1.15))
    with np.errstate(divide="ignore", invalid="ignore"):
        retrieve_timesteps(theirs, steps, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    if not torch.isfinite(theirs.sigmas).all():  # shift_terminal at one step divides 0 by 0 in diffusers
        with pytest.raises(ValueError, match="no finite schedule"):
            flow.scheduler_sigmas(FlowMatchEulerDiscreteScheduler(**config), steps, tokens)
        return
    ours = flow.scheduler_sigmas(FlowMatchEulerDiscreteScheduler(**config), steps, tokens)
    assert torch.equal(ours, theirs.sigmas)


def test_shift_terminal_is_not_ignored():
    plain = {k: v for k, v in QWEN_IMAGE_SCHEDULER.items() if k != "shift_terminal"}
    with_terminal = flow.scheduler_sigmas(FlowMatchEulerDiscreteScheduler(**QWEN_IMAGE_SCHEDULER), 2, 64)
    without = flow.scheduler_sigmas(FlowMatchEulerDiscreteScheduler(**plain), 2, 64)
    assert with_terminal[-2] == pytest.approx(0.02) and abs(without[-2] - with_terminal[-2]) > 0.1


def test_rescaled_guidance_by_hand():
    cond = torch.tensor([[[3.0, 4.0], [1.0, 0.0]]])  # norms 5 and 1
    uncond = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    combined = uncond + 4 * (cond - uncond)  # [[9, 16], [4, -3]]: norms sqrt(337) and 5
    expected = torch.stack([combined[0, 0] * 5 / 337**0.5, combined[0, 1] * 1 / 5])[None]
    torch.testing.assert_close(flow.guide_rescaled(cond, uncond, 4.0), expected)
    assert torch.allclose(flow.guide_rescaled(cond, uncond, 4.0).norm(dim=-1), cond.norm(dim=-1))


def test_guidance():
    cond, uncond, image = torch.randn(3, 2, 5).unbind(0)
    torch.testing.assert_close(flow.guide(cond, uncond, 1.0), cond)
    torch.testing.assert_close(flow.guide(cond, uncond, 4.0), uncond + 4 * (cond - uncond))
    # three-way (editing): with both scales 1 it is the full condition
    torch.testing.assert_close(flow.guide(cond, uncond, 1.0, image, 1.0), cond)
    torch.testing.assert_close(flow.guide(cond, uncond, 3.0, image, 2.0),
                               uncond + 2 * (image - uncond) + 3 * (cond - image))
