"""Training the released models on your own data: tiny T2G (QwenImagePipeline) and ThinkGen-release
folders finetuned on a 16-image folder, sharded with FSDP2 on 2 CPU processes (gloo) as on 1,
resumed on another number of processes, saved back in their own layouts; LoRA adapters in
diffusers' format; bad rows refused in one line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from thinkgen import ThinkGenPipeline
from thinkgen.data import BucketBatches, CaptionedImages, DataError, bucket_sizes, nearest_bucket
from thinkgen.tiny import tiny_qwen_image, tiny_thinkgen_release
from thinkgen.train import config as C

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
SHAPES = [(32, 32), (24, 48), (48, 24), (40, 40)]  # (height, width): square and both turns


def write_images(folder: Path, count: int = 16, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        h, w = SHAPES[i % len(SHAPES)]
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "caption": f"picture number {i}"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from diffusers import QwenImagePipeline

    root = tmp_path_factory.mktemp("own-data")
    QwenImagePipeline(**tiny_qwen_image()).save_pretrained(root / "t2g")
    tiny_thinkgen_release().save_pretrained(root / "release")
    write_images(root / "images")
    return root


def config(folders: Path, model: str, out: Path, **sections) -> dict:
    base = {"stage": "dit_finetune", "output_dir": str(out), "init": str(folders / model),
            "dataset": {"source": "images", "path": str(folders / "images"), "resolution": 32},
            "run": {"steps": 8, "batch_size": 4, "log_every": 4, "save_every": 4, "keep_last": 3, "seed": 1,
                    "threads": 1},
            "optim": {"lr": 1e-3, "warmup_steps": 1}, "parallel": {"strategy": "fsdp"}}
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return base


def launch(cfg: dict, path: Path, processes: int, port: int, *extra: str) -> subprocess.CompletedProcess:
    path.write_text(yaml.safe_dump(cfg))
    launcher = [sys.executable, "-m", "thinkgen.cli"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", f"--master_port={port}",
        "-m", "thinkgen.cli"]
    done = subprocess.run([*launcher, "train", str(path), *extra], env=ENV, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"training on {processes} process" in done.stdout + done.stderr
    return done


def transformer_weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted((folder / "transformer").glob("*.safetensors")) for k, v in load_file(f).items()}


def model_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """||a - b|| / ||b|| over the whole model (every floating tensor as one vector)."""
    keys = [k for k in b if b[k].is_floating_point()]
    return (sum(float((a[k].double() - b[k].double()).norm()) ** 2 for k in keys)
            / sum(float(b[k].double().norm()) ** 2 for k in keys)) ** 0.5


def relative_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((float((a[k].double() - b[k].double()).norm() / b[k].double().norm().clamp_min(1e-30)) for k in a),
               default=0.0)


# ----------------------------------------------------------------------------- the data
def test_buckets_hold_the_area_and_turn_with_the_image():
    sizes = bucket_sizes(1024, 16)
    assert (1024, 1024) in sizes and all(h % 16 == 0 and w % 16 == 0 for h, w in sizes)
    assert all(0.9 < h * w / 1024**2 < 1.1 for h, w in sizes)
    assert sizes[nearest_bucket(3000, 4000, sizes)] == (880, 1184)  # a 4:3 photo, landscape
    assert sizes[nearest_bucket(4000, 3000, sizes)] == (1184, 880)
    assert bucket_sizes(1024, 16, buckets=False) == [(1024, 1024)]


def test_batches_are_one_bucket_and_a_function_of_the_step(tmp_path):
    data = CaptionedImages(write_images(tmp_path / "images"))
    sizes = bucket_sizes(32, 8)
    batches = BucketBatches(data, sizes, seed=3)
    heights, widths, _ = data.sizes()
    seen = set()
    for step in range(12):
        size, rows = batches(step, 6)
        assert (size, rows) == BucketBatches(data, sizes, seed=3)(step, 6)  # rebuilt: the same rows
        assert {sizes[nearest_bucket(int(heights[r]), int(widths[r]), sizes)] for r in rows} == {size}
        seen.add(size)
    assert len(seen) >= 2  # several shapes are drawn


@pytest.mark.parametrize("damage, message", [
    ("no caption", "row 3: no 'caption'"),
    ("missing image", "row 3: image file not found"),
    ("unreadable image", "row 3: unreadable image"),
    ("huge image", "row 3: image is over dataset.max_image_pixels"),
    ("large image", "row 3: image of 9000 x 9000 px is over dataset.max_image_pixels"),
])
def test_a_bad_row_is_named(tmp_path, damage, message):
    folder = write_images(tmp_path / "images", count=4)
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    if damage == "no caption":
        rows[2]["caption"] = ""
    elif damage == "missing image":
        rows[2]["file_name"] = "nowhere.png"
    elif damage == "unreadable image":
        (folder / "2.png").write_bytes(b"not a png")
    else:  # refused from the PNG header, before any pixel is decoded (over PIL's own guard, and under it)
        side = 20000 if damage == "huge image" else 9000
        Image.new("1", (side, side)).save(folder / "2.png")
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=message):
        CaptionedImages(folder, max_pixels=64_000_000)


def test_bad_data_is_one_error_line_from_the_cli(folders, tmp_path):
    images = write_images(tmp_path / "images", count=4)
    (images / "metadata.jsonl").write_text('{"file_name": "0.png", "caption": "a"}\n{"file_name": "1.png"}\n')
    cfg = config(folders, "t2g", tmp_path / "out", dataset={"path": str(images)})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    done = subprocess.run([sys.executable, "-m", "thinkgen.cli", "train", str(tmp_path / "c.yaml")], env=ENV,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"thinkgen: error: {images / 'metadata.jsonl'} row 2: no 'caption' (a non-empty text)")
    assert not (tmp_path / "out" / "final").exists()


def test_missing_data_and_an_unusable_cache_are_config_errors(folders, tmp_path):

    cfg = config(folders, "t2g", tmp_path / "out", dataset={"path": str(tmp_path / "nowhere")})
    with pytest.raises(C.ConfigError, match="dataset.path not found"):
        C.check_paths(C.from_dict(cfg))
    (tmp_path / "file").write_text("")
    cfg = config(folders, "t2g", tmp_path / "out", dataset={"state_cache": str(tmp_path / "file" / "cache")})
    with pytest.raises(C.ConfigError, match="dataset.state_cache .* cannot be made"):
        C.check_paths(C.from_dict(cfg))


# ----------------------------------------------------------------------------- sharded training
@pytest.mark.parametrize("model, port", [("t2g", 29611), ("release", 29621)])
def test_fsdp_on_two_processes_equals_one_and_saves_the_release_layout(folders, tmp_path, model, port):
    runs = {}
    for processes in (1, 2):
        out = tmp_path / f"p{processes}"
        launch(config(folders, model, out), tmp_path / f"p{processes}.yaml", processes, port)
        runs[processes] = out / "final"
    gap = relative_gap(transformer_weights(runs[2]), transformer_weights(runs[1]))
    assert gap < 1e-6, gap
    before = transformer_weights(folders / model)
    assert relative_gap(transformer_weights(runs[1]), before) > 1e-3  # it trained
    index = json.loads((runs[1] / "model_index.json").read_text())
    assert index["_class_name"] == ("QwenImagePipeline" if model == "t2g" else "ThinkGenCoTPipeline")
    loaded = ThinkGenPipeline.from_pretrained(runs[1])
    assert loaded.conditioning.name == ("qwen-image" if model == "t2g" else "thinkgen-release")
    out = loaded("a picture", think=False, num_inference_steps=2, height=32, width=32, output_type="pt")
    assert out.images.shape == (1, 3, 32, 32)
    if model == "t2g":  # diffusers' own pipeline reads the finetuned folder
        from diffusers import QwenImagePipeline

        theirs = QwenImagePipeline.from_pretrained(runs[1])
        assert all(torch.equal(v, transformer_weights(runs[1])[k]) for k, v in theirs.transformer.state_dict().items())


def test_sharded_checkpoints_resume_on_another_number_of_processes(folders, tmp_path):
    """The run on 2 processes checkpoints at steps 4 and 8; torn saves are skipped; resumed from
    step 4 on 2 processes it is bit-exact, on 1 process equal to within FSDP's reduction order."""
    whole = tmp_path / "whole"
    launch(config(folders, "release", whole), tmp_path / "whole.yaml", 2, 29631)
    reference = transformer_weights(whole / "final")
    for processes, port in ((2, 29641), (1, 0)):
        out = tmp_path / f"resumed{processes}"
        shutil.copytree(whole / "checkpoints", out / "checkpoints")
        shutil.rmtree(out / "checkpoints" / "step-000008")
        # a save killed half-way: a temporary folder, and a step folder with a shard cut short
        shutil.copytree(out / "checkpoints" / "step-000004", out / "checkpoints" / ".step-000008.tmp")
        torn = shutil.copytree(out / "checkpoints" / "step-000004", out / "checkpoints" / "step-000006")
        shard = next(torn.glob("*.distcp"))
        shard.write_bytes(shard.read_bytes()[:100])
        done = launch(config(folders, "release", out), tmp_path / f"r{processes}.yaml", processes, port, "--resume")
        assert "step-000006 is incomplete" in done.stdout + done.stderr and "(step 4)" in done.stdout + done.stderr
        resumed = transformer_weights(out / "final")
        if processes == 2:
            assert all(torch.equal(resumed[k], v) for k, v in reference.items())
        else:
            assert relative_gap(resumed, reference) < 1e-6


