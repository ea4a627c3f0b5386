"""`thinkgen train CONFIG --plan`: memory per GPU from the meta device, for the shipped real configs
and tiny ones; one error line (exit 2) when it does not fit."""

from pathlib import Path

import pytest

from thinkgen.cli import main
from thinkgen.train import config as C
from thinkgen.train.plan import GIB, plan

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "configs" / "real" / "train"


def rows(result) -> dict[str, int]:
    return {what.split(" (")[0].split(",")[0]: size for what, size in result.rows}


def test_sharding_divides_what_trains_and_keeps_frozen_models_whole():
    config = C.load(REAL / "t2g_dit_finetune.yaml")
    one, eight = plan(config, 8, 80), plan(C.load(REAL / "t2g_dit_finetune.yaml", {"parallel.strategy": "ddp"}), 8, 80)
    parameters = 20_430_401_088  # Qwen-Image's MMDiT, counted by `thinkgen info --memory configs/real/t2g`
    assert rows(one)["DiT weights"] == 4 * parameters // 8 and rows(eight)["DiT weights"] == 4 * parameters
    assert rows(one)["DiT AdamW states"] == 8 * parameters // 8
    assert rows(one)["text_encoder"] == rows(eight)["text_encoder"] == 2 * 8_292_166_656  # bf16, whole
    assert one.fits and not eight.fits


def test_lora_and_checkpointing_shrink_the_plan():
    base = C.load(REAL / "t2g_dit_lora.yaml")
    full = plan(C.load(REAL / "t2g_dit_lora.yaml", {"lora.rank": 0}), 1, 80)
    lora = plan(base, 1, 80)
    assert rows(lora)["DiT gradients"] < rows(full)["DiT gradients"] / 100
    assert rows(lora)["DiT base weights"] == 2 * 20_430_401_088  # frozen: bf16, no fp32 copy
    no_checkpointing = plan(C.load(REAL / "t2g_dit_lora.yaml", {"run.gradient_checkpointing": False}), 1, 80)
    assert rows(no_checkpointing)["activations"] > 5 * rows(lora)["activations"]
    assert lora.fits and not full.fits


def test_the_cli_prints_the_plan_and_refuses_what_does_not_fit(capsys):
    assert main(["train", str(REAL / "thinkgen_3_finetune.yaml"), "--plan", "--gpus", "8", "--gpu-memory", "80"]) == 0
    out = capsys.readouterr().out
    assert "per GPU, 8 GPUs of 80 GiB" in out and "fits" in out and "mllm (frozen, whole)" in out
    code = main(["train", str(REAL / "t2g_dit_finetune.yaml"), "--plan", "--gpus", "2", "--gpu-memory", "80",
                 "--set", "parallel.strategy=ddp"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("thinkgen: error:")
    assert "does not fit 2 GPU(s) of 80 GiB: shard it (parallel.strategy: fsdp)" in err[0]
    assert main(["train", str(REAL / "t2g_dit_finetune.yaml"), "--gpus", "2"]) == 2
    assert "--gpus and --gpu-memory go with --plan" in capsys.readouterr().err
    assert main(["train", str(REAL / "t2g_dit_finetune.yaml"), "--plan", "--gpus", "3", "--gpu-memory", "80"]) == 2
    assert "not divisible by 3 GPUs" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(p.name for p in REAL.glob("*.yaml")))
def test_every_shipped_real_config_fits_its_gpus(name):
    gpus = 1 if "lora" in name else 8
    result = plan(C.load(REAL / name), gpus, 80)
    assert result.fits and 1 * GIB < result.total < 72 * GIB
