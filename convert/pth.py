"""Reads the state dict in a `.pth` file written by `torch.save` into numpy arrays,
without torch.

Conventions:
  * Accepted: what `torch.save(state_dict, path)` writes, in both of torch's formats:
    the zip archive (torch's default since 1.6: `<prefix>/data.pkl`, the storages as
    `<prefix>/data/<key>`, `<prefix>/byteorder`) and the legacy stream
    (`_use_new_zipfile_serialization=False`: the pickles of the magic number, the
    protocol version, sys_info, the object and the storage keys, then each storage's
    element count and bytes). The object is a dict (or OrderedDict) of str -> tensor
    (or nn.Parameter), or a dict whose "state_dict" entry is one; the arrays come back
    in the file's order with the tensors' dtype, shape and values, views (offset,
    strides) copied out of their shared storage. bfloat16 and float8 are ml_dtypes'.
  * Refused, with a one-line `JaxvizError`: any pickled global other than
    OrderedDict, torch's tensor and parameter rebuild functions, the storage types
    and the dtypes (a whole `torch.save(model)`, or a pickle built to run code);
    anything but a dict of tensors; quantized, sparse, complex32 and conjugate or
    negative-bit tensors; storage keys that are not plain record names; views
    reaching outside their storage; records whose size differs from what the
    pickle claims; storages adding up to more than the file; compressed or
    encrypted zip records; memo indices no pickler writes; truncated files; old tar
    checkpoints (torch < 0.4).
  * Nothing from the file is executed: the unpickler's `find_class` maps each
    allowed global to a function of this module that builds only markers, and the
    arrays are made from the records' bytes once the pickle is fully read and checked.
  * Byte order: a zip's `byteorder` record ("little" when absent, as torch assumes)
    is honoured by swapping the bytes of "big" storages. Legacy files hold
    little-endian data whatever machine wrote them (torch's writer converts), so no
    swap is needed there.
  * No torch: jaxviz's install stays free of a 5 GB dependency, and a file that
    fails to load here never reaches torch's own (less strict) unpickler.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import re
import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

import ml_dtypes
import numpy as np

from jaxviz.errors import JaxvizError

# torch.serialization's constants for the legacy stream.
_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

# Storage keys are record names torch makes from counters ("0", "1", ... in a zip,
# a storage's address in legacy files); anything else could name another record.
_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
_MAX_DIMS = 64

# Several keys may share one storage (tied weights) and each gets its own copy; a
# hostile file could name one storage in a million views, so the arrays copied out
# may not exceed the file's size by more than this factor (plus a small allowance).
_MAX_COPY_FACTOR = 8
_COPY_ALLOWANCE = 64 << 20


def _numpy_dtypes() -> dict[str, np.dtype]:
  dtypes = {name: np.dtype(name) for name in (
      "float64", "float32", "float16", "complex128", "complex64", "int64", "int32",
      "int16", "int8", "uint64", "uint32", "uint16", "uint8", "bool")}
  # ml_dtypes' float8 set grows with its version; take what this one has.
  for name in ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
               "float8_e5m2fnuz", "float8_e8m0fnu"):
    if hasattr(ml_dtypes, name):
      dtypes[name] = np.dtype(getattr(ml_dtypes, name))
  return dtypes


# torch's dtype names (`torch.float32` pickles as the global `torch float32`).
_DTYPES = _numpy_dtypes()

# The typed storages a tensor of torch's older dtypes is saved with
# (torch.storage._dtype_to_storage_type_map).
_STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool",
}

# Names of torch's that are tensor data but that this reader has no numpy type or
# rebuild for: named as unsupported rather than as a pickled model.
_UNSUPPORTED_TORCH = re.compile(
    r"Q\w*Storage|ComplexHalfStorage|complex32|bcomplex32|q?u?int\d+x?\d*|quint\w+|"
    r"bits\w+|float4\w+|float8\w+|per_\w+")


class _Refused(Exception):
  """The pickle names a global a state dict never holds."""


class _Bad(Exception):
  """The file is damaged or not what it claims to be; the message says how."""


class _NotStateDict(Exception):
  """A well-formed file whose object is not a dict of tensors."""


class _Marker:
  """What the unpickler builds instead of torch's objects.

  Pickle's BUILD opcode sets attributes on whatever object is on its stack; it calls
  `__setstate__` instead when there is one, and this one refuses, so a marker cannot
  be altered after its checks.
  """

  __slots__ = ()

  def __setstate__(self, state):
    raise _Bad("the pickle sets attributes on one of torch's objects")


class _Global(_Marker):
  """An allowed global: calling it runs our builder, never what the file names."""

  __slots__ = ("name", "build")

  def __init__(self, name: str, build):
    object.__setattr__(self, "name", name)
    object.__setattr__(self, "build", build)

  def __call__(self, *args):
    return self.build(*args)


class _StorageType(_Marker):
  """`torch.FloatStorage` and the like; dtype None for `torch.UntypedStorage`."""

  __slots__ = ("dtype",)

  def __init__(self, dtype: np.dtype | None):
    object.__setattr__(self, "dtype", dtype)


class _DType(_Marker):
  """A torch dtype, as `_rebuild_tensor_v3` names it."""

  __slots__ = ("dtype",)

  def __init__(self, dtype: np.dtype):
    object.__setattr__(self, "dtype", dtype)


class _Storage(_Marker):
  """One storage record: its key, dtype (None if untyped: bytes) and size in bytes."""

  __slots__ = ("key", "dtype", "nbytes")

  def __init__(self, key: str, dtype: np.dtype | None, nbytes: int):
    object.__setattr__(self, "key", key)
    object.__setattr__(self, "dtype", dtype)
    object.__setattr__(self, "nbytes", nbytes)


class _Tensor(_Marker):
  """A tensor as its storage, dtype, element offset, shape and element strides."""

  __slots__ = ("storage", "dtype", "offset", "shape", "strides")

  def __init__(self, storage: _Storage, dtype: np.dtype, offset: int,
               shape: tuple[int, ...], strides: tuple[int, ...]):
    for name, value in zip(self.__slots__, (storage, dtype, offset, shape, strides)):
      object.__setattr__(self, name, value)

  @property
  def nbytes(self) -> int:
    return math.prod(self.shape) * self.dtype.itemsize


class _StateDict(dict):
  """`collections.OrderedDict` as unpickled: a plain dict underneath.

  A state dict carries `_metadata` (module versions) through BUILD; it is of no use
  here, and dropping it means no attribute is ever set from the file.
  """

  def __setstate__(self, state):
    pass


def _is_int(value) -> bool:
  return type(value) is int  # bool is an int too, and no size or offset is a bool


def _int_tuple(value, what: str) -> tuple[int, ...]:
  if type(value) is not tuple or len(value) > _MAX_DIMS or not all(map(_is_int, value)):
    raise _Bad(f"a tensor's {what} is not a tuple of integers")
  if any(v < 0 for v in value):
    raise _Bad(f"a tensor's {what} is negative")
  return value


def _tensor(storage, offset, shape, strides, dtype: np.dtype | None = None) -> _Tensor:
  """Checks a view against its storage now, so no array is ever read out of bounds."""
  if not isinstance(storage, _Storage):
    raise _Bad("a tensor without a storage")
  if dtype is None:
    if storage.dtype is None:
      raise _Bad("a tensor on an untyped storage names no dtype")
    dtype = storage.dtype
  elif storage.dtype is not None and storage.dtype != dtype:
    raise _Bad("a tensor's dtype differs from its storage's")
  if not _is_int(offset) or offset < 0:
    raise _Bad("a tensor's storage offset is not a non-negative integer")
  shape = _int_tuple(shape, "size")
  strides = _int_tuple(strides, "stride")
  if len(strides) != len(shape):
    raise _Bad("a tensor's size and stride differ in length")
  if storage.nbytes % dtype.itemsize:
    raise _Bad(f"storage {storage.key} is not a whole number of {dtype} elements")
  capacity = storage.nbytes // dtype.itemsize
  if 0 in shape:
    if offset > capacity:
      raise _Bad(f"a tensor starts past the end of storage {storage.key}")
  else:
    last = offset + sum((n - 1) * s for n, s in zip(shape, strides))
    if last >= capacity:
      raise _Bad(f"a tensor reaches past the end of storage {storage.key}")
  return _Tensor(storage, dtype, offset, shape, strides)


def _no_metadata(metadata) -> None:
  # torch's metadata holds the conjugate and negative bits of complex views, whose
  # values would need the bit applied.
  if metadata is not None and not isinstance(metadata, dict):
    raise _Bad("a tensor's metadata is not a dict")
  if metadata and any(metadata.values()):
    raise _Bad("conjugate or negative-bit tensors are not supported")


def _rebuild_tensor(storage, offset, shape, strides):
  return _tensor(storage, offset, shape, strides)


def _rebuild_tensor_v2(storage, offset, shape, strides, requires_grad, hooks,
                       metadata=None):
  _no_metadata(metadata)
  return _tensor(storage, offset, shape, strides)


def _rebuild_tensor_v3(storage, offset, shape, strides, requires_grad, hooks, dtype,
                       metadata=None):
  if not isinstance(dtype, _DType):
    raise _Bad("a tensor's dtype is not a torch dtype")
  _no_metadata(metadata)
  return _tensor(storage, offset, shape, strides, dtype.dtype)


def _rebuild_parameter(data, requires_grad, hooks, state=None):
  # A parameter's extra Python attributes (`state`) mean nothing to its values.
  if not isinstance(data, _Tensor):
    raise _Bad("a parameter without a tensor")
  return data


_GLOBALS = {
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


def _find_global(module: str, name: str):
  """The marker for an allowed global; refuses every other one."""
  if (module, name) in _GLOBALS:
    return _Global(f"{module}.{name}", _GLOBALS[module, name])
  if module == "torch" and name in _STORAGE_DTYPES and _STORAGE_DTYPES[name] in _DTYPES:
    return _StorageType(_DTYPES[_STORAGE_DTYPES[name]])
  if module in ("torch", "torch.storage") and name == "UntypedStorage":
    return _StorageType(None)
  if module == "torch" and name in _DTYPES:
    return _DType(_DTYPES[name])
  if module == "torch" and _UNSUPPORTED_TORCH.fullmatch(name):
    raise _Bad(f"torch.{name} tensors are not supported")
  if module == "torch._utils" and name.startswith("_rebuild_"):
    # Quantized, sparse, nested, meta and subclassed tensors.
    raise _Bad(f"tensors rebuilt by torch._utils.{name} are not supported")
  raise _Refused(f"{module}.{name}")


def _ascii(value, what: str) -> str:
  # Python 2 files pickled torch's own strings as bytes.
  if isinstance(value, bytes):
    try:
      value = value.decode("ascii")
    except UnicodeDecodeError:
      raise _Bad(f"a storage's {what} is not text") from None
  if not isinstance(value, str):
    raise _Bad(f"a storage's {what} is not text")
  return value


class _Storages:
  """The storages the pickle names, checked against the file's size as they appear."""

  def __init__(self, file_size: int, legacy: bool):
    self.file_size = file_size
    self.legacy = legacy
    self.by_key: dict[str, _Storage] = {}
    self.total_bytes = 0

  def from_pid(self, pid) -> _Storage:
    if type(pid) is not tuple or not pid:
      raise _Bad("a persistent id is not a tuple")
    kind = _ascii(pid[0], "kind")
    if kind == "module":
      # Legacy `torch.save(model)` names the model's classes this way.
      raise _Refused("a pickled module")
    if kind != "storage" or len(pid) != (6 if self.legacy else 5):
      raise _Bad(f"unknown persistent id {kind!r}")
    storage_type, key, location, numel = pid[1:5]
    if self.legacy and pid[5] is not None:
      raise _Bad("storage views (torch < 0.4) are not supported")
    if not isinstance(storage_type, _StorageType):
      raise _Bad("a storage's type is not a torch storage type")
    key = _ascii(key, "key")
    if not _KEY.fullmatch(key):
      raise _Bad(f"storage key {key[:80]!r} is not a plain record name")
    _ascii(location, "device")  # tensors are read to the CPU wherever they were
    if not _is_int(numel) or numel < 0:
      raise _Bad(f"storage {key} has no valid element count")
    nbytes = numel * (1 if storage_type.dtype is None else storage_type.dtype.itemsize)
    if nbytes > self.file_size:
      raise _Bad(f"storage {key} claims {nbytes} bytes, more than the file holds")
    storage = _Storage(key, storage_type.dtype, nbytes)
    known = self.by_key.setdefault(key, storage)
    if known is storage:
      # Each storage is its own run of bytes in a file torch wrote, so together they
      # fit in it; zip records whose data overlap (one record holding the next) could
      # otherwise make a small file unpack to many times its size.
      self.total_bytes += nbytes
      if self.total_bytes > self.file_size:
        raise _Bad(f"its storages claim {self.total_bytes} bytes, more than the file "
                   "holds")
    elif (known.dtype, known.nbytes) != (storage.dtype, storage.nbytes):
      raise _Bad(f"storage {key} is named with two different types or sizes")
    return known


