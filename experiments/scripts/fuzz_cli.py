"""Hundreds of bad invocations of the ``thinkgen`` command, each as a real process with a time
and memory cap; prints a table of how they ended.

Every case is a mistake (a bad number, path, prompt, config value, data file or model folder), so
the only good ending is exit code 2 with one ``error:`` line and no traceback. The table counts:
refused (good), accepted (exit 0: a bad input taken), traceback, other exit, hang (over the time
limit) and memory (peak RSS over the cap, from ``wait4``).

    python experiments/scripts/fuzz_cli.py [--jobs 2] [--timeout 60] [--limit N]

Issue 44 added the round-two cases (cases_round_two): bounded reads, model ceilings, lying
safetensors headers, hostile templates, devices, endpoints, the edit command, stage configs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
MEMORY_CAP_GB = 4.0

BAD_INTS = ["-1", "0", "abc", "", "1.5", "1e3", str(10**20), str(2**63), "nan"]
BAD_FLOATS = ["nan", "inf", "-inf", "abc", "", "1e999", "-5", "1000"]


def prepare(work: Path) -> dict[str, Path]:
    """A tiny model folder, broken copies of it, and bad data files."""
    from safetensors.torch import load_file, save_file

    from thinkgen.tiny import tiny_pipeline

    model = work / "model"
    tiny_pipeline(seed=0).save_pretrained(model)
    paths = {"model": model}

    def copy(name, index=None, raw=None, edit=None):
        folder = work / name
        shutil.copytree(model, folder)
        if raw is not None:
            (folder / "model_index.json").write_bytes(raw)
        if index:
            data = json.loads((folder / "model_index.json").read_text())
            data.update(index)
            (folder / "model_index.json").write_text(json.dumps(data))
        if edit:
            edit(folder)
        paths[name] = folder

    copy("index_number", raw=b"7")
    copy("index_null", raw=b"null")
    copy("index_binary", raw=b"\x00\xff\xfe\x89")
    copy("index_list", raw=b"[1, 2]")
    copy("index_dir", edit=lambda f: ((f / "model_index.json").unlink(), (f / "model_index.json").mkdir()))
    copy("thinker_config_int", index={"thinker_config": 4})
    copy("thinker_config_bad", index={"thinker_config": {"extract": "middle"}})
    copy("thinker_config_unknown", index={"thinker_config": {"temperature_x": 1}})
    copy("defaults_list", index={"defaults": [1]})
    copy("defaults_bad", index={"defaults": {"height": "tall"}})
    copy("bert", index={"thinker": ["transformers", "BertModel"]})
    copy("torch_module", index={"transformer": ["torch", "nn"]})
    copy("os_system", index={"vae": ["os", "system"]})
    copy("conditioning_bad", index={"conditioning": {"name": "telepathy"}})
    copy("no_bridge", edit=lambda f: shutil.rmtree(f / "bridge"))

    def rename_keys(folder):
        file = next((folder / "transformer").glob("*.safetensors"))
        save_file({f"x.{k}": v for k, v in load_file(file).items()}, file)

    copy("wrong_keys", edit=rename_keys)

    def pickle_only(folder):
        for file in (folder / "bridge").glob("*.safetensors"):
            file.unlink()
        (folder / "bridge" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")

    copy("pickle_only", edit=pickle_only)

    def hostile_template(folder):
        config = json.loads((folder / "tokenizer" / "tokenizer_config.json").read_text())
        config.pop("chat_template", None)
        (folder / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(config))
        (folder / "tokenizer" / "chat_template.jinja").write_text(
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}")

    copy("hostile_template", edit=hostile_template)
    data = work / "data"
    data.mkdir()
    (data / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (data / "empty_prompt.jsonl").write_text(json.dumps({"tag": "colors", "include": [], "prompt": ""}) + "\n")
    (data / "not_json.jsonl").write_text("{tag: colors\n")
    (data / "wise_empty.json").write_text(json.dumps([{"prompt_id": 1, "Prompt": " ", "Explanation": "",
                                                       "Category": "c", "Subcategory": "s"}]))
    (data / "wise_dict.json").write_text("{}")
    (data / "judged_bad.jsonl").write_text('{"prompt_id": 3, "consistency": "high"}\n')
    (data / "scalar.yaml").write_text("3\n")
    (data / "list.yaml").write_text("- a\n- b\n")
    (data / "bad.yaml").write_text("stage: [x\n")
    blocker = data / "a_file"
    blocker.write_text("")
    prepare_round_two(copy, data, work)
    paths.update({f"data/{p.name}": p for p in data.iterdir()})
    return paths


def prepare_round_two(copy, data: Path, work: Path) -> None:
    """Issue 44's inputs: oversized and special files, configs asking for absurd sizes, lying
    safetensors headers, hostile chat templates."""
    import struct

    with open(data / "sparse_5mb.yaml", "wb") as f:
        f.truncate(5 * 1024 * 1024)
    (data / "zero_base.yaml").write_text("base: /dev/zero\n")
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)]
    (data / "alias_bomb.yaml").write_text("stage: dit_pretrain\noutput_dir: out\n" + "\n".join(lines) + "\noptim: {lr: *i}\n")
    for i in range(40):
        (data / f"chain{i}.yaml").write_text(f"base: chain{i + 1}.yaml\n")
    for component, key, value in [("thinker", "num_hidden_layers", 10**9), ("thinker", "hidden_size", 10**9),
                                  ("thinker", "vocab_size", 10**9), ("thinker", "intermediate_size", 10**9),
                                  ("thinker", "max_position_embeddings", 10**12), ("transformer", "num_layers", 10**9),
                                  ("transformer", "attention_head_dim", 10**9), ("transformer", "num_attention_heads", 10**9),
                                  ("vae", "block_out_channels", [10**9]), ("vae", "latent_channels", 10**9),
                                  ("bridge", "num_prepadding", 10**9), ("thinker", "num_attention_heads", 10**7)]:
        def edit(folder, component=component, key=key, value=value):
            config = json.loads((folder / component / "config.json").read_text())
            config[key] = value
            (folder / component / "config.json").write_text(json.dumps(config))

        copy(f"ceiling_{component}_{key}", edit=edit)

    def big_index(folder):
        with open(folder / "model_index.json", "ab") as f:
            f.truncate(5 * 1024 * 1024)

    copy("index_5mb", edit=big_index)

    def zero_tokenizer(folder):
        (folder / "tokenizer" / "tokenizer.json").unlink()
        os.symlink("/dev/zero", folder / "tokenizer" / "tokenizer.json")

    copy("tokenizer_dev_zero", edit=zero_tokenizer)

    def lying_header(folder):
        file = next((folder / "bridge").glob("*.safetensors"))
        text = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}).encode()
        file.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 16)

    copy("lying_header", edit=lying_header)

    def sparse_extra(folder):
        text = json.dumps({"w": {"dtype": "F32", "shape": [1 << 30], "data_offsets": [0, 4 << 30]}}).encode()
        with open(folder / "transformer" / "extra.safetensors", "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            f.truncate(8 + len(text) + (4 << 30))

    copy("sparse_weights", edit=sparse_extra)
    for i, template in enumerate(["{{ raise_exception('no') }}", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
                                  "{{ messages[0].content.nothing.deeper }}", "{{ undefined_function() }}",
                                  "{% for a in range(100000) %}{{ messages[0]['content'] }}{% endfor %}",
                                  "{{ 'x' * 100000000 }}"]):
        def set_template(folder, template=template):
            config = json.loads((folder / "tokenizer" / "tokenizer_config.json").read_text())
            config.pop("chat_template", None)
            (folder / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(config))
            (folder / "tokenizer" / "chat_template.jinja").write_text(template)

        copy(f"template_{i}", edit=set_template)


def cases(paths: dict[str, Path], work: Path) -> list[list[str]]:
    model = str(paths["model"])
    out = str(work / "out.png")
    found: list[list[str]] = []
    generate = ["generate", "a red circle", "--model", model, "-o", out]
    for flag, values in [("--steps", BAD_INTS), ("--batch", BAD_INTS + ["20000"]), ("--height", BAD_INTS + ["100000", "30"]),
                         ("--width", BAD_INTS + ["4097"]), ("--seed", ["-1", str(2**63), "abc", "1e5", ""]),
                         ("--cfg", BAD_FLOATS), ("--max-pixels", ["0", "-5", "abc"])]:
        found += [generate + [flag, value] for value in values]
    found.append(generate + ["--height", "4096", "--width", "4096"])
    found += [generate + ["--dtype", d] for d in ("float8", "int", "")]
    found += [generate + ["--device", d] for d in ("cuda:7", "tpu", "")]
    found += [generate + ["--offload", d] for d in ("all", "")]
    found += [generate + ["--vae-tiling"]]
    # "\udcff" reaches the process as the byte 0xff (invalid UTF-8), which Python turns back into a lone
    # surrogate; NUL bytes cannot be passed to a process at all (tests/test_bad_input.py has them)
    # a single argument is capped by the OS at 128 KiB: 100,000 characters is over the prompt limit
    for prompt in ["", "   ", "\t\n", "a\udcffb", "x" * 100_000]:
        found.append(["generate", prompt, "--model", model, "-o", out])
    for output in ["", str(work / "x.txt"), str(work), str(work / "missing" / "x.png"), str(work / ("n" * 300 + ".png")),
                   str(work / "a\udcff.txt"), str(paths["data/a_file"] / "x.png"), "/proc/x.png"]:
        found.append(["generate", "a cat", "--model", model, "-o", output])
    for name, folder in paths.items():
        if name != "model" and not name.startswith("data/"):
            found.append(["generate", "a cat", "--model", str(folder), "-o", out])
            found.append(["info", str(folder)])
    for folder in [str(work / "missing"), str(paths["data/binary.bin"]), ""]:
        found.append(["generate", "a cat", "--model", folder, "-o", out])
    # eval, world, geneval, wise
    eval_base = ["eval", "--suite", "composition", "--model", model]
    found += [eval_base + [flag, value, "--out", str(work / "ev")] for flag, value in itertools.product(
        ["--n-items", "--n-per-prompt", "--resolution", "--steps", "--batch"], BAD_INTS)]
    found += [eval_base + ["--cfg", v, "--out", str(work / "ev")] for v in BAD_FLOATS]
    found += [eval_base + ["--out", ""], eval_base + ["--out", str(paths["data/a_file"])], eval_base + ["--suite", "x"],
              eval_base + ["--split", "valid", "--out", str(work / "ev")]]
    world = ["world", "export", "--suite", "composition", "--out", str(work / "w")]
    found += [world + [flag, value] for flag, value in itertools.product(["--n", "--resolution"], BAD_INTS)]
    found.append(world + ["--resolution", "1"])
    ge = ["geneval", "--model", model, "--out", str(work / "ge")]
    found += [ge + ["--metadata", str(paths[f"data/{n}"])] for n in ("binary.bin", "empty_prompt.jsonl", "not_json.jsonl")]
    found += [ge + [flag, value] for flag, value in itertools.product(["--n-samples", "--limit"], BAD_INTS)]
    wi = ["wise", "generate", "--model", model, "--out", str(work / "wi")]
    found += [wi + ["--prompts", str(paths[f"data/{n}"])] for n in ("binary.bin", "wise_empty.json", "wise_dict.json")]
    found += [["wise", "score", "--judgments", str(paths[f"data/{n}"])] for n in ("binary.bin", "judged_bad.jsonl")]
    found += [["wise", "judge", "--prompts", str(paths["data/wise_empty.json"])]]
    # training configs: every section's numbers, words and types
    base = {"stage": "dit_pretrain", "output_dir": str(work / "run"), "init": model,
            "run": {"steps": 2, "batch_size": 2}, "data": {"cache_size": 4}}
    fields = {"optim": {"lr": [-1, 0, "x", ".nan", 11], "betas": [[0.9], [2, 3], "x"], "warmup_steps": [-1, "x"],
                        "grad_clip": [0, -1], "weight_decay": [-1], "schedule": ["linear"], "min_lr_ratio": [2]},
              "run": {"steps": [0, -5, "x", 10**20], "batch_size": [0, 10**6], "log_every": [0], "save_every": [0],
                      "keep_last": [0], "threads": [-1], "seed": [-1, 2**64], "mixed_precision": ["fp8"],
                      "sample_every": [-1], "gradient_checkpointing": ["yes"]},
              "dit": {"patch": [0, 3], "num_heads": [0, 7], "resolution": [33, 4, 5000], "connector": ["lstm"],
                      "extract": ["middle"], "width": [0, 10], "num_layers": [0], "num_prepadding": [-1]},
              "data": {"timesteps": ["cosine"], "cache_size": [0], "caption_dropout": [1.5, -0.1], "curated": ["some"],
                       "max_objects": [0, 100]},
              "thinker": {"lora_rank": [-1], "hidden_size": [0, 33], "num_heads": [0]},
              "": {"stage": ["dit", 3], "output_dir": ["", str(paths["data/a_file"] / "run")], "ema_decay": [1, -0.5],
                   "thinker_dir": [str(work / "nowhere")], "unknown": [1], "init": [str(work / "nowhere")]}}
    index = 0
    for section, values in fields.items():
        for key, bad_values in values.items():
            for bad in bad_values:
                data = json.loads(json.dumps(base))
                (data.setdefault(section, {}) if section else data)[key] = bad
                path = work / f"config-{index}.yaml"
                index += 1
                path.write_text(yaml.safe_dump(data))
                found.append(["train", str(path)])
    rl = dict(base, stage="thinker_grpo", rl={"rewards": {"os:system": 1.0}})
    (work / "config-rl.yaml").write_text(json.dumps(rl))
    found.append(["train", str(work / "config-rl.yaml")])
    found += [["train", str(paths[f"data/{n}"])] for n in ("scalar.yaml", "list.yaml", "bad.yaml", "binary.bin")]
    found += [["train", str(work)], ["train", str(work / "config-0.yaml"), "--set", "run.steps=[1"],
              ["train", str(work / "config-0.yaml"), "--set", "stage.x=1"], ["train", str(work / "config-0.yaml"), "--set", "x"]]
    # command-line grammar
    found += [[], ["frobnicate"], ["generate"], ["generate", "--steps"], ["info"], ["--version-x"], ["eval", "--suite"]]
    return found + cases_round_two(paths, work)


def cases_round_two(paths: dict[str, Path], work: Path) -> list[list[str]]:
    """Issue 44's cases: bounded reads, model ceilings, safetensors, templates, devices, endpoints,
    the edit command's numbers, and training configs that refer to what is not there."""
    model, out = str(paths["model"]), str(work / "out2.png")
    found: list[list[str]] = []
    for name in ("sparse_5mb.yaml", "zero_base.yaml", "alias_bomb.yaml", "chain0.yaml"):
        found.append(["train", str(paths[f"data/{name}"])])
    found += [["train", "/dev/zero"], ["train", "/dev/null"], ["train", "/proc/self/mem"]]
    for special in ("/dev/zero", str(paths["data/sparse_5mb.yaml"])):
        found.append(["geneval", "--model", model, "--metadata", special, "--out", str(work / "ge2")])
        found.append(["wise", "generate", "--model", model, "--prompts", special, "--out", str(work / "wi2")])
        found.append(["wise", "score", "--judgments", special])
    for name, folder in paths.items():
        if name.startswith(("ceiling_", "template_")) or name in ("index_5mb", "tokenizer_dev_zero", "lying_header",
                                                                  "sparse_weights"):
            found.append(["generate", "a cat", "--model", str(folder), "-o", out])
            found.append(["info", str(folder)])
            if name.startswith("ceiling_"):
                found.append(["info", "--memory", str(folder)])
    for device in ("meta", "mps", "xpu", "ipu", "cuda:3", "cpu:x", "", "cuda:-1", "opengl"):
        found.append(["generate", "a cat", "--model", model, "--device", device, "-o", out])
        found.append(["serve", "--model", model, "--device", device])
    found += [["init", str(paths["data/a_file"])], ["demo", "   "], ["demo", ""], ["demo", "\t"],
              ["serve", "--model", model, "--host", "203.0.113.1", "--port", "8123"],
              ["serve", "--model", model, "--max-pixels", "0"], ["serve", "--model", model, "--port", "70000"]]
    for endpoint in ("not a url", "ftp://x", "http://", "localhost:8000", "http://h:port", ""):
        found.append(["wise", "judge", "--prompts", str(paths["data/wise_empty.json"]), "--images", str(work),
                      "--endpoint", endpoint, "--judge-model", "m", "--out", str(work / "wj")])
    source = work / "source.png"
    if not source.exists():
        from PIL import Image

        Image.new("RGB", (32, 32)).save(source)
    edit = ["edit", str(source), "make it blue", "--model", model, "-o", out]
    for flag, values in [("--steps", BAD_INTS), ("--height", BAD_INTS), ("--width", BAD_INTS), ("--seed", [v for v in BAD_INTS if v != "0"]),
                         ("--cfg", BAD_FLOATS), ("--image-cfg", BAD_FLOATS), ("--batch", BAD_INTS)]:
        found += [edit + [flag, value] for value in values]
    for bad_source in (str(work / "missing.png"), str(paths["data/binary.bin"]), "/dev/zero", str(work)):
        found.append(["edit", bad_source, "make it blue", "--model", model, "-o", out])
    found.append(edit + ["--and-image", str(source)])  # the tiny model takes one source image
    found.append(edit + ["--and-image", str(work / "missing.png")])
    for name, folder in paths.items():  # every broken folder through the commands that read it without drawing
        if name != "model" and not name.startswith(("data/", "ceiling_")):
            found.append(["info", "--memory", str(folder)])
        if name.startswith(("ceiling_", "index_", "template_")):
            found.append(["eval", "--suite", "composition", "--model", str(folder), "--out", str(work / "ev2")])
    good = work / "good.yaml"
    good.write_text(yaml.safe_dump({"stage": "dit_pretrain", "output_dir": str(work / "run3"), "init": model,
                                    "run": {"steps": 2, "batch_size": 2}, "data": {"cache_size": 4}}))
    for override in ("run.steps=-1", "run.steps=1e99", "optim.lr=nan", "optim.lr=[1]", "run.batch_size={a: 1}",
                     "stage=dual", "init=/dev/zero", "output_dir=/dev/null/x", "run.threads=10000000000",
                     "dit.patch=3", "data.cache_size=0", "optim.betas=[2, 2]", "run=3", "=1", "a..b=1", "run.=1",
                     "dataset.source=imagez", "lora.rank=-4", "parallel.strategy=zero3", "judge.url=x"):
        found.append(["train", str(good), "--set", override])
    base = {"output_dir": str(work / "run2"), "run": {"steps": 2, "batch_size": 2}}
    index = 0
    for stage in ("dit_connector", "dit_pretrain", "dit_finetune", "thinker_sft", "thinker_grpo", "dit_flow_grpo",
                  "sep_grpo", "dual_grpo"):
        for extra in ({}, {"thinker_dir": str(work / "nowhere")}, {"init": str(paths["data/a_file"])},
                      {"init": model, "dataset": {"source": "images", "path": str(work / "nowhere")}},
                      {"init": model, "judge": {"url": "not a url", "model": "m"}, "rl": {"rewards": {"judge": 1.0}}}):
            path = work / f"config2-{index}.yaml"
            index += 1
            path.write_text(yaml.safe_dump({**base, "stage": stage, **extra}))
            found.append(["train", str(path)])
    return found


