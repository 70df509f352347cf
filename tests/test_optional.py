"""Optional dependencies: a missing extra is a one-line error naming the extra, exit status 2."""

from __future__ import annotations

import sys

import pytest
import torch

from bas._optional import MissingExtraError, optional, require
from bas.checkpoints import save_model
from bas.cli import main
from bas.errors import BASError
from bas.models.registry import build_model


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(MissingExtraError) as info:
        require("onnx", "export", "ONNX export")
    assert isinstance(info.value, BASError)
    assert str(info.value) == (
        "ONNX export needs the 'export' extra (onnx is not installed): pip install \"bas-wsol[export]\""
    )
    assert optional("onnx") is None


def test_require_returns_the_installed_module():
    assert require("json", "none", "reading JSON") is sys.modules["json"]
    assert optional("json") is sys.modules["json"]


def test_missing_extra_on_the_command_line(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    checkpoint = tmp_path / "model.safetensors"
    save_model(checkpoint, build_model("mobilenet_v1", 3, hidden=16).eval())
    out = tmp_path / "model.onnx"
    monkeypatch.setitem(sys.modules, "onnx", None)

    status = main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", str(out)])

    err = capsys.readouterr().err
    assert status == 2
    assert err == (
        "error: ONNX export needs the 'export' extra (onnx is not installed): "
        'pip install "bas-wsol[export]"\n'
    )
    assert list(tmp_path.iterdir()) == [checkpoint], "nothing half-written"
