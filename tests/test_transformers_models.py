"""transformers' own models as first-class as timm's: their layers found by structure (ViT, DeiT,
BERT, RoBERTa, GPT-2, Llama, Mistral, tied embeddings counted once), the callbacks with no
``layers=``, and ``measure checkpoints`` on a Trainer's folder, the model built from its
``config.json`` and each checkpoint loaded the way transformers loads it (tiny models from their
configs: no download)."""

import pytest
import torch

import depthaware as da
from depthaware.measure import from_checkpoints

T = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from depthaware.integrations.transformers import LayerConvergenceCallback  # noqa: E402

SMALL = dict(num_hidden_layers=3, num_attention_heads=2, intermediate_size=64)
TEXT = dict(vocab_size=100, hidden_size=32, max_position_embeddings=64, **SMALL)
IMAGES = dict(hidden_size=32, image_size=16, patch_size=4, num_labels=5, **SMALL)
FAMILIES = {
    "vit": (lambda: T.ViTForImageClassification(T.ViTConfig(**IMAGES)), "Patch Embedding",
            "Encoder"),
    "deit": (lambda: T.DeiTForImageClassification(T.DeiTConfig(**IMAGES)), "Patch Embedding",
             "Encoder"),
    "bert": (lambda: T.BertForSequenceClassification(T.BertConfig(**TEXT)), "Embedding",
             "Encoder"),
    "roberta": (lambda: T.RobertaForSequenceClassification(T.RobertaConfig(**TEXT)), "Embedding",
                "Encoder"),
    "gpt2": (lambda: T.GPT2LMHeadModel(T.GPT2Config(vocab_size=100, n_embd=32, n_layer=3, n_head=2,
                                                     n_positions=64)), "Embedding", "Decoder"),
    "llama": (lambda: T.LlamaForCausalLM(T.LlamaConfig(num_key_value_heads=2, **TEXT)),
              "Embedding", "Decoder"),
    "mistral": (lambda: T.MistralForCausalLM(T.MistralConfig(num_key_value_heads=2, **TEXT)),
                "Embedding", "Decoder"),
}  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_grouped_by_its_structure_every_weight_once(family):
    build, first, kind = FAMILIES[family]
    torch.manual_seed(0)
    model = build()
    layers = da.layer_groups(model)
    assert layers.names == [first, *(f"{kind} Block {k}" for k in (1, 2, 3)), "Head"]
    assert layers.numel() == sum(p.numel() for p in model.parameters())  # tied: counted once
    block = dict(model.named_parameters())
    assert all(n in block for layer in layers for n in layer.param_names)


class Images(torch.utils.data.Dataset):
    def __init__(self, n=32):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 16, 16, generator=g)
        self.y = torch.randint(0, 5, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


class Tokens(Images):
    def __init__(self, n=32):
        self.x = torch.randint(0, 100, (n, 12), generator=torch.Generator().manual_seed(0))

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.x[i]}


@pytest.mark.parametrize("family, data", [("vit", Images), ("gpt2", Tokens)])
def test_a_trainer_run_is_recorded_without_layers_and_its_folder_measured_from_config(
    tmp_path, family, data
):
    torch.manual_seed(0)
    model = FAMILIES[family][0]()
    args = T.TrainingArguments(
        str(tmp_path), num_train_epochs=2, per_device_train_batch_size=8, learning_rate=0.05,
        optim="sgd", lr_scheduler_type="constant", save_strategy="steps", save_steps=2,
        logging_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = T.Trainer(model=model, args=args, train_dataset=data())
    recorded = LayerConvergenceCallback(trainer, every_n_steps=2)  # no layers=: by structure
    trainer.add_callback(recorded)
    trainer.train()
    assert recorded.trajectory.steps == [0, 2, 4, 6, 8]
    measured = from_checkpoints(tmp_path, None, windows=[(2, 4)], progress=False)
    assert measured.steps.tolist() == [2, 4, 6, 8]
    assert measured.layers == recorded.report.layers
    torch.testing.assert_close(
        torch.as_tensor(measured.distances), torch.as_tensor(recorded.report.distances[:, 1:]),
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip
