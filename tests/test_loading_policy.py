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


def test_loaded_weights_are_aligned_and_draw_as_saved(saved):
    """Weights land in 64-byte-aligned memory (the loader may leave them inside its read buffer,
    where CPU matmuls sum in another order), so a loaded pipeline draws bit for bit as the saved one."""
    import torch

    from thinkgen import tiny_pipeline
    from thinkgen.loading import realign

    loaded = ThinkGenPipeline.from_pretrained(saved)
    for module in (loaded.thinker.model, loaded.bridge, loaded.transformer, loaded.vae):
        assert all(p.data_ptr() % 64 == 0 for p in module.parameters())
    options = {"num_inference_steps": 2, "output_type": "pt", "seed": 1}
    assert torch.equal(loaded(["a red circle"], **options).images, tiny_pipeline(seed=0)(["a red circle"], **options).images)
    misaligned = torch.nn.Linear(4, 4)
    buffer = torch.zeros(4 * 4 + 4 + 6)  # a weight 24 bytes into a buffer
    misaligned.weight.data = buffer[6:22].view(4, 4)
    assert misaligned.weight.data_ptr() % 64
    realign(misaligned)
    assert misaligned.weight.data_ptr() % 64 == 0 and torch.equal(misaligned.weight, torch.zeros(4, 4))
