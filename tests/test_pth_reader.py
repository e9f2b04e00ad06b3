"""`jaxviz_convert.pth.read_state_dict`, the torch-free `.pth` reader, against torch itself.

Every file is made here with `torch.save`, in both of its formats (the zip archive
and the legacy stream), and read back tensor by tensor against
`torch.load(weights_only=True)`: dtype, shape and the exact bytes. Hostile and
damaged files are built by hand and must be refused with one line, running nothing.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import shlex
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch

from jaxviz.errors import JaxvizError
from jaxviz_convert import pth

FORMATS = ["zip", "legacy"]
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C


@pytest.fixture(params=FORMATS)
def fmt(request) -> str:
  return request.param


def save(obj, path: Path, fmt: str) -> Path:
  torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip")
  return path


def error_of(path) -> str:
  with pytest.raises(JaxvizError) as error:
    pth.read_state_dict(path)
  message = str(error.value)
  assert "\n" not in message
  return message


def torch_bytes(tensor: torch.Tensor) -> bytes:
  return tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def assert_matches_torch(path: Path) -> dict[str, np.ndarray]:
  """Ours against torch.load, tensor by tensor: keys in order, dtype, shape, bytes."""
  ours = pth.read_state_dict(path)
  expected = torch.load(path, weights_only=True)
  if isinstance(expected.get("state_dict"), dict):
    expected = expected["state_dict"]
  assert list(ours) == list(expected)
  for key, tensor in expected.items():
    array = ours[key]
    assert isinstance(array, np.ndarray) and array.flags.c_contiguous, key
    assert array.shape == tuple(tensor.shape), key
    if tensor.dtype == torch.bfloat16:
      assert array.dtype == ml_dtypes.bfloat16, key
    elif tensor.dtype == torch.float8_e4m3fn:
      assert array.dtype == ml_dtypes.float8_e4m3fn, key
    else:
      assert array.dtype == tensor.detach().numpy().dtype, key
    if tensor.dtype in (torch.bfloat16, torch.float8_e4m3fn):
      np.testing.assert_array_equal(array.astype(np.float32),
                                    tensor.detach().float().numpy(), err_msg=key)
    else:
      np.testing.assert_array_equal(array, tensor.detach().numpy(), err_msg=key)
    assert array.tobytes() == torch_bytes(tensor), key
  return ours


def small_model() -> torch.nn.Module:
  torch.manual_seed(0)
  model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 2 * 2, 5))
  model(torch.randn(2, 3, 4, 4))  # a training step, so the batch norm's buffers move
  return model


def rewrite_zip(src: Path, dst: Path, change) -> Path:
  """A copy of a zip whose records pass through `change(name, data) -> (name, data)`."""
  with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as new:
    for info in old.infolist():
      name, data = change(info.filename, old.read(info))
      new.writestr(zipfile.ZipInfo(name), data)
  return dst


def write_zip(path: Path, data_pkl: bytes, records: dict[str, bytes] | None = None) -> Path:
  """The zip layout torch writes, around a pickle of our own."""
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
    archive.writestr("archive/data.pkl", data_pkl)
    archive.writestr("archive/byteorder", "little")
    archive.writestr("archive/version", "3\n")
    for key, data in (records or {}).items():
      archive.writestr(f"archive/data/{key}", data)
  return path


def write_legacy(path: Path, obj_pickle: bytes) -> Path:
  """The legacy stream torch writes, around a pickle of our own, with no storages."""
  sys_info = {"protocol_version": 1001, "little_endian": True,
              "type_sizes": {"short": 2, "int": 4, "long": 4}}
  path.write_bytes(pickle.dumps(MAGIC_NUMBER, protocol=2) + pickle.dumps(1001, protocol=2)
                   + pickle.dumps(sys_info, protocol=2) + obj_pickle
                   + pickle.dumps([], protocol=2))
  return path


# 1. What torch.save writes comes back as torch reads it.

def test_model_state_dict_matches_torch(tmp_path, fmt):
  """A seeded conv + batch norm + linear state dict: every float tensor and batch norm's
  int64 0-dim `num_batches_tracked`, equal to torch's, in both formats."""
  path = save(small_model().state_dict(), tmp_path / "model.pth", fmt)
  ours = assert_matches_torch(path)
  assert ours["1.num_batches_tracked"].dtype == np.int64
  assert ours["1.num_batches_tracked"].shape == () and ours["1.num_batches_tracked"] == 1
  assert ours["3.weight"].shape == (5, 16)


