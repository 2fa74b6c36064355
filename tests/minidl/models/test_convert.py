"""minidl.convert: torchvision <-> minidl names, loading .npz/.safetensors/mappings with every
key and shape checked, and the ``python -m minidl.convert`` command line."""
import numpy as np
import pytest

import minidl
from minidl.convert import (check_state, load_weights, main, minidl_to_torchvision,
                            read_weights, torchvision_to_minidl, write_weights)
from minidl.models import resnet8


def tv_state():
    return {"conv1.weight": np.ones((4, 3, 3, 3), np.float32),
            "bn1.weight": np.ones(4), "bn1.bias": np.zeros(4),
            "bn1.running_mean": np.zeros(4), "bn1.running_var": np.ones(4),
            "bn1.num_batches_tracked": np.array(3),
            "fc.weight": np.ones((2, 4)), "fc.bias": np.zeros(2)}


def test_torchvision_names_map_to_minidl_and_back():
    ours = torchvision_to_minidl(tv_state())
    assert list(ours) == ["conv1.W", "bn1.gamma", "bn1.beta", "bn1.running_mean",
                          "bn1.running_var", "fc.W", "fc.b"]
    back = minidl_to_torchvision(ours)
    assert set(back) == set(tv_state())
    assert back["bn1.num_batches_tracked"].dtype == np.int64
    with pytest.raises(ValueError, match=r"unexpected torchvision key 'fc.scale'"):
        torchvision_to_minidl({"fc.weight": np.ones(2), "fc.scale": np.ones(2)})


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("naming", ["minidl", "torchvision"])
def test_files_in_either_naming_load_into_a_model(tmp_path, suffix, naming):
    src = resnet8()
    src.bn1.running_mean[...] = 0.5
    state = src.state_dict()
    if naming == "torchvision":
        state = minidl_to_torchvision(state)
    path = tmp_path / f"w{suffix}"
    write_weights(path, state)
    dst = load_weights(resnet8(), path)
    for k, v in src.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(dst.state_dict()[k], v, err_msg=k)
    assert set(read_weights(path)) <= set(src.state_dict())


def test_wrong_key_wrong_shape_and_missing_keys_are_rejected_before_loading():
    model = resnet8()
    before = model.conv1.W.data.copy()
    state = torchvision_to_minidl(minidl_to_torchvision(resnet8().state_dict()))
    bad = dict(state)
    bad["layer9.conv.W"] = bad.pop("layer1.0.conv1.W")
    with pytest.raises(ValueError, match=r"1 missing key\(s\): layer1.0.conv1.W; 1 unexpected "
                                         r"key\(s\): layer9.conv.W"):
        load_weights(model, bad)
    bad = dict(state, **{"fc.W": np.zeros((11, 64), np.float32)})
    with pytest.raises(ValueError, match=r"shape mismatch\(es\): fc.W: model has \(10, 64\), "
                                         r"file has \(11, 64\)"):
        load_weights(model, bad)
    np.testing.assert_array_equal(model.conv1.W.data, before)        # nothing was loaded
    check_state(model, state)                                         # counters optional


def test_unknown_file_types(tmp_path):
    with pytest.raises(ValueError, match=r"unknown weight file type"):
        read_weights(tmp_path / "w.bin")
    with pytest.raises(ValueError, match=r"output must end in .npz or .safetensors"):
        write_weights(tmp_path / "w.pkl", {})


def test_command_line_converts_a_torch_checkpoint(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    src = resnet8().eval()
    tv = {k: torch.from_numpy(np.ascontiguousarray(v))
          for k, v in minidl_to_torchvision(src.state_dict()).items()}
    pth = tmp_path / "resnet8-abc123.pth"
    torch.save({"state_dict": tv}, pth)
    for out in ("r8.npz", "r8.safetensors"):
        assert main(["torchvision", str(pth), str(tmp_path / out)]) == 0
        assert "checked against resnet8" in capsys.readouterr().out
        dst = load_weights(resnet8().eval(), tmp_path / out)
        x = minidl.tensor(np.random.default_rng(0).random((2, 1, 28, 28)))
        with minidl.no_grad():
            np.testing.assert_array_equal(dst(x).data, src(x).data)
    # a checkpoint that does not fit the architecture named
    assert main(["torchvision", str(pth), str(tmp_path / "x.npz"), "--model", "resnet20"]) == 1
    assert "missing key(s)" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_command_line_refuses_a_truncated_checkpoint_in_one_line(tmp_path, capsys):
    from _pth_writer import pth_zip, state_pickle, tensor_pickle
    data = pth_zip(state_pickle({"fc.weight": tensor_pickle("FloatStorage", "0", 4, 0, (2, 2),
                                                            (2, 1))}), {"0": b"\0" * 16})
    pth = tmp_path / "resnet8-cut.pth"
    pth.write_bytes(data[:len(data) // 2])
    assert main(["torchvision", str(pth), str(tmp_path / "out.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "resnet8-cut.pth" in err and "truncated" in err
    assert err.count("\n") == 1 and not (tmp_path / "out.npz").exists()