def test_resume_refuses_the_other_strategy(folders, tmp_path):
    out = tmp_path / "run"
    launch(config(folders, "t2g", out, run={"steps": 4}), tmp_path / "a.yaml", 1, 0)
    cfg = config(folders, "t2g", out, run={"steps": 4}, parallel={"strategy": "ddp"})
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(cfg))
    done = subprocess.run([sys.executable, "-m", "thinkgen.cli", "train", str(tmp_path / "b.yaml"), "--resume"],
                          env=ENV, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2 and "was written with parallel.strategy fsdp" in done.stderr
    assert "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- LoRA
def lora_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "pytorch_lora_weights.safetensors")


def test_lora_adapters_round_trip_with_diffusers(folders, tmp_path):
    """A T2G DiT adapter trained on 2 processes (FSDP2) equals the one trained on 1 (DDP engine);
    diffusers' QwenImagePipeline.load_lora_weights reads it and draws what thinkgen draws with it;
    lora.merge writes the merged pipeline, which draws the same."""
    from diffusers import QwenImagePipeline

    from thinkgen.train.run import run

    lora = {"rank": 4, "merge": True}
    launch(config(folders, "t2g", tmp_path / "sharded", lora=lora, run={"steps": 4}), tmp_path / "s.yaml", 2, 29651)
    plain = config(folders, "t2g", tmp_path / "plain", lora=lora, run={"steps": 4}, parallel={"strategy": "ddp"})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plain))
    final = run(tmp_path / "p.yaml", progress=False)
    adapter = lora_weights(final)
    assert adapter and all(k.startswith("transformer.") and ".lora_" in k for k in adapter)
    assert relative_gap(lora_weights(tmp_path / "sharded" / "final"), adapter) < 1e-6
    assert any(float(v.abs().max()) > 0 for k, v in adapter.items() if "lora_B" in k)  # B trained away from 0
    assert json.loads((final / "adapter.json").read_text())["base"] == str((folders / "t2g").resolve())

    prompt = {"prompt": "a red circle", "num_inference_steps": 2, "height": 32, "width": 32, "negative_prompt": " "}
    theirs = QwenImagePipeline.from_pretrained(folders / "t2g")
    base_image = theirs(**prompt, generator=torch.Generator().manual_seed(0), output_type="pt").images
    theirs.load_lora_weights(final)
    their_image = theirs(**prompt, generator=torch.Generator().manual_seed(0), output_type="pt").images
    ours = ThinkGenPipeline.from_pretrained(folders / "t2g").load_lora_weights(final)
    our_image = ours(prompt["prompt"], think=False, seed=0, num_inference_steps=2, height=32, width=32,
                     output_type="pt").images
    assert not torch.equal(their_image, base_image)  # the adapter changes the picture
    torch.testing.assert_close(our_image, their_image.float(), atol=1e-6, rtol=0)
    merged = ThinkGenPipeline.from_pretrained(final)  # lora.merge: the whole pipeline, adapters folded in
    merged_image = merged(prompt["prompt"], think=False, seed=0, num_inference_steps=2, height=32, width=32,
                          output_type="pt").images
    torch.testing.assert_close(merged_image, our_image, atol=1e-5, rtol=0)