def test_every_common_dtype_matches_torch(tmp_path, fmt):
  """float32/64/16, bfloat16 (ml_dtypes', compared as float32), int64/32, uint8 and bool
  keep their dtype and exact values."""
  generator = torch.Generator().manual_seed(1)
  floats = torch.randn(3, 5, generator=generator) * 1000
  state = {
      "f32": floats.clone(),
      "f64": floats.double() / 7,
      "f16": floats.half(),
      "bf16": floats.bfloat16(),
      "i64": torch.randint(-2**62, 2**62, (4,), generator=generator),
      "i32": torch.randint(-2**31, 2**31 - 1, (2, 3), generator=generator, dtype=torch.int32),
      "u8": torch.randint(0, 256, (7,), generator=generator, dtype=torch.uint8),
      "bool": torch.rand(3, 3, generator=generator) > 0.5,
  }
  ours = assert_matches_torch(save(state, tmp_path / "dtypes.pth", fmt))
  assert {key: ours[key].dtype for key in ("f16", "bf16", "bool")} == {
      "f16": np.float16, "bf16": ml_dtypes.bfloat16, "bool": np.bool_}


def test_dtypes_saved_on_untyped_storage_match_torch(tmp_path):
  """uint16 and float8 are saved on an untyped storage with a torch dtype
  (`_rebuild_tensor_v3`, zip format only: torch cannot load them from a legacy file)."""
  state = {"u16": torch.tensor([1, 2, 60000], dtype=torch.int32).to(torch.uint16),
           "f8": torch.tensor([0.5, -3.0, 448.0]).to(torch.float8_e4m3fn)}
  ours = assert_matches_torch(save(state, tmp_path / "new.pth", "zip"))
  assert ours["u16"].dtype == np.uint16 and ours["u16"].tolist() == [1, 2, 60000]


def test_views_of_one_storage_are_copied_out_with_offsets_and_strides(tmp_path, fmt):
  """Tensors sharing one storage (a slice, a transpose, a step, a row, an element, an
  expanded vector) each come back as torch sees them, as independent arrays."""
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  vector = torch.arange(3, dtype=torch.int64)
  state = {"base": base, "slice": base[1:3, 2:5], "transpose": base.t(),
           "step": base[:, 1::2], "row": base[2], "element": base[3, 4],
           "vector": vector, "expanded": vector.expand(4, 3)}
  path = save(state, tmp_path / "views.pth", fmt)
  if fmt == "zip":  # the views really share the file's two storages
    with zipfile.ZipFile(path) as archive:
      assert len([n for n in archive.namelist() if "/data/" in n]) == 2
  ours = assert_matches_torch(path)
  assert ours["slice"].tolist() == [[8, 9, 10], [14, 15, 16]]
  assert ours["element"].shape == () and ours["element"] == 22
  ours["slice"][...] = -1
  assert ours["base"][1, 2] == 8 and ours["transpose"][2, 1] == 8


def test_zero_dim_and_empty_tensors_match_torch(tmp_path, fmt):
  """0-dim tensors, empty tensors of any shape, and an empty slice with an offset."""
  base = torch.arange(10, dtype=torch.float32)
  state = {"scalar": torch.tensor(3.5), "int_scalar": torch.tensor(-7),
           "empty": torch.empty(0), "empty_3d": torch.zeros(2, 0, 3, dtype=torch.float16),
           "base": base, "empty_slice": base[5:5]}
  ours = assert_matches_torch(save(state, tmp_path / "empty.pth", fmt))
  assert ours["empty_3d"].shape == (2, 0, 3) and ours["scalar"] == 3.5


