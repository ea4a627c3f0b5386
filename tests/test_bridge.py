import pytest
import torch

from thinkgen.bridge import Bridge


def make(connector="linear", k=23, seed=0):
    torch.manual_seed(seed)
    return Bridge(in_channels=16, out_channels=8, num_prepadding=k, connector=connector).eval()


@pytest.mark.parametrize("k", [0, 1, 23])
def test_prepadding_shapes_and_mask(k):
    bridge = make(k=k)
    states = torch.randn(3, 5, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    out, out_mask = bridge(states, mask)
    assert out.shape == (3, k + 5, 8)
    assert torch.equal(out_mask[:, :k], torch.ones(3, k, dtype=mask.dtype))
    assert torch.equal(out_mask[:, k:], mask)
    assert torch.all(out[out_mask == 0] == 0)  # padding carries exact zeros
    if k:  # the prepadding part is the same for every sample: it depends on no input
        assert torch.allclose(out[0, :k], out[1, :k]) and torch.allclose(out[0, :k], out[2, :k])


@pytest.mark.parametrize("connector", ["linear", "mlp", "transformer"])
def test_variable_lengths_do_not_leak(connector):
    """A sample padded inside a longer batch maps exactly as it does alone."""
    bridge = make(connector)
    short = torch.randn(1, 3, 16)
    long = torch.randn(1, 7, 16)
    batch = torch.cat([torch.cat([short, 99 * torch.ones(1, 4, 16)], 1), long])  # garbage padding
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1] * 7])
    out, _ = bridge(batch, mask)
    alone, _ = bridge(short, torch.ones(1, 3, dtype=torch.long))
    torch.testing.assert_close(out[0, : 23 + 3], alone[0], atol=1e-5, rtol=1e-5)


def test_linear_connector_is_rmsnorm_then_linear():
    bridge = make(k=2)
    states = torch.randn(1, 4, 16)
    out, _ = bridge(states, torch.ones(1, 4, dtype=torch.long))
    x = torch.cat([bridge.prepadding_states, states], 1)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * bridge.norm.weight
    torch.testing.assert_close(out, x @ bridge.proj.weight.T + bridge.proj.bias)


def test_prepadding_states_are_learnable():
    bridge = make(k=4).train()
    out, _ = bridge(torch.randn(2, 3, 16), torch.ones(2, 3, dtype=torch.long))
    out.pow(2).sum().backward()
    assert bridge.prepadding_states.grad is not None
    assert bridge.prepadding_states.grad.abs().sum() > 0


def test_save_load_round_trip(tmp_path):
    bridge = make("mlp", k=5)
    bridge.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = Bridge.from_pretrained(tmp_path).eval()
    assert loaded.config.connector == "mlp" and loaded.num_prepadding == 5
    states, mask = torch.randn(2, 3, 16), torch.ones(2, 3, dtype=torch.long)
    assert torch.equal(bridge(states, mask)[0], loaded(states, mask)[0])


def test_bad_config():
    with pytest.raises(ValueError, match="connector"):
        Bridge(16, 8, connector="qformer")
    with pytest.raises(ValueError, match="num_prepadding"):
        Bridge(16, 8, num_prepadding=-1)
