"""What activation maximisation maximises.

Conventions:
  * An objective takes the network parameters, ONE normalised image
    (H, W, 3) and a feature-map index, and returns a scalar to maximise.
    Batch it with `jax.vmap` over images and map indices.
  * `Target` names the layer, how it is read (SPEC §1: a conv layer after its
    ReLU unless `pre_relu`) and how the network is run; it is hashable so it
    can be a static argument of a jitted function. `resolve_target` is the
    one place a user's layer spec becomes a Target, against the architecture
    of the weights actually loaded.
"""

from __future__ import annotations

import dataclasses

import jax

from jaxviz import layers as layers_lib
from jaxviz import vgg


@dataclasses.dataclass(frozen=True)
class Target:
  """The layer whose feature maps are maximised or ranked, and how the network runs.

  Attributes:
    layer: the layer the user addressed (conv5_1 for `24`).
    arch: the architecture of the weights.
    precision: conv/matmul precision, one of `vgg.PRECISIONS`.
    pre_relu: read a conv layer's raw output instead of its ReLU's.
  """

  layer: layers_lib.Layer
  arch: str = layers_lib.DEFAULT_ARCH
  precision: str = "default"
  pre_relu: bool = False

  @property
  def read(self) -> layers_lib.Layer:
    """The module whose output is read: relu5_1 for conv5_1 unless pre_relu."""
    return layers_lib.read_layer(self.layer, self.arch, self.pre_relu)

  @property
  def reading(self) -> str:
    """How the layer is read, in words: 'post-ReLU', 'pre-ReLU' or '' (not a conv)."""
    if self.layer.kind != "conv":
      return ""
    return "pre-ReLU" if self.pre_relu else "post-ReLU"

  def describe(self) -> str:
    """`layer 24 (conv5_1, post-ReLU)`: how every output names what it read."""
    details = ", ".join(filter(None, (self.layer.name, self.reading)))
    return f"layer {self.layer.index} ({details})"


def resolve_target(spec: str | int | layers_lib.Layer, arch: str = layers_lib.DEFAULT_ARCH, *,
                   pre_relu: bool = False, precision: str = "default") -> Target:
  """A user's layer spec (`24`, `conv5_1`, `features.24`) as a Target of `arch`.

  Call it with the architecture of the weights actually loaded: names and
  indices mean different modules in VGG11, 16 and 19.
  """
  vgg.check_precision(precision)
  layer = spec if isinstance(spec, layers_lib.Layer) else layers_lib.resolve_layer(spec, arch)
  layers_lib.read_layer(layer, arch, pre_relu)  # refuses pre_relu on a pool or ReLU layer
  return Target(layer, arch, precision, bool(pre_relu))


def channel_mean(params: vgg.Params, image: jax.Array, map_index: jax.Array,
                 target: Target) -> jax.Array:
  """Mean over all positions of channel `map_index` of the target layer's reading.

  Args:
    image: (H, W, 3) normalised image.
    map_index: int scalar (may be traced).
  Returns:
    A scalar: the write-up's objective (post-ReLU for a conv layer unless
    `target.pre_relu`).
  """
  activation = vgg.channel_activation(params, image[None], target.read, map_index,
                                      arch=target.arch, precision=target.precision)
  return activation.mean()