class _Unpickler(pickle.Unpickler):
  """Unpickles with our markers for torch's globals and nothing else."""

  def __init__(self, file: BinaryIO, storages: _Storages | None):
    super().__init__(file)
    self.storages = storages

  def find_class(self, module, name):
    if self.storages is None:  # the legacy stream's header needs no global at all
      raise _Refused(f"{module}.{name}")
    return _find_global(str(module), str(name))

  def persistent_load(self, pid):
    if self.storages is None:
      raise _Bad("a persistent id in the header")
    return self.storages.from_pid(pid)


def _check_memo(file: BinaryIO) -> None:
  """Refuses memo indices no pickler writes, then rewinds `file` to where it was.

  The C unpickler grows its memo to twice the largest index a PUT names and clears
  every slot: one opcode of 5 bytes can ask for gigabytes. A pickler numbers its memo
  entries 0, 1, 2, ... as it writes them, so no index exceeds the opcodes before it.
  """
  start = file.tell()
  for count, (opcode, arg, _) in enumerate(pickletools.genops(file)):
    if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and not 0 <= int(arg) <= count:
      raise _Bad(f"a memo index ({arg}) no pickler writes")
  file.seek(start)


def _load_pickle(file: BinaryIO, storages: _Storages | None, what: str):
  try:
    _check_memo(file)
    return _Unpickler(file, storages).load()
  except (_Refused, _Bad):
    raise
  except EOFError:
    raise _Bad(f"truncated in {what}") from None
  except Exception as error:  # a hostile pickle can raise almost anything
    reason = (str(error).splitlines() or [""])[0][:100]
    if any(sign in reason.lower() for sign in ("truncated", "ran out of input",
                                                 "exhausted", "remain")):
      raise _Bad(f"truncated in {what}") from None
    raise _Bad(f"corrupt {what} ({type(error).__name__}: {reason})") from None


