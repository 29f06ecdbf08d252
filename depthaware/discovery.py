"""What ``layer_groups`` knows of architectures: the layers of ResNets (torchvision's, timm's),
VGGs, ViTs, any timm model with a ``group_matcher()``, Hugging Face transformers' models (ViT,
DeiT, BERT, RoBERTa, GPT-2, Llama, Mistral and the like: by their stack of blocks) and
``nn.Sequential``, shallowest first.

:func:`discover` returns a spec, ``[(layer name, (parameter-name prefixes or globs, ...)), ...]``,
which :func:`~depthaware.layers.layer_groups` turns into a ``LayerGroups``.
"""

from __future__ import annotations

from torch import nn

__all__ = ["discover"]

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def discover(model: nn.Module, granularity: str) -> list[tuple[str, tuple[str, ...]]]:
    """The layer spec of ``model`` (``granularity``: ``"coarse"`` or ``"fine"``), or a
    ``ValueError`` that says how to group a model nothing is known about."""
    import torchvision.models as tvm
    from timm.models.resnet import ResNet as TimmResNet
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, (tvm.ResNet, TimmResNet)):
        return _resnet_spec(model, granularity)
    if isinstance(model, tvm.VGG):
        return _vgg_spec(model)
    if isinstance(model, VisionTransformer):
        return _vit_spec(model)
    if hasattr(model, "group_matcher"):
        return _timm_spec(model, granularity)
    if type(model).__module__.startswith("transformers."):
        return _transformers_spec(model)
    if isinstance(model, nn.Sequential):
        return _sequential_spec(model)
    raise ValueError(
        f"don't know the layers of {type(model).__name__}: pass groups={{name: prefix, ...}} "
        "(module-name prefixes or globs), or give the model a layer_map() method"
    )


def _resnet_spec(model, granularity):
    spec = [("stem", ("conv1", "bn1"))]
    for s in range(1, 5):
        stage = getattr(model, f"layer{s}")
        if granularity == "coarse":
            spec.append((f"stage{s}", (f"layer{s}",)))
        else:
            spec += [(f"layer{s}.{b}", (f"layer{s}.{b}",)) for b in range(len(stage))]
    spec.append(("fc", ("fc",)))
    return spec


#: transformers' model types whose blocks decode (a causal language model's)
_DECODERS = {"gpt2", "llama", "mistral", "gpt_neo", "gptj", "gpt_neox", "opt", "qwen2", "gemma",
             "phi", "falcon"}  # fmt: skip


def _transformers_spec(model):
    """A transformers model by its structure: its stack of blocks (the ``nn.ModuleList`` of one
    block type holding the most parameters: ``vit.layers``, ``bert.encoder.layer``,
    ``transformer.h``, ``model.layers``), each block a layer; every parameter before it (the
    token or patch embedding, position embeddings, class token) the first layer, every one after
    it (final norm, pooler, classifier or language-model head) the last. A head tied to the
    embedding (GPT-2's ``lm_head``) is the embedding's parameter, counted there once."""
    stacks = [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m) > 1 and len({type(b) for b in m}) == 1
    ]
    if not stacks:
        raise ValueError(
            f"don't know the layers of {type(model).__name__}: it has no stack of blocks (an "
            "nn.ModuleList of one block type); pass groups={name: prefix, ...}"
        )
    path, blocks = max(stacks, key=lambda s: sum(p.numel() for p in s[1].parameters()))
    names = [n for n, _ in model.named_parameters()]
    inside = [i for i, n in enumerate(names) if n.startswith(path + ".")]
    before, after = names[: inside[0]], names[inside[-1] + 1 :]
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    kind = "Decoder" if model_type in _DECODERS or hasattr(model, "lm_head") else "Encoder"
    first = "Patch Embedding" if any("patch" in n for n in before) else "Embedding"
    spec = [(first, tuple(before))] if before else []
    spec += [(f"{kind} Block {k + 1}", (f"{path}.{k}",)) for k in range(len(blocks))]
    return spec + ([("Head", tuple(after))] if after else [])


def _vgg_spec(model):
    """VGG: each conv and linear is a layer (``layer1``..); a BatchNorm joins the conv before it."""
    return [
        (f"layer{i + 1}", prefixes)
        for i, prefixes in enumerate(_chain_prefixes(model.named_modules()))
    ]


def _sequential_spec(model: nn.Sequential):
    named = [(n, m) for n, m in model.named_children()]
    return [(p[0], p) for p in _chain_prefixes(named, leaves_only=False)]


def _chain_prefixes(named_modules, leaves_only: bool = True) -> list[tuple[str, ...]]:
    """Group modules that own parameters; a normalization module joins the group before it."""
    groups: list[list[str]] = []
    for name, mod in named_modules:
        if leaves_only and any(True for _ in mod.children()):
            continue
        if not any(True for _ in mod.parameters(recurse=not leaves_only)):
            continue
        if isinstance(mod, _NORM_TYPES) and groups:
            groups[-1].append(name)
        else:
            groups.append([name])
    return [tuple(g) for g in groups]


def _timm_spec(model, granularity):
    from timm.models import group_parameters

    matcher = model.group_matcher(coarse=granularity == "coarse")
    grouped = group_parameters(model, matcher)
    spec, seen = [], set()
    for lid in sorted(grouped):
        pnames = grouped[lid]
        name = _group_name(pnames, first=lid == min(grouped))
        base, k = name, 1
        while name in seen:
            k += 1
            name = f"{base}_{k}"
        seen.add(name)
        spec.append((name, tuple(pnames)))
    return spec


def _vit_spec(model):
    """timm's coarse ViT groups (tokens and patch embedding; each block, the final norm joining
    the last; the head) under the paper's names."""
    spec = _timm_spec(model, "coarse")
    names = []
    for k, (name, _) in enumerate(spec):
        if k == 0:
            names.append("Patch Embedding")
        elif name.startswith("blocks."):
            names.append(f"Encoder Block {int(name.split('.')[1]) + 1}")
        else:
            names.append("Head" if k == len(spec) - 1 else name)
    return [(n, params) for n, (_, params) in zip(names, spec)]


def _group_name(pnames: list[str], first: bool) -> str:
    """A readable name for a timm parameter group: the common dotted prefix of its members."""
    split = [n.split(".") for n in pnames]
    if len({s[0] for s in split}) > 1:
        if first:
            return "stem"
        split = [s for s in split if s[0] == split[0][0]]  # e.g. last block + final norm
    common = []
    for parts in zip(*[s[:-1] if len(split) > 1 else s for s in split], strict=False):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    return ".".join(common) or pnames[0]
