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
import copy
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from PIL import Image

import jaxviz
from jaxviz.optvis import objectives, params, recipes, render, transforms
from jaxviz.nets.networks import NetModel
from jaxviz.vgg import VGGModel

from conftest import run_cli, save_pth

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
  return torch.from_numpy(np.array(array)).permute(0, 3, 1, 2).contiguous()


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
  np.testing.assert_allclose(transforms.eager(transforms.Pad(12, 0.5), None, x),
                             nhwc(expected), rtol=0, atol=0)


@pytest.mark.parametrize("distance,dx,dy", [(8, 3, 5), (4, 0, 2), (8, 7, 0)])
def test_jitter_equals_lucents_for_the_same_draw(distance, dx, dy, monkeypatch,
                                                 lucent_in_float64):
  x = images(20)
  monkeypatch.setattr(np.random, "choice", Draws([dx, dy]))
  expected = lucent_transform.jitter(distance)(nchw(x))
  ours = transforms.eager(transforms.Jitter(distance), jnp.asarray([dx, dy], jnp.int32), x)
  np.testing.assert_allclose(ours, nhwc(expected), rtol=0, atol=1e-10)
  # kornia 0.4.1's quirk: a 3 px jitter moves a 20 px image by 3 * 20 / 19 px.
  assert dx == 0 or np.abs(np.asarray(ours) - np.roll(x, dx, axis=2)).max() > 1e-3


@pytest.mark.parametrize("index", range(11))
def test_random_scale_equals_lucents_for_each_scale(index, monkeypatch):
  scale = transforms.lucid_standard().transforms[2]
  x = images(25)
  monkeypatch.setattr(np.random, "choice", Draws([scale.scales[index]]))
  expected = lucent_transform.random_scale(list(scale.scales))(nchw(x))
  ours = transforms.eager(scale, jnp.int32(index), x)
  assert ours.shape == nhwc(expected).shape
  np.testing.assert_allclose(ours, nhwc(expected), rtol=0, atol=1e-10)


@pytest.mark.parametrize("angle", [-10, -3, 0, 7, 10])
def test_random_rotate_equals_lucents_for_the_same_angle(angle, monkeypatch):
  """lucent rotates in float32 whatever it gets (`image.float()`), so its sample
  coordinates carry float32 rounding (~2e-6 px at 18 px): compared at 1e-5. The same
  kornia warp in float64, with jaxviz's matrix (kornia's, but for torch's float32 sin
  and cos where they are not correctly rounded), is compared at 1e-10."""
  rotate = transforms.lucid_standard().transforms[3]
  x = images(18)
  monkeypatch.setattr(np.random, "choice", Draws([angle]))
  expected = lucent_transform.random_rotate(list(range(-10, 11)) + 5 * [0])(nchw(x))
  assert expected.dtype == torch.float32
  ours = transforms.eager(rotate, jnp.int32(rotate.angles.index(float(angle))), x)
  np.testing.assert_allclose(ours, nhwc(expected), rtol=0, atol=1e-5)

  matrix = torch.from_numpy(np.stack([transforms.kornia_rotation(angle, 18)[:2]] * len(x)))
  exact = lucent_transform.kornia.warp_affine(nchw(x), matrix.to(DOUBLE), dsize=(18, 18))
  np.testing.assert_allclose(ours, nhwc(exact), rtol=0, atol=1e-10)


def kornia_matrix(angle: float, side: int) -> np.ndarray:
  """kornia 0.4.1's own float32 rotation matrix, as lucent asks for it."""
  return lucent_transform.kornia.get_rotation_matrix2d(
      torch.tensor([[(side - 1) / 2] * 2]), torch.tensor([float(angle)]),
      torch.ones(1, 2))[0].numpy()


def torch_trig_is_correctly_rounded(angle: float) -> bool:
  """Whether torch's float32 cos and sin of lucid's radians for `angle` are the correctly
  rounded values (on this machine's torch: not at +-4 degrees (cos), +-7 (sin))."""
  radians = torch.tensor([float(angle)]) * lucent_transform.kornia.pi / 180.0
  exact = np.float64(radians.numpy()[0])
  return (torch.cos(radians).item() == np.float32(np.cos(exact))
          and torch.sin(radians).item() == np.float32(np.sin(exact)))


