"""torchvision's ResNet-50: its weight table and its published file. Needs no torch.

Conventions:
  * Weight table: "<path>.weight" of a conv (O, I, kh, kw) -> "<path'>.kernel"
    HWIO; a batch norm's "weight/bias/running_mean/running_var" ->
    "scale/bias/mean/var"; fc's (out, in) -> (in, out); path' is the path with
    "." before an index turned into "_" (`table.flax_name`). fc reads the 1x1
    average pool flattened: channels in the same order NCHW and NHWC.
  * Ignored keys of the published file: batch norm's `num_batches_tracked` (a
    training counter).
  * The torch reference the tests hold the Flax network to is
    `jaxviz_convert.reference_resnet50`.
"""

from __future__ import annotations

from pathlib import Path

from jaxviz.nets import resnet50_table as table
from jaxviz_convert import published, rows

# torchvision's `ResNet50_Weights.IMAGENET1K_V1.url` (the tests hold them equal).
IMAGENET_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
IGNORED_KEYS: tuple[str, ...] = (r".*\.num_batches_tracked",)


def weight_table() -> list[rows.Row]:
  """(torchvision key, flat Flax key, transform) for every parameter, in network order."""
  found = []

  def conv_and_norm(conv_path: str, norm_path: str) -> None:
    found.append((f"{conv_path}.weight", f"{table.flax_name(conv_path)}.kernel",
                  rows.conv_to_hwio))
    found.extend(rows.batch_norm_rows(norm_path, table.flax_name(norm_path)))

  conv_and_norm("conv1", "bn1")
  for block in table.blocks():
    for name, *_ in block.convs():
      norm = "downsample.1" if name == "downsample.0" else name.replace("conv", "bn")
      conv_and_norm(f"{block.path}.{name}", f"{block.path}.{norm}")
  found.append(("fc.weight", "fc.kernel", rows.linear_to_kernel))
  found.append(("fc.bias", "fc.bias", rows.identity))
  return found


def categories() -> list[str] | None:
  """The 1000 ImageNet class names torchvision ships with these weights."""
  return published.imagenet_categories()


def download_imagenet() -> Path:
  """resnet50-0676ba61.pth in torch's hub cache, downloaded there if absent."""
  return published.fetch(IMAGENET_URL, "ImageNet resnet50", "torchvision's resnet50 .pth")
