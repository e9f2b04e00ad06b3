"""The published weight files: where torch keeps them, their download, and the check that
a file is the one its name says. Needs no torch.

Conventions:
  * A published file lives where torch's hub keeps it, `<hub>/checkpoints/<name>`
    (`hub_dir()` is `torch.hub.get_dir()`'s rule, without torch), so a file that
    torchvision or lucent downloaded is used as it is, and one downloaded here
    serves them too.
  * A published file's name carries a prefix of its sha256 ("vgg16-397923af.pth",
    torch.hub's HASH_REGEX). It is checked on every file, downloaded or found:
    torch checks it only when asked (`check_hash=True`, which torchvision's
    loaders do not ask) and never for a file already in its cache.
  * A download goes to a temporary file beside its destination and is renamed
    only once complete and checked: an interrupted or wrong download leaves
    nothing that a later command could take for the published file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from jaxviz import fileio
from jaxviz.errors import JaxvizError

# torch.hub's HASH_REGEX.
HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")
CHUNK = 1 << 20


def hub_dir() -> Path:
  """torch's hub directory, by `torch.hub.get_dir()`'s rule: `$TORCH_HOME/hub`, where
  TORCH_HOME defaults to `$XDG_CACHE_HOME/torch` and that to `~/.cache/torch`."""
  cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
  return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def checkpoint_path(url: str) -> Path:
  """Where torch's hub keeps the file published at `url`."""
  return hub_dir() / "checkpoints" / os.path.basename(urllib.parse.urlparse(url).path)


def name_hash(path: str | os.PathLike) -> str | None:
  """The sha256 prefix a published file's name carries, if any."""
  match = HASH_IN_NAME.search(os.path.basename(path))
  return match.group(1) if match else None


def check_published(path: str | os.PathLike, digest: str | None = None) -> None:
  """Refuses a file whose sha256 (`digest`, if already known) does not start with the
  prefix in its name: not the published file (a partial download, or another file put
  there), which would otherwise be labelled `imagenet`."""
  prefix = name_hash(path)
  if prefix and not (digest or fileio.sha256_file(path)).startswith(prefix):
    raise JaxvizError(f"{path} is not the published file its name says (its sha256 does not "
                      f"start with {prefix}); delete it to download it again, or pass it as "
                      "--weights PATH")


def fetch(url: str, what: str, offline: str) -> Path:
  """The file published at `url`: found in torch's hub cache, or downloaded there (with a
  progress bar on stderr); checked against the hash in its name either way.

  Args:
    what: the weights' name for messages ("ImageNet vgg16").
    offline: what else a user can pass as --weights PATH ("a torchvision .pth").
  Raises:
    JaxvizError: one line naming `what` and the offline choices when it cannot.
  """
  path = checkpoint_path(url)
  if path.is_file():
    check_published(path)
    return path
  partial = None
  try:
    # Inside the try: an unwritable cache is a one-line error like a missing network.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                       dir=path.parent)
    with os.fdopen(handle, "wb") as out:
      digest = _download(url, out, what)
    prefix = name_hash(path)
    if prefix and not digest.startswith(prefix):
      raise JaxvizError(f"the download of {url} is not the published file (its sha256 does "
                        f"not start with {prefix}); nothing was kept")
    os.replace(partial, path)
  except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
    # A connection cut mid-file is an IncompleteRead, not an OSError.
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
    if getattr(error, "filename", None):
      reason = f"{reason}: {error.filename}"
    raise JaxvizError(f"cannot download the {what} weights ({reason}); offline, pass "
                      f"--weights PATH ({offline} or a converted .safetensors) or "
                      "--weights random") from None
  finally:
    if partial and os.path.exists(partial):
      os.unlink(partial)
  return path


def _download(url: str, out, what: str) -> str:
  """Streams `url` into the open file `out` with a progress bar; returns its sha256."""
  from jaxviz.progress import progress_bar

  digest = hashlib.sha256()
  with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (fixed https URLs)
    length = response.headers.get("Content-Length")
    expected = int(length) if length and length.isdigit() else None
    with progress_bar() as bar:
      task = bar.add_task(f"downloading {what} ({os.path.basename(url)})", total=expected)
      received = 0
      while chunk := response.read(CHUNK):
        out.write(chunk)
        digest.update(chunk)
        received += len(chunk)
        bar.advance(task, len(chunk))
  # http.client's read(amt) returns b"" when the server closes early, without an error;
  # a file without a hash in its name would otherwise be kept short.
  if expected is not None and received != expected:
    raise ConnectionError(f"the connection closed after {received} of {expected} bytes")
  return digest.hexdigest()


def imagenet_categories() -> list[str]:
  """The 1000 ImageNet class names, in torchvision's order and spelling (the file beside
  this module; the tests hold it equal to torchvision's `_IMAGENET_CATEGORIES`)."""
  text = (Path(__file__).parent / "imagenet_categories.txt").read_text(encoding="utf-8")
  return text.splitlines()
