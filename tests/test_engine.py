"""The render engine against the PyTorch reference of SPEC §2, and its batching invariants.

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

from jaxviz import cpu_workers, engine, layers, ops
from jaxviz.errors import JaxvizError
from jaxviz.objectives import Target, channel_mean

import torch_reference
from conftest import start_images

SMALL = engine.Schedule(size0=32, scales=3, steps=10)
LAYER10 = Target(layers.resolve_layer(10))
KEY = jax.random.key(0)


def test_schedule_defaults_are_the_write_ups():
  schedule = engine.Schedule()
  assert schedule.sides() == (56, 67, 80, 96, 115, 138, 165, 198, 237, 284, 340, 408)
  assert [schedule.steps_at(i) for i in range(12)] == [75] * 7 + [97] * 5
  assert schedule.total_steps() == 1010


@pytest.mark.parametrize("pre_relu", [False, True])
def test_float64_render_equals_the_write_ups_hooked_loop(pre_relu, vgg16_weights, torch_vgg16):
  maps = np.array([5, 17])
  target = Target(layers.resolve_layer(10), pre_relu=pre_relu)
  ours = engine.render_batch(vgg16_weights.params, maps, KEY, SMALL, target, dtype="float64")
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
  post, pre = (engine.render_batch(vgg16_weights.params, maps, KEY, SMALL,
                                   Target(layers.resolve_layer(10), pre_relu=pre_relu))
               for pre_relu in (False, True))
  assert np.abs(post.images - pre.images).max() > 2 / 255


def test_float32_render_drifts_only_a_few_levels(vgg16_weights, torch_vgg16):
  maps = np.array([5])
  ours = engine.render_batch(vgg16_weights.params, maps, KEY, SMALL, LAYER10, dtype="float32")
  expected, _ = torch_reference.render_map(torch_vgg16, 10, 5,
                                           start_images(maps, dtype=jnp.float32)[0], SMALL)
  drift = np.abs(ours.images[0] - expected) * 255
  print(f"float32 JAX vs float64 torch: mean {drift.mean():.2f}/255, max {drift.max():.1f}/255")
  assert 0 < drift.mean() < 16


def test_objective_rises_from_the_start_image(vgg16_weights):
  maps = np.array([3, 7, 11])
  schedule = engine.Schedule(size0=32, scales=1, steps=20)
  params = jax.tree.map(jnp.asarray, vgg16_weights.params)
  start = start_images(maps, dtype=jnp.float32)
  before = np.array([channel_mean(params, ops.normalise(start[i]), m, LAYER10)
                     for i, m in enumerate(maps)])
  after = engine.render_batch(vgg16_weights.params, maps, KEY, schedule, LAYER10).objectives[:, 0]
  # Post-ReLU means of an untrained network are small (~2e-3 here), so the rise is relative.
  assert np.all(before > 0) and np.all(after > 2 * before), (before, after)


def test_a_map_does_not_depend_on_its_batch_mates(vgg16_weights):
  alone = engine.render_batch(vgg16_weights.params, np.array([9]), KEY, SMALL, LAYER10)
  together = engine.render_batch(vgg16_weights.params, np.array([2, 9, 40, 9]), KEY, SMALL,
                                 LAYER10)
  np.testing.assert_allclose(together.images[1], alone.images[0], rtol=0, atol=1e-5)
  np.testing.assert_allclose(together.images[3], alone.images[0], rtol=0, atol=1e-5)
  assert np.abs(together.images[0] - together.images[2]).max() > 0.01


def test_vmap_equals_a_loop_and_jit_equals_no_jit(vgg16_weights):
  maps = np.array([1, 30])
  schedule = engine.Schedule(size0=32, scales=2, steps=3)
  batched = engine.render_batch(vgg16_weights.params, maps, KEY, schedule, LAYER10,
                                dtype="float64")
  for row, map_index in enumerate(maps):
    single = engine.render_batch(vgg16_weights.params, np.array([map_index]), KEY, schedule,
                                 LAYER10, dtype="float64")
    np.testing.assert_allclose(batched.images[row], single.images[0], rtol=0, atol=1e-5)
  with jax.disable_jit():
    eager = engine.render_batch(vgg16_weights.params, maps, KEY, schedule, LAYER10,
                                dtype="float64")
  np.testing.assert_allclose(eager.images, batched.images, rtol=0, atol=1e-5)


def test_scan_driver_equals_loop_driver(vgg16_weights):
  maps = np.array([4])
  schedule = engine.Schedule(size0=32, scales=2, steps=4)
  results = [engine.render_batch(vgg16_weights.params, maps, KEY, schedule, LAYER10,
                                 dtype="float64", driver=driver) for driver in ("loop", "scan")]
  np.testing.assert_allclose(results[0].images, results[1].images, rtol=0, atol=1e-9)


def test_start_image_is_near_grey_noise_keyed_by_map():
  images = start_images(np.array([0, 1, 0]), side=56, dtype=jnp.float32)
  assert images.shape == (3, 56, 56, 3)
  assert 128 / 255 <= images.min() and images.max() < 148 / 255
  np.testing.assert_array_equal(images[0], images[2])
  assert not np.array_equal(images[0], images[1])


def test_padded_batches_cover_every_map_once():
  batches = list(engine.iter_batches([5, 6, 7, 8, 9], 2))
  assert [(list(b), n) for b, n in batches] == [([5, 6], 2), ([7, 8], 2), ([9, 9], 1)]


def test_bad_schedules_say_what_to_change():
  conv5_1 = Target(layers.resolve_layer("conv5_1"))
  with pytest.raises(JaxvizError, match="too small for layer 24 .*minimum is 16"):
    engine.Schedule(size0=8).check(conv5_1)
  with pytest.raises(JaxvizError, match="odd"):
    engine.Schedule(blur=4).check(conv5_1)
  with pytest.raises(JaxvizError, match="upscale"):
    engine.Schedule(upscale=0.5).check(conv5_1)
  with pytest.raises(JaxvizError, match="dtype"):
    engine.render_batch({}, np.array([0]), KEY, SMALL, LAYER10, dtype="float16")


def test_worker_processes_give_the_same_images_in_order(vgg16_weights):
  maps = [3, 1, 8, 5, 2]
  schedule = engine.Schedule(size0=32, scales=2, steps=2)
  runs = [list(engine.iter_render(vgg16_weights.params, maps, KEY, schedule, LAYER10, batch=2,
                                  dtype="float64", workers=workers)) for workers in (1, 2)]
  for one, two in zip(*runs):
    np.testing.assert_array_equal(one.maps, two.maps)
    np.testing.assert_allclose(one.images, two.images, rtol=0, atol=1e-12)
  assert [m for r in runs[1] for m in r.maps] == maps
  assert engine.effective_batch(8, 5, None, workers=2) == 3


def test_an_error_in_a_worker_process_reaches_the_caller(vgg16_weights):
  wrong_start = np.full((5, 5, 3), 0.5)  # the schedule starts at 32 px
  with pytest.raises(ValueError, match="broadcast"):
    list(engine.iter_render(vgg16_weights.params, [0, 1], KEY, SMALL, LAYER10, batch=1,
                            workers=2, start=wrong_start))


def test_a_dead_worker_process_is_named_by_its_core():
  worker = cpu_workers.CoreWorker(cpu_workers.usable_cores()[0])
  os.kill(worker.pid, signal.SIGKILL)
  with pytest.raises(RuntimeError, match=f"core {worker.core} exited"):
    worker.render(np.array([0]), on_steps=None)
  worker.close()
