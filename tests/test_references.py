"""The modern recipes against their reference implementations, live: lucent 0.1.8 (with
kornia 0.4.1, the newest it supports) and horama 0.3.0.

Everything runs in float64 on CPU. The references keep some constants in float32
(lucent's and horama's colour matrices, kornia's warp normalisation); where a
reference would refuse float64 input because of that, the constant is widened
to float64 with its float32 value unchanged, or a float32 translation vector is
cast, and nothing else of the reference is touched. lucent's `random_rotate`
rounds the image through float32 (`.float()`); its comparisons use float32
tolerances and say so.

Tolerances: parameterisations <= 1e-10; transforms <= 1e-10 (lucent's rotate and
the chain holding it: <= 1e-5, since lucent rotates in float32; the same kornia
warp in float64 <= 1e-10);
objectives' values and gradients <= 1e-10; end to end <= 1e-6.

.ci/run installs the references (with --no-deps: torch-lucent's metadata pins
kornia<=0.4.1, which pip would resolve against torch) and sets
JAXVIZ_REQUIRE_REFERENCES, so these tests fail there instead of skipping.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxviz import ops
from jaxviz.optvis import objectives, params, recipes, render, transforms
from jaxviz.vgg import VGGModel

if not (importlib.util.find_spec("lucent") and importlib.util.find_spec("horama")):
  if os.environ.get("JAXVIZ_REQUIRE_REFERENCES"):
    raise ImportError("lucent and horama are required (JAXVIZ_REQUIRE_REFERENCES is set)")
  pytest.skip("needs torch-lucent and horama (.ci/run installs them)", allow_module_level=True)

import horama.common  # noqa: E402
import horama.maco_fv  # noqa: E402
from lucent.optvis import objectives as lucent_objectives  # noqa: E402
from lucent.optvis import param as lucent_param  # noqa: E402
from lucent.optvis import render as lucent_render  # noqa: E402
from lucent.optvis import transform as lucent_transform  # noqa: E402
from lucent.optvis.param import color as lucent_color  # noqa: E402

DOUBLE = torch.float64


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


@pytest.fixture
def lucent_in_float64(monkeypatch):
  """lucent's float32 colour matrix widened (same values), its jitter's translation
  vector cast to the image's dtype, so that lucent accepts float64 images."""
  monkeypatch.setattr(lucent_color, "color_correlation_normalized",
                      lucent_color.color_correlation_normalized.astype(np.float64))
  translate = lucent_transform.translate
  monkeypatch.setattr(lucent_transform, "translate",
                      lambda image, shift: translate(image, shift.to(image.dtype)))


class Draws:
  """Stands in for `numpy.random.choice` in lucent: hands out the given values."""

  def __init__(self, values):
    self.values = collections.deque(values)

  def __call__(self, options, *args, **kwargs):
    value = self.values.popleft()
    choices = list(range(options)) if isinstance(options, int) else list(options)
    assert value in choices, (value, choices)
    return value


def nchw(array) -> torch.Tensor:
  return torch.from_numpy(np.asarray(array)).permute(0, 3, 1, 2).contiguous()


def nhwc(tensor: torch.Tensor) -> np.ndarray:
  return tensor.detach().permute(0, 2, 3, 1).numpy()


# (a) Parameterisations.

