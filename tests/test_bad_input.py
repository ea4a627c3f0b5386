"""Hostile and careless input, in-process through the CLI's ``main``: every mistake ends with exit
code 2, one ``error:`` line, no traceback, and no file written. One case (at least) per cause
found by the review of issue 12; ``experiments/scripts/fuzz_cli.py`` runs hundreds more as real processes."""

import json
import shutil

import pytest
import yaml
from safetensors.torch import load_file, save_file

from thinkgen import thinker as thinker_module
from thinkgen.cli import main
from thinkgen.tiny import tiny_pipeline


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "tiny"
    tiny_pipeline(seed=0).save_pretrained(folder)
    return folder


def files(root):
    """Every file and folder under ``root``: a refused command leaves neither, not even an empty folder."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def refused(capsys, tmp_path, *argv, fragment=""):
    """Run the command in ``tmp_path``; check exit 2, one error line, no traceback, nothing written."""
    before = files(tmp_path)
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]
    assert files(tmp_path) == before, "a refused command wrote files"
    return lines[0]


# ----------------------------------------------------------------------------- training configs
BASE = {"stage": "dit_pretrain", "output_dir": "OUT", "init": "MODEL",
        "run": {"steps": 2, "batch_size": 2}, "data": {"cache_size": 4}}


def config_file(tmp_path, model, change):
    data = json.loads(json.dumps(BASE))
    data["output_dir"], data["init"] = str(tmp_path / "out"), str(model)
    for dotted, value in change.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BAD_CONFIGS = [
    ({"optim.lr": -1e-3}, "optim.lr"), ({"optim.lr": float("nan")}, "optim.lr"), ({"optim.lr": "fast"}, "optim.lr"),
    ({"optim.betas": [0.9]}, "optim.betas"), ({"optim.betas": [0.9, 1.5]}, "optim.betas"),
    ({"run.log_every": 0}, "run.log_every"), ({"run.save_every": 0}, "run.save_every"),
    ({"run.threads": -1}, "run.threads"), ({"dit.patch": 0}, "dit.patch"), ({"dit.patch": 3}, "dit.patch"),
    ({"dit.num_heads": 0}, "dit.num_heads"), ({"dit.resolution": 33}, "dit.resolution"),
    ({"dit.connector": "lstm"}, "dit.connector"), ({"data.timesteps": "cosine"}, "data.timesteps"),
    ({"data.cache_size": 0}, "data.cache_size"), ({"optim.warmup_steps": -10}, "optim.warmup_steps"),
    ({"optim.grad_clip": -1}, "optim.grad_clip"), ({"thinker.lora_rank": -1}, "thinker.lora_rank"),
    ({"dit.extract": "middle"}, "dit.extract"), ({"run.steps": 10**20}, "run.steps"), ({"stage": "dit"}, "stage"),
    ({"data.drawn_edits": "drawn"}, "data.edit_fraction"), ({"optim.nesterov": True}, "unknown key"), ({"rl.rewards": {"os:system": 1.0}, "stage": "thinker_grpo"},
                                                 "allow_external_rewards"),
]


@pytest.mark.parametrize("change,fragment", BAD_CONFIGS, ids=[f[1] + str(i) for i, f in enumerate(BAD_CONFIGS)])
def test_bad_training_values(capsys, tmp_path, model, change, fragment):
    path = config_file(tmp_path, model, change)
    refused(capsys, tmp_path, "train", path, fragment=fragment)
    assert not (tmp_path / "out").exists()


def test_bad_training_files_and_paths(capsys, tmp_path, model):
    refused(capsys, tmp_path, "train", tmp_path, fragment="directory")  # a folder as the config
    (tmp_path / "scalar.yaml").write_text("42\n")
    refused(capsys, tmp_path, "train", tmp_path / "scalar.yaml", fragment="mapping")
    (tmp_path / "broken.yaml").write_text("stage: [dit\n  output_dir: x\n")
    refused(capsys, tmp_path, "train", tmp_path / "broken.yaml", fragment="not valid YAML")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    refused(capsys, tmp_path, "train", tmp_path / "binary.yaml")
    good = config_file(tmp_path, model, {})
    refused(capsys, tmp_path, "train", good, "--set", "run.steps=[1", fragment="not valid YAML")
    refused(capsys, tmp_path, "train", good, "--set", "stage.x=1", fragment="not a section")
    refused(capsys, tmp_path, "train", good, "--set", "=3", fragment="KEY=VALUE")
    refused(capsys, tmp_path, "train", good, "--set", "data.edit_fraction=0.5", "--set",
            f"data.drawn_edits={tmp_path / 'no_drawings'}", fragment="no rows.jsonl")
    from thinkgen.cli import _override

    assert _override("optim.lr=5e-4") == ("optim.lr", 5e-4)  # YAML alone reads "5e-4" as a string
    assert _override("output_dir=runs/x") == ("output_dir", "runs/x") and _override("run.steps=7") == ("run.steps", 7)
    missing = config_file(tmp_path, model, {"init": None, "thinker_dir": str(tmp_path / "nowhere")})
    refused(capsys, tmp_path, "train", missing, fragment="not found")


def test_unwritable_output_dir(capsys, tmp_path, model):
    blocker = tmp_path / "file"
    blocker.write_text("")
    path = config_file(tmp_path, model, {"output_dir": str(blocker / "out")})
    refused(capsys, tmp_path, "train", path, fragment="not writable")


# ----------------------------------------------------------------------------- model folders
def broken_copy(model, tmp_path, index_text=None, index_dir=False, change=None):
    copy = tmp_path / "broken"
    shutil.copytree(model, copy)
    index_path = copy / "model_index.json"
    if index_dir:
        index_path.unlink()
        index_path.mkdir()
    elif index_text is not None:
        index_path.write_bytes(index_text) if isinstance(index_text, bytes) else index_path.write_text(index_text)
    if change:
        index = json.loads(index_path.read_text())
        index.update(change)
        index_path.write_text(json.dumps(index))
    return copy


@pytest.mark.parametrize("kind", ["number", "null", "binary", "directory", "thinker_config", "thinker_config_value",
                                  "defaults", "defaults_value", "bert", "torch_module", "conditioning"])
def test_broken_model_folders(capsys, tmp_path, model, kind):
    cases = {"number": {"index_text": "3"}, "null": {"index_text": "null"}, "binary": {"index_text": b"\x89PNG\xff"},
             "directory": {"index_dir": True}, "thinker_config": {"change": {"thinker_config": 5}},
             "thinker_config_value": {"change": {"thinker_config": {"num_layers": "two"}}},
             "defaults": {"change": {"defaults": []}}, "defaults_value": {"change": {"defaults": {"height": -3}}},
             "bert": {"change": {"thinker": ["transformers", "BertModel"]}},
             "torch_module": {"change": {"transformer": ["torch", "nn"]}},
             "conditioning": {"change": {"conditioning": {"name": "telepathy"}}}}
    folder = broken_copy(model, tmp_path / "m", **cases[kind])
    refused(capsys, tmp_path, "generate", "a cat", "--model", folder, "-o", tmp_path / "x.png")


def test_weights_with_wrong_keys(capsys, tmp_path, model):
    folder = broken_copy(model, tmp_path / "m")
    file = next((folder / "transformer").glob("*.safetensors"))
    weights = load_file(file)
    save_file({f"renamed.{k}": v for k, v in weights.items()}, file)
    refused(capsys, tmp_path, "generate", "a cat", "--model", folder, "-o", tmp_path / "x.png")


def test_pickle_weights(capsys, tmp_path, model):
    folder = broken_copy(model, tmp_path / "m")
    for file in (folder / "bridge").glob("*.safetensors"):
        file.unlink()
    (folder / "bridge" / "diffusion_pytorch_model.bin").write_bytes(b"not really a pickle")
    refused(capsys, tmp_path, "generate", "a cat", "--model", folder, "-o", tmp_path / "x.png",
            fragment="safetensors only")


def with_template(model, tmp_path, template):
    folder = broken_copy(model, tmp_path / "m")
    config = json.loads((folder / "tokenizer" / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "tokenizer" / "chat_template.jinja").write_text(template)
    return folder


@pytest.mark.parametrize("template", [
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",  # runs for ever
    "{% for a in range(100000) %}{{ messages[0]['content'] }}{% endfor %}",  # grows without bound
    "{{ raise_exception('no') }}",  # fails on every conversation
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",  # recurses
    "{{ messages[0].content.nothing.deeper }}",  # a Jinja error
    "{{ undefined_function() }}",
])
def test_hostile_chat_template(capsys, tmp_path, model, monkeypatch, template):
    monkeypatch.setattr(thinker_module, "CHAT_TEMPLATE_SECONDS", 1.0)
    folder = with_template(model, tmp_path, template)
    refused(capsys, tmp_path, "generate", "a cat", "--model", folder, "-o", tmp_path / "x.png",
            fragment="chat template")
    refused(capsys, tmp_path, "info", folder, fragment="chat template")  # refused when the folder loads


def test_a_template_that_fails_on_some_prompts_only_is_one_line(capsys, tmp_path, model):
    """It passes the load-time probe; the prompt it fails on is one error line, not a traceback."""
    folder = with_template(model, tmp_path, "{% if 'cat' in messages[-1]['content'] %}{{ raise_exception('no cats') }}"
                                            "{% endif %}{{ messages[0]['content'] }}")
    refused(capsys, tmp_path, "generate", "a cat", "--model", folder, "-o", tmp_path / "x.png",
            fragment="the chat template failed: no cats")


def test_the_template_budget_holds_in_a_worker_thread(monkeypatch):
    """The server renders in its worker thread: the time budget must hold there too."""
    import threading
    import time

    from thinkgen.tiny import byte_tokenizer

    monkeypatch.setattr(thinker_module, "CHAT_TEMPLATE_SECONDS", 0.5)
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    seen = {}

    def render():
        start = time.perf_counter()
        try:
            thinker_module.render_chat(tokenizer, [{"role": "user", "content": "x"}])
        except thinker_module.ChatTemplateError as error:
            seen["error"], seen["seconds"] = str(error), time.perf_counter() - start

    worker = threading.Thread(target=render)
    worker.start()
    worker.join(timeout=20)
    assert "longer than 0.5 s" in seen["error"] and seen["seconds"] < 3


# ----------------------------------------------------------------------------- sizes, integers, text
@pytest.mark.parametrize("argv,fragment", [
    (["--height", "100000"], "height"), (["--batch", "20000"], "batch"), (["--height", "4096", "--width", "4096"], "pixels"),
    (["--steps", str(10**20)], "steps"), (["--seed", str(2**63)], "seed"), (["--seed", "-1"], "seed"),
    (["--cfg", "nan"], "cfg"), (["--cfg", "inf"], "cfg"), (["--cfg", "-3"], "cfg"),
])
def test_generate_sizes_and_numbers(capsys, tmp_path, model, argv, fragment):
    refused(capsys, tmp_path, "generate", "a cat", "--model", model, "-o", tmp_path / "x.png", *argv,
            fragment=fragment)


def test_generate_text_and_paths(capsys, tmp_path, model):
    refused(capsys, tmp_path, "generate", "a \ud800 cat", "--model", model, "-o", tmp_path / "x.png",
            fragment="surrogate")
    refused(capsys, tmp_path, "generate", "x" * 1_000_000, "--model", model, "-o", tmp_path / "x.png",
            fragment="characters")
    refused(capsys, tmp_path, "generate", "a cat", "--model", model, "-o", str(tmp_path / "a\x00b.png"), fragment="NUL")
    refused(capsys, tmp_path, "generate", "a cat", "--model", model, "-o", str(tmp_path / ("n" * 300 + ".png")),
            fragment="255")
    refused(capsys, tmp_path, "generate", "   ", "--model", model, "-o", tmp_path / "x.png", fragment="empty")


@pytest.mark.parametrize("argv,fragment", [
    (["eval", "--suite", "composition", "--n-items", str(10**9), "--out", "OUT"], "n-items"),
    (["eval", "--suite", "composition", "--n-per-prompt", str(10**6), "--out", "OUT"], "n-per-prompt"),
    (["eval", "--suite", "composition", "--out", ""], "empty"),
    (["eval", "--suite", "composition", "--reflect", "1", "--tries", "2", "--out", "OUT"], "retry-"),
    (["eval", "--suite", "composition", "--reflect", "1", "--correct", "retry-edit", "--tries", "65", "--out", "OUT"],
     "--tries"),
    (["eval", "--suite", "composition", "--reflect", "1", "--quorum", "2", "--out", "OUT"], "need --votes"),
    (["eval", "--suite", "composition", "--reflect", "1", "--votes", "4", "--quorum", "5", "--out", "OUT"],
     "more than the 4 votes"),
    (["eval", "--suite", "composition", "--reflect", "1", "--votes", "4", "--keep-quorum", "1", "--out", "OUT"],
     "checked- and retry-"),
    (["eval", "--suite", "composition", "--reflect", "1", "--votes", "65", "--out", "OUT"], "--votes"),
    (["world", "export", "--suite", "composition", "--resolution", "1", "--out", "OUT"], "resolution"),
    (["world", "export", "--suite", "composition", "--n", str(10**9), "--out", "OUT"], "--n"),
])
def test_other_commands_sizes(capsys, tmp_path, argv, fragment):
    argv = [str(tmp_path / "o") if a == "OUT" else a for a in argv]
    refused(capsys, tmp_path, *argv, fragment=fragment)


def test_bad_data_files(capsys, tmp_path, model):
    geneval = tmp_path / "meta.jsonl"
    geneval.write_text(json.dumps({"tag": "colors", "include": [], "prompt": "   "}) + "\n")
    refused(capsys, tmp_path, "geneval", "--model", model, "--metadata", geneval, "--out", tmp_path / "g",
            fragment="empty")
    geneval.write_bytes(b"\xff\xd8\xff\xe0 a jpeg")
    refused(capsys, tmp_path, "geneval", "--model", model, "--metadata", geneval, "--out", tmp_path / "g")
    wise = tmp_path / "wise.json"
    wise.write_text(json.dumps([{"prompt_id": 1, "Prompt": "", "Explanation": "", "Category": "Cultural",
                                 "Subcategory": "x"}]))
    refused(capsys, tmp_path, "wise", "generate", "--model", model, "--prompts", wise, "--out", tmp_path / "w",
            fragment="empty Prompt")
    wise.write_text(json.dumps([{"prompt_id": "one", "Prompt": "a", "Explanation": "", "Category": "c",
                                 "Subcategory": "x"}]))
    refused(capsys, tmp_path, "wise", "generate", "--model", model, "--prompts", wise, "--out", tmp_path / "w",
            fragment="prompt_id")
    judged = tmp_path / "j.jsonl"
    judged.write_text('{"prompt_id": 5000, "consistency": 1, "realism": 1, "aesthetic_quality": 1}\n')
    refused(capsys, tmp_path, "wise", "score", "--judgments", judged)


# ----------------------------------------------------------------------------- bounded reads (issue 44)
def test_files_read_whole_are_bounded_before_reading(capsys, tmp_path, model):
    """A config, a base, GenEval metadata or WISE prompts that are /dev/zero or over their limit
    are refused from their size, before they are read; so are a model folder's index and tokenizer."""
    import os
    import time

    from thinkgen import validate

    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(validate.CONFIG_BYTES + 1)  # sparse: nothing is written, the size is claimed
    for config in ("/dev/zero", big):
        start = time.perf_counter()
        refused(capsys, tmp_path, "train", config, fragment="not a regular file" if config == "/dev/zero" else "above")
        assert time.perf_counter() - start < 5
    based = tmp_path / "based.yaml"
    based.write_text("base: /dev/zero\n")
    refused(capsys, tmp_path, "train", based, fragment="not a regular file")
    refused(capsys, tmp_path, "geneval", "--metadata", "/dev/zero", "--out", tmp_path / "g", fragment="regular")
    refused(capsys, tmp_path, "wise", "generate", "--prompts", "/dev/zero", "--out", tmp_path / "w", fragment="regular")
    folder = broken_copy(model, tmp_path / "m")
    tokenizer = folder / "tokenizer" / "tokenizer.json"
    tokenizer.unlink()
    os.symlink("/dev/zero", tokenizer)
    refused(capsys, tmp_path, "generate", "a cat", "--model", folder, "-o", tmp_path / "x.png",
            fragment="not a regular file")
    index = folder / "model_index.json"
    with open(index, "ab") as f:
        f.truncate(validate.CONFIG_BYTES + 1)
    refused(capsys, tmp_path, "info", folder, fragment="above the limit")


