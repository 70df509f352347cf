"""Model geometry, forward contract, gradient routing and input validation."""

import pytest
import torch

import bas
from bas.models import BASModel

PAPER = ["vgg16", "resnet50", "mobilenet_v1", "inception_v3"]


@pytest.mark.parametrize("arch", PAPER)
def test_paper_backbones_keep_28_and_14(arch):
    model = bas.build_model(arch, 5, hidden=16).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        feat = model.mid(x)
        out = model(x)
    assert feat.shape[-2:] == (28, 28)
    assert out.feature_map.shape == (1, 5, 14, 14)
    assert out.logits.shape == (1, 5) and out.fg_logits.shape == (1, 5)
    assert out.fg_map.shape == (1, 1, 28, 28)
    assert 0.0 <= float(out.fg_map.min()) and float(out.fg_map.max()) <= 1.0
    assert out.fg_score is None and out.bg_score is None


@pytest.mark.parametrize("arch,mid_ch", [("resnet18", 256), ("resnet34", 256)])
def test_generic_resnet_split(arch, mid_ch):
    model = bas.build_model(arch, 3, hidden=16).train()
    assert model.generator[0].in_channels == mid_ch
    x = torch.randn(2, 3, 64, 64)
    out = model(x, torch.tensor([0, 2]))
    assert out.fg_map.shape == (2, 1, 8, 8)
    assert out.fg_score.shape == (2,) and out.bg_score.shape == (2,)


def test_list_models_and_unknown_arch():
    names = bas.list_models()
    for arch in PAPER + ["resnet18", "resnet34"]:
        assert arch in names
    with pytest.raises(ValueError, match="valid names: .*resnet50"):
        bas.build_model("resnet5", 3)


def test_parameter_names_follow_the_authors():
    names = set(bas.build_model("vgg16", 3, hidden=8).state_dict())
    assert {"mid.conv4_3.weight", "head.conv5_3.bias", "classifier.4.weight", "generator.0.weight"} <= names
    names = set(bas.build_model("mobilenet_v1", 3, hidden=8).state_dict())
    assert "mid.model.11.3.weight" in names and "head.model.12.0.weight" in names
    names = set(bas.build_model("inception_v3", 3, hidden=8).state_dict())
    assert (
        "mid.Mixed_6e.branch_pool.conv.weight" in names and "head.Mixed_7c.branch1x1.bn.running_var" in names
    )


def test_cvpr_variant_adds_final_relu():
    assert isinstance(
        bas.build_model("resnet18", 3, variant="cvpr2022", hidden=8).classifier[-1], torch.nn.ReLU
    )
    assert isinstance(bas.build_model("resnet18", 3, hidden=8).classifier[-1], torch.nn.Conv2d)
    with pytest.raises(ValueError, match="unknown variant"):
        bas.build_model("resnet18", 3, variant="iccv")


def test_top_k_fusion_selects_and_averages_channels():
    maps = torch.arange(4 * 2 * 2, dtype=torch.float32).view(1, 4, 2, 2).repeat(2, 1, 1, 1)
    logits = torch.tensor([[0.1, 0.9, 0.5, 0.0], [3.0, 2.0, 1.0, 0.0]])
    # top_k = 1 with labels: the label's channel, whatever the scores
    fused = BASModel.select_maps(maps, logits, torch.tensor([3, 0]), 1)
    assert torch.equal(fused[0, 0], maps[0, 3]) and torch.equal(fused[1, 0], maps[1, 0])
    # top_k = 2: the mean of the two best-scoring classes (1 and 2 for the first image, 0 and 1 for the second)
    fused = BASModel.select_maps(maps, logits, torch.tensor([3, 0]), 2)
    assert torch.allclose(fused[0, 0], (maps[0, 1] + maps[0, 2]) / 2)
    assert torch.allclose(fused[1, 0], (maps[1, 0] + maps[1, 1]) / 2)
    # no labels, top_k = 1: the predicted class
    fused = BASModel.select_maps(maps, logits, None, 1)
    assert torch.equal(fused[0, 0], maps[0, 1])


def test_forward_without_python_loop_over_batch_matches_per_sample():
    model = bas.build_model("resnet18", 4, hidden=8).eval()
    x = torch.randn(3, 3, 64, 64)
    y = torch.tensor([0, 3, 1])
    with torch.no_grad():
        batched = model(x, y)
        single = [model(x[i : i + 1], y[i : i + 1]) for i in range(3)]
    assert torch.allclose(batched.fg_map, torch.cat([s.fg_map for s in single]), atol=1e-5)
    assert torch.allclose(batched.fg_logits, torch.cat([s.fg_logits for s in single]), atol=1e-5)


def _bas_term(out):
    return (out.bg_score / (out.fg_score + 1e-8)).mean()


def test_bas_term_gradient_reaches_generator_only():
    model = bas.build_model("resnet18", 3, hidden=8).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x, torch.tensor([1, 2]))
    _bas_term(out).backward()
    for name, p in model.named_parameters():
        if name.startswith(("head.", "classifier.")):
            assert p.grad is None or torch.count_nonzero(p.grad) == 0, name
    assert torch.count_nonzero(model.generator[0].weight.grad) > 0


def test_erase_branch_sends_no_gradient_to_the_features_it_erases():
    """S_bg depends on F only through M: with M held fixed, d S_bg / d F is zero."""
    model = bas.build_model("resnet18", 3, hidden=8).train()
    feat = torch.randn(2, 256, 8, 8, requires_grad=True)
    fg_map = torch.rand(2, 1, 8, 8, requires_grad=True)
    model.background_logits(feat, fg_map).sum().backward()
    assert feat.grad is None
    assert torch.count_nonzero(fg_map.grad) > 0
    assert all(p.grad is None for p in model.parameters())


def test_erase_branch_leaves_batchnorm_running_stats_alone():
    model = bas.build_model("resnet18", 3, hidden=8).train()
    feat = torch.randn(2, 256, 8, 8)
    before = {k: v.clone() for k, v in model.head.state_dict().items()}
    model.background_logits(feat, torch.rand(2, 1, 8, 8))
    after = model.head.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_main_branch_gradients_reach_everything():
    model = bas.build_model("resnet18", 3, hidden=8).train()
    out = model(torch.randn(2, 3, 64, 64), torch.tensor([0, 1]))
    (out.logits.sum() + out.fg_map.sum()).backward()
    assert model.mid.conv1.weight.grad is not None and model.head.layer4[0].conv1.weight.grad is not None


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.randn(3, 64, 64), "must be a \\(B, 3, H, W\\) tensor"),
        (torch.randn(1, 1, 64, 64), "3 channels"),
        (torch.randn(1, 3, 16, 16), "at least 32x32"),
    ],
)
def test_bad_images_are_refused(bad, match):
    model = bas.build_model("resnet18", 3, hidden=8)
    with pytest.raises(ValueError, match=match):
        model(bad)


def test_bad_labels_are_refused():
    model = bas.build_model("resnet18", 3, hidden=8)
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        model(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="shape"):
        model(x, torch.tensor([0]))
    with pytest.raises(ValueError, match="integer"):
        model(x, torch.tensor([0.0, 1.0]))


def test_public_api_names():
    import bas.checkpoints
    import bas.predict

    assert bas.load_checkpoint is bas.checkpoints.load_checkpoint
    assert bas.save_model is bas.checkpoints.save_model
    assert bas.Localizer is bas.predict.Localizer