@pytest.mark.parametrize("side,decorrelate", [(16, True), (15, True), (16, False)])
def test_fourier_image_equals_lucents_fft_image_and_to_valid_rgb(side, decorrelate,
                                                                  lucent_in_float64):
  spectrum = np.random.default_rng(side).normal(size=(2, 3, side, side // 2 + 1 + side % 2, 2))
  lucent_params, image_f = lucent_param.image(side, batch=2, decorrelate=decorrelate)
  lucent_params[0].data = torch.from_numpy(spectrum)
  expected = nhwc(image_f())
  ours = params.Fourier(1.0, 0.01, decorrelate).images(jnp.asarray(spectrum), None)
  assert ours.dtype == jnp.float64 and expected.dtype == np.float64
  np.testing.assert_allclose(np.asarray(ours), expected, rtol=0, atol=1e-10)


def test_fourier_from_a_photo_gives_the_photo_back():
  photo = np.random.default_rng(0).uniform(0.05, 0.95, size=(12, 12, 3))
  fourier = params.Fourier()
  var = fourier.from_photo(jnp.asarray(photo), 12, 2, None)
  np.testing.assert_allclose(np.asarray(fourier.images(var, None)), np.stack([photo] * 2),
                             rtol=0, atol=1e-10)


@pytest.fixture
def horama_in_float64(monkeypatch):
  """horama's float32 colour matrix widened to float64 (same values)."""
  widened = horama.common.get_color_correlation_svd_sqrt("cpu").to(DOUBLE)
  monkeypatch.setattr(horama.common, "get_color_correlation_svd_sqrt", lambda device: widened)


def test_maco_image_equals_horamas_preconditioner(horama_in_float64):
  rng = np.random.default_rng(1)
  magnitude = np.abs(rng.normal(size=(3, 16, 9))).astype(np.float32)
  phase = rng.normal(size=(3, 16, 9))
  expected = horama.maco_fv.maco_preconditioner(
      torch.from_numpy(magnitude.astype(np.float64)), torch.from_numpy(phase), (-2.5, 2.5),
      "cpu")
  ours = params.Maco(params.Constant(magnitude)).images(jnp.asarray(phase)[None], None)[0]
  np.testing.assert_allclose(np.asarray(ours), expected.permute(1, 2, 0).numpy(), rtol=0,
                             atol=1e-10)


# (b) Transforms, one draw at a time.

def images(side=14, seed=0) -> np.ndarray:
  return np.random.default_rng(seed).uniform(size=(2, side, side, 3))


def test_pad_equals_lucents():
  x = images()
  expected = lucent_transform.pad(12, mode="constant", constant_value=0.5)(nchw(x))
  np.testing.assert_allclose(np.asarray(transforms.Pad(12, 0.5).apply(None, jnp.asarray(x))),
                             nhwc(expected), rtol=0, atol=0)


@pytest.mark.parametrize("distance,dx,dy", [(8, 3, 5), (4, 0, 2), (8, 7, 0)])
def test_jitter_equals_lucents_for_the_same_draw(distance, dx, dy, monkeypatch,
                                                 lucent_in_float64):
  x = images(20)
  monkeypatch.setattr(np.random, "choice", Draws([dx, dy]))
  expected = lucent_transform.jitter(distance)(nchw(x))
  ours = transforms.Jitter(distance).apply(jnp.asarray([dx, dy]), jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(ours), nhwc(expected), rtol=0, atol=1e-10)
  # kornia 0.4.1's quirk: a 3 px jitter moves a 20 px image by 3 * 20 / 19 px.
  assert dx == 0 or np.abs(np.asarray(ours) - np.roll(x, dx, axis=2)).max() > 1e-3


@pytest.mark.parametrize("index", range(11))
def test_random_scale_equals_lucents_for_each_scale(index, monkeypatch):
  scale = transforms.lucid_standard().transforms[2]
  x = images(25)
  monkeypatch.setattr(np.random, "choice", Draws([scale.scales[index]]))
  expected = lucent_transform.random_scale(list(scale.scales))(nchw(x))
  ours = scale.apply_variant(index, jnp.asarray(x))
  assert ours.shape == nhwc(expected).shape
  np.testing.assert_allclose(np.asarray(ours), nhwc(expected), rtol=0, atol=1e-10)


@pytest.mark.parametrize("angle", [-10, -3, 0, 7, 10])
def test_random_rotate_equals_lucents_for_the_same_angle(angle, monkeypatch):
  """lucent rotates in float32 whatever it gets (`image.float()`), so its sample
  coordinates carry float32 rounding (~2e-6 px at 18 px): compared at 1e-5. The same
  kornia warp with lucent's matrix, in float64, is compared at 1e-10."""
  rotate = transforms.lucid_standard().transforms[3]
  x = images(18)
  monkeypatch.setattr(np.random, "choice", Draws([angle]))
  expected = lucent_transform.random_rotate(list(range(-10, 11)) + 5 * [0])(nchw(x))
  assert expected.dtype == torch.float32
  ours = rotate.apply(jnp.asarray(rotate.angles.index(float(angle))), jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(ours), nhwc(expected), rtol=0, atol=1e-5)

  kornia = lucent_transform.kornia
  center = torch.tensor([[(18 - 1) / 2, (18 - 1) / 2]] * 2)
  matrix = kornia.get_rotation_matrix2d(center, torch.ones(2) * angle, torch.ones(2, 2))
  exact = kornia.warp_affine(nchw(x), matrix.to(DOUBLE), dsize=(18, 18))
  np.testing.assert_allclose(np.asarray(ours), nhwc(exact), rtol=0, atol=1e-10)


def lucent_values(chain: transforms.Compose, choices) -> list:
  """jaxviz's draws for a chain of lucid's transforms, as the values lucent's
  np.random.choice returns, in lucent's order."""
  values = []
  for transform, choice in zip(chain.transforms, choices):
    if isinstance(transform, transforms.Jitter):
      values += [int(choice[0]), int(choice[1])]
    elif isinstance(transform, transforms.RandomScale):
      values.append(transform.scales[int(choice)])
    elif isinstance(transform, transforms.RandomRotate):
      values.append(int(transform.angles[int(choice)]))
  return values


@pytest.mark.parametrize("seed", range(2))
def test_the_standard_sequence_equals_lucents_for_the_same_draws(seed, monkeypatch,
                                                                 lucent_in_float64):
  standard = transforms.lucid_standard()
  choices = standard.draw(jax.random.key(seed))
  x = images(32, seed)
  monkeypatch.setattr(np.random, "choice", Draws(lucent_values(standard, choices)))
  # The random scale changes the size, so both end with render_vis's upsampling to a
  # fixed side (here 48 px), inside each of jaxviz's branches.
  transformed = lucent_transform.compose(lucent_transform.standard_transforms)(nchw(x))
  expected = torch.nn.Upsample(size=48, mode="bilinear", align_corners=True)(transformed)
  ours = standard.apply(choices, jnp.asarray(x), lambda images: jax.vmap(
      lambda one: ops.resize_bilinear_align_corners(one, 48, 48))(images))
  # lucent's rotation, inside the chain, rounds through float32 (see the rotate test).
  np.testing.assert_allclose(np.asarray(ours), nhwc(expected), rtol=0, atol=1e-5)


def test_crops_with_noise_equal_horamas_step(horama_in_float64, monkeypatch):
  """horama's optimization_step with its five draws injected, against CropsWithNoise."""
  rng = np.random.default_rng(3)
  image = rng.uniform(-2, 2, size=(3, 40, 40))
  crops = transforms.CropsWithNoise(crops=3, side=16)
  draw = {"x0": 0.5 + 0.15 * rng.normal(size=3), "y0": 0.5 + 0.15 * rng.normal(size=3),
          "delta": rng.uniform(0.25, 0.30, size=3), "gauss": rng.normal(size=(3, 16, 16, 3)),
          "uniform": rng.uniform(size=(3, 16, 16, 3))}
  queue = collections.deque([
      torch.from_numpy((draw["x0"] - 0.5) / 0.15), torch.from_numpy((draw["y0"] - 0.5) / 0.15),
      torch.from_numpy((draw["delta"] - 0.25) / 0.05),
      torch.from_numpy(draw["gauss"]).permute(0, 3, 1, 2),
      torch.from_numpy(draw["uniform"]).permute(0, 3, 1, 2)])

  class Injected:
    def __getattr__(self, name):
      if name in ("randn", "rand", "randn_like", "rand_like"):
        return lambda *args, **kwargs: queue.popleft()
      return getattr(torch, name)

  monkeypatch.setattr(horama.common, "torch", Injected())
  seen = {}

  def objective(batch):
    seen["crops"] = batch
    return batch.mean()

  image_t = torch.from_numpy(image).requires_grad_(True)
  loss, _ = horama.common.optimization_step(objective, image_t, (0.20, 0.25), 0.05, 3, 16)
  loss.backward()
  draw = jax.tree.map(jnp.asarray, draw)

  def our_loss(image_hwc):
    return -crops.apply(draw, image_hwc[None]).mean()

  value, grad = jax.value_and_grad(our_loss)(jnp.asarray(image).transpose(1, 2, 0))
  ours = crops.apply(draw, jnp.asarray(image).transpose(1, 2, 0)[None])
  np.testing.assert_allclose(np.asarray(ours), nhwc(seen["crops"]), rtol=0, atol=1e-10)
  np.testing.assert_allclose(float(value), loss.item(), rtol=1e-12)
  np.testing.assert_allclose(np.asarray(grad), image_t.grad.permute(1, 2, 0).numpy(), rtol=0,
                             atol=1e-12)
  assert not queue


# (c) Objectives: value and gradient on the same activations.

class FakeFeatures:
  def __init__(self, activations, unit):
    self.activations, self.unit = activations, unit

  def layer(self, name):
    return self.activations

  def channel(self, name):
    return self.activations[..., self.unit]


def lucent_objective_value(objective, activations: np.ndarray):
  tensor = nchw(activations).requires_grad_(True)
  value = objective(lambda name: tensor)
  value.backward()
  return value.item(), nhwc(tensor.grad)


@pytest.mark.parametrize("name", ["channel", "neuron", "direction", "diversity", "sum"])
def test_objectives_equal_lucents_value_and_gradient(name):
  activations = np.random.default_rng(5).normal(size=(3, 6, 6, 8))
  vector = tuple(np.random.default_rng(6).normal(size=8))
  ours, theirs, sign = {
      "channel": (objectives.Channel("a"), lucent_objectives.channel("a", 3), -1),
      "neuron": (objectives.Neuron("a"), lucent_objectives.neuron("a", 3), -1),
      "direction": (objectives.Direction("a", vector),
                    lucent_objectives.direction("a", torch.tensor(vector, dtype=DOUBLE)), -1),
      # lucent's diversity value is what jaxviz maximises; lucent subtracts it.
      "diversity": (objectives.Diversity("a"), lucent_objectives.diversity("a"), 1),
      "sum": (objectives.Channel("a") + 100 * objectives.Diversity("a"),
              lucent_objectives.channel("a", 3) - 1e2 * lucent_objectives.diversity("a"), -1),
  }[name]
  expected_value, expected_grad = lucent_objective_value(theirs, activations)

  def value(acts):
    return ours(FakeFeatures(acts, 3), jnp.zeros((3, 4, 4, 3)), 3)

  got, grad = jax.value_and_grad(value)(jnp.asarray(activations))
  np.testing.assert_allclose(float(got), sign * expected_value, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(np.asarray(grad), sign * expected_grad, rtol=0, atol=1e-10)


def test_image_penalties_match_their_formulas():
  x = np.random.default_rng(7).uniform(size=(2, 5, 6, 3))
  images_ = jnp.asarray(x)
  features = FakeFeatures(None, 0)
  assert float(objectives.L1(0.5)(features, images_, 0)) == pytest.approx(np.abs(x - 0.5).sum())
  assert float(objectives.L2()(features, images_, 0)) == pytest.approx(
      np.sqrt(1e-6 + (x * x).sum()))
  tv = np.abs(np.diff(x, axis=1)).sum() + np.abs(np.diff(x, axis=2)).sum()
  assert float(objectives.TotalVariation()(features, images_, 0)) == pytest.approx(tv)


def test_nadam_equals_torchs():
  rng = np.random.default_rng(8)
  target, start = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
  weight = torch.from_numpy(start.copy()).requires_grad_(True)
  adam = torch.optim.NAdam([weight], lr=0.3)
  optimiser = recipes.NAdam(0.3).make()
  ours = jnp.asarray(start)
  state = optimiser.init(ours)
  for _ in range(6):
    adam.zero_grad()
    ((weight - torch.from_numpy(target)) ** 3).sum().backward()
    adam.step()
    grad = jax.grad(lambda w: ((w - target) ** 3).sum())(ours)
    updates, state = optimiser.update(grad, state, ours)
    ours = ours + updates
  np.testing.assert_allclose(np.asarray(ours), weight.detach().numpy(), rtol=0, atol=1e-10)


# (d) End to end: lucent's render_vis against jaxviz's lucid recipe.

def lucent_and_jaxviz_renders(vgg16_weights, torch_vgg16, monkeypatch, steps: int,
                              with_rotation: bool):
  """Conv3_1 map 5 (read after its in-place ReLU, as lucent's hook reads it): 24 px
  Fourier images, lucid's transforms (without the rotation if asked), the input
  upsampled to 40 px, `steps` Adam steps; the same start spectrum and the same
  draws (jaxviz draws, lucent is handed them). Returns (jaxviz, lucent) images."""
  side, input_side, unit = 24, 40, 5
  recipe = recipes.Lucid(size0=side, steps=steps, input_side=input_side).recipe(
      objectives.Channel("relu3_1"))
  lucent_list = list(lucent_transform.standard_transforms)
  if not with_rotation:
    recipe = dataclasses.replace(recipe, transforms=transforms.Compose(
        tuple(t for t in recipe.transforms.transforms if not isinstance(t, transforms.RandomRotate))))
    lucent_list = [lucent_list[i] for i in (0, 1, 2, 4)]
  model = VGGModel()
  key = jax.random.key(0)
  start = np.asarray(render.start(recipe, model, key, unit, jnp.float64))
  draws = []
  for step in range(steps):
    step_key = jax.random.fold_in(render.map_keys(key, unit)[1], step)
    draws += lucent_values(recipe.transforms, recipe.transforms.draw(step_key))
  monkeypatch.setattr(np.random, "choice", Draws(draws))

  def param_f():
    lucent_params, image_f = lucent_param.image(side)
    lucent_params[0].data = torch.from_numpy(start.copy())
    return lucent_params, image_f

  # lucent rounds each rotation through float32; the network runs in float64.
  warp_affine = lucent_transform.kornia.warp_affine
  monkeypatch.setattr(lucent_transform.kornia, "warp_affine",
                      lambda image, matrix, dsize: warp_affine(image, matrix, dsize).to(DOUBLE))
  network = torch_vgg16.features[:12].eval()  # conv3_1 is module "10"; its ReLU "11"
  expected = lucent_render.render_vis(network, f"10:{unit}", param_f=param_f,
                                      transforms=lucent_list, thresholds=(steps,),
                                      show_image=False, progress=False,
                                      fixed_image_size=input_side)[0]
  placed = render.cast_params(model.prune(vgg16_weights.params, recipe.objective.layers()),
                              "float64")
  ours = render.render_batch(recipe, model, placed, np.array([unit]), key,
                             dtype="float64").images[0]
  return ours, expected


def test_lucid_recipe_equals_lucents_render_vis(vgg16_weights, torch_vgg16, monkeypatch,
                                                 lucent_in_float64):
  """Four steps with pad, jitters and random scales (every draw handed to lucent)."""
  ours, expected = lucent_and_jaxviz_renders(vgg16_weights, torch_vgg16, monkeypatch, 4,
                                             with_rotation=False)
  np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)


def test_lucid_recipe_with_rotation_equals_lucents_first_step(vgg16_weights, torch_vgg16,
                                                               monkeypatch, lucent_in_float64):
  """With lucent's rotation the first step agrees to 1e-6; later steps drift, because
  lucent rotates in float32 and Adam scales that rounding up to full steps where
  gradients are near zero (measured: 1.4e-5, 4.7e-4, 1.2e-3 after 2, 3, 4 steps)."""
  ours, expected = lucent_and_jaxviz_renders(vgg16_weights, torch_vgg16, monkeypatch, 1,
                                             with_rotation=True)
  np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