def test_a_deep_base_chain_and_a_yaml_alias_bomb_are_one_line(capsys, tmp_path):
    import time

    for i in range(40):
        (tmp_path / f"c{i}.yaml").write_text(f"base: c{i + 1}.yaml\n")
    refused(capsys, tmp_path, "train", tmp_path / "c0.yaml", fragment="deep in 'base'")
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
              f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]" for i in range(8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("stage: dit_pretrain\noutput_dir: out\n" + "\n".join(lines) + "\noptim: {lr: *i}\n")
    assert len(bomb.read_bytes()) < 2048
    start = time.perf_counter()
    refused(capsys, tmp_path, "train", bomb, fragment="aliases")
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("component, key, value, fragment", [
    ("thinker", "num_hidden_layers", 10**9, "num_hidden_layers = 1,000,000,000 is above the ceiling"),
    ("thinker", "hidden_size", 10**9, "hidden_size"),
    ("thinker", "vocab_size", 10**9, "vocab_size"),
    ("transformer", "num_layers", 10**9, "num_layers"),
    ("vae", "block_out_channels", [10**9], "block_out_channels"),
])
@pytest.mark.parametrize("command", ["info", "info --memory", "generate"])
def test_model_configs_are_checked_before_a_module_is_built(capsys, tmp_path, model, component, key, value,
                                                            fragment, command):
    import time

    folder = broken_copy(model, tmp_path / "m")
    path = folder / component / "config.json"
    config = json.loads(path.read_text())
    config[key] = value
    path.write_text(json.dumps(config))
    argv = {"info": ["info", folder], "info --memory": ["info", "--memory", folder],
            "generate": ["generate", "a cat", "--model", folder, "-o", tmp_path / "x.png"]}[command]
    start = time.perf_counter()
    refused(capsys, tmp_path, *argv, fragment=fragment)
    assert time.perf_counter() - start < 10


