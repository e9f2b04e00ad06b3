"""Parameterisations: how the optimised variable becomes a group of images.

Conventions:
  * The variable of one map is an array for a group of N images (N = the
    recipe's `group`, 1 unless an objective couples several images).
  * `init(key, side, group, dtype, model)` draws it; `from_photo(photo, side,
    group, model)` starts it from an (H, W, 3) photo in [0, 1], of the
    render's dtype.
  * `images(var, model)` -> (N, side, side, 3) in the parameterisation's
    `space`: "rgb" (in [0, 1]; transforms apply there, then the model's
    normalisation) or "input" (the model's input itself: the write-up's
    normalised pixels, MACO's value range; transforms apply there and nothing
    rounds it on its way to the model). `model_input` makes the model's input
    of them (after the transforms); `to_image` is RGB for outputs.
  * `next_scale(var, side, model)` moves the variable to the next scale's side.
  * An "input"-space parameterisation with `imagenet_units` set works in
    ImageNet-normalised units, (rgb - mean) / std with ImageNet's mean and std,
    whatever the model's own normalisation (its images and transforms are in
    those units; `model_input` converts), so that its steps, range and noise
    mean the same on every network (lucent's InceptionV1 takes rgb * 255 - 117,
    where the write-up's lr of 0.01 in its own units would move a pixel 58x
    less than on VGG, and MACO's range of +-2.5 would be a flat grey). On a model fed ImageNet's
    normalisation both are the same; jaxviz sets it for the networks fed
    otherwise (`app.rendering.layer_recipe`).
  * Randomness is key-first; sizes are static Python ints. Parameterisations
    are frozen dataclasses; arrays they hold are `Constant`s (hashed by value).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import ops
from jaxviz.errors import SettingError
from jaxviz.optvis import models


def _draw(sampler, key, shape, dtype) -> jax.Array:
  """A random start, drawn in float32 and then cast to `dtype`: JAX's samplers give
  other numbers in float64, and a float64 render (the verification mode) must
  start where the float32 render of the same seed does."""
  return sampler(key, shape, jnp.float32).astype(dtype)


class Parameterisation:
  """Base class: subclasses are frozen dataclasses (see the module docstring)."""

  space = "rgb"
  imagenet_units = False  # for "input"-space ones (module docstring)

  def init(self, key: jax.Array, side: int, group: int, dtype, model):
    raise NotImplementedError

  def from_photo(self, photo: jax.Array, side: int, group: int, model):
    raise NotImplementedError

  def images(self, var, model) -> jax.Array:
    raise NotImplementedError

  def to_image(self, var, model) -> jax.Array:
    images = self.images(var, model)
    if self.space == "rgb":
      return images
    return ops.denormalise(images) if self.imagenet_units else models.deprocess(model, images)

  def model_input(self, images: jax.Array, model) -> jax.Array:
    """`images` (this parameterisation's space, transformed or not) -> the model's input."""
    if self.space == "rgb":
      return models.preprocess(model, images)
    return models.preprocess(model, ops.denormalise(images)) if self.imagenet_units else images

  def next_scale(self, var, side: int, model):
    raise SettingError("scales", f"must be 1 for the {type(self).__name__} parameterisation")

  def _from_rgb(self, model, rgb: jax.Array) -> jax.Array:
    """RGB in [0, 1] -> an "input"-space variable's units (see the module docstring)."""
    return ops.normalise(rgb) if self.imagenet_units else models.preprocess(model, rgb)

  def spec(self) -> dict:
    raise NotImplementedError


@dataclasses.dataclass(frozen=True, eq=False)
class Constant:
  """A numpy array as a hashable constant of a frozen dataclass: equal by value."""

  array: np.ndarray

  @functools.cached_property
  def digest(self) -> str:
    data = np.ascontiguousarray(self.array)
    return hashlib.sha256(str((data.dtype, data.shape)).encode() + data.tobytes()).hexdigest()

  def __hash__(self) -> int:
    return hash(self.digest)

  def __eq__(self, other) -> bool:
    return isinstance(other, Constant) and self.digest == other.digest


@dataclasses.dataclass(frozen=True)
class NormalisedPixels(Parameterisation):
  """The write-up's: the variable is the normalised image, the model's input itself
  (or, with `imagenet_units`, the image normalised as ImageNet's; module docstring).

  Start: near-grey noise `(u * 20 + 128) / 255`, u ~ U[0, 1). Between scales
  the image (de-normalised, not clipped) is resized with OpenCV's bicubic and
  box-blurred (`blur` x `blur`, 1 = none), then normalised again.
  """

  blur: int = 5
  imagenet_units: bool = False
  space = "input"

  @staticmethod
  def noise(key, side: int, group: int, dtype) -> jax.Array:
    """The start images, (group, side, side, 3) RGB: near-grey noise."""
    return (_draw(jax.random.uniform, key, (group, side, side, 3), dtype) * 20 + 128) / 255

  def init(self, key, side, group, dtype, model):
    return self._from_rgb(model, self.noise(key, side, group, dtype))

  def from_photo(self, photo, side, group, model):
    resized = ops.resize_bicubic(photo, side, side)
    return self._from_rgb(model, jnp.broadcast_to(resized, (group, side, side, 3)))

  def images(self, var, model):
    return var

  def next_scale(self, var, side, model):
    image = jax.vmap(lambda one: ops.box_blur(ops.resize_bicubic(one, side, side), self.blur))(
        self.to_image(var, model))
    return self._from_rgb(model, image)

  def spec(self) -> dict:
    spec = {"blur": self.blur}
    if self.imagenet_units:  # absent otherwise, so that VGG's records keep their identity
      spec["imagenet_units"] = True
    return {"normalised_pixels": spec}


# Colour: lucid's square root of ImageNet's colour correlation, divided by its
# largest column norm, computed in float32 as lucid and lucent compute it (and
# as horama stores it); out = C @ rgb per pixel.
_COLOUR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]],
                        np.float32)
