"""The torch-free reader of legacy .pth files: real tensors out, nothing executed, every
malformed or hostile file refused with a message naming it."""

import collections
import io
import os
import pickle
import sys
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from imgcls_desktop.core.errors import WeightsUnavailableError
from imgcls_desktop.core.pth_weights import MAGIC_NUMBER, PROTOCOL_VERSION, read_state_dict


class _Storage:
    def __init__(self, key, array):
        self.key = key
        self.array = np.ascontiguousarray(array).ravel()


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _fake_torch():
    """Stand-in ``torch`` modules, so pickle writes the same globals torch's files name."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only used for writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    for name in ("FloatStorage", "LongStorage"):
        cls = type(name, (), {"__module__": "torch", "__qualname__": name})
        setattr(torch, name, cls)
    return torch, utils


def write_legacy(path, tensors, *, storage_numel=None, keys=None, extra_global=None, truncate=0):
    """Write ``{name: _Tensor}`` the way torch's legacy serialisation does."""
    torch, utils = _fake_torch()
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        storages = {}

        class Writer(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, _Storage):
                    storages[obj.key] = obj
                    kind = torch.LongStorage if obj.array.dtype == np.int64 else torch.FloatStorage
                    numel = (storage_numel or {}).get(obj.key, obj.array.size)
                    return ("storage", kind, obj.key, "cpu", numel, None)
                return None

            def reducer_override(self, obj):
                if isinstance(obj, _Tensor):
                    return (utils._rebuild_tensor_v2,
                            (obj.storage, obj.offset, obj.size, obj.stride, False, collections.OrderedDict()))
                return NotImplemented

        out = io.BytesIO()
        for header in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}):
            pickle.dump(header, out, protocol=2)
        state = collections.OrderedDict(tensors)
        if extra_global is not None:
            state["evil"] = extra_global
        Writer(out, protocol=2).dump(state)
        pickle.dump(keys if keys is not None else list(storages), out, protocol=2)
        for key in storages:
            array = storages[key].array
            out.write(int(array.size).to_bytes(8, "little", signed=True))
            out.write(array.astype(array.dtype.newbyteorder("<")).tobytes())
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    data = out.getvalue()
    path.write_bytes(data[:len(data) - truncate] if truncate else data)
    return path


def _kernel_like_tensors():
    """A conv kernel saved as a transposed (non-contiguous) view, as the Lite0 file holds them."""
    rng = np.random.default_rng(0)
    tf_layout = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)  # (kh, kw, in, out)
    storage = _Storage("0", tf_layout)
    # torch's (out, in, kh, kw) view of TensorFlow's memory: strides into the HWIO buffer.
    kernel = _Tensor(storage, 0, (4, 2, 3, 3), (1, 4, 24, 8))
    bias_storage = _Storage("1", np.arange(6, dtype=np.float32))
    bias = _Tensor(bias_storage, 2, (4,), (1,))  # an offset into a larger storage
    counter = _Tensor(_Storage("2", np.array([7], dtype=np.int64)), 0, (), ())
    expected = {"conv.weight": tf_layout.transpose(3, 2, 0, 1), "conv.bias": np.arange(2, 6, dtype=np.float32),
                "bn.num_batches_tracked": np.array(7)}
    return {"conv.weight": kernel, "conv.bias": bias, "bn.num_batches_tracked": counter}, expected


def test_strided_tensors_come_back_exact(tmp_path):
    tensors, expected = _kernel_like_tensors()
    state = read_state_dict(write_legacy(tmp_path / "w.pth", tensors))
    assert list(state) == list(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(state[name], array)
        assert state[name].shape == array.shape
    assert state["conv.weight"].flags["C_CONTIGUOUS"]


def test_a_pickle_asking_for_another_global_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    tensors, _ = _kernel_like_tensors()
    path = write_legacy(tmp_path / "evil.pth", tensors, extra_global=Evil())
    with pytest.raises(WeightsUnavailableError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert str(path) in message and "system" in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "stride_out_of_storage", "numel_mismatch", "keys_mismatch",
                                    "not_a_pth", "empty"])
def test_damaged_files_are_refused_with_one_line_naming_them(tmp_path, damage):
    tensors, _ = _kernel_like_tensors()
    path = tmp_path / f"{damage}.pth"
    if damage == "truncated":
        write_legacy(path, tensors, truncate=10)
    elif damage == "stride_out_of_storage":
        tensors["conv.weight"] = _Tensor(tensors["conv.weight"].storage, 0, (4, 2, 3, 3), (1, 4, 24, 9))
        write_legacy(path, tensors)
    elif damage == "numel_mismatch":
        write_legacy(path, tensors, storage_numel={"0": 10})
    elif damage == "keys_mismatch":
        write_legacy(path, tensors, keys=["0", "1"])
    elif damage == "not_a_pth":
        path.write_bytes(pickle.dumps({"a": 1}))
    else:
        path.write_bytes(b"")
    with pytest.raises(WeightsUnavailableError) as info:
        read_state_dict(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_files_never_escape_as_anything_but_a_weights_error(tmp_path, data):
    tensors, _ = _kernel_like_tensors()
    good = write_legacy(tmp_path / "good.pth", tensors).read_bytes()
    kind = data.draw(st.sampled_from(["flip", "cut", "insert", "random"]))
    raw = bytearray(good)
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    elif kind == "cut":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "insert":
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        raw = bytearray(data.draw(st.binary(max_size=512)))
    path = tmp_path / "fuzzed.pth"
    path.write_bytes(bytes(raw))
    try:
        state = read_state_dict(path)
    except WeightsUnavailableError as exc:
        assert str(path) in str(exc)
    else:  # a flip inside raw float data or a name leaves a valid file: still plain arrays
        assert len(state) == len(tensors)
        assert all(isinstance(name, str) and isinstance(array, np.ndarray) for name, array in state.items())
