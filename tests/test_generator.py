import pytest
import torch
from diffusers import AutoencoderKL, QwenImageTransformer2DModel
from diffusers.pipelines.qwenimage.pipeline_qwenimage import QwenImagePipeline

from thinkgen.generator import (
    PixelAutoencoder,
    Reference,
    backend_for,
    decode_latents,
    encode_images,
    latent_channels,
    patch_size,
    patchify,
    spatial_factor,
    unpatchify,
)


def tiny_kl():
    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                         latent_channels=4, norm_num_groups=4, layers_per_block=1,
                         scaling_factor=0.5, shift_factor=0.1).eval()


def tiny_dit(in_channels=48, text=16):
    torch.manual_seed(0)
    return QwenImageTransformer2DModel(patch_size=1, in_channels=in_channels, out_channels=in_channels,
                                       num_layers=1, attention_head_dim=16, num_attention_heads=2,
                                       joint_attention_dim=text, axes_dims_rope=(4, 6, 6)).eval()


def test_patchify_matches_qwen_image_packing():
    latents = torch.randn(2, 16, 8, 12)
    tokens = patchify(latents, 2)
    assert tokens.shape == (2, 4 * 6, 64)
    assert torch.equal(tokens, QwenImagePipeline._pack_latents(latents, 2, 16, 8, 12))
    assert torch.equal(unpatchify(tokens, 8, 12, 2), latents)
    assert torch.equal(unpatchify(patchify(latents, 4), 8, 12, 4), latents)


def test_pixel_autoencoder_is_identity(tmp_path):
    vae = PixelAutoencoder()
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.equal(decode_latents(vae, encode_images(vae, images)), images)
    assert spatial_factor(vae) == 1 and latent_channels(vae) == 3
    vae.save_pretrained(tmp_path)
    assert PixelAutoencoder.from_pretrained(tmp_path).config.channels == 3


def test_autoencoder_kl_scaling():
    vae = tiny_kl()
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    latents = encode_images(vae, images)
    assert latents.shape == (1, 4, 8, 8) and spatial_factor(vae) == 2
    raw = vae.encode(images).latent_dist.mode()
    torch.testing.assert_close(latents, (raw - 0.1) * 0.5)
    decoded = decode_latents(vae, latents)
    torch.testing.assert_close(decoded, vae.decode(raw).sample.clamp(-1, 1))


def test_patch_size_from_channels():
    assert patch_size(48, PixelAutoencoder()) == 4
    assert patch_size(16, tiny_kl()) == 2
    with pytest.raises(ValueError):
        patch_size(20, PixelAutoencoder())


def test_qwen_image_backend_masks_and_references():
    backend = backend_for(tiny_dit())
    x = torch.randn(2, 16, 48)
    sigma = torch.tensor([0.3, 0.9])
    text = torch.randn(2, 5, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        v = backend(x, sigma, text, mask, (4, 4))
        assert v.shape == x.shape
        garbage = text.clone()
        garbage[0, 3:] = 1e3  # masked positions must not matter
        torch.testing.assert_close(backend(x, sigma, garbage, mask, (4, 4)), v)
        changed = text.clone()
        changed[0, 0] += 1  # an unmasked position must matter
        assert not torch.allclose(backend(x, sigma, changed, mask, (4, 4))[0], v[0])
        ref = Reference(torch.randn(2, 16, 48), (4, 4))
        with_ref = backend(x, sigma, text, mask, (4, 4), ref)
        assert with_ref.shape == x.shape and not torch.allclose(with_ref, v)


def test_unknown_backend():
    with pytest.raises(TypeError, match="no thinkgen backend"):
        backend_for(torch.nn.Linear(2, 2))