def test_safetensors_headers_are_checked_against_the_file(capsys, tmp_path, model):
    """A header claiming tensors beyond the file's end, and a sparse file holding far more numbers
    than the model has, are refused from their headers; no tensor is read."""
    import struct


    folder = broken_copy(model, tmp_path / "m")
    file = next((folder / "bridge").glob("*.safetensors"))
    header = {"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}
    text = json.dumps(header).encode()
    file.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 16)  # 16 bytes of data, 4 MB claimed
    refused(capsys, tmp_path, "generate", "a cat", "--model", folder, "-o", tmp_path / "x.png",
            fragment="does not fit the file")
    weights = load_file(next((model / "bridge").glob("*.safetensors")))
    huge = {"w": {"dtype": "F32", "shape": [1 << 30], "data_offsets": [0, 4 << 30]}}
    text = json.dumps(huge).encode()
    sparse = folder / "bridge" / "extra.safetensors"
    with open(sparse, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + (4 << 30))  # 4 GiB claimed, none of it on disk
    save_file({k: v.clone() for k, v in weights.items()}, file)
    refused(capsys, tmp_path, "generate", "a cat", "--model", folder, "-o", tmp_path / "x.png",
            fragment=f"the weights hold {(1 << 30) + sum(v.numel() for v in weights.values()):,} numbers")