def _state_dict(obj) -> dict[str, _Tensor]:
  if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
    obj = obj["state_dict"]
  if not isinstance(obj, dict) or not all(
      isinstance(key, str) and isinstance(value, _Tensor) for key, value in obj.items()):
    raise _NotStateDict()
  return dict(obj)


def _check_copy_size(tensors: dict[str, _Tensor], file_size: int) -> None:
  total = sum(tensor.nbytes for tensor in tensors.values())
  if total > _MAX_COPY_FACTOR * file_size + _COPY_ALLOWANCE:
    raise _Bad(f"its tensors would take {total} bytes, far more than the file holds")


def _swap_bytes(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
  # Byte by byte rather than `ndarray.byteswap`, so ml_dtypes' types need no support
  # for it; a complex number is two floats, each swapped on its own.
  parts = 2 if dtype.kind == "c" else 1
  size = dtype.itemsize // parts
  if size == 1:
    return data
  return np.ascontiguousarray(data.reshape(-1, parts, size)[:, :, ::-1]).reshape(-1)


def _array(tensor: _Tensor, data: np.ndarray) -> np.ndarray:
  """A contiguous copy of `tensor` out of its storage's bytes (checked in `_tensor`)."""
  dtype = tensor.dtype
  if 0 in tensor.shape:
    return np.empty(tensor.shape, dtype)
  # torch keeps a bool as one byte; any non-zero byte is True there too.
  elements = data.view(np.uint8 if dtype == np.bool_ else dtype)
  view = np.lib.stride_tricks.as_strided(
      elements[tensor.offset:], shape=tensor.shape,
      strides=tuple(s * dtype.itemsize for s in tensor.strides), writeable=False)
  return view != 0 if dtype == np.bool_ else np.array(view, order="C")


def _arrays(tensors: dict[str, _Tensor], storage_bytes: dict[str, bytes],
            big_endian: bool) -> dict[str, np.ndarray]:
  """The tensors as arrays viewing `storage_bytes`, each exactly its storage's claimed
  `nbytes` long: `_tensor` checked each view against that size and as_strided trusts
  it, so both readers refuse a record of any other length before calling this."""
  storages = {}
  for key, data in storage_bytes.items():
    storages[key] = np.frombuffer(data, np.uint8)
  swapped: set[str] = set()
  out = {}
  for name, tensor in tensors.items():
    key = tensor.storage.key
    if big_endian and key not in swapped:
      storages[key] = _swap_bytes(storages[key], tensor.dtype)
      swapped.add(key)
    out[name] = _array(tensor, storages[key])
  return out


def _record(archive: zipfile.ZipFile, name: str, size: int | None = None) -> bytes:
  try:
    info = archive.getinfo(name)
  except KeyError:
    raise _Bad(f"the archive has no record {name}") from None
  if info.flag_bits & 0x1:
    raise _Bad(f"record {name} is encrypted, which torch.save never does")
  if info.compress_type != zipfile.ZIP_STORED:
    # torch stores every record; a compressed one could unpack to any size.
    raise _Bad(f"record {name} is compressed, which torch.save never does")
  if size is not None and info.file_size != size:
    raise _Bad(f"record {name} holds {info.file_size} bytes, not the {size} its "
               "tensors need")
  try:
    data = archive.read(info)
  except (zipfile.BadZipFile, EOFError, ValueError, struct.error) as error:
    reason = (str(error).splitlines() or [""])[0][:100]
    raise _Bad(f"corrupt record {name} ({reason})") from None
  # zipfile reads a stored record's compressed size, which a crafted header can set
  # below the size it declares (and the CRC can be made to match): the arrays are
  # views of these bytes, so a short record would read whatever lies past them.
  if len(data) != info.file_size:
    raise _Bad(f"record {name} holds {len(data)} bytes, not the {info.file_size} "
               "its header declares")
  return data


def _archive_prefix(archive: zipfile.ZipFile) -> str:
  pickles = [name for name in archive.namelist()
             if name.endswith("/data.pkl") and name.count("/") == 1]
  if len(pickles) != 1:
    raise _Bad("not a PyTorch state dict file" if not pickles
               else "the archive holds several data.pkl")
  return pickles[0][:-len("data.pkl")]


def _read_zip(path: Path, file_size: int) -> dict[str, np.ndarray]:
  try:
    archive = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, EOFError, ValueError):
    raise _Bad("truncated or corrupt zip archive") from None
  with archive:
    prefix = _archive_prefix(archive)
    byteorder = b"little"
    if prefix + "byteorder" in archive.namelist():
      byteorder = _record(archive, prefix + "byteorder")
    if byteorder not in (b"little", b"big"):
      raise _Bad(f"unknown byte order {byteorder[:20]!r}")
    storages = _Storages(file_size, legacy=False)
    obj = _load_pickle(io.BytesIO(_record(archive, prefix + "data.pkl")), storages,
                       "data.pkl")
    tensors = _state_dict(obj)
    _check_copy_size(tensors, file_size)
    storage_bytes = {}
    for tensor in tensors.values():
      storage = tensor.storage
      if storage.key not in storage_bytes:
        storage_bytes[storage.key] = _record(
            archive, f"{prefix}data/{storage.key}", storage.nbytes)
  return _arrays(tensors, storage_bytes, big_endian=byteorder == b"big")