def test_parameters_read_as_their_values(tmp_path, fmt):
  """nn.Parameter values (`_rebuild_parameter`), with and without grad, are plain arrays."""
  model = small_model()
  state = dict(model.named_parameters())
  state["frozen"] = torch.nn.Parameter(torch.ones(2, 2), requires_grad=False)
  ours = assert_matches_torch(save(state, tmp_path / "params.pth", fmt))
  np.testing.assert_array_equal(ours["0.weight"], model[0].weight.detach().numpy())


def test_state_dict_wrapper_gives_the_inner_dict(tmp_path, fmt):
  """`{"state_dict": ..., "epoch": ...}`, as training scripts save it: the inner dict."""
  inner = small_model().state_dict()
  path = save({"state_dict": inner, "epoch": 3, "best": 0.25}, tmp_path / "wrapped.pth",
              fmt)
  ours = assert_matches_torch(path)
  assert list(ours) == list(inner)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.float16,
                                   torch.bfloat16, torch.complex64],
                         ids=lambda dtype: str(dtype).removeprefix("torch."))
def test_big_endian_zip_is_byte_swapped(tmp_path, dtype):
  """A zip marked `byteorder: big`, its storages' bytes swapped, reads as the original."""
  tensor = (torch.arange(12, dtype=torch.float32).reshape(3, 4) * 1.5 - 4).to(dtype)
  little = save({"w": tensor, "wt": tensor.t()}, tmp_path / "little.pth", "zip")
  size = tensor.element_size() // (2 if dtype.is_complex else 1)

  def to_big(name, data):
    if name.endswith("/byteorder"):
      return name, b"big"
    if "/data/" in name:
      return name, np.frombuffer(data, np.uint8).reshape(-1, size)[:, ::-1].tobytes()
    return name, data

  big = rewrite_zip(little, tmp_path / "big.pth", to_big)
  expected = assert_matches_torch(little)
  assert_matches_torch(big)  # torch, too, swaps it back
  ours = pth.read_state_dict(big)
  for key in expected:
    assert ours[key].dtype == expected[key].dtype
    assert ours[key].tobytes() == expected[key].tobytes(), key
  if size > 1:  # the file really differs from the little-endian one
    assert big.read_bytes() != little.read_bytes()


# 2. Anything else is refused with one line.

def test_whole_model_is_refused(tmp_path, fmt):
  """`torch.save(model)` pickles the module classes: refused, naming the fix."""
  path = save(small_model(), tmp_path / "model.pth", fmt)
  assert error_of(path) == (f"{path} holds pickled Python objects (a whole model?), not a "
                            "state dict; save model.state_dict() instead")


class RunsAShellCommand:
  """What a hostile `.pth` holds: unpickling it runs `command`."""

  def __init__(self, command: str):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


def test_code_in_a_pickle_never_runs(tmp_path, fmt):
  """A pickle whose unpickling runs a shell command, in torch's zip layout or legacy
  stream, is refused, and the command does not run (checked live on plain pickle)."""
  marker = tmp_path / "ran"
  evil = pickle.dumps({"w": RunsAShellCommand(f"touch {shlex.quote(str(marker))}")},
                      protocol=2)
  pickle.loads(evil)  # the payload is live: plain pickle runs it
  assert marker.exists()
  marker.unlink()
  path = tmp_path / "evil.pth"
  write_zip(path, evil) if fmt == "zip" else write_legacy(path, evil)
  assert error_of(path) == (f"{path} holds pickled Python objects (a whole model?), not a "
                            "state dict; save model.state_dict() instead")
  assert not marker.exists()


def test_pickle_cannot_alter_an_allowed_global(tmp_path):
  """BUILD on an allowed global (setting `__defaults__` of the function it stands for)
  is refused, and the reader's functions are unchanged."""
  defaults = pth._rebuild_tensor_v2.__defaults__
  evil = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__"
          b"(K\x01ts\x86b0}.")  # (None, {"__defaults__": (1,)}) BUILT onto it
  path = write_zip(tmp_path / "build.pth", evil)
  assert error_of(path) == (f"cannot read weights {path}: the pickle sets attributes on one "
                            "of torch's objects")
  assert pth._rebuild_tensor_v2.__defaults__ == defaults