def test_thinkgen_reads_a_diffusers_format_qwen_image_lora(folders, tmp_path):
    """A Qwen-Image LoRA saved by diffusers itself (as the community publishes them) loads into
    thinkgen's pipeline and draws what diffusers draws with it."""
    from diffusers import QwenImagePipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    theirs = QwenImagePipeline.from_pretrained(folders / "t2g")
    theirs.transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_v", "img_mlp.net.2"]))
    torch.manual_seed(0)
    for name, parameter in theirs.transformer.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.2)
    QwenImagePipeline.save_lora_weights(tmp_path / "community", get_peft_model_state_dict(theirs.transformer))
    prompt = {"prompt": "two blue squares", "num_inference_steps": 2, "height": 32, "width": 32, "negative_prompt": " "}
    their_image = theirs(**prompt, generator=torch.Generator().manual_seed(1), output_type="pt").images
    ours = ThinkGenPipeline.from_pretrained(folders / "t2g").load_lora_weights(tmp_path / "community")
    our_image = ours(prompt["prompt"], think=False, seed=1, num_inference_steps=2, height=32, width=32,
                     output_type="pt").images
    torch.testing.assert_close(our_image, their_image.float(), atol=1e-6, rtol=0)
    (tmp_path / "weights.bin").write_bytes(b"a pickle")
    with pytest.raises(ValueError, match="safetensors only"):
        ours.load_lora_weights(tmp_path / "weights.bin")