# ----------------------------------------------------------------------------- round two's tracebacks (issue 44)
@pytest.mark.parametrize("device, fragment", [("meta", "holds no weights"), ("mps", "no MPS device"),
                                              ("xpu", "no XPU device"), ("tpu", "unknown device"), ("ipu", "not one thinkgen draws on"),
                                              ("cuda:3", "no CUDA device")])
def test_devices_this_machine_lacks(capsys, tmp_path, model, device, fragment):
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        fragment = "CUDA device(s)" if torch.cuda.device_count() <= 3 else ""
    refused(capsys, tmp_path, "generate", "a cat", "--model", model, "--device", device, "-o", tmp_path / "x.png",
            fragment=fragment)


def test_accepted_before_now_refused(capsys, tmp_path, model):
    (tmp_path / "afile").write_text("x")
    refused(capsys, tmp_path, "init", tmp_path / "afile", fragment="not a folder")
    refused(capsys, tmp_path, "demo", "   ", fragment="the prompt is empty")
    refused(capsys, tmp_path, "serve", "--device", "meta", fragment="holds no weights")
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"prompt_id": 1, "Prompt": "a", "Explanation": "b", "Category": "c",
                                    "Subcategory": "d"}]))
    refused(capsys, tmp_path, "wise", "judge", "--prompts", prompts, "--images", tmp_path, "--endpoint", "not a url",
            "--judge-model", "m", "--out", tmp_path / "o", fragment="http(s) URL")