def _read_legacy(path: Path, file_size: int) -> dict[str, np.ndarray]:
  with open(path, "rb") as file:
    try:
      magic = _load_pickle(file, None, "the header")
    except (_Refused, _Bad):
      raise _Bad("not a PyTorch state dict file") from None
    if not _is_int(magic) or magic != _MAGIC_NUMBER:
      raise _Bad("not a PyTorch state dict file")
    version = _load_pickle(file, None, "the header")
    if not _is_int(version) or version != _PROTOCOL_VERSION:
      raise _Bad(f"legacy protocol version {str(version)[:20]}, not {_PROTOCOL_VERSION}")
    if not isinstance(_load_pickle(file, None, "the header"), dict):
      raise _Bad("corrupt sys_info")
    storages = _Storages(file_size, legacy=True)
    tensors = _state_dict(_load_pickle(file, storages, "the pickled object"))
    _check_copy_size(tensors, file_size)
    keys = _load_pickle(file, None, "the storage keys")
    if type(keys) is not list or not all(type(key) is str for key in keys):
      raise _Bad("the storage keys are not a list of strings")
    if len(set(keys)) != len(keys) or set(keys) != set(storages.by_key):
      raise _Bad("the storage keys differ from the storages the pickle names")
    needed = {tensor.storage.key for tensor in tensors.values()}
    storage_bytes = {}
    for key in keys:
      storage = storages.by_key[key]
      count = file.read(8)
      if len(count) != 8:
        raise _Bad(f"truncated before storage {key}")
      # The count is of elements, always little-endian, as torch writes it.
      (numel,) = struct.unpack("<q", count)
      itemsize = 1 if storage.dtype is None else storage.dtype.itemsize
      if numel * itemsize != storage.nbytes:
        raise _Bad(f"storage {key} holds {numel} elements, not the "
                   f"{storage.nbytes // itemsize} the pickle claims")
      if key in needed:
        data = file.read(storage.nbytes)
        if len(data) != storage.nbytes:
          raise _Bad(f"truncated in storage {key}")
        storage_bytes[key] = data
      else:
        file.seek(storage.nbytes, os.SEEK_CUR)
    if file.tell() > file_size:
      raise _Bad("truncated in the storages")
  return _arrays(tensors, storage_bytes, big_endian=False)


