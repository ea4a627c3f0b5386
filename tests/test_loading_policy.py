"""What loading will and will not do: only listed classes, only safetensors weights."""

import json
import pickle

import pytest

from thinkgen import PipelineLoadError, ThinkGenPipeline


@pytest.fixture(scope="module")
def saved(tmp_path_factory, request):
    from thinkgen import tiny_pipeline

    folder = tmp_path_factory.mktemp("pipe")
    tiny_pipeline(seed=0).save_pretrained(folder)
    return folder


def with_index(folder, tmp_path, **changes):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    index = json.loads((copy / "model_index.json").read_text())
    index.update(changes)
    (copy / "model_index.json").write_text(json.dumps(index))
    return copy


@pytest.mark.parametrize("entry", [["torch", "load"], ["transformers", "pipeline"], ["thinkgen", "cli"],
                                   ["diffusers", "DiffusionPipeline"], ["os", "system"],
                                   ["ThinkGen.models.evil", "Popen"]])
def test_only_listed_classes_resolve(saved, tmp_path, entry):
    with pytest.raises(PipelineLoadError, match="unsupported class for transformer"):
        ThinkGenPipeline.from_pretrained(with_index(saved, tmp_path, transformer=entry))


class Marker:
    """Unpickling this writes a file: proof that a pickle ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_weights_are_refused_unopened(saved, tmp_path):
    copy = with_index(saved, tmp_path)
    marker = tmp_path / "ran"
    for file in (copy / "transformer").glob("*.safetensors"):
        file.unlink()
    (copy / "transformer" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(Marker(str(marker))))
    with pytest.raises(PipelineLoadError, match="pickle weights only .*safetensors only"):
        ThinkGenPipeline.from_pretrained(copy)
    assert not marker.exists()