def test_kill_9_during_a_sharded_save_then_resume_on_two_and_on_one(folders, tmp_path):
    """A 2-process run is killed (SIGKILL, the whole process group) the moment a checkpoint's
    temporary folder appears, i.e. while its shards are being written; --resume on 2 processes is
    bit-exact with the uninterrupted run, on 1 process within 1e-6."""
    import signal
    import time

    steps = {"steps": 8, "save_every": 1, "keep_last": 8}
    whole = tmp_path / "whole"
    launch(config(folders, "release", whole, run=steps), tmp_path / "whole.yaml", 2, 29671)
    reference = transformer_weights(whole / "final")
    killed = tmp_path / "killed"
    cfg = config(folders, "release", killed, run=steps)
    (tmp_path / "killed.yaml").write_text(yaml.safe_dump(cfg))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29681",
               "-m", "thinkgen.cli", "train", str(tmp_path / "killed.yaml")]
    for _attempt in range(5):  # a save takes milliseconds: watch for its temporary folder and kill at once
        shutil.rmtree(killed, ignore_errors=True)
        process = subprocess.Popen(command, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        caught = False
        while process.poll() is None:
            if any(p.name.startswith(".step-") and p.name.endswith(".tmp") and p.name != ".step-000001.tmp"
                   for p in (killed / "checkpoints").glob(".step-*")):
                os.killpg(process.pid, signal.SIGKILL)
                caught = True
                break
            time.sleep(0.0005)
        process.wait()
        if caught and not (killed / "final").exists():
            break
    else:
        pytest.fail("no save was caught in 5 runs")
    for processes, port in ((2, 29691), (1, 0)):
        out = tmp_path / f"resumed{processes}"
        shutil.copytree(killed, out)
        cfg = config(folders, "release", out, run=steps)
        done = launch(cfg, tmp_path / f"r{processes}.yaml", processes, port, "--resume")
        assert "resumed from" in done.stdout + done.stderr
        resumed = transformer_weights(out / "final")
        if processes == 2:
            assert all(torch.equal(resumed[k], v) for k, v in reference.items())
        else:
            assert relative_gap(resumed, reference) < 1e-6


def test_a_streamed_dataset_trains_alike_on_any_number_of_processes_and_resumes(folders, tmp_path):
    """dataset.streaming: batches in the order a shuffled stream makes them. 2 processes train what 1
    trains; a run resumed from its step-4 checkpoint reads the stream up to there and ends bit-exact."""
    stream = {"streaming": True, "shuffle_buffer": 5}
    runs = {}
    for processes, port in ((1, 0), (2, 29691)):
        out = tmp_path / f"p{processes}"
        launch(config(folders, "release", out, dataset=stream), tmp_path / f"p{processes}.yaml", processes, port)
        runs[processes] = transformer_weights(out / "final")
    # over the whole model (measured 1.4e-7): per tensor, AdamW's division by the root of tiny second
    # moments lifts reduction-order noise in to_k (whose gradient is nearly nil) to 3.9e-6
    assert model_gap(runs[2], runs[1]) < 1e-6
    assert relative_gap(runs[1], transformer_weights(folders / "release")) > 1e-3
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "p1" / "checkpoints", resumed / "checkpoints")
    shutil.rmtree(resumed / "checkpoints" / "step-000008")
    launch(config(folders, "release", resumed, dataset=stream), tmp_path / "r.yaml", 1, 0, "--resume")
    assert all(torch.equal(v, runs[1][k]) for k, v in transformer_weights(resumed / "final").items())


