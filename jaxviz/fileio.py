"""Files: atomic writes, images in and out, hashes, JSON.

Every output goes through `atomic_write`: the data is written to a temporary
file beside the target and renamed over it, so a killed process, a full disk
or any other failure leaves either the old file or the complete new one, never
half of one, and a failed write is one `JaxvizError` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from jaxviz.errors import JaxvizError

_SURROGATE = re.compile("[\ud800-\udfff]")

# Photos larger than this are refused before they are decoded: PIL's own
# decompression-bomb limit (~89 Mpx), which a header can claim for a tiny file.
MAX_IMAGE_PIXELS = 89_478_485


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
  """Yields a temporary path beside `path`; renames it onto `path` on success.

  On any exception the temporary file is removed and `path` is untouched; an
  OSError (a full disk, a read-only folder) becomes a JaxvizError naming `path`.
  """
  path = Path(path)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  except OSError as error:
    raise JaxvizError(f"cannot write {path}: {error.strerror or error}") from None
  os.close(fd)
  tmp = Path(tmp_name)
  try:
    yield tmp
    # After the writer: mkstemp makes 0600 and some writers (safetensors) recreate
    # the file; outputs should read like any other file.
    os.chmod(tmp, 0o644)
    with open(tmp, "rb+") as handle:
      os.fsync(handle.fileno())
    os.replace(tmp, path)
  except OSError as error:
    raise JaxvizError(f"cannot write {path}: {error.strerror or error}") from None
  finally:
    tmp.unlink(missing_ok=True)


def display(value: Any) -> str:
  """`value` as text that is safe to print, draw, write as JSON or put in a PNG chunk.

  A path whose name holds bytes that are not UTF-8 (Python keeps them as lone
  surrogates, which UTF-8 encoders, matplotlib and strict JSON parsers
  refuse) shows them as `\\xNN`; control characters (which could move a
  terminal's cursor or end a log line) show as escapes too.
  """
  text = os.fsdecode(value) if isinstance(value, (bytes, os.PathLike)) else str(value)
  if _UNSAFE.search(text) is None:
    return text
  text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
  return _UNSAFE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


# C0 and C1 controls, and lone surrogates (undecodable bytes of a file name).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _finite_or_none(data: Any) -> Any:
  """`data` with every NaN or infinite float replaced by None, and every string
  that could not be encoded as UTF-8 made safe (`display`)."""
  if isinstance(data, float):
    return data if math.isfinite(data) else None
  if isinstance(data, str):
    return data if _SURROGATE.search(data) is None else display(data)
  if isinstance(data, dict):
    return {key: _finite_or_none(value) for key, value in data.items()}
  if isinstance(data, (list, tuple)):
    return [_finite_or_none(value) for value in data]
  return data


def json_text(data: Any) -> str:
  """Strict JSON (RFC 8259): a non-finite float becomes null, never a bare NaN token."""
  return json.dumps(_finite_or_none(data), indent=2, allow_nan=False)


def write_json(path: str | os.PathLike, data: Any) -> None:
  with atomic_write(path) as tmp:
    tmp.write_text(json_text(data) + "\n")


def sha256_file(path: str | os.PathLike) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as handle:
    for block in iter(lambda: handle.read(1 << 22), b""):
      digest.update(block)
  return digest.hexdigest()


def read_image(path: str | os.PathLike, dtype=np.float32, data: bytes | None = None
               ) -> np.ndarray:
  """Reads a photo as (H, W, 3) RGB in [0, 1], of `dtype` (float32 or float64); `data`:
  the file's bytes, already read (so that what was hashed is what is decoded).

  EXIF orientation is applied; greyscale, palette and 16-bit images become
  RGB; an alpha channel is dropped (the colour underneath is kept, as
  `Image.convert("RGB")` does). The integer pixel values are divided by 255
  (65535 for 16-bit) in `dtype` itself, so a float64 read never passes
  through float32; float32 is what the write-up's code computed.

  Raises:
    JaxvizError: naming the file when it is missing, empty or not an image.
  """
  path, dtype = Path(path), np.dtype(dtype)
  try:
    with warnings.catch_warnings():
      # PIL warns above its limit and raises above twice it; both are refused below.
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      image_file = Image.open(path if data is None else io.BytesIO(data))
    with image_file as image:
      width, height = image.size
      if width * height > MAX_IMAGE_PIXELS:
        raise JaxvizError(f"image too large: {path} is {width}x{height} pixels "
                          f"(the limit is {MAX_IMAGE_PIXELS:,})")
      image = ImageOps.exif_transpose(image)
      if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # convert("RGB") would clip 16-bit values at 255; scale them first.
        array = np.asarray(image).astype(dtype) / dtype.type(65535)
        return np.repeat(array[..., None], 3, axis=-1)
      rgb = np.asarray(image.convert("RGB"))
  except FileNotFoundError:
    raise JaxvizError(f"image not found: {path}") from None
  except IsADirectoryError:
    raise JaxvizError(f"expected an image file, got a directory: {path}") from None
  except UnidentifiedImageError:
    raise JaxvizError(f"not an image (or an empty file): {path}") from None
  except Image.DecompressionBombError:
    raise JaxvizError(f"image too large: {path} claims more than "
                      f"{2 * MAX_IMAGE_PIXELS:,} pixels") from None
  except (OSError, ValueError, SyntaxError) as error:
    raise JaxvizError(f"cannot read image {path}: {error}") from None
  return rgb.astype(dtype) / dtype.type(255)


def as_photo(path_or_image, name: str = "photo") -> np.ndarray:
  """A photo given as a path (read as RGB in [0, 1]) or as an array: (H, W, 3) RGB in
  [0, 1] (floats) or 0..255 (uint8); (H, W) grey and (H, W, 4) RGBA become RGB as
  files do. `name` is the argument named in errors.

  Raises:
    JaxvizError: for an array of another shape, or with values that are not finite
      or outside [0, 1].
  """
  if not hasattr(path_or_image, "__array__"):
    if not isinstance(path_or_image, (str, os.PathLike)):
      raise JaxvizError(f"{name} must be a path or an (H, W, 3) array, got "
                        f"{type(path_or_image).__name__}")
    return read_image(path_or_image)
  array = np.asarray(path_or_image)
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
    raise JaxvizError(f"{name} must be an (H, W, 3) RGB image, got an array of shape "
                      f"{array.shape}")
  array = np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]
  if array.dtype == np.uint8:
    return array.astype(np.float32) / np.float32(255)
  if not np.issubdtype(array.dtype, np.floating):
    raise JaxvizError(f"{name} must hold floats in [0, 1] or uint8, got {array.dtype}")
  if not np.isfinite(array).all():
    raise JaxvizError(f"{name} holds non-finite values (NaN or Inf)")
  if array.min() < 0 or array.max() > 1:
    raise JaxvizError(f"{name} must hold values in [0, 1], got {array.min():.4g}.."
                      f"{array.max():.4g} (a 0..255 image should be uint8)")
  return array


def to_uint8(image: np.ndarray) -> np.ndarray:
  """[0, 1] float (H, W, 3) -> uint8, clipped and rounded to nearest."""
  return np.round(np.clip(np.asarray(image, np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


# Every PNG jaxviz writes says what made it, in PNG text chunks: "Software"
# (jaxviz and its version), "Title" (one line) and "jaxviz" (a JSON object:
# layer, map, recipe, settings hash, weights, RANDOM or not...). `png_info`
# reads them back (`jaxviz info FILE.png`).
PROVENANCE_KEY = "jaxviz"


def png_text(title: str, provenance: dict) -> dict[str, str]:
  """The text chunks of a jaxviz PNG: {"Software", "Title", "jaxviz": JSON}."""
  from jaxviz import __version__

  return {"Software": f"jaxviz {__version__}", "Title": display(title),
          PROVENANCE_KEY: json.dumps(_finite_or_none({"jaxviz_version": __version__,
                                                      **provenance}), sort_keys=True)}


def write_png(path: str | os.PathLike, image: np.ndarray, text: dict[str, str] | None = None
              ) -> None:
  """Writes a [0, 1] float (H, W, 3) image as 8-bit RGB PNG, atomically, with `text`
  chunks (`png_text`)."""
  chunks = PngImagePlugin.PngInfo()
  for key, value in (text or {}).items():
    chunks.add_itxt(key, value)
  with atomic_write(path) as tmp:
    Image.fromarray(to_uint8(image), "RGB").save(tmp, format="PNG", pnginfo=chunks)


# A provenance chunk is a flat JSON object of a few hundred bytes; a PNG from
# elsewhere may claim anything, so its text is bounded before it is parsed.
MAX_PROVENANCE_BYTES = 64 * 1024


def _provenance_problem(value) -> str | None:
  """Why `value` is not a jaxviz provenance record (a non-empty flat JSON object whose
  values are scalars or lists of scalars), or None."""
  if not isinstance(value, dict) or not value:
    return "not a non-empty JSON object"
  scalar = (str, int, float, bool, type(None))
  for key, item in value.items():
    if isinstance(item, list):
      if not all(isinstance(element, scalar) for element in item):
        return f"nested (field {display(key)!r})"
    elif not isinstance(item, scalar):
      return f"nested (field {display(key)!r})"
  return None


def png_info(path: str | os.PathLike) -> dict:
  """A PNG's text chunks, the "jaxviz" one parsed: {"Title", "Software", "jaxviz": {...}}.

  The file is untrusted: its pixels are never decoded (a header may claim any
  size), its compressed text is inflated only up to PIL's limit, and the
  jaxviz chunk must be a flat JSON object of at most `MAX_PROVENANCE_BYTES`.

  Raises:
    JaxvizError: naming the file when it is missing, not a PNG, or its chunks
      cannot be read or are not what jaxviz writes.
  """
  path = Path(path)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      image_file = Image.open(path)
    with image_file as image:
      if image.format != "PNG":
        raise JaxvizError(f"not a PNG: {display(path)}")
      # The text chunks read at open (those before the pixels, where jaxviz writes
      # them); `image.text` would decode the pixels to find later ones.
      text = {key: value for key, value in image.info.items() if isinstance(value, str)}
  except FileNotFoundError:
    raise JaxvizError(f"image not found: {display(path)}") from None
  except IsADirectoryError:
    raise JaxvizError(f"expected a PNG file, got a directory: {display(path)}") from None
  except Image.DecompressionBombError:
    raise JaxvizError(f"{display(path)} claims more than {2 * MAX_IMAGE_PIXELS:,} pixels; "
                      "not a PNG jaxviz wrote") from None
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as error:
    # ValueError: a compressed text chunk that inflates past PIL's limit, among others.
    first = (str(error).splitlines() or [type(error).__name__])[0]
    raise JaxvizError(f"cannot read {display(path)}: {display(first)}") from None
  if PROVENANCE_KEY in text:
    raw = text[PROVENANCE_KEY]
    problem = None
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_PROVENANCE_BYTES:
      problem = f"larger than {MAX_PROVENANCE_BYTES // 1024} KiB"
    else:
      try:
        text[PROVENANCE_KEY] = json.loads(raw)
        problem = _provenance_problem(text[PROVENANCE_KEY])
      except (json.JSONDecodeError, RecursionError):
        problem = "not JSON"
    if problem:
      raise JaxvizError(f"{display(path)}: its jaxviz text chunk is {problem}; jaxviz did "
                        "not write it")
  return text


def ensure_writable_dir(path: str | os.PathLike) -> Path:
  """Creates `path` if needed and proves a file can be written there, before long work."""
  path = Path(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
      pass
  except OSError as error:
    raise JaxvizError(f"cannot write to {path}: {error.strerror or error}") from None
  return path