COLOUR_CORRELATION = _COLOUR_SQRT / np.max(np.linalg.norm(_COLOUR_SQRT, axis=0))


# horama stores the same matrix as nine rounded decimals (float32), which differ
# from the above by up to 4e-9; MACO uses horama's, to equal it.
HORAMA_COLOUR_CORRELATION = np.array([[0.56282854, 0.58447580, 0.58447580],
                                      [0.19482528, 0.00000000, -0.19482528],
                                      [0.04329450, -0.10823626, 0.06494176]], np.float32).T


def recorrelate(images: jax.Array, matrix: np.ndarray = COLOUR_CORRELATION) -> jax.Array:
  """(..., 3) decorrelated colours -> correlated ones: C @ rgb per pixel."""
  return images @ jnp.asarray(matrix.T, images.dtype)


def decorrelate(images: jax.Array, matrix: np.ndarray = COLOUR_CORRELATION) -> jax.Array:
  """Inverse of `recorrelate`."""
  inverse = np.linalg.inv(matrix.astype(np.float64))
  return images @ jnp.asarray(inverse.T, images.dtype)


def _logit(images: jax.Array) -> jax.Array:
  clipped = jnp.clip(images, 1e-4, 1 - 1e-4)
  return jnp.log(clipped) - jnp.log1p(-clipped)


