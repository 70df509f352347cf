"""BAS loss terms on hand-built outputs, for both variants."""

import math

import pytest
import torch
import torch.nn.functional as F

from bas.losses import bas_loss, bas_term, loss_spec, training_loss
from bas.models.bas import BASOutput


def _output(fg_score, bg_score, fg_map=None):
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    fg_logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    if fg_map is None:
        fg_map = torch.zeros(2, 1, 2, 2)
        fg_map[0, 0, 0, 0] = 1.0  # area 0.25
        fg_map[1] = 0.5  # area 0.5
    return BASOutput(
        logits=logits,
        fg_logits=fg_logits,
        fg_map=fg_map,
        fg_score=torch.tensor(fg_score),
        bg_score=torch.tensor(bg_score),
    )


def test_terms_and_total_ijcv_resnet():
    labels = torch.tensor([0, 2])
    out = _output([4.0, 2.0], [1.0, -3.0])
    total, terms = bas_loss(out, labels, alpha=0.5, beta=1.5, variant="ijcv2023", arch="resnet50")
    ce = F.cross_entropy(out.logits, labels)
    fg_ce = F.cross_entropy(out.fg_logits, labels)
    # ijcv: relu on both; sample 0: 1 / 4; sample 1: relu(-3) = 0 -> 0 / 2
    assert terms["bas"].item() == pytest.approx((0.25 + 0.0) / 2, rel=1e-6)
    assert terms["area"].item() == pytest.approx((0.25 + 0.5) / 2)
    assert terms["cls"].item() == pytest.approx(ce.item())
    assert terms["fg_cls"].item() == pytest.approx(fg_ce.item())
    expected = ce + 0.5 * fg_ce + terms["bas"] + 1.5 * terms["area"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(
    "variant,arch,s,s_bg,expected",
    [
        ("ijcv2023", "resnet50", 2.0, 3.0, 1.0),  # S_bg > S -> 1
        ("ijcv2023", "vgg16", 2.0, 3.0, 0.0),  # VGG16 clips to 0
        ("ijcv2023", "resnet50", 2.0, 2.0, 1.0),  # equal: ratio 2 / (2 + eps), not clipped
        ("cvpr2022", "resnet50", 2.0, 3.0, 0.0),  # CVPR: 0
        ("cvpr2022", "resnet50", 2.0, 2.0, 0.0),  # CVPR condition is >=
        ("cvpr2022", "resnet50", -2.0, -3.0, -3.0 / (-2.0 + 1e-8)),  # no ReLU: negative scores kept
        ("ijcv2023", "resnet50", -2.0, -3.0, 0.0),  # ReLU: 0 / (0 + eps) = 0
    ],
)
def test_clip_table(variant, arch, s, s_bg, expected):
    value = bas_term(torch.tensor([s]), torch.tensor([s_bg]), loss_spec(variant, arch)).item()
    assert value == pytest.approx(expected, rel=1e-5)


def test_fg_score_is_treated_as_constant():
    s = torch.tensor([2.0], requires_grad=True)
    s_bg = torch.tensor([1.0], requires_grad=True)
    bas_term(s, s_bg, loss_spec("ijcv2023", "resnet50")).sum().backward()
    assert s.grad is None
    assert s_bg.grad.item() == pytest.approx(0.5)


def test_needs_training_output():
    out = _output([1.0, 1.0], [0.0, 0.0])
    out.bg_score = None
    with pytest.raises(ValueError, match="training-mode output"):
        bas_loss(out, torch.tensor([0, 1]), 0.5, 1.0)


def test_unknown_variant_and_method():
    with pytest.raises(ValueError, match="unknown variant"):
        loss_spec("eccv")
    with pytest.raises(ValueError, match="unknown method"):
        training_loss("grad-cam", _output([1.0, 1.0], [0.0, 0.0]), torch.tensor([0, 1]))


def test_cam_loss_is_cross_entropy():
    out = _output([1.0, 1.0], [0.0, 0.0])
    total, terms = training_loss("cam", out, torch.tensor([0, 1]))
    assert math.isclose(total.item(), F.cross_entropy(out.logits, torch.tensor([0, 1])).item(), rel_tol=1e-6)
    assert set(terms) == {"cls"}


def test_losses_are_computed_in_float32_from_half_precision_outputs():
    """Autocast outputs: the terms come out in float32 and the ratio's epsilon survives (0 / eps = 0)."""
    half = torch.float16
    out = BASOutput(
        logits=torch.tensor([[2.0, -1.0]], dtype=half),
        fg_logits=torch.tensor([[1.0, 0.0]], dtype=half),
        fg_map=torch.full((1, 1, 2, 2), 0.25, dtype=half),
        fg_score=torch.zeros(1, dtype=half),
        bg_score=torch.zeros(1, dtype=half),
        feature_map=torch.zeros(1, 2, 2, 2, dtype=half),
    )
    total, terms = bas_loss(out, torch.tensor([0]), alpha=0.5, beta=1.0)
    assert {t.dtype for t in (total, *terms.values())} == {torch.float32}
    assert terms["bas"].item() == 0.0  # in float16, 0 / (0 + 1e-8) would be 0 / 0
    cam_total, _ = training_loss("cam", out, torch.tensor([0]))
    assert cam_total.dtype == torch.float32
