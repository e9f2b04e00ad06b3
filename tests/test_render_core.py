"""The render core (`optvis`, `execution`) against the PyTorch reference of SPEC §2, and
its batching invariants.

Small schedules (32 px, 2-3 scales, 10-20 steps) and layer 10 keep this fast.
The torch side reads layer 10 the write-up's way (`torch_reference.HookedLayer`:
a hook on an unmodified torchvision VGG16, whose in-place ReLU makes it
post-ReLU), so "equal" means equal to what the write-up's code computes.
Tolerances: float64 JAX vs float64 torch <= 1e-6 max abs (measured ~3e-15);
float32 JAX vs float64 torch drifts, bounded at a mean of 16/255 (measured ~5/255);
batch/vmap/jit invariants <= 1e-5.
"""

from __future__ import annotations

import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import app, cpu_workers, execution
from jaxviz.errors import JaxvizError
from jaxviz.optvis import models, render
from jaxviz.optvis.recipes import Schedule
from jaxviz.vgg import resolve_target

import torch_reference
from conftest import render_layer_batch, start_images

SMALL = Schedule(size0=32, scales=3, steps=10)
LAYER10 = resolve_target(10)
KEY = jax.random.key(0)


def iter_layer(params, maps, key, schedule, target, **kwargs):
  """execution.iter_render of the write-up's recipe for `target`."""
  return execution.iter_render(app.layer_recipe(target, schedule), target.model, params, maps,
                               key, **kwargs)


def test_schedule_defaults_are_the_write_ups():
  schedule = Schedule()
  assert schedule.sides() == (56, 67, 80, 96, 115, 138, 165, 198, 237, 284, 340, 408)
  assert [schedule.steps_at(i) for i in range(12)] == [75] * 7 + [97] * 5
  assert schedule.total_steps() == 1010


@pytest.mark.parametrize("pre_relu", [False, True])
def test_float64_render_equals_the_write_ups_hooked_loop(pre_relu, vgg16_weights, torch_vgg16):
  maps = np.array([5, 17])
  target = resolve_target(10, pre_relu=pre_relu)
  ours = render_layer_batch(vgg16_weights.params, maps, KEY, SMALL, target, dtype="float64")
  assert ours.images.shape == (2, 45, 45, 3) and ours.images.dtype == np.float64
  for row, map_index in enumerate(maps):
    expected, objectives = torch_reference.render_map(torch_vgg16, 10, int(map_index),
                                                      start_images(maps)[row], SMALL,
                                                      pre_relu=pre_relu)
    np.testing.assert_allclose(ours.images[row], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.objectives[row], objectives, rtol=1e-9)
  if not pre_relu:
    assert ours.objectives.min() >= 0  # a mean of ReLU outputs


def test_post_relu_and_pre_relu_renders_differ(vgg16_weights):
  """Guards the default: layer 10 is read after its ReLU, a different objective."""
  maps = np.array([5])
  post, pre = (render_layer_batch(vgg16_weights.params, maps, KEY, SMALL,
                                   resolve_target(10, pre_relu=pre_relu))
               for pre_relu in (False, True))
  assert np.abs(post.images - pre.images).max() > 2 / 255


def test_float32_render_drifts_only_a_few_levels(vgg16_weights, torch_vgg16):
  maps = np.array([5])
  ours = render_layer_batch(vgg16_weights.params, maps, KEY, SMALL, LAYER10, dtype="float32")
  expected, _ = torch_reference.render_map(torch_vgg16, 10, 5,
                                           start_images(maps, dtype=jnp.float32)[0], SMALL)
  drift = np.abs(ours.images[0] - expected) * 255
  print(f"float32 JAX vs float64 torch: mean {drift.mean():.2f}/255, max {drift.max():.1f}/255")
  assert 0 < drift.mean() < 16


def test_objective_rises_from_the_start_image(vgg16_weights):
  maps = np.array([3, 7, 11])
  schedule = Schedule(size0=32, scales=1, steps=20)
  params = jax.tree.map(jnp.asarray, vgg16_weights.params)
  start = start_images(maps, dtype=jnp.float32)
  recipe, model = app.layer_recipe(LAYER10, schedule), LAYER10.model
  before = np.array([render.objective_value(recipe, model, params,
                                            models.preprocess(model, start[i][None]), m)
                     for i, m in enumerate(maps)])
  after = render_layer_batch(vgg16_weights.params, maps, KEY, schedule, LAYER10).objectives[:, 0]
  # Post-ReLU means of an untrained network are small (~2e-3 here), so the rise is relative.
  assert np.all(before > 0) and np.all(after > 2 * before), (before, after)


