"""Tests of infojax.dynamics.deficits: windows at their boundaries, each deficit against a plain
reference (the blur against a float64 loop of antialiased bilinear resampling), jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from infojax.dynamics import deficits


def _resample_matrix(in_size, out_size):
  """Antialiased bilinear (triangle-kernel) resampling weights, (out_size, in_size), float64.

  Output pixel i samples the input at x = (i + 1/2) in/out - 1/2 with a triangle of half-width
  max(in/out, 1) input pixels, the weights normalised to sum to one (PIL's and torchvision's
  antialiased bilinear resize).
  """
  ratio = in_size / out_size
  width = max(ratio, 1.0)
  weights = np.zeros((out_size, in_size))
  for i in range(out_size):
    x = (i + 0.5) * ratio - 0.5
    for j in range(in_size):
      weights[i, j] = max(0.0, 1.0 - abs(j - x) / width)
    weights[i] /= weights[i].sum()
  return weights


def _reference_blur(images, low):
  images = np.asarray(images, np.float64)
  _, height, width, _ = images.shape
  down_h, down_w = _resample_matrix(height, low[0]), _resample_matrix(width, low[1])
  up_h, up_w = _resample_matrix(low[0], height), _resample_matrix(low[1], width)
  out = np.empty_like(images)
  for n in range(images.shape[0]):
    for c in range(images.shape[3]):
      small = down_h @ images[n, :, :, c] @ down_w.T
      out[n, :, :, c] = up_h @ small @ up_w.T
  return out


def test_windows_at_their_boundaries():
  w = deficits.window(3, 4, num_epochs=10)   # epochs 3, 4, 5, 6
  assert [bool(deficits.is_active(w, e)) for e in range(10)] == [e in (3, 4, 5, 6)
                                                                 for e in range(10)]
  r = deficits.removal(5, num_epochs=5)       # the whole run
  assert all(bool(deficits.is_active(r, e)) for e in range(5))
  baseline = deficits.removal(0, num_epochs=5)
  assert not any(bool(deficits.is_active(baseline, e)) for e in range(5))
  sweep = deficits.removal([0, 2, 4], num_epochs=4)
  assert sweep.start.shape == (3,)
  np.testing.assert_array_equal(jax.vmap(deficits.is_active, (0, None))(sweep, 2),
                                [False, False, True])
  assert deficits.window([0, 6], 4, num_epochs=10).stop.tolist() == [4, 10]


@pytest.mark.parametrize("call, match", [
    (lambda: deficits.window(7, 4, num_epochs=10), "outside the run"),
    (lambda: deficits.removal(11, num_epochs=10), "outside the run"),
    (lambda: deficits.removal(-1, num_epochs=10), "num_deficit_epochs must be >= 0"),
    (lambda: deficits.window(2, 0, num_epochs=10), "length must be >= 1"),
    (lambda: deficits.window(2.5, 3, num_epochs=10), "onset must be integer"),
    (lambda: deficits.make("cataract", image_shape=(8, 8, 1)), "kind must be one of"),
    (lambda: deficits.make("blur", image_shape=(8, 8, 1), low_size=3), "must divide"),
    (lambda: deficits.make("blur", image_shape=(8, 8, 1), low_size=8), "must divide"),
    (lambda: deficits.make("blur", image_shape=(8, 8, 1)), "needs low_size"),
    (lambda: deficits.make("label_permutation", image_shape=(8, 8, 1), num_classes=10),
     "pass key"),
    (lambda: deficits.make("noise", image_shape=(8, 8, 3), noise_std=[1.0, 2.0]), "per channel"),
    (lambda: deficits.make("noise", image_shape=(8, 8, 1), noise_std=0.0), "positive"),
])
def test_bad_arguments_are_named(call, match):
  with pytest.raises((ValueError, TypeError), match=match):
    call()


def test_blur_matches_the_float64_resampling_loop():
  images = jax.random.normal(jax.random.key(0), (3, 8, 12, 2))
  deficit = deficits.make("blur", image_shape=(8, 12, 2), low_size=(4, 3))
  blurred, _ = deficits.apply(deficit, images, jnp.zeros(3, jnp.int32), True)
  np.testing.assert_allclose(blurred, _reference_blur(images, (4, 3)), atol=2e-6)
  # A blurred image has lost its high frequencies: blurring again barely changes it.
  twice, _ = deficits.apply(deficit, blurred, jnp.zeros(3, jnp.int32), True)
  assert float(jnp.abs(twice - blurred).mean()) < 0.5 * float(jnp.abs(blurred - images).mean())


def test_flip_permutation_and_noise_act_only_when_active():
  images = jax.random.normal(jax.random.key(1), (4, 6, 6, 3))
  labels = jnp.array([0, 1, 2, 4], jnp.int32)
  flip = deficits.make("vertical_flip", image_shape=(6, 6, 3))
  np.testing.assert_array_equal(deficits.apply(flip, images, labels, True)[0],
                                np.asarray(images)[:, ::-1])
  perm = deficits.make("label_permutation", image_shape=(6, 6, 3), num_classes=5,
                       key=jax.random.key(2))
  assert sorted(perm.permutation.tolist()) == list(range(5))
  out_images, out_labels = deficits.apply(perm, images, labels, True)
  assert out_labels.tolist() == [int(perm.permutation[y]) for y in labels.tolist()]
  np.testing.assert_array_equal(out_images, images)
  noise = deficits.make("noise", image_shape=(6, 6, 3), noise_mean=[0.0, 1.0, -2.0],
                        noise_std=[1.0, 0.5, 2.0])
  key = jax.random.key(3)
  first, _ = deficits.apply(noise, images, labels, True, key=key)
  second, _ = deficits.apply(noise, 2 * images, labels, True, key=key)
  np.testing.assert_array_equal(first, second)          # independent of the inputs
  big = deficits.apply(noise, jnp.zeros((200, 6, 6, 3)), jnp.zeros(200, jnp.int32), True,
                       key=key)[0]
  np.testing.assert_allclose(big.mean((0, 1, 2)), [0.0, 1.0, -2.0], atol=0.1)
  np.testing.assert_allclose(big.std((0, 1, 2)), [1.0, 0.5, 2.0], rtol=0.05)
  for deficit in (flip, perm, noise):
    clean = deficits.apply(deficit, images, labels, False, key=key)
    np.testing.assert_array_equal(clean[0], images)
    np.testing.assert_array_equal(clean[1], labels)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\]"):
    deficits.apply(perm, images, labels.at[0].set(5), True)
  with pytest.raises(ValueError, match="pass key"):
    deficits.apply(noise, images, labels, True)
  with pytest.raises(ValueError, match="active must be a bool scalar"):
    deficits.apply(flip, images, labels, jnp.array([True, False]))


def test_a_jitted_vmapped_sweep_equals_separate_calls():
  images = jax.random.normal(jax.random.key(4), (2, 8, 8, 1))
  labels = jnp.array([0, 1], jnp.int32)
  deficit = deficits.make("blur", image_shape=(8, 8, 1), low_size=4)
  sweep = deficits.window([0, 2, 5], 3, num_epochs=8)

  @jax.jit
  def batch_at(run_window, epoch):
    return deficits.apply(deficit, images, labels, deficits.is_active(run_window, epoch))[0]

  for epoch in (0, 2, 4, 7):
    swept = jax.vmap(batch_at, (0, None))(sweep, epoch)
    for run in range(3):
      run_window = deficits.Window(sweep.start[run], sweep.stop[run])
      np.testing.assert_array_equal(swept[run], batch_at(run_window, epoch))
      expected = deficits.blur(images, (4, 4)) if bool(
          deficits.is_active(run_window, epoch)) else images
      np.testing.assert_allclose(swept[run], expected, atol=1e-6)


def test_deficits_on_a_sharded_batch_equal_one_device():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  mesh = jax.make_mesh((8,), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  images = jax.random.normal(jax.random.key(5), (16, 8, 8, 1))
  labels = jnp.arange(16, dtype=jnp.int32) % 4
  sharded = jax.device_put((images, labels), sharding)
  for deficit in (deficits.make("blur", image_shape=(8, 8, 1), low_size=2),
                  deficits.make("vertical_flip", image_shape=(8, 8, 1)),
                  deficits.make("label_permutation", image_shape=(8, 8, 1), num_classes=4,
                                key=jax.random.key(6)),
                  deficits.make("noise", image_shape=(8, 8, 1))):
    step = jax.jit(lambda i, y, d=deficit: deficits.apply(d, i, y, True, key=jax.random.key(7)))
    expected = step(images, labels)
    with jax.set_mesh(mesh):
      actual = step(*sharded)
    np.testing.assert_allclose(actual[0], expected[0], atol=1e-6)
    np.testing.assert_array_equal(actual[1], expected[1])
