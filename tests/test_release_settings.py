"""`thinkgen release-settings MODEL --from-code CODE`: a release's own prompts, read (never run) from a
copy of its code, recorded in its folder and applied when it loads. The code here is written for the
test in the releases' shapes: a class attribute, a default in a chat wrapper, a module constant."""

import json

import pytest

from thinkgen import ThinkGenPipeline
from thinkgen.cli import main
from thinkgen.release_settings import read_release_code
from thinkgen.tiny import tiny_qwen_image, tiny_thinkgen_release

THINKGEN_CODE = {
    "ThinkGen/pipelines/pipeline_thinkgen.py": 'import os\n\nclass ThinkGenCoTPipeline:\n    def __init__(self):\n'
                                               '        self.SYSPROMPT = ("You draw. "\n'
                                               '                          "Say it in one sentence.")\n',
    "ThinkGen/model.py": 'class Chat:\n    def __init__(self, **kwargs):\n        self.d = {"negative_prompt": '
                         'kwargs.get("negative_prompt", "blurry, deformed")}\n',
    "broken.py": "def (:\n",  # a file that does not parse is passed over
}
T2G_CODE = {"inference.py": 'SYSTEM_PROMPT = """Reason, then write Revised Prompt:\\n\n\nPrompt: \n"""\nimport os\n'}


def write(folder, files):
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_the_release_texts_are_read_from_its_code_and_applied_on_load(tmp_path, capsys):
    from diffusers import QwenImagePipeline

    release, t2g = tmp_path / "ThinkGen", tmp_path / "T2G"
    tiny_thinkgen_release().save_pretrained(release)
    QwenImagePipeline(**tiny_qwen_image()).save_pretrained(t2g)
    weights = {p: p.read_bytes() for p in release.rglob("*.safetensors")}
    assert main(["release-settings", str(release), "--from-code", str(write(tmp_path / "tg-code", THINKGEN_CODE))]) == 0
    assert "system_prompt from ThinkGen/pipelines/pipeline_thinkgen.py:5" in capsys.readouterr().out
    pipe = ThinkGenPipeline.from_pretrained(release)
    assert pipe.conditioning.system_prompt == "You draw. Say it in one sentence."
    assert pipe.defaults["negative_prompt"] == "blurry, deformed"
    assert all(p.read_bytes() == data for p, data in weights.items())  # the weights are not touched
    assert main(["release-settings", str(t2g), "--from-code", str(write(tmp_path / "t2g-code", T2G_CODE))]) == 0
    assert ThinkGenPipeline.from_pretrained(t2g).conditioning.instruction == "Reason, then write Revised Prompt:\n\n\nPrompt: \n"
    index = json.loads((t2g / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImagePipeline" and index["_thinkgen"]["release_settings_from"] == {
        "instruction": "inference.py:1"}
    QwenImagePipeline.from_pretrained(t2g)  # diffusers still reads the folder


def test_what_cannot_be_adopted_is_one_error_line(tmp_path, capsys):
    tiny_thinkgen_release().save_pretrained(tmp_path / "ThinkGen")
    write(tmp_path / "elsewhere", {"x.py": "NOTHING = 1\n"})
    for argv, message in ((["release-settings", str(tmp_path / "ThinkGen"), "--from-code", str(tmp_path / "elsewhere")],
                           "no SYSPROMPT string found"),
                          (["release-settings", str(tmp_path / "ThinkGen"), "--from-code", str(tmp_path / "nowhere")],
                           "no such file or folder"),
                          (["release-settings", str(tmp_path / "elsewhere"), "--from-code", str(tmp_path / "elsewhere")],
                           "model_index.json")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("thinkgen: error:") and message in err[0], err
    with pytest.raises(ValueError, match="not a release's conditioning"):
        read_release_code("thinkgen", tmp_path)