def test_a_map_does_not_depend_on_its_batch_mates(vgg16_weights):
  alone = render_layer_batch(vgg16_weights.params, np.array([9]), KEY, SMALL, LAYER10)
  together = render_layer_batch(vgg16_weights.params, np.array([2, 9, 40, 9]), KEY, SMALL,
                                LAYER10)
  np.testing.assert_allclose(together.images[1], alone.images[0], rtol=0, atol=1e-5)
  np.testing.assert_allclose(together.images[3], alone.images[0], rtol=0, atol=1e-5)
  assert np.abs(together.images[0] - together.images[2]).max() > 0.01


def test_jit_equals_no_jit(vgg16_weights):
  """(vmap against a loop is the batch-mates test above.) Op by op costs ~20 s at
  layer 10 here, so this runs at conv1_2."""
  maps, conv1_2 = np.array([30]), resolve_target(2)
  schedule = Schedule(size0=24, scales=2, steps=2)
  jitted = render_layer_batch(vgg16_weights.params, maps, KEY, schedule, conv1_2,
                               dtype="float64")
  with jax.disable_jit():
    eager = render_layer_batch(vgg16_weights.params, maps, KEY, schedule, conv1_2,
                                dtype="float64")
  np.testing.assert_allclose(eager.images, jitted.images, rtol=0, atol=1e-5)


def test_scan_driver_equals_loop_driver(vgg16_weights):
  maps = np.array([4])
  schedule = Schedule(size0=32, scales=2, steps=4)
  results = [render_layer_batch(vgg16_weights.params, maps, KEY, schedule, LAYER10,
                                 dtype="float64", driver=driver) for driver in ("loop", "scan")]
  np.testing.assert_allclose(results[0].images, results[1].images, rtol=0, atol=1e-9)


def test_start_image_is_near_grey_noise_keyed_by_map():
  images = start_images(np.array([0, 1, 0]), side=56, dtype=jnp.float32)
  assert images.shape == (3, 56, 56, 3)
  assert 128 / 255 <= images.min() and images.max() < 148 / 255
  np.testing.assert_array_equal(images[0], images[2])
  assert not np.array_equal(images[0], images[1])


def test_padded_batches_cover_every_map_once():
  batches = list(execution.iter_batches([5, 6, 7, 8, 9], 2))
  assert [(list(b), n) for b, n in batches] == [([5, 6], 2), ([7, 8], 2), ([9, 9], 1)]


def test_bad_schedules_say_what_to_change():
  conv5_1 = resolve_target("conv5_1")
  with pytest.raises(JaxvizError, match=r"too small for conv5_1 \(layer 24.*minimum is 16"):
    app.layer_recipe(conv5_1, Schedule(size0=8))
  with pytest.raises(JaxvizError, match="odd"):
    app.layer_recipe(conv5_1, Schedule(blur=4))
  with pytest.raises(JaxvizError, match="upscale"):
    app.layer_recipe(conv5_1, Schedule(upscale=0.5))
  with pytest.raises(JaxvizError, match="dtype"):
    render_layer_batch({}, np.array([0]), KEY, SMALL, LAYER10, dtype="float16")


def test_worker_processes_give_the_same_images_in_order(vgg16_weights):
  maps = [3, 1, 8, 5, 2]
  schedule = Schedule(size0=32, scales=2, steps=2)
  runs = [list(iter_layer(vgg16_weights.params, maps, KEY, schedule, LAYER10, batch=2,
                                  dtype="float64", workers=workers)) for workers in (1, 2)]
  for one, two in zip(*runs):
    np.testing.assert_array_equal(one.maps, two.maps)
    np.testing.assert_allclose(one.images, two.images, rtol=0, atol=1e-12)
  assert [m for r in runs[1] for m in r.maps] == maps
  assert execution.effective_batch(8, 5, None, workers=2) == 3


def test_an_error_in_a_worker_process_reaches_the_caller(vgg16_weights):
  four_channels = np.full((5, 5, 4), 0.5)  # VGG's normalisation has three
  with pytest.raises((ValueError, TypeError), match="broadcast"):
    list(iter_layer(vgg16_weights.params, [0, 1], KEY, SMALL, LAYER10, batch=1,
                    workers=2, photo=four_channels))


def test_a_dead_worker_process_is_named_by_its_core():
  worker = cpu_workers.CoreWorker(cpu_workers.usable_cores()[0])
  os.kill(worker.pid, signal.SIGKILL)
  with pytest.raises(RuntimeError, match=f"core {worker.core} exited"):
    worker.render(np.array([0]), on_steps=None)
  worker.close()