def rfft2d_freqs(height: int, width: int) -> np.ndarray:
  """(height, width // 2 + 1 + width % 2) frequency magnitudes, lucid's layout: for an
  odd width one extra column, which the inverse transform ignores."""
  fy = np.fft.fftfreq(height)[:, None]
  fx = np.fft.fftfreq(width)[: width // 2 + 1 + width % 2]
  return np.sqrt(fx * fx + fy * fy)


@dataclasses.dataclass(frozen=True)
class Fourier(Parameterisation):
  """lucid's `fft_image` with `to_valid_rgb`, as lucent has it.

  The variable is a spectrum (N, 3, h, wf, 2) (real and imaginary parts;
  lucent's layout, wf = w // 2 + 1, + 1 for odd w). Image: the spectrum times
  `1 / max(f, 1 / max(h, w)) ** decay_power` (rounded to float32, as lucent
  rounds it), an orthonormal inverse real FFT, / 4, then, if `decorrelate`,
  the colours recorrelated (`COLOUR_CORRELATION`), then a sigmoid into (0, 1).
  Start: normal(0, sd); from a photo: the exact inverse of all that.
  """

  decay_power: float = 1.0
  sd: float = 0.01
  decorrelate: bool = True

  def _scale(self, side: int, dtype) -> jax.Array:
    freqs = rfft2d_freqs(side, side)
    scale = 1.0 / np.maximum(freqs, 1.0 / side) ** self.decay_power
    return jnp.asarray(scale.astype(np.float32), dtype)

  def init(self, key, side, group, dtype, model):
    wf = rfft2d_freqs(side, side).shape[1]
    return _draw(jax.random.normal, key, (group, 3, side, wf, 2), dtype) * self.sd

  def images(self, var, model):
    side = var.shape[2]
    spectrum = (var[..., 0] + 1j * var[..., 1]) * self._scale(side, var.dtype)
    planes = jnp.fft.irfftn(spectrum, s=(side, side), axes=(-2, -1), norm="ortho") / 4.0
    images = jnp.moveaxis(planes, 1, -1).astype(var.dtype)
    if self.decorrelate:
      images = recorrelate(images)
    return jax.nn.sigmoid(images)

  def from_photo(self, photo, side, group, model):
    images = _logit(ops.resize_bicubic(photo, side, side))
    if self.decorrelate:
      images = decorrelate(images)
    spectrum = jnp.fft.rfft2(jnp.moveaxis(images, -1, 0) * 4.0, norm="ortho")
    wf = rfft2d_freqs(side, side).shape[1]
    spectrum = jnp.pad(spectrum, ((0, 0), (0, 0), (0, wf - spectrum.shape[-1])))
    spectrum = spectrum / self._scale(side, photo.dtype)
    var = jnp.stack([spectrum.real, spectrum.imag], axis=-1).astype(photo.dtype)
    return jnp.broadcast_to(var, (group, *var.shape))

  def spec(self) -> dict:
    return {"fourier": dataclasses.asdict(self)}


def standardise(values: jax.Array) -> jax.Array:
  """horama's: minus the mean, over (the std + 1e-4), both over every element; the std
  unbiased (N - 1), of the magnitude for complex values."""
  centred = values - values.mean()
  std = jnp.sqrt(jnp.sum(jnp.abs(centred) ** 2) / (values.size - 1))
  return centred / (std + 1e-4)


def as_spectrum(value, where: str = "the spectrum") -> Constant:
  """A MACO magnitude spectrum, (3, S, S // 2 + 1), finite, as a float32 `Constant`;
  `value` is a `Constant` or an array. `where` names it in errors."""
  array = value.array if isinstance(value, Constant) else value
  try:
    array = np.asarray(array)
  except (TypeError, ValueError):
    array = np.asarray(None)
  if (array.ndim != 3 or array.shape[0] != 3 or array.shape[1] < 2
      or array.shape[2] != array.shape[1] // 2 + 1
      or not np.issubdtype(array.dtype, np.floating)):
    raise SettingError("spectrum", f"{where} holds a {array.dtype} array of shape "
                                   f"{array.shape}, not a (3, S, S // 2 + 1) magnitude spectrum")
  if not np.isfinite(array).all():
    raise SettingError("spectrum", f"{where} holds non-finite values")
  if isinstance(value, Constant) and array.dtype == np.float32:
    return value
  return Constant(array.astype(np.float32))


@dataclasses.dataclass(frozen=True)
class Maco(Parameterisation):
  """MACO (Fel et al. 2023), as horama's `maco_preconditioner`: a fixed magnitude
  spectrum, only the phase optimised.

  The variable is a phase (N, 3, S, S // 2 + 1); `magnitude` (3, S, S // 2 + 1)
  is fixed (`jaxviz spectrum` averages it from photos). Image: the phase
  standardised, times the magnitude as e^(i phase), an inverse real FFT
  (unnormalised: 1 / (S * S)), standardised, colours recorrelated (horama's
  rounding of the matrix, `HORAMA_COLOUR_CORRELATION`), then
  `sigmoid * (high - low) + low`: the model's input space (horama feeds it to
  the model as is), or ImageNet's units with `imagenet_units` (module
  docstring). Start: normal(0, 1); from a photo: the phase of its decorrelated
  spectrum (the magnitude stays the fixed one).
  """

  magnitude: Constant
  values_range: tuple[float, float] = (-2.5, 2.5)
  imagenet_units: bool = False
  space = "input"

  def _magnitude(self, side: int, dtype) -> jax.Array:
    expected = (3, side, side // 2 + 1)
    if tuple(self.magnitude.array.shape) != expected:
      raise SettingError("spectrum", f"has shape {tuple(self.magnitude.array.shape)}; a "
                                     f"{side} px MACO image needs {expected}")
    return jnp.asarray(self.magnitude.array, dtype)

  def init(self, key, side, group, dtype, model):
    if side % 2:
      raise SettingError("size", f"must be even for MACO, got {side}")
    self._magnitude(side, dtype)
    return _draw(jax.random.normal, key, (group, 3, side, side // 2 + 1), dtype)

  def _one(self, phase: jax.Array) -> jax.Array:
    phase = standardise(phase)
    magnitude = self._magnitude(phase.shape[1], phase.dtype)
    spectrum = magnitude * jnp.cos(phase) + 1j * (magnitude * jnp.sin(phase))
    image = standardise(jnp.fft.irfft2(spectrum).astype(phase.dtype))
    image = recorrelate(jnp.moveaxis(image, 0, -1), HORAMA_COLOUR_CORRELATION)
    low, high = self.values_range
    return jax.nn.sigmoid(image) * (high - low) + low

  def images(self, var, model):
    return jax.vmap(self._one)(var)

  def from_photo(self, photo, side, group, model):
    low, high = self.values_range
    scaled = (self._from_rgb(model, ops.resize_bicubic(photo, side, side)) - low) / (high - low)
    spectrum = jnp.fft.rfft2(jnp.moveaxis(decorrelate(_logit(scaled), HORAMA_COLOUR_CORRELATION),
                                          -1, 0))
    return jnp.broadcast_to(jnp.angle(spectrum).astype(photo.dtype),
                            (group, 3, side, side // 2 + 1))

  def spec(self) -> dict:
    spec = {"magnitude_sha256": self.magnitude.digest, "values_range": list(self.values_range)}
    if self.imagenet_units:  # absent otherwise, so that VGG's records keep their identity
      spec["imagenet_units"] = True
    return {"maco": spec}
