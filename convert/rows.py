"""What every arch's weight table is made of: a row is (torch key, flat Flax key, transform),
and the transforms take torch's layouts to Flax's. Needs no torch (numpy arrays in and out).

Conventions:
  * conv weight (O, I, kh, kw) -> HWIO kernel; linear weight (out, in) ->
    (in, out) kernel; batch norm's leaves renamed (`BN_LEAVES`) as
    `jaxviz.nets.blocks.BatchNorm` names them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]
Row = tuple[str, str, Transform]

# BatchNorm2d's state dict names -> the Flax leaves (`jaxviz.nets.blocks.BatchNorm`).
BN_LEAVES = (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"),
             ("running_var", "var"))


def conv_to_hwio(weight: np.ndarray) -> np.ndarray:
  return weight.transpose(2, 3, 1, 0)


def linear_to_kernel(weight: np.ndarray) -> np.ndarray:
  return weight.T


def identity(value: np.ndarray) -> np.ndarray:
  return value


def batch_norm_rows(torch_path: str, flax_path: str) -> list[Row]:
  """A BatchNorm2d's four rows: its weight, bias and running statistics."""
  return [(f"{torch_path}.{torch_leaf}", f"{flax_path}.{flax_leaf}", identity)
          for torch_leaf, flax_leaf in BN_LEAVES]
