"""Every arch's network behind one set of functions: what `Weights`, `Target`, probe and
classify call, whatever the arch.

Conventions:
  * Parameters are the flat table `param_shapes(arch)` ("conv1_1.kernel",
    "layer1_0.bn1.scale", ...) nested at "." (`weights.nest`); a module is a
    key without its last component ("layer1_0.bn1"), and parameters are read,
    drawn and pruned module by module.
  * Images are NHWC, already normalised by `nets.normalisation(arch)`.
  * VGG keeps its own code (`jaxviz.vgg`: the write-up's reading, the
    single-channel fast path); the canonical networks run their Flax module
    up to the deepest tap asked for (`NetModel`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any

import jax
import numpy as np

from jaxviz import layers as layers_lib
from jaxviz import nets, vgg

Params = dict[str, Any]


def _network_module(arch: str):
  return importlib.import_module(f"jaxviz.nets.{arch}")


def param_shapes(arch: str) -> dict[str, tuple[int, ...]]:
  """The explicit flat key -> shape table every file of `arch` is checked against."""
  return vgg.param_shapes(arch) if nets.is_vgg(arch) else nets.table(arch).param_shapes()


def module_of(key: str) -> str:
  """"layer1_0.bn1.scale" -> "layer1_0.bn1"."""
  return key.rpartition(".")[0]


@functools.lru_cache(maxsize=None)
def module_names(arch: str) -> tuple[str, ...]:
  """The modules that hold parameters, in network order."""
  return tuple(dict.fromkeys(module_of(key) for key in param_shapes(arch)))


def module_keys(arch: str, modules) -> list[str]:
  """The flat keys of `modules`, in table order."""
  wanted = set(modules)
  return [key for key in param_shapes(arch) if module_of(key) in wanted]


def needed_modules(layer: layers_lib.Layer, arch: str) -> tuple[str, ...]:
  """The modules whose parameters computing tap `layer` needs."""
  if nets.is_vgg(arch):
    return vgg.needed_modules(layer, arch)
  return tuple(nets.table(arch).needed_modules(layer.name))


def random_module(key: jax.Array, arch: str, module: str) -> dict[str, np.ndarray]:
  """One module's parameters as the reference initialises them, from
  `fold_in(key, the module's position)` (any subset equals the whole draw's)."""
  if nets.is_vgg(arch):
    return vgg.random_module(key, arch, module)
  return _network_module(arch).random_module(key, module)


def layer_activation(params: Params, images: jax.Array, layer: layers_lib.Layer, *, arch: str,
                     precision: str = "default") -> jax.Array:
  """(N, H, W, 3) normalised -> (N, h, w, channels) of tap `layer`, running only up to it."""
  if nets.is_vgg(arch):
    return vgg.layer_activation(params, images, layer, arch=arch, precision=precision)
  return NetModel(arch, precision).features(params, images, frozenset([layer.name]))[layer.name]


def logits(params: Params, images: jax.Array, *, arch: str,
           precision: str = "default") -> jax.Array:
  """(N, H, W, 3) normalised -> (N, classes)."""
  if nets.is_vgg(arch):
    return vgg.logits(params, images, arch=arch, precision=precision)
  final = nets.taps(arch)[-1]
  return layer_activation(params, images, final, arch=arch,
                          precision=precision).reshape(images.shape[0], -1)


@dataclasses.dataclass(frozen=True)
class NetModel:
  """A canonical network as an optimisation-core model (`jaxviz.optvis.models`).

  Attributes:
    arch: one of `nets.CANONICAL_ARCHS`.
    precision: conv/matmul precision (`vgg.PRECISIONS`).
    options: extra attributes of the arch's Flax `Network`, as sorted (name,
      value) pairs (inceptionv1: `redirected_relu`).
  """

  arch: str
  precision: str = "default"
  options: tuple[tuple[str, Any], ...] = ()
  # No single-channel fast path: a tap is a concat, an add or a BN output as
  # often as a conv's, and the saving is one conv's output channels.
  channel = None

  @property
  def mean(self) -> tuple[float, ...]:
    return nets.normalisation(self.arch)[0]

  @property
  def std(self) -> tuple[float, ...]:
    return nets.normalisation(self.arch)[1]

  def _deepest(self, names) -> layers_lib.Layer:
    return max((nets.resolve_tap(name, self.arch) for name in names),
               key=lambda tap: tap.index)

  def features(self, params: Params, inputs: jax.Array, names) -> dict[str, jax.Array]:
    network = _network_module(self.arch).Network(precision=self.precision,
                                                  stop_at=self._deepest(names).name,
                                                  **dict(self.options))
    return network.apply({"params": params}, inputs)

  def modules(self, names) -> tuple[str, ...]:
    """The modules whose parameters the activations in `names` need."""
    wanted = set()
    for name in names:
      wanted.update(needed_modules(nets.resolve_tap(name, self.arch), self.arch))
    return tuple(module for module in module_names(self.arch) if module in wanted)

  def prune(self, params: Params, names) -> Params:
    from jaxviz import weights as weights_lib

    flat = weights_lib.flatten(params)
    return weights_lib.nest({key: flat[key] for key in module_keys(self.arch,
                                                                   self.modules(names))})

  def resolve(self, spec, pre_relu: bool = False) -> vgg.Target:
    """A user's tap spec (`mixed4a`, `layer3.2`, an index) as a Target of this network."""
    layer = nets.resolve_tap(spec, self.arch)
    nets.read_tap(layer, self.arch, pre_relu)
    return vgg.Target(layer, self.arch, self.precision, bool(pre_relu))


def model(arch: str, precision: str = "default"):
  """`arch` as an optimisation-core model: `vgg.VGGModel` or `NetModel`."""
  if nets.is_vgg(arch):
    return vgg.VGGModel(arch, precision)
  return NetModel(arch, precision)