def test_list_of_tensors_is_refused(tmp_path, fmt):
  """A list, even of tensors, is not a state dict."""
  path = save([torch.ones(2), torch.zeros(3)], tmp_path / "list.pth", fmt)
  assert error_of(path) == f"{path} does not hold a state dict (a dict of tensors)"


def test_dict_with_a_non_tensor_value_is_refused(tmp_path, fmt):
  """A dict mixing tensors with other values (an int here) is not a state dict."""
  path = save({"w": torch.ones(2), "epoch": 3}, tmp_path / "mixed.pth", fmt)
  assert error_of(path) == f"{path} does not hold a state dict (a dict of tensors)"


def test_truncated_file_is_refused(tmp_path, fmt):
  """A file cut anywhere (in the header, the pickle or the storages) is named unreadable."""
  whole = save(small_model().state_dict(), tmp_path / "whole.pth", fmt).read_bytes()
  path = tmp_path / "cut.pth"
  for length in (10, len(whole) // 4, len(whole) // 2, len(whole) - 1):
    path.write_bytes(whole[:length])
    assert error_of(path).startswith(f"cannot read weights {path}: "), length


def test_storage_record_shorter_than_its_tensor_is_refused(tmp_path):
  """A zip whose storage record lost its last 4 bytes: refused, not read short."""
  good = save({"w": torch.arange(8, dtype=torch.float32)}, tmp_path / "good.pth", "zip")
  short = rewrite_zip(good, tmp_path / "short.pth", lambda name, data: (
      name, data[:-4] if "/data/" in name else data))
  assert error_of(short) == (f"cannot read weights {short}: record good/data/0 holds 28 "
                             "bytes, not the 32 its tensors need")


def test_legacy_storage_with_a_wrong_element_count_is_refused(tmp_path):
  """A legacy stream whose storage header counts fewer elements than the pickle claims."""
  good = save({"w": torch.arange(8, dtype=torch.float32)}, tmp_path / "good.pth", "legacy")
  data = good.read_bytes()
  count = struct.pack("<q", 8)
  assert data.count(count + np.arange(8, dtype=np.float32).tobytes()[:4]) == 1
  path = tmp_path / "wrong.pth"
  path.write_bytes(data.replace(count + b"\0\0\0\0", struct.pack("<q", 7) + b"\0\0\0\0"))
  assert "holds 7 elements, not the 8 the pickle claims" in error_of(path)


class Skimmer(pickle.Unpickler):
  """Walks a pickle of torch's, building nothing."""

  def find_class(self, module, name):
    return lambda *args: None

  def persistent_load(self, pid):
    return None


def legacy_storage_keys(path: Path) -> list[str]:
  with open(path, "rb") as file:
    for _ in range(4):  # magic number, protocol version, sys_info, the object
      Skimmer(file).load()
    return Skimmer(file).load()


def rekey(path: Path, key: str, new_key: str, fmt: str) -> None:
  """Renames a storage key in torch's own pickles (and its zip record)."""
  def text(value):
    return b"X" + struct.pack("<I", len(value)) + value.encode()
  if fmt == "zip":
    rewrite_zip(path, path.with_suffix(".tmp"), lambda name, data: (
        name.replace(f"/data/{key}", f"/data/{new_key}"),
        data.replace(text(key), text(new_key)) if name.endswith("data.pkl") else data))
    path.with_suffix(".tmp").replace(path)
  else:
    data = path.read_bytes()
    assert data.count(text(key)) == 2  # in the tensor's pickle and in the key list
    path.write_bytes(data.replace(text(key), text(new_key)))


def test_storage_key_with_a_path_is_refused(tmp_path, fmt):
  """A storage key of "../0" (with a record of that very name in the zip, so a reader
  that trusted the key would find one) is refused as not a plain record name."""
  path = save({"w": torch.arange(4, dtype=torch.float32)}, tmp_path / "keys.pth", fmt)
  key = "0" if fmt == "zip" else legacy_storage_keys(path)[0]
  rekey(path, key, "../0", fmt)
  if fmt == "zip":
    with zipfile.ZipFile(path) as archive:
      assert "keys/data/../0" in archive.namelist()
  assert error_of(path) == (f"cannot read weights {path}: storage key '../0' is not a "
                            "plain record name")


class FakeTensor:
  """A tensor as torch pickles it, with any offset, size and stride, on a float32
  storage of `numel` elements under `key`."""

  def __init__(self, numel, offset, size, stride, key="0"):
    self.numel, self.offset, self.size, self.stride = numel, offset, size, stride
    self.key = key


class TorchLikePickler(pickle.Pickler):
  """Pickles FakeTensors with torch's own globals and persistent ids (zip format)."""

  def persistent_id(self, obj):
    if isinstance(obj, tuple) and obj[:1] == ("fake storage",):
      return ("storage", torch.FloatStorage, obj[2], "cpu", obj[1])
    return None

  def reducer_override(self, obj):
    if isinstance(obj, FakeTensor):
      return torch._utils._rebuild_tensor_v2, (("fake storage", obj.numel, obj.key),
                                               obj.offset,
                                               obj.size, obj.stride, False,
                                               collections.OrderedDict())
    return NotImplemented


@pytest.mark.parametrize("tensor, reason", [
    (FakeTensor(4, 0, (4,), (1,)), None),  # the control: as torch writes it
    (FakeTensor(4, 4, (1,), (1,)), "a tensor reaches past the end of storage 0"),
    (FakeTensor(6, 0, (2, 3), (3, 2)), "a tensor reaches past the end of storage 0"),
    (FakeTensor(4, 5, (0,), (1,)), "a tensor starts past the end of storage 0"),
    (FakeTensor(4, 0, (2,), (-1,)), "a tensor's stride is negative"),
    (FakeTensor(4, -1, (2,), (1,)), "a tensor's storage offset is not a non-negative"),
    (FakeTensor(4, 0, (2, 2), (1,)), "a tensor's size and stride differ in length"),
    (FakeTensor(1 << 40, 0, (4,), (1,)),
     "storage 0 claims 4398046511104 bytes, more than the file holds"),
    (FakeTensor(4, 0, (1 << 40,), (0,)), "its tensors would take 4398046511104 bytes"),
], ids=["control", "offset", "strides", "empty-offset", "negative-stride",
        "negative-offset", "ranks", "huge-storage", "huge-expand"])
def test_views_outside_their_storage_or_oversized_are_refused(tmp_path, tensor, reason):
  """Offsets, sizes and strides are checked against the storage before anything is
  read, and no file may make the reader copy out far more than it holds."""
  file = io.BytesIO()
  TorchLikePickler(file, protocol=2).dump({"w": tensor})
  path = write_zip(tmp_path / "views.pth", file.getvalue(),
                   {"0": np.arange(4, dtype=np.float32).tobytes()})
  if reason is None:
    assert pth.read_state_dict(path)["w"].tolist() == [0, 1, 2, 3]
  else:
    assert error_of(path).startswith(f"cannot read weights {path}: {reason}")


def fake_pickle(tensors: dict) -> bytes:
  file = io.BytesIO()
  TorchLikePickler(file, protocol=2).dump(tensors)
  return file.getvalue()


def test_storages_adding_up_to_more_than_the_file_are_refused(tmp_path):
  """Two storages that each fit in the file but together do not (as zip records whose
  data overlap would make them) are refused before any record is read."""
  numel = 100
  path = write_zip(tmp_path / "overlap.pth", fake_pickle({
      "a": FakeTensor(numel, 0, (1,), (1,), key="0"),
      "b": FakeTensor(numel, 0, (1,), (1,), key="1")}))
  assert 4 * numel <= path.stat().st_size < 8 * numel  # the case this test is about
  assert error_of(path) == (f"cannot read weights {path}: its storages claim "
                            f"{8 * numel} bytes, more than the file holds")


def central_entry(data: bytes, record: bytes) -> int:
  """Where the zip's central directory entry for `record` starts (its name is at +46)."""
  at = data.find(b"PK\x01\x02")
  while not data[at + 46:].startswith(record):
    assert at != -1, f"the test's archive has no central entry for {record}"
    at = data.find(b"PK\x01\x02", at + 1)
  return at


def test_record_shorter_than_its_header_declares_is_refused(tmp_path):
  """A stored record whose compressed size (what zipfile reads) is 4 bytes short of
  the size it declares, with the CRC of the short data: zipfile returns 28 bytes
  without complaint, and a reader trusting the declared 32 would copy 4 bytes from
  past the buffer into the weights."""
  good = save({"w": torch.arange(8, dtype=torch.float32)}, tmp_path / "good.pth", "zip")
  data = bytearray(good.read_bytes())
  record = b"good/data/0"
  payload = np.arange(8, dtype=np.float32).tobytes()
  crc = zipfile.crc32(payload[:28])
  with zipfile.ZipFile(good) as archive:
    local = archive.getinfo("good/data/0").header_offset
  central = central_entry(data, record)
  struct.pack_into("<III", data, local + 14, crc, 28, 32)
  struct.pack_into("<III", data, central + 16, crc, 28, 32)
  path = tmp_path / "short.pth"
  path.write_bytes(bytes(data))
  with zipfile.ZipFile(path) as archive:  # the premise: zipfile reads it short, silently
    assert len(archive.read("good/data/0")) == 28
  assert error_of(path) == (f"cannot read weights {path}: record good/data/0 holds 28 "
                            "bytes, not the 32 its header declares")


def test_encrypted_record_is_refused(tmp_path):
  """A record flagged as encrypted (which zipfile would ask a password for)."""
  good = save({"w": torch.arange(4, dtype=torch.float32)}, tmp_path / "good.pth", "zip")
  data = bytearray(good.read_bytes())
  data[central_entry(data, b"good/data/0") + 8] |= 0x1  # the central directory's general purpose flags
  path = tmp_path / "encrypted.pth"
  path.write_bytes(bytes(data))
  assert error_of(path) == (f"cannot read weights {path}: record good/data/0 is "
                            "encrypted, which torch.save never does")


@pytest.mark.parametrize("where", ["zip", "legacy"])
def test_memo_index_no_pickler_writes_is_refused(tmp_path, where):
  """LONG_BINPUT 2**31-1 on the first object: the C unpickler would grow its memo to
  2**32 slots (32 GB) for this one 5-byte opcode; refused before unpickling."""
  bomb = b"\x80\x02}r\xff\xff\xff\x7f."
  assert pickle.loads(b"\x80\x02}r\x00\x00\x00\x00.") == {}  # the same pickle, index 0
  path = (write_zip(tmp_path / "memo.pth", bomb) if where == "zip"
          else write_legacy(tmp_path / "memo.pth", bomb))
  assert error_of(path).endswith(f"a memo index ({2**31 - 1}) no pickler writes")


def test_text_file_is_refused(tmp_path):
  """A text file named `.pth` is not a PyTorch file."""
  path = tmp_path / "notes.pth"
  path.write_text("these are not weights\n")
  assert error_of(path) == f"cannot read weights {path}: not a PyTorch state dict file"


def test_missing_file_is_named(tmp_path):
  """A path with no file behind it."""
  path = tmp_path / "absent.pth"
  assert error_of(path) == f"weights file not found: {path}"


def test_reader_needs_no_torch(tmp_path, fmt):
  """With torch unimportable, a fresh interpreter reads the same arrays."""
  path = save(small_model().state_dict(), tmp_path / "model.pth", fmt)
  out = tmp_path / "out.npz"
  script = ("import sys; sys.modules['torch'] = None; import numpy as np; "
            "from jaxviz_convert import pth; "
            f"np.savez({str(out)!r}, **pth.read_state_dict({str(path)!r}))")
  subprocess.run([sys.executable, "-c", script], check=True)
  with np.load(out) as arrays:
    assert list(arrays) == list(pth.read_state_dict(path))
    for key, array in pth.read_state_dict(path).items():
      np.testing.assert_array_equal(arrays[key], array)