def test_a_bad_row_of_a_stream_is_one_error_line(folders, tmp_path):
    images = write_images(tmp_path / "images", count=6)
    with open(images / "metadata.jsonl", "a") as f:
        f.write(json.dumps({"file_name": "missing.png", "caption": "gone"}) + "\n")
    cfg = config(folders, "t2g", tmp_path / "out", dataset={"path": str(images), "streaming": True})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    done = subprocess.run([sys.executable, "-m", "thinkgen.cli", "train", str(tmp_path / "c.yaml")], env=ENV,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    errors = [line for line in done.stderr.splitlines() if line.startswith("thinkgen: error:")]
    assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr
    assert "metadata.jsonl row 7" in errors[0] and not (tmp_path / "out" / "final").exists()


# ----------------------------------------------------------------------------- edit rows
def write_edits(folder: Path, counts: list[int]) -> Path:
    """Edit rows: row i's target is image i, its sources the next ``counts[i]`` images (a path, or a
    list of paths for several)."""
    write_images(folder, count=len(counts) + max(counts))
    rows = []
    for i, count in enumerate(counts):
        sources = [f"{i + k + 1}.png" for k in range(count)]
        rows.append({"file_name": f"{i}.png", "caption": f"edit number {i}",
                     "reference_file_name": sources[0] if count == 1 else sources})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_edit_rows_with_several_source_images_train_the_release_dit(folders, tmp_path):
    """Rows with one and with two source images fall in separate buckets; a two-source batch gives the
    release's DiT both sources of every sample (each resized to the target's size) and a finite
    loss with gradients; a model that takes one source refuses such a row in one line."""
    from thinkgen.train.dit_dataset_stage import DatasetDiTStage

    edits = write_edits(tmp_path / "edits", [1, 2] * 4)
    data = CaptionedImages(edits)
    assert data.sizes()[2].tolist() == [1, 2] * 4
    assert [im.size for im in data.references(1)] == [(24, 48), (40, 40)]  # images 2 and 3, in order
    batches = BucketBatches(data, bucket_sizes(32, 8), seed=0)
    assert all(len({int(data.sizes()[2][r]) for r in batches(step, 4)[1]}) == 1 for step in range(10))

    two = write_edits(tmp_path / "two", [2] * 4)
    cfg = config(folders, "release", tmp_path / "out", dataset={"path": str(two), "buckets": False},
                 parallel={"strategy": "ddp"})
    stage = DatasetDiTStage(C.from_dict(cfg))
    batch = stage.batch(0, 0, 4)
    assert batch["reference"].shape[:2] == (4, 2) and batch["reference"].shape[2:] == batch["x0"].shape[1:]
    seen = []
    forward = stage.pipe.transformer.forward

    def spy(*args, **kwargs):
        seen.append(args[4])
        return forward(*args, **kwargs)

    stage.pipe.transformer.forward = spy
    loss = stage.model(batch)
    loss.backward()
    assert torch.isfinite(loss) and len(seen[0]) == 4 and all(len(refs) == 2 for refs in seen[0])
    assert stage.pipe.transformer.image_index_embedding.grad[1].abs().sum() > 0  # the second source's slot
    with pytest.raises(DataError, match="row 1 \\(reference 2\\): image file not found"):
        rows = [json.loads(line) for line in (two / "metadata.jsonl").read_text().splitlines()]
        rows[0]["reference_file_name"][1] = "nowhere.png"
        (tmp_path / "bad").mkdir()
        for f in two.glob("*.png"):
            shutil.copy(f, tmp_path / "bad" / f.name)
        (tmp_path / "bad" / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        CaptionedImages(tmp_path / "bad")
    one = DatasetDiTStage(C.from_dict(config(folders, "t2g", tmp_path / "t2g", dataset={"path": str(two)},
                                             parallel={"strategy": "ddp"})))
    with pytest.raises(DataError, match="row \\d+: 2 reference images; this model takes at most 1 per edit"):
        one.batch(0, 0, 4)
