"""What activation maximisation maximises.

Conventions:
  * An objective takes the network parameters, ONE normalised image
    (H, W, 3) and a feature-map index, and returns a scalar to maximise.
    Batch it with `jax.vmap` over images and map indices.
  * `Target` names the layer and how the network is run; it is hashable so it
    can be a static argument of a jitted function.
"""

from __future__ import annotations

import dataclasses

import jax

from jaxviz import layers as layers_lib
from jaxviz import vgg


@dataclasses.dataclass(frozen=True)
class Target:
  """The layer whose feature maps are maximised, and how the network runs."""

  layer: layers_lib.Layer
  arch: str = layers_lib.DEFAULT_ARCH
  precision: str = "default"


def channel_mean(params: vgg.Params, image: jax.Array, map_index: jax.Array,
                 target: Target) -> jax.Array:
  """Mean over all positions of channel `map_index` of the target layer.

  Args:
    image: (H, W, 3) normalised image.
    map_index: int scalar (may be traced).
  Returns:
    A scalar: the write-up's objective (pre-ReLU for a conv layer).
  """
  activation = vgg.channel_activation(params, image[None], target.layer, map_index,
                                      arch=target.arch, precision=target.precision)
  return activation.mean()