def test_refused_training_runs_leave_no_folders(capsys, tmp_path, model):
    """A DiT stage with neither init nor thinker_dir, and one whose thinker_dir is broken: one line,
    and the output folder they would have written is not left behind, empty."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"stage": "dit_pretrain", "output_dir": str(tmp_path / "out"),
                                      "run": {"steps": 2, "batch_size": 2}}))
    refused(capsys, tmp_path, "train", config, fragment="needs init (a pipeline folder) or thinker_dir")
    broken = tmp_path / "thinker"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    config.write_text(yaml.safe_dump({"stage": "dit_pretrain", "output_dir": str(tmp_path / "out"),
                                      "thinker_dir": str(broken), "run": {"steps": 2, "batch_size": 2}}))
    refused(capsys, tmp_path, "train", config, fragment="cannot load the thinker from")
    assert not (tmp_path / "out").exists()


def test_judge_folders_that_are_not_thinkers(capsys, tmp_path, model):
    number = tmp_path / "number"
    number.mkdir()
    (number / "model_index.json").write_text("3")
    refused(capsys, tmp_path, "generate", "a cat", "--model", model, "--reflect", "1", "--judge", number,
            "-o", tmp_path / "x.png", fragment="holds no thinker")
    huge = broken_copy(model, tmp_path / "huge")
    config = json.loads((huge / "thinker" / "config.json").read_text())
    config["num_hidden_layers"] = 10**9
    (huge / "thinker" / "config.json").write_text(json.dumps(config))
    refused(capsys, tmp_path, "generate", "a cat", "--model", model, "--reflect", "1", "--judge", huge,
            "-o", tmp_path / "x.png", fragment="num_hidden_layers")


def test_max_pixels_has_a_ceiling_and_sources_are_checked_from_their_header(capsys, tmp_path, model):
    from PIL import Image

    from thinkgen import validate

    refused(capsys, tmp_path, "generate", "a cat", "--model", model, "--max-pixels", str(2**40), "-o",
            tmp_path / "x.png", fragment="--max-pixels")
    wide = tmp_path / "wide.png"
    Image.new("1", (validate.MAX_IMAGE_PIXELS // 1000 + 1, 1000)).save(wide)  # over the ceiling, under PIL's guard
    refused(capsys, tmp_path, "edit", wide, "make it blue", "--model", model, "--max-pixels",
            str(validate.MAX_IMAGE_PIXELS), "-o", tmp_path / "x.png", fragment="pixels")


def test_a_bridge_asking_for_a_billion_prepadding_states(capsys, tmp_path, model):
    folder = broken_copy(model, tmp_path / "m")
    config = json.loads((folder / "bridge" / "config.json").read_text())
    config["num_prepadding"] = 10**9
    (folder / "bridge" / "config.json").write_text(json.dumps(config))
    refused(capsys, tmp_path, "info", folder, fragment="num_prepadding")
