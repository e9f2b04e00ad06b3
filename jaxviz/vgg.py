"""VGG in Flax, NHWC, with torchvision's numerics.

Conventions:
  * Images are NHWC, already normalised (`jaxviz.ops.normalise`).
  * Parameters are an explicit pytree `{"conv1_1": {"kernel", "bias"}, ...,
    "fc6": ..., "fc8": ...}` passed to every call. They are never closed over:
    a jitted function that captures 528 MB of weights makes XLA constant-fold
    them and compiles crawl.
  * Conv kernels are HWIO; dense kernels are (in, out); fc6's input order is
    the NHWC flatten of pool5 (the converter reorders torchvision's NCHW rows).
  * `precision` is `jax.lax.Precision` for every conv and matmul. On CPU any
    value computes in full float32. On GPU, "default" lets XLA use TF32
    (about 1e-3 relative error, much faster); "highest" is true float32.
  * The parameters' shapes are an explicit table (`param_shapes`), held equal
    to the Flax module's by a test; random initialisation uses the module's
    initializers (torchvision's), module by module (`random_module`).
  * `VGGModel` is VGG as an optimisation-core model (`jaxviz.optvis.models`);
    `Target` is a user's layer spec resolved against it (SPEC §1: a conv layer
    is read after its ReLU unless `pre_relu`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxviz import layers as layers_lib
from jaxviz import nets, ops
from jaxviz.errors import SettingError

Params = dict[str, Any]
PRECISIONS = ("default", "high", "highest")


def check_precision(precision: str) -> str:
  if precision not in PRECISIONS:
    raise SettingError("precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")
  return precision


# torchvision's VGG initialisation: convs kaiming normal (fan_out, ReLU gain; JAX's
# "normal" is not truncated), linear layers normal(0, 0.01), biases 0.
CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
DENSE_INIT = nn.initializers.normal(0.01)


def adaptive_avg_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
  """torch's AdaptiveAvgPool1d as an (out_size, in_size) averaging matrix.

  Output cell i averages inputs [floor(i*in/out), ceil((i+1)*in/out)); when
  in < out, inputs repeat, which is what torchvision does for small images.
  """
  matrix = np.zeros((out_size, in_size))
  for i in range(out_size):
    start = (i * in_size) // out_size
    end = -((-(i + 1) * in_size) // out_size)
    matrix[i, start:end] = 1.0 / (end - start)
  return matrix


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """(N, H, W, C) -> (N, H // 2, W // 2, C): torch's MaxPool2d(2, 2), odd sides floored.

  Written as a reshape and a max rather than `nn.max_pool` because the
  gradient matters here more than the forward pass: reduce_window's gradient
  is a select-and-scatter, which on XLA CPU made the whole render step about
  20% slower (layer 10, 56-224 px); the max's gradient is an elementwise mask
  that XLA fuses. Values are identical. Gradients differ only at ties, where
  torch picks the first maximum and this splits evenly; in VGG the only ties
  with non-zero probability are windows of ReLU zeros, whose gradient the
  ReLU below zeroes either way.
  """
  n, h, w, c = x.shape
  x = x[:, : h // 2 * 2, : w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _adaptive_avg_pool(x: jax.Array, out_side: int) -> jax.Array:
  """(N, H, W, C) -> (N, out_side, out_side, C), torch's adaptive average pool."""
  rows = jnp.asarray(adaptive_avg_pool_matrix(x.shape[1], out_side), x.dtype)
  cols = jnp.asarray(adaptive_avg_pool_matrix(x.shape[2], out_side), x.dtype)
  return jnp.einsum("ih,nhwc,jw->nijc", rows, x, cols, precision=jax.lax.Precision.HIGHEST)


class VGG(nn.Module):
  """VGG without batch norm, returning every layer's activation by name.

  Attributes:
    arch: one of `jaxviz.layers.ARCH_CONFIGS`.
    stop_at: index of the last `features` layer to run; None runs the whole
      network including the classifier.
    precision: "default" | "high" | "highest" (see module docstring).
  """

  arch: str = layers_lib.DEFAULT_ARCH
  stop_at: int | None = None
  precision: str = "default"

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    """x: (N, H, W, 3) normalised -> {layer name: activation}.

    Every feature layer up to `stop_at` is present; with `stop_at=None` also
    "fc6", "relu6", "fc7", "relu7" and "logits" (= fc8, 1000 classes).
    Dropout is omitted: this is the network in evaluation mode.
    """
    precision = jax.lax.Precision(self.precision)
    out: dict[str, jax.Array] = {}
    for layer in layers_lib.feature_layers(self.arch):
      if self.stop_at is not None and layer.index > self.stop_at:
        return out
      if layer.kind == "conv":
        x = nn.Conv(layer.channels, (3, 3), padding=((1, 1), (1, 1)), precision=precision,
                    kernel_init=CONV_INIT, name=layer.name)(x)
      elif layer.kind == "relu":
        x = nn.relu(x)
      else:
        x = max_pool_2x2(x)
      out[layer.name] = x
    if self.stop_at is not None:
      return out

    x = _adaptive_avg_pool(x, 7).reshape(x.shape[0], -1)
    for name, _, features in layers_lib.CLASSIFIER:
      x = nn.Dense(features, precision=precision, kernel_init=DENSE_INIT, name=name)(x)
      if name == "fc8":
        out["logits"] = x
      else:
        out[name] = x
        x = nn.relu(x)
        out["relu" + name[2:]] = x
    return out


def activations(params: Params, images: jax.Array, *, arch: str = layers_lib.DEFAULT_ARCH,
                stop_at: int | None = None, precision: str = "default") -> dict[str, jax.Array]:
  """Runs the network on normalised (N, H, W, 3) images; see `VGG.__call__`."""
  return VGG(arch=arch, stop_at=stop_at, precision=precision).apply({"params": params}, images)


def layer_activation(params: Params, images: jax.Array, layer: layers_lib.Layer, *,
                     arch: str = layers_lib.DEFAULT_ARCH,
                     precision: str = "default") -> jax.Array:
  """(N, H, W, 3) normalised -> (N, h, w, layer.channels), running only up to `layer`."""
  out = activations(params, images, arch=arch, stop_at=layer.index, precision=precision)
  return out[layer.name]


def logits(params: Params, images: jax.Array, *, arch: str = layers_lib.DEFAULT_ARCH,
           precision: str = "default") -> jax.Array:
  """(N, H, W, 3) normalised -> (N, 1000) ImageNet logits."""
  return activations(params, images, arch=arch, precision=precision)["logits"]


def truncate_params(params: Params, layer: layers_lib.Layer,
                    arch: str = layers_lib.DEFAULT_ARCH) -> Params:
  """Only the parameters the layers up to `layer` use.

  Passing fewer weights into a jitted function keeps host-to-device copies and
  per-call argument handling small (conv5_1 needs 60 MB of VGG16's 528 MB).
  """
  return {name: params[name] for name in needed_modules(layer, arch) if name in params}


def channel_activation(params: Params, images: jax.Array, layer: layers_lib.Layer,
                       channel: jax.Array, *, arch: str = layers_lib.DEFAULT_ARCH,
                       precision: str = "default") -> jax.Array:
  """(N, H, W, 3) normalised -> (N, h, w): channel `channel` of `layer` only.

  Equals `layer_activation(...)[..., channel]`, but the last conv at or before
  the layer computes just that one output channel (a dynamic slice of its
  kernel; `channel` may be traced), and the ReLU/pool after it act on that
  channel alone. Its backward pass then carries one channel instead of all of
  them: for conv3_1 that removes about a sixth of the work, for conv2_2 a third.
  """
  feature_layers = layers_lib.feature_layers(arch)
  last_conv = next(l for l in reversed(feature_layers[: layer.index + 1]) if l.kind == "conv")
  if last_conv.index == 0:
    x = images
  else:
    below = feature_layers[last_conv.index - 1]
    x = activations(params, images, arch=arch, stop_at=below.index, precision=precision)[
        below.name]
  kernel = jax.lax.dynamic_slice_in_dim(params[last_conv.name]["kernel"], channel, 1, axis=-1)
  bias = jax.lax.dynamic_slice_in_dim(params[last_conv.name]["bias"], channel, 1)
  y = jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), ((1, 1), (1, 1)),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   precision=jax.lax.Precision(precision)) + bias.astype(x.dtype)
  for after in feature_layers[last_conv.index + 1: layer.index + 1]:
    if after.kind == "relu":
      y = nn.relu(y)
    else:
      y = max_pool_2x2(y)
  return y[..., 0]


