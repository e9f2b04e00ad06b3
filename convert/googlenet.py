"""torchvision's GoogLeNet: its weight table and its published file. Needs no torch.

Conventions:
  * Weight table: "<path>.conv.weight" (O, I, kh, kw) -> "<path'>.conv.kernel"
    HWIO, "<path>.bn.weight/bias/running_mean/running_var" ->
    "<path'>.bn.scale/bias/mean/var", where path' is the path with "." before an
    index turned into "_" (`table.flax_name`); fc's (out, in) -> (in, out). fc
    reads the 1x1 average pool flattened, channels in the same order NCHW and
    NHWC: no reorder.
  * Ignored keys of the published file: `aux1.*`, `aux2.*` (auxiliary heads,
    unused in evaluation and dropped by torchvision's loader) and batch norm's
    `num_batches_tracked` (a training counter).
  * The torch reference the tests hold the Flax network to is
    `jaxviz_convert.reference_googlenet`.
"""

from __future__ import annotations

from pathlib import Path

from jaxviz.nets import googlenet_table as table
from jaxviz_convert import published, rows

# torchvision's `GoogLeNet_Weights.IMAGENET1K_V1.url` (the tests hold them equal).
IMAGENET_URL = "https://download.pytorch.org/models/googlenet-1378be20.pth"
IGNORED_KEYS: tuple[str, ...] = (r"aux[12]\..*", r".*\.num_batches_tracked")


def weight_table() -> list[rows.Row]:
  """(torchvision key, flat Flax key, transform) for every parameter, in network order."""
  found = []
  for conv in table.basic_convs():
    found.append((f"{conv.path}.conv.weight", f"{conv.module}.conv.kernel", rows.conv_to_hwio))
    found += rows.batch_norm_rows(f"{conv.path}.bn", f"{conv.module}.bn")
  found.append(("fc.weight", "fc.kernel", rows.linear_to_kernel))
  found.append(("fc.bias", "fc.bias", rows.identity))
  return found


def categories() -> list[str] | None:
  """The 1000 ImageNet class names torchvision ships with these weights."""
  return published.imagenet_categories()


def download_imagenet() -> Path:
  """googlenet-1378be20.pth in torch's hub cache, downloaded there if absent."""
  return published.fetch(IMAGENET_URL, "ImageNet googlenet", "torchvision's googlenet .pth")
