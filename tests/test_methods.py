"""The method seam (bas.methods), the backbone families, the typed metadata and the module graph."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bas
from bas import methods
from bas.checkpoints import load_checkpoint, read_checkpoint_metadata, save_model
from bas.config import load_config
from bas.engine.optim import parameter_groups
from bas.engine.train import FINAL, LAST, Trainer
from bas.methods.base import BASOutput, Method, WSOLModel
from bas.models import ModelMeta, get_spec, list_models
from bas.models.backbones import Backbone
from bas.models.registry import Family

SRC = Path(__file__).resolve().parents[1] / "src" / "bas"


# -------------------------------------------------------------------------------- registry


def test_list_and_get_methods():
    assert {"adl", "bas", "cam", "has", "multilabel_bas", "multilabel_cam"} <= set(bas.list_methods())
    assert bas.list_methods() == sorted(bas.list_methods())
    assert methods.get_method("cam").name == "cam"
    with pytest.raises(
        ValueError, match="unknown method 'toy'; expected one of adl, bas, cam, deeplabv3, has"
    ):
        methods.get_method("toy")


@pytest.mark.parametrize("name", ["bas", "cam", "has", "adl"])
def test_each_method_declares_its_seam(name):
    method = methods.get_method(name)
    assert method.label_type in ("single", "multi_hot")
    assert method.localization_map in {f for f in BASOutput.__dataclass_fields__}
    assert method.new_layers and all(p.endswith(".") for p in method.new_layers)
    model = bas.build_model("resnet18", 3, method=name, hidden=8).train()
    assert methods.method_of(model) is method and model.meta.method == name
    # the loss terms it declares are the ones its loss returns, in float32
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 2])
    cfg = load_config(None, [f"method={name}", "model.arch=resnet18"])
    total, terms = method.loss(model(x, y), y, cfg)
    assert tuple(terms) == method.loss_terms and total.dtype == torch.float32
    # every parameter the method adds is a new layer of the optimiser, the backbone is not
    new = {n for n, _ in model.named_parameters() if not n.startswith(("mid.", "head."))}
    groups = {g["name"]: {id(p) for p in g["params"]} for g in parameter_groups(model, 0.1)}
    params = dict(model.named_parameters())
    assert {id(params[n]) for n in new} == groups["new_weight"] | groups["new_bias"]
    # its config keys exist in the defaults
    defaults = load_config(None, [])
    for key in method.config_defaults:
        section, leaf = key.split(".")
        assert leaf in defaults[section], key


def test_build_model_keeps_its_old_signature():
    model = bas.build_model("resnet18", num_classes=4, variant="cvpr2022", pretrained=False, hidden=8)
    assert isinstance(model.classifier[-1], nn.ReLU) and model.meta.variant == "cvpr2022"
    cam = bas.build_model("resnet18", 4, method="cam")
    assert cam.meta.hidden == 0 and cam.meta.method == "cam"
    with pytest.raises(TypeError, match="method 'cam' takes no option variant"):
        bas.build_model("resnet18", 4, method="cam", variant="cvpr2022")


def test_new_layers_are_initialised_once_by_the_family_rule():
    vgg = bas.build_model("vgg16", 3, hidden=8)
    assert float(vgg.generator[0].weight.detach().std()) == pytest.approx(0.02, rel=0.2)  # normal(0, 0.02)
    cam = bas.build_model("resnet18", 3, method="cam", hidden=8)
    bound = (6 / (cam.fc.in_features + cam.fc.out_features)) ** 0.5  # xavier uniform
    assert float(cam.fc.weight.detach().abs().max()) <= bound and torch.count_nonzero(cam.fc.bias) == 0


# ------------------------------------------------------------------- a method in one module


class ToyModel(WSOLModel):
    """GAP + linear on the head, the map of the chosen class from a 1x1 conv on ``mid``."""

    method = "toy"
    new_layers = ("fc.", "locator.")

    def __init__(self, backbone: Backbone, meta: ModelMeta, *, init: str, min_input_size: int):
        super().__init__(backbone, meta, min_input_size=min_input_size)
        self.fc = nn.Linear(backbone.out_channels, meta.num_classes)
        self.locator = nn.Conv2d(backbone.mid_channels, meta.num_classes, 1)
        self.init_new_layers(init)

    def forward(self, images, labels=None, top_k=1):
        self._check_inputs(images, labels, top_k)
        feat = self.mid(images)
        logits = self.fc(self.pool(self.head(feat)))
        fg_map = self.select_maps(torch.sigmoid(self.locator(feat)), logits, labels, top_k)
        return BASOutput(logits=logits, fg_logits=logits, fg_map=fg_map)


class Toy(Method):
    name = "toy"
    model_class = ToyModel
    loss_terms = ("cls",)
    config_defaults = {"loss.toy_smoothing": 0.0}

    def build(self, backbone, meta, *, init, min_input_size):
        return ToyModel(backbone, meta, init=init, min_input_size=min_input_size)

    def infer_options(self, state_dict):
        return {"num_classes": int(state_dict["fc.weight"].shape[0])}

    def loss(self, output, labels, cfg):
        cls = F.cross_entropy(output.logits.float(), labels, label_smoothing=cfg["loss"]["toy_smoothing"])
        return cls, {"cls": cls}


@pytest.fixture
def toy_method():
    methods.register(Toy)
    yield methods.get_method("toy")
    del methods._REGISTRY["toy"]


def test_a_new_method_needs_nothing_but_its_module(toy_method, tmp_path):
    """Registered from outside the package, the toy method trains, saves, loads and exports."""
    cfg = load_config(
        "demo",
        [
            "method=toy",
            f"data.root={tmp_path / 'data'}",
            f"train.output_dir={tmp_path / 'run'}",
            "model.arch=resnet18",
            "data.synthetic.images_per_class=6",
            "data.synthetic.image_size=64",
            "data.input_size=48",
            "data.resize_size=56",
            "data.batch_size=4",
            "data.options.val_per_class=1",
            "data.workers=0",
            "optim.epochs=1",
            "train.max_steps=1",
            "eval.every=0",
            "loss.toy_smoothing=0.1",  # the method's own config key, declared in its module only
        ],
    )
    trainer = Trainer(cfg, progress=False, device="cpu")
    assert isinstance(trainer.model, ToyModel)
    groups = {g["name"]: len(g["params"]) for g in trainer.optimizer.param_groups}
    assert (groups["new_weight"], groups["new_bias"]) == (2, 2)
    before = trainer.model.fc.weight.clone()
    trainer.fit()
    assert not torch.equal(before, trainer.model.fc.weight)
    for name in (FINAL, LAST):
        loaded = load_checkpoint(tmp_path / "run" / name)
        assert isinstance(loaded, ToyModel) and loaded.meta.method == "toy"
        assert (loaded.meta.input_size, loaded.meta.resize_size) == (48, 56)
        assert torch.equal(loaded.fc.weight, trainer.model.fc.weight)

    from bas.export import export_model

    path = export_model(loaded, tmp_path / "toy.pt", "torchscript", top_k=1, input_size=48)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        logits, maps = torch.jit.load(str(path))(torch.randn(2, 3, 48, 48))
    assert logits.shape == (2, loaded.num_classes) and maps.shape == (2, 48, 48)


# ---------------------------------------------------------------------------------- families


def test_every_architecture_belongs_to_a_family_with_input_conventions():
    families = {get_spec(arch).family.name for arch in list_models()}
    assert families == {"vgg", "resnet", "mobilenet_v1", "inception_v3", "resnet_os16", "vit"}
    for arch in list_models():
        family = get_spec(arch).family
        assert isinstance(family, Family) and callable(family.load_pretrained)
        assert len(family.mean) == len(family.std) == 3 and family.input_size <= family.resize_size


def test_family_conventions_reach_the_metadata(monkeypatch):
    spec = get_spec("resnet18")
    custom = Family("custom", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=96, resize_size=112)
    monkeypatch.setitem(
        bas.models.registry._REGISTRY, "resnet18", type(spec)(**{**spec.__dict__, "family": custom})
    )
    meta = bas.build_model("resnet18", 3, hidden=8).meta
    assert (meta.mean, meta.std, meta.input_size, meta.resize_size) == ((0.5,) * 3, (0.25,) * 3, 96, 112)


def test_pretrained_goes_through_the_family_loader(monkeypatch):
    seen = []
    spec = get_spec("resnet18")
    family = Family("recording", load_pretrained=lambda model, path: seen.append((model.arch, path)))
    monkeypatch.setitem(
        bas.models.registry._REGISTRY, "resnet18", type(spec)(**{**spec.__dict__, "family": family})
    )
    bas.build_model("resnet18", 3, hidden=8, pretrained="weights.pth")
    bas.build_model("resnet18", 3, method="cam", pretrained=True)
    assert seen == [("resnet18", "weights.pth"), ("resnet18", None)]


# ---------------------------------------------------------------------------------- metadata


def test_model_meta_is_typed_and_round_trips(tmp_path):
    model = bas.build_model("resnet18", 3, hidden=8)
    assert isinstance(model.meta, ModelMeta) and model.meta.threshold is None
    model.meta = model.meta.replace(class_names=["a", "b", "c"], threshold=0.3, input_size=64, resize_size=72)
    document = save_model(tmp_path / "m.safetensors", model)
    assert document == read_checkpoint_metadata(tmp_path / "m.safetensors")
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.meta == ModelMeta(**{k: v for k, v in document.items() if k in ModelMeta.keys()})
    assert (loaded.arch, loaded.class_names, loaded.default_threshold) == ("resnet18", ["a", "b", "c"], 0.3)
    assert loaded.meta.top_k == 1  # the fallback default, filled in when saved
    with pytest.raises(AttributeError):
        loaded.arch = "resnet50"  # read from the metadata, not an attribute set from outside
    with pytest.raises(ValueError, match="2 class names given for a model of 3 classes"):
        model.meta.replace(class_names=["a", "b"])


# ------------------------------------------------------------------------------ the code base


def _python_files(root: Path):
    return sorted(p for p in root.rglob("*.py") if "methods" not in p.relative_to(SRC).parts[:1])


BRANCH = re.compile(
    r"""(==|!=)\s*["'](bas|cam)["']|["'](bas|cam)["']\s*(==|!=)|in\s*\(\s*["'](bas|cam)["']"""
    r"""|isinstance\([^)]*\b(BASModel|CAMModel)\b|\bMETHODS\b"""
)


def test_no_method_is_chosen_outside_bas_methods():
    """The seam is the only way a method is chosen: no method-name or model-class test elsewhere."""
    found = [
        f"{path.relative_to(SRC)}:{i}: {line.strip()}"
        for path in _python_files(SRC)
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if BRANCH.search(line)
    ]
    assert found == []


def _imports(path: Path, module: str, *, top_level: bool) -> set[str]:
    """bas modules ``path`` imports, with their parent packages: at import time only (module
    level, not under ``TYPE_CHECKING``) or anywhere (function bodies too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if top_level:
        nodes = [
            n for n in tree.body if not (isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))
        ]
        nodes = [
            sub for n in nodes for sub in ast.walk(n) if not isinstance(n, ast.FunctionDef | ast.ClassDef)
        ]
    else:
        nodes = list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                base = ".".join(module.split(".")[: -node.level] + [node.module])
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("bas."):
                parts = name.split(".")
                out.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    return out


def test_models_methods_and_checkpoints_import_no_cycle():
    """The old cycle (checkpoints <-> models) is gone: the models and methods read no checkpoint
    reader, not even inside a function, and no import-time cycle joins the three packages."""
    packages = ("bas.models", "bas.methods", "bas.checkpoints")
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = ["bas", *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    mine = {name: path for name, path in modules.items() if name.startswith(packages)}
    for name, path in mine.items():
        if not name.startswith(("bas.models", "bas.methods")):
            continue
        for used in _imports(path, name, top_level=False):
            if used.startswith("bas.checkpoints") and used in modules:
                back = _imports(modules[used], used, top_level=False)
                assert not any(m.startswith(("bas.models", "bas.methods")) for m in back), (name, used)
    # a module's own parent packages are already being imported when it runs: no edge
    graph = {
        name: {
            m
            for m in _imports(path, name, top_level=True)
            if m in modules and not (name + ".").startswith(m + ".")
        }
        for name, path in mine.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, dep]))
            if dep in graph and not state.get(dep):
                visit(dep, [*trail, node])
        state[node] = 2

    for node in graph:
        if not state.get(node):
            visit(node, [])