def classify(result: dict) -> str:
    lines = [line for line in result["err"].splitlines() if line.strip()]
    if result["hung"]:
        return "hang"
    if result.get("rss_gb", 0) > MEMORY_CAP_GB:
        return "memory"
    if "Traceback" in result["err"]:
        return "traceback"
    if result["code"] == 0:
        return "accepted"
    if result["code"] == 2 and len(lines) == 1 and "error:" in lines[0]:
        return "refused"
    if result["code"] == 2:
        return "refused, several lines"
    return f"exit {result['code']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="thinkgen-fuzz-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "FUZZ_CWD": str(work),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        paths = prepare(work)
        all_cases = cases(paths, work)
        random.Random(args.seed).shuffle(all_cases)
        all_cases = all_cases[: args.limit] if args.limit else all_cases
        print(f"{len(all_cases)} cases, {args.jobs} at a time, {args.timeout:.0f} s and {MEMORY_CAP_GB:.0f} GB each",
              flush=True)
        results: list[dict] = []
        running: list[tuple[subprocess.Popen, list[str], float]] = []
        queue = list(all_cases)
        while queue or running:
            while queue and len(running) < args.jobs:
                argv = queue.pop(0)
                process = subprocess.Popen([sys.executable, "-m", "thinkgen.cli", *argv], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE, env=env, cwd=work)
                running.append((process, argv, time.monotonic()))
            time.sleep(0.05)
            for entry in list(running):
                process, argv, start = entry
                hung = time.monotonic() - start > args.timeout
                if hung:
                    process.kill()
                pid, status, usage = os.wait4(process.pid, os.WNOHANG) if not hung else os.wait4(process.pid, 0)
                if pid == 0:
                    continue
                running.remove(entry)
                err = process.stderr.read().decode(errors="replace")
                code = os.waitstatus_to_exitcode(status)
                result = {"argv": argv, "code": code, "err": err, "hung": hung, "seconds": time.monotonic() - start,
                          "rss_gb": usage.ru_maxrss / 1024**2}
                result["outcome"] = classify(result)
                results.append(result)
                if len(results) % 25 == 0:
                    print(f"  {len(results)} done", flush=True)
        outcomes: dict[str, int] = {}
        for result in results:
            outcomes[result["outcome"]] = outcomes.get(result["outcome"], 0) + 1
        print("\n| outcome | cases |\n|---|---|")
        for outcome in ("refused", "accepted", "traceback", "hang", "memory", "refused, several lines"):
            print(f"| {outcome} | {outcomes.pop(outcome, 0)} |")
        for outcome, count in sorted(outcomes.items()):
            print(f"| {outcome} | {count} |")
        print(f"| **total** | **{len(results)}** |")
        print(f"\nslowest {max(r['seconds'] for r in results):.1f} s; largest peak memory "
              f"{max(r['rss_gb'] for r in results):.2f} GB")
        bad = [r for r in results if r["outcome"] != "refused"]
        for result in bad[:30]:
            shown = [a if len(a) < 80 else a[:40] + "..." for a in result["argv"]]
            print(f"\n{result['outcome']}: thinkgen {' '.join(shown)!r}\n  {result['err'].strip()[-400:]}")
        sys.exit(1 if bad else 0)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