# The smallest input every layer accepts (five 2x2 pools); parameters do not
# depend on the input side, the classifier's adaptive pool sees to that.
_INIT_SIDE = 32


@functools.lru_cache(maxsize=None)
def param_shapes(arch: str = layers_lib.DEFAULT_ARCH) -> dict[str, tuple[int, ...]]:
  """The flat key -> shape table of `arch` ("conv1_1.kernel": (3, 3, 3, 64), ...), in
  network order: the explicit table every file is checked against. Written out
  rather than read off the Flax module (`jax.eval_shape` of its init costs a
  second of every command's start); a test holds the two equal."""
  shapes: dict[str, tuple[int, ...]] = {}
  channels = 3
  for layer in layers_lib.conv_layers(layers_lib.check_arch(arch)):
    shapes[f"{layer.name}.kernel"] = (3, 3, channels, layer.channels)
    shapes[f"{layer.name}.bias"] = (layer.channels,)
    channels = layer.channels
  for name, inputs, outputs in layers_lib.CLASSIFIER:
    shapes[f"{name}.kernel"] = (inputs, outputs)
    shapes[f"{name}.bias"] = (outputs,)
  return shapes


def flax_param_shapes(arch: str = layers_lib.DEFAULT_ARCH) -> dict[str, tuple[int, ...]]:
  """The same table read off the Flax module by `jax.eval_shape` (for the test)."""
  images = jax.ShapeDtypeStruct((1, _INIT_SIDE, _INIT_SIDE, 3), jnp.float32)
  variables = jax.eval_shape(VGG(arch=layers_lib.check_arch(arch)).init, jax.random.key(0),
                             images)
  return {key: tuple(leaf.shape)
          for key, leaf in traverse_util.flatten_dict(variables["params"], sep=".").items()}