def _is_tar(head: bytes) -> bool:
  return head[257:262] == b"ustar"


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The tensors of the state dict `torch.save` wrote to `path`, as numpy arrays.

  Raises JaxvizError (one line) for a missing file, a file that is not a torch state
  dict (or is damaged), one that pickles other Python objects (a whole model), and
  one whose object is not a dict of tensors. See the module's conventions.
  """
  path = Path(path)
  if not path.is_file():
    raise JaxvizError(f"weights file not found: {path}")
  try:
    file_size = path.stat().st_size
    with open(path, "rb") as file:
      head = file.read(512)
    if _is_tar(head):
      raise _Bad("a tar checkpoint of torch < 0.4, not supported; re-save it with a "
                 "recent torch")
    if head.startswith(b"PK\x03\x04"):
      return _read_zip(path, file_size)
    return _read_legacy(path, file_size)
  except _Refused:
    raise JaxvizError(f"{path} holds pickled Python objects (a whole model?), not a state "
                      "dict; save model.state_dict() instead") from None
  except _NotStateDict:
    raise JaxvizError(f"{path} does not hold a state dict (a dict of tensors)") from None
  except _Bad as error:
    raise JaxvizError(f"cannot read weights {path}: {error}") from None
  except zipfile.BadZipFile as error:  # a record's header or CRC, found on reading it
    raise JaxvizError(f"cannot read weights {path}: corrupt zip archive "
                      f"({(str(error).splitlines() or [''])[0][:100]})") from None
  except OSError as error:
    raise JaxvizError(f"cannot read weights {path}: {error.strerror or error}") from None