def test_rotation_matrices_are_kornias_under_jit_at_lucids_sizes():
  """Every angle of lucid's rotation at every side the random scale gives a 128 px
  image (149..168 px): the jitted program warps with kornia's own float32 matrix,
  except where torch's float32 cos or sin is not correctly rounded; there jaxviz's
  entry is the correctly rounded one, one ulp from torch's. The jitted warp equals
  kornia's warp with that matrix, in float64."""
  standard = transforms.lucid_standard()
  rotate = standard.transforms[3]
  sides = standard.transforms[2].out_sides((152,))
  for side in sides:
    for angle in rotate.angles:
      ours, expected = transforms.kornia_rotation(angle, side)[:2], kornia_matrix(angle, side)
      if torch_trig_is_correctly_rounded(angle):
        np.testing.assert_array_equal(ours, expected)
      else:  # the rotation entries one ulp apart, the translations a few ulps
        assert np.abs(ours.view(np.int32) - expected.view(np.int32))[:, :2].max() == 1
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)

  x = jnp.asarray(np.random.default_rng(0).uniform(size=(1, 168, 168, 3)))
  apply = jax.jit(lambda index, x, which: rotate.apply(index, x, which, sides)[0])
  for which, index in ((0, 0), (10, 3), (5, 12), (7, 20)):
    side = sides[which]
    x = x.at[:, side:].set(0).at[:, :, side:].set(0)  # a canvas: zeros past the side
    matrix = torch.from_numpy(transforms.kornia_rotation(rotate.angles[index], side)[None, :2])
    exact = lucent_transform.kornia.warp_affine(nchw(x[:, :side, :side]), matrix.to(DOUBLE),
                                                dsize=(side, side))
    ours = np.asarray(apply(jnp.int32(index), x, jnp.int32(which)))
    np.testing.assert_allclose(ours[:, :side, :side], nhwc(exact), rtol=0, atol=1e-12)
    assert not ours[:, side:].any() and not ours[:, :, side:].any()


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
  canvas, which = standard.apply(choices, jnp.asarray(x), jnp.int32(0), (32,))
  ours = transforms.resize(canvas, which, standard.out_sides((32,)), 48)
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
    return -crops.apply(draw, image_hwc[None])[0].mean()

  value, grad = jax.value_and_grad(our_loss)(jnp.asarray(image).transpose(1, 2, 0))
  ours = crops.apply(draw, jnp.asarray(image).transpose(1, 2, 0)[None])[0]
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


# (d) End to end: lucent's render_vis against jaxviz's lucid recipe, at its defaults.

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


def rotate_keeping_the_dtype(angles):
  """lucent 0.1.8's random_rotate, verbatim but for two casts: lucent rounds the image to
  float32 (`image_t.float()`) before warping, which float64 verification cannot have,
  so the image keeps its dtype and kornia's float32 matrix M is widened to it (its
  values unchanged)."""
  kornia = lucent_transform.kornia

  def inner(image_t):
    b, _, h, w = image_t.shape
    alpha = lucent_transform._rads2angle(np.random.choice(angles), "degrees")
    angle = torch.ones(b) * alpha
    scale = torch.ones(b, 2)
    center = torch.ones(b, 2)
    center[..., 0] = (image_t.shape[3] - 1) / 2
    center[..., 1] = (image_t.shape[2] - 1) / 2
    matrix = kornia.get_rotation_matrix2d(center, angle, scale)
    return kornia.warp_affine(image_t, matrix.to(image_t.dtype), dsize=(h, w))

  return inner


LAYER, STEPS = 5, 12  # conv2_1 (read after its ReLU, module "6"): a cheap network


def unit_with_kornias_rotations(recipe, key) -> int:
  """A map whose rotations all avoid the angles where torch's float32 cos or sin is one
  ulp off the correctly rounded value jaxviz uses (`transforms.kornia_rotation`)."""
  rotate = recipe.transforms.transforms[3]
  for unit in range(64):
    angles = {rotate.angles[int(i)] for i in render.step_draws(recipe, key, unit)[3]}
    if all(torch_trig_is_correctly_rounded(angle) for angle in angles):
      return unit
  raise AssertionError("no such map among the first 64")


def lucents_lucid_render(recipe, model, network: torch.nn.Module, lucent_layer: str,
                         monkeypatch):
  """lucent's render_vis of `lucent_layer` (its name for the tap) handed jaxviz's start
  and draws (`render.start`, `render.step_draws`), at lucid's real sizes (a 128 px
  Fourier image, lucid's five standard transforms, the input upsampled to 224 px),
  STEPS steps; returns (the map, lucent's image, the objective at each step)."""
  key = jax.random.key(0)
  unit = unit_with_kornias_rotations(recipe, key)
  start = np.asarray(render.start(recipe, model, key, unit, jnp.float64))
  draws = render.step_draws(recipe, key, unit)
  values = [value for step in range(STEPS) for value in lucent_values(
      recipe.transforms, jax.tree.map(lambda leaf: leaf[step], draws))]
  monkeypatch.setattr(np.random, "choice", Draws(values))
  lucent_list = list(lucent_transform.standard_transforms)
  lucent_list[3] = rotate_keeping_the_dtype(list(range(-10, 11)) + 5 * [0])

  def param_f():
    lucent_params, image_f = lucent_param.image(128)
    lucent_params[0].data = torch.from_numpy(start.copy())
    return lucent_params, image_f

  channel, objective_values = lucent_objectives.channel(lucent_layer, unit), []

  def recorded(model):  # lucent minimises minus the channel's mean
    loss = channel(model)
    objective_values.append(-loss.item())
    return loss

  expected = lucent_render.render_vis(network, lucent_objectives.Objective(recorded),
                                      param_f=param_f, transforms=lucent_list,
                                      thresholds=(STEPS,), show_image=False, progress=False,
                                      fixed_image_size=224)[0][0]
  return unit, expected, objective_values


