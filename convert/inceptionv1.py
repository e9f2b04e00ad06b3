"""lucent's InceptionV1 (lucid's "inception5h"): its weight table and its published file.
Needs no torch and no lucent.

Conventions:
  * Weight table: lucent's state dict keys are its module names
    ("mixed4a_3x3_pre_relu_conv.weight"); conv weights (O, I, kh, kw) become
    HWIO kernels, the linear weight (out, in) an (in, out) kernel. Its average
    pool is over a 7x7 map reshaped to (-1, 1024), NCHW (N, 1024, 1, 1), so the
    dense inputs are channels in the same order on both sides: no reorder.
  * No key is ignored: lucent loads the published file with a strict
    `load_state_dict`, so it holds exactly the model's parameters.
  * The torch reference the tests hold the Flax network to is lucent's own
    module, through `jaxviz_convert.reference_inceptionv1`.
"""

from __future__ import annotations

from pathlib import Path

from jaxviz.nets import inceptionv1_table as table
from jaxviz_convert import published, rows

IGNORED_KEYS: tuple[str, ...] = ()
# lucent's `model_urls["inceptionv1"]` (the tests hold them equal). Its name carries no
# hash, so the file is not checked: lucent does not check it either.
IMAGENET_URL = ("https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/"
                "inception5h.pth")


def weight_table() -> list[rows.Row]:
  """(lucent key, flat Flax key, transform) for every parameter, in network order."""
  found = []
  for module in table.module_names():
    transform = rows.linear_to_kernel if module == table.LOGITS else rows.conv_to_hwio
    found.append((f"{module}.weight", f"{module}.kernel", transform))
    found.append((f"{module}.bias", f"{module}.bias", rows.identity))
  return found


def categories() -> list[str] | None:
  """None: lucent ships no class names for its 1008 outputs (lucid's label file is not
  part of torch-lucent)."""
  return None


def download_imagenet() -> Path:
  """inception5h.pth in torch's hub cache (where `InceptionV1(pretrained=True)` puts it),
  downloaded there if absent."""
  return published.fetch(IMAGENET_URL, "inceptionv1", "lucent's inception5h.pth")
