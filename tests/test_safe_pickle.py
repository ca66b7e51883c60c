"""fusionlib.safe_pickle: whole-model pickles read as data; malicious globals refused, never executed."""

from __future__ import annotations

import os
import pickle
import zipfile

import pytest
import torch
from torch import nn

from fusionlib.safe_pickle import (Placeholder, UnsafePickleError, convert_model_pickle,
                                   convert_rpfnet_pickle,
                                   load_torch_zip, safe_loads)


class TinyNet(nn.Module):
    """A stand-in for an author's model class: nested Sequential, BN buffers, a non-persistent buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.fc = nn.Linear(4, 2)
        self.register_buffer("scratch", torch.ones(3), persistent=False)
        self.register_parameter("unused", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3)))


class _Boom:
    """Pickles as a call of ``func(*args)``: what a malicious checkpoint contains."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _saved_tinynet(path) -> nn.Module:
    torch.manual_seed(0)
    m = TinyNet().train()
    m(torch.rand(2, 1, 6, 6))  # non-trivial running stats and counter
    torch.save(m, path)
    return m


def test_whole_model_pickle_converts_to_its_state_dict(tmp_path):
    m = _saved_tinynet(tmp_path / "model.pth")
    sd = convert_model_pickle(tmp_path / "model.pth", model_modules=(__name__,),
                              expected_root=f"{__name__}.TinyNet")
    ref = m.state_dict()
    assert list(sd) == list(ref)  # same keys, same order; no 'scratch', no 'unused'
    for k, v in ref.items():
        assert sd[k].dtype == v.dtype and sd[k].shape == v.shape and torch.equal(sd[k], v), k
        assert not sd[k].requires_grad
    assert int(sd["body.1.num_batches_tracked"]) == 1
    TinyNet().load_state_dict(sd, strict=True)


def test_model_class_is_refused_unless_named(tmp_path):
    _saved_tinynet(tmp_path / "model.pth")
    with pytest.raises(UnsafePickleError, match=f"refusing global '{__name__}.TinyNet'"):
        load_torch_zip(tmp_path / "model.pth")
    with pytest.raises(UnsafePickleError, match="TinyNet"):
        convert_rpfnet_pickle(tmp_path / "model.pth")  # only 'net.*' classes are allowed there
    with pytest.raises(ValueError, match="expected net.FusionNetwork"):
        convert_model_pickle(tmp_path / "model.pth", model_modules=(__name__,),
                             expected_root="net.FusionNetwork")


def test_placeholders_hold_state_only(tmp_path):
    _saved_tinynet(tmp_path / "model.pth")
    root = load_torch_zip(tmp_path / "model.pth", placeholder_modules=(__name__,))
    assert isinstance(root, Placeholder) and not isinstance(root, nn.Module)
    assert root.qualname == f"{__name__}.TinyNet"
    assert root.state["_modules"]["body"].qualname == "torch.nn.modules.container.Sequential"


def test_cuda_locations_are_read_on_cpu(tmp_path):
    # rewrite the archive so that every storage says 'cuda:0', as in RPFNet's Model.pth
    m = _saved_tinynet(tmp_path / "model.pth")
    src, dst = tmp_path / "model.pth", tmp_path / "model_cuda.pth"
    old, new = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert data.count(old) > 0
                data = data.replace(old, new)
            zout.writestr(info.filename, data)
    sd = convert_model_pickle(dst, model_modules=(__name__,))
    assert all(v.device.type == "cpu" for v in sd.values())
    assert all(torch.equal(sd[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize(("func", "arg", "name"), [
    (os.system, "touch {sentinel}", os.system.__module__ + ".system"),
    (eval, "open({sentinel!r}, 'w').close()", "builtins.eval"),
    (exec, "open({sentinel!r}, 'w').close()", "builtins.exec"),
])
def test_malicious_globals_are_refused_not_run(tmp_path, func, arg, name):
    sentinel = str(tmp_path / "pwned")
    payload = {"weights": torch.zeros(2), "x": _Boom(func, arg.format(sentinel=sentinel))}
    with pytest.raises(UnsafePickleError, match=f"refusing global '{name}'"):
        safe_loads(pickle.dumps(_Boom(func, arg.format(sentinel=sentinel)), protocol=2))
    torch.save(payload, tmp_path / "evil.pth")  # pickling does not run the payload
    with pytest.raises(UnsafePickleError, match=f"refusing global '{name}'"):
        load_torch_zip(tmp_path / "evil.pth", placeholder_modules=("net",))
    assert not os.path.exists(sentinel)


def test_plain_containers_and_state_dicts_load(tmp_path):
    sd = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3)[:, 1:], "n": torch.tensor(3)}
    torch.save(sd, tmp_path / "sd.pt")
    got = load_torch_zip(tmp_path / "sd.pt")
    assert torch.equal(got["a"], sd["a"]) and got["n"].dtype == torch.int64
    assert safe_loads(pickle.dumps({"k": (1, 2.0, "s", None, {3}, frozenset({4}))}))["k"][4] == {3}


def test_bad_files_have_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_torch_zip(tmp_path / "nope.pth")
    (tmp_path / "legacy.pth").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a torch.save zip archive"):
        load_torch_zip(tmp_path / "legacy.pth")
    with pytest.raises(UnsafePickleError, match="persistent id"):
        safe_loads(b"\x80\x02X\x01\x00\x00\x00aQ.")  # BINPERSID on a plain pickle