def module_names(arch: str = layers_lib.DEFAULT_ARCH) -> tuple[str, ...]:
  """The modules that hold parameters, in network order: conv1_1, ..., fc8."""
  return tuple(dict.fromkeys(key.split(".")[0] for key in param_shapes(arch)))


def needed_modules(layer: layers_lib.Layer, arch: str = layers_lib.DEFAULT_ARCH) -> tuple[str, ...]:
  """The modules whose parameters the layers up to `layer` use."""
  return tuple(l.name for l in layers_lib.feature_layers(arch)[: layer.index + 1]
               if l.kind == "conv")


def random_module(key: jax.Array, arch: str, module: str) -> dict[str, np.ndarray]:
  """One module's random parameters, torchvision's initialisation (the Flax module's
  initializers: convs kaiming normal, fan_out, ReLU gain; dense normal(0, 0.01);
  biases 0), drawn from `fold_in(key, the module's position)`: any set of modules
  is the same as those modules of the whole network."""
  shapes = param_shapes(arch)
  position = module_names(arch).index(module)
  kernel = _random_kernel(jax.random.fold_in(key, position), shapes[f"{module}.kernel"])
  return {"kernel": np.asarray(kernel), "bias": np.zeros(shapes[f"{module}.bias"], np.float32)}


@functools.partial(jax.jit, static_argnames="shape")
def _random_kernel(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Jitted, so that its programs are kept in the compilation cache (drawn op by op,
  each shape's ops compile anew in every process)."""
  init = CONV_INIT if len(shape) == 4 else DENSE_INIT
  return init(key, shape, jnp.float32)


@dataclasses.dataclass(frozen=True)
class VGGModel:
  """VGG (any depth) as an optimisation-core model: named activations, the
  single-channel fast path, parameter pruning and layer specs.

  A name means what it means on the command line (`layers_lib.named_module`):
  "conv3_1" is read after its ReLU, "conv3_1_pre_relu" is the raw conv output;
  "relu3_1", "pool3", "fc6".."fc8" and "logits" are those modules' outputs."""

  arch: str = layers_lib.DEFAULT_ARCH
  precision: str = "default"
  mean: tuple[float, ...] = ops.IMAGENET_MEAN
  std: tuple[float, ...] = ops.IMAGENET_STD

  def _modules_read(self, names) -> dict[str, layers_lib.Layer | None]:
    """Each name's feature layer (None for a classifier output)."""
    return {name: layers_lib.named_module(name, self.arch) for name in names}

  def _deepest(self, names) -> layers_lib.Layer | None:
    """The deepest feature layer named, or None when a classifier output is named."""
    read = self._modules_read(names).values()
    if any(layer is None for layer in read):
      return None
    return max(read, key=lambda layer: layer.index)

  def features(self, params: Params, inputs: jax.Array, names) -> dict[str, jax.Array]:
    deepest = self._deepest(names)
    found = activations(params, inputs, arch=self.arch, precision=self.precision,
                        stop_at=None if deepest is None else deepest.index)
    # Each name as asked for, read where it means (conv3_1 -> relu3_1's output).
    return {**found, **{name: found[layer.name]
                        for name, layer in self._modules_read(names).items() if layer}}

  def channel(self, params: Params, inputs: jax.Array, name: str, unit: jax.Array) -> jax.Array:
    layer = layers_lib.named_module(name, self.arch)
    if layer is None:  # a classifier output: no single-channel path
      return jnp.take(self.features(params, inputs, {name})[name], unit, axis=-1)
    return channel_activation(params, inputs, layer, unit, arch=self.arch,
                              precision=self.precision)

  def prune(self, params: Params, names) -> Params:
    deepest = self._deepest(names)
    return params if deepest is None else truncate_params(params, deepest, self.arch)

  def modules(self, names) -> tuple[str, ...]:
    """The modules whose parameters the activations in `names` need."""
    deepest = self._deepest(names)
    return module_names(self.arch) if deepest is None else needed_modules(deepest, self.arch)

  def resolve(self, spec, pre_relu: bool = False) -> "Target":
    """A user's layer spec (`24`, `conv5_1`, `features.24`) as a Target of this network."""
    layer = spec if isinstance(spec, layers_lib.Layer) else layers_lib.resolve_layer(
        spec, self.arch)
    layers_lib.read_layer(layer, self.arch, pre_relu)  # refuses pre_relu on a pool or ReLU
    return Target(layer, self.arch, self.precision, bool(pre_relu))


@dataclasses.dataclass(frozen=True)
class Target:
  """The layer (tap) whose feature maps are maximised or ranked, and how the network runs.

  Any arch of `jaxviz.nets.ARCHS`, not only VGG: it lives here because VGG's
  reading of a layer (SPEC §1) is what it was made for.

  Attributes:
    layer: the layer the user addressed (conv5_1 for `24`; a tap of another net).
    arch: the architecture of the weights.
    precision: conv/matmul precision, one of `PRECISIONS`.
    pre_relu: read a VGG conv layer's raw output instead of its ReLU's.
  """

  layer: layers_lib.Layer
  arch: str = layers_lib.DEFAULT_ARCH
  precision: str = "default"
  pre_relu: bool = False

  @property
  def model(self):
    """The network as an optimisation-core model (`VGGModel` or `nets.networks.NetModel`)."""
    from jaxviz.nets import networks  # imports this module

    return networks.model(self.arch, self.precision)

  @property
  def read(self) -> layers_lib.Layer:
    """The module whose output is read: relu5_1 for conv5_1 unless pre_relu."""
    return nets.read_tap(self.layer, self.arch, self.pre_relu)

  @property
  def feature_name(self) -> str:
    """The name objectives read this target by, in `model`'s features: the module read
    (relu5_1), or conv5_1_pre_relu for a VGG conv's raw output."""
    if self.pre_relu:
      return self.layer.name + layers_lib.PRE_RELU_SUFFIX
    return self.read.name

  @property
  def reading(self) -> str:
    """How the layer is read, in words: 'post-ReLU', 'pre-ReLU' or '' (not a VGG conv)."""
    if self.layer.kind != "conv" or not nets.is_vgg(self.arch):
      return ""
    return "pre-ReLU" if self.pre_relu else "post-ReLU"

  def describe(self) -> str:
    """`conv5_1 (layer 24, post-ReLU)`, `mixed4a (tap 57)`: how every output names what
    it read."""
    details = ", ".join(filter(None, (nets.describe_tap(self.layer, self.arch),
                                      self.reading)))
    return f"{self.layer.name} ({details})"

  def provenance(self) -> dict:
    """What outputs record of the layer: index, name, the module read, pre_relu, arch."""
    return {"layer": self.layer.index, "layer_name": self.layer.name,
            "reads": self.read.name, "pre_relu": self.pre_relu, "arch": self.arch}


def resolve_target(spec, arch: str = layers_lib.DEFAULT_ARCH, *, pre_relu: bool = False,
                   precision: str = "default") -> Target:
  """A user's layer spec as a Target of `arch`: call it with the architecture of the
  weights actually loaded, since names and indices differ between networks."""
  from jaxviz.nets import networks  # imports this module

  return networks.model(nets.check_arch(arch), check_precision(precision)).resolve(spec,
                                                                                  pre_relu)
