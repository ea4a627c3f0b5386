"""Memory: CPU offload through accelerate's hooks, the CLI's dtype/device/offload options, and
parameter / weight-memory tables from configs alone."""

from pathlib import Path

import pytest
import torch
from diffusers import QwenImagePipeline

from thinkgen import ThinkGenPipeline
from thinkgen.cli import main
from thinkgen.tiny import tiny_qwen_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    directory = tmp_path_factory.mktemp("qwen-image")
    QwenImagePipeline(**tiny_qwen_image()).save_pretrained(directory)
    return directory


def draw(pipe, **kwargs):
    options = {"seed": 4, "height": 32, "width": 32, "num_inference_steps": 3, "output_type": "pt"}
    return pipe(["a red circle", "two squares"], **{**options, **kwargs}).images


@pytest.mark.parametrize("offload", ["enable_model_cpu_offload", "enable_sequential_cpu_offload"])
@pytest.mark.parametrize("layout", ["qwen-image", "thinkgen"])
def test_offloaded_pictures_equal_resident_ones(qwen_folder, tmp_path, pipe, offload, layout):
    from accelerate.hooks import AlignDevicesHook, CpuOffload

    if layout == "thinkgen":
        pipe.save_pretrained(tmp_path)
        folder, kwargs = tmp_path, {"think": True}
    else:
        folder, kwargs = qwen_folder, {"think": False}
    resident = draw(ThinkGenPipeline.from_pretrained(folder), **kwargs)
    offloaded = ThinkGenPipeline.from_pretrained(folder)
    getattr(offloaded, offload)("cpu")  # the only device here; the hooks run all the same
    hooks = [getattr(m, "_hf_hook", None) for m in offloaded.transformer.modules()]
    expected = CpuOffload if offload == "enable_model_cpu_offload" else AlignDevicesHook
    assert any(isinstance(h, expected) for h in hooks)
    if offload == "enable_sequential_cpu_offload":  # weights rest off the execution path
        assert any(p.device.type == "meta" for p in offloaded.transformer.parameters())
    assert torch.equal(draw(offloaded, **kwargs), resident)
    assert torch.equal(draw(offloaded, **kwargs), resident)  # hooks survive a second call


def test_vae_tiling_and_slicing(qwen_folder, tmp_path, pipe, capsys):
    qwen = ThinkGenPipeline.from_pretrained(qwen_folder)
    plain = draw(qwen, think=False)
    qwen.enable_vae_tiling().enable_vae_slicing()
    assert qwen.vae.use_tiling and qwen.vae.use_slicing
    torch.testing.assert_close(draw(qwen, think=False), plain, atol=1e-5, rtol=0)  # one image at a time: rounding only
    with pytest.raises(ValueError, match="no tiled decoding"):
        pipe.enable_vae_tiling()  # the identity autoencoder of the tiny thinkgen pipeline
    pipe.save_pretrained(tmp_path / "tiny")
    assert main(["generate", "x", "--model", str(tmp_path / "tiny"), "--vae-tiling", "-o",
                 str(tmp_path / "o.png")]) == 2
    assert "no tiled decoding" in capsys.readouterr().err


def test_memory_table_from_configs_only(capsys):
    """The T2G release at real size, from its configs (no weights in the repository)."""
    assert main(["info", "--memory", str(ROOT / "configs" / "real" / "t2g")]) == 0
    out = capsys.readouterr().out
    assert "Qwen2_5_VLForConditionalGeneration" in out and "8.292B" in out
    assert "QwenImageTransformer2DModel" in out and "20.430B" in out
    assert "53.74 GiB" in out and "38.05 GiB" in out  # total, and the largest component (model offload)


def test_memory_table_of_the_thinkgen_release(capsys):
    assert main(["info", "--memory", str(ROOT / "configs" / "real" / "thinkgen")]) == 0
    out = capsys.readouterr().out
    assert "Qwen3VLForConditionalGeneration" in out and "8.767B" in out
    assert "ThinkGenTransformer2DModel" in out and "3.983B" in out and "23.90 GiB" in out


def test_cli_generates_from_a_thinkgen_release_folder(tmp_path, capsys):
    from thinkgen.tiny import tiny_thinkgen_release

    tiny_thinkgen_release().save_pretrained(tmp_path / "release")
    out = tmp_path / "img.png"
    assert main(["generate", "a red circle", "--model", str(tmp_path / "release"), "--no-think", "--steps", "2",
                 "--offload", "sequential", "-o", str(out)]) == 0
    assert out.exists() and "rewritten: 'a red circle'" in capsys.readouterr().out


def test_cli_generates_from_a_qwen_image_folder(qwen_folder, tmp_path, capsys):
    out = tmp_path / "img.png"
    assert main(["generate", "a red circle", "--model", str(qwen_folder), "--no-think", "--height", "32",
                 "--width", "32", "--steps", "2", "--dtype", "bf16", "--offload", "model", "-o", str(out)]) == 0
    assert out.exists()
    assert main(["generate", "x", "--model", str(qwen_folder), "--device", "cuda:0", "-o", str(out)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert main(["generate", "x", "--model", str(qwen_folder), "--steps", "1", "--height", "32", "--width", "32",
                 "-o", str(out)]) == 2  # shift_terminal cannot make a 1-step schedule: one clear line
    assert "no finite schedule" in capsys.readouterr().err


def test_gpu_real_scale_script_smoke_run(capsys):
    """The prepared GPU benchmark runs end to end at tiny sizes on the CPU."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_real_scale", ROOT / "benchmarks" / "gpu_real_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--tiny", "--device", "cpu", "--batches", "1,2"])
    names = [name for name, _ in rows]
    assert sum(name.startswith("think ") for name in names) == 4
    assert sum("one 32x32 step" in name for name in names) == 2 and sum("peak memory" in name for name in names) == 2
    assert sum("one 32x32 edit step" in name for name in names) == 1
    assert "capture costs" in capsys.readouterr().out