def test_lucid_at_its_defaults_equals_lucents_render_vis(tmp_path, vgg16_safetensors,
                                                         torch_vgg16, monkeypatch,
                                                         lucent_in_float64):
  """lucid's real sizes (128 px Fourier image, lucid's five standard transforms with
  rotation, the input upsampled to 224 px), 12 steps, float64: `jaxviz render --recipe
  lucid` and `jaxviz.render` against lucent's render_vis handed the same start and
  draws through jaxviz's public replay functions (`render.start`, `render.step_draws`).
  Measured: 1.3e-14 max abs, and the PNGs equal to the level (with the rotation matrix
  computed inside the jitted program, as before: 8.5e-7). Tolerance 1e-10: float64
  rounding grown by Adam over 12 steps, with room."""
  recipe = recipes.Lucid(steps=STEPS).recipe(objectives.Channel("relu2_1"))
  # A copy: lucent leaves its forward hooks (holding graph tensors) on the modules it ran,
  # which would make the session's model impossible to deepcopy for later tests.
  network = copy.deepcopy(torch_vgg16).features[:LAYER + 2].eval()
  unit, expected, objective_values = lucents_lucid_render(recipe, VGGModel(), network,
                                                          str(LAYER), monkeypatch)

  out = tmp_path / "o"
  record = json.loads(run_cli(
      "render", "--layer", LAYER, "--maps", unit, "--weights", vgg16_safetensors, "--recipe",
      "lucid", "--steps", STEPS, "--dtype", "float64", "--trace", "--out", out, "--json").stdout)
  png = np.asarray(Image.open(out / f"{LAYER}_{unit}.png"))
  np.testing.assert_array_equal(png, np.round(np.clip(expected, 0, 1) * 255).astype(np.uint8))
  # Step by step: the objective each step maximised, on its own transformed input.
  np.testing.assert_allclose(record["trace"][str(unit)], objective_values, rtol=1e-10)

  ours = jaxviz.render(LAYER, [unit], weights=str(vgg16_safetensors),
                       schedule=recipes.Lucid(steps=STEPS), dtype="float64", progress=False)[0]
  np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-10)


def test_lucid_on_inceptionv1_equals_lucents_render_vis(tmp_path, monkeypatch,
                                                       lucent_in_float64):
  """The same comparison on lucent's own InceptionV1 (random weights, seeded, through a
  `.pth` as lucent's `inception5h.pth` would go): lucent feeds it `x * 255 - 117`, and
  its RedirectedReLU passes a tenth of the gradient below zero, which jaxviz's
  inceptionv1 follows by default. 12 steps of lucid at 128 px upsampled to 224 px, the
  channel of mixed3a (a concat), float64. Tolerance 1e-10 as for VGG: float64
  rounding (jaxviz normalises as (x - 117/255) * 255 where lucent computes
  x * 255 - 117) grown by Adam over 12 steps."""
  from jaxviz_convert import reference_inceptionv1 as reference

  pth = save_pth(reference.reference_model(seed=0), tmp_path / "inception.pth")
  torch_model = reference.reference_model(seed=0)
  torch_model.load_state_dict(torch.load(pth, weights_only=True))  # the file's float32 values
  torch_model = torch_model.double().eval()
  tap = "mixed3a"
  recipe = recipes.Lucid(steps=STEPS).recipe(objectives.Channel(tap))
  unit, expected, objective_values = lucents_lucid_render(recipe, NetModel("inceptionv1"),
                                                          torch_model, tap, monkeypatch)
  out = tmp_path / "o"
  record = json.loads(run_cli(
      "render", "--layer", tap, "--maps", unit, "--weights", pth, "--recipe", "lucid",
      "--steps", STEPS, "--dtype", "float64", "--trace", "--out", out, "--json").stdout)
  index = record["identity"]["layer"]
  png = np.asarray(Image.open(out / f"{index}_{unit}.png"))
  np.testing.assert_array_equal(png, np.round(np.clip(expected, 0, 1) * 255).astype(np.uint8))
  np.testing.assert_allclose(record["trace"][str(unit)], objective_values, rtol=1e-10)
  ours = jaxviz.render(tap, [unit], weights=str(pth), schedule=recipes.Lucid(steps=STEPS),
                       dtype="float64", progress=False)[0]
  np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-10)
