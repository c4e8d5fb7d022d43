"""Tests of infojax.tasks.task2vec against float64 numpy loops and the properties of science.md
§6.4 / §15 A.11."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import infojax.likelihoods as likelihoods
from infojax.tasks import task2vec

KINDS = task2vec.DISTANCES
SYMMETRIC = tuple(k for k in KINDS if k != "asymmetric_kl")
SCALE_FREE = ("cosine", "normalized_cosine", "correlation")
NAMED = {
    "cosine": task2vec.cosine_distance,
    "normalized_cosine": task2vec.normalized_cosine_distance,
    "symmetric_kl": task2vec.symmetric_kl,
    "asymmetric_kl": task2vec.asymmetric_kl,
    "jsd": task2vec.jsd,
    "correlation": task2vec.correlation_distance,
}


# ----------------------------------------------------------------------------------------------
# Float64 reference distances: explicit loops over coordinates.
# ----------------------------------------------------------------------------------------------


def _loop_cosine(u, v):
  dot = nu = nv = 0.0
  for x, y in zip(u, v):
    dot += x * y
    nu += x * x
    nv += y * y
  return 1.0 - dot / math.sqrt(nu * nv)


def _loop_kl(var_q, var_p):
  return 0.5 * (var_q / var_p - 1.0 + math.log(var_p) - math.log(var_q))


def reference_distance(kind, ha, sa, hb, sb):
  d = len(ha)
  if kind == "cosine":
    return _loop_cosine([ha[j] / (ha[j] + hb[j]) for j in range(d)],
                        [hb[j] / (ha[j] + hb[j]) for j in range(d)])
  if kind == "normalized_cosine":
    return _loop_cosine([(1 / ha[j]) / (1 / sa[j]) for j in range(d)],
                        [(1 / hb[j]) / (1 / sb[j]) for j in range(d)])
  var_a = [1.0 / x for x in ha]
  var_b = [1.0 / x for x in hb]
  if kind == "symmetric_kl":
    return sum(max(_loop_kl(var_a[j], var_b[j]), _loop_kl(var_b[j], var_a[j])) for j in range(d))
  if kind == "asymmetric_kl":
    return sum(_loop_kl(var_a[j], var_b[j]) for j in range(d))
  if kind == "jsd":
    total = 0.0
    for j in range(d):
      mix = 0.5 * (var_a[j] + var_b[j])
      total += 0.5 * (_loop_kl(var_a[j], mix) + _loop_kl(var_b[j], mix))
    return total / d
  mean_a, mean_b = sum(var_a) / d, sum(var_b) / d
  return _loop_cosine([x - mean_a for x in var_a], [x - mean_b for x in var_b])


def _random_embedding(rng, d=50):
  return task2vec.Embedding(rng.gamma(2.0, size=d), rng.uniform(0.5, 2.0, size=d))


@pytest.mark.parametrize("kind", KINDS)
def test_distances_match_float64_loops(kind, x64):
  rng = np.random.default_rng(0)
  a, b = _random_embedding(rng), _random_embedding(rng)
  want = reference_distance(kind, list(a.hessian), list(a.scale), list(b.hessian), list(b.scale))
  assert want > 1e-3   # a non-trivial value
  np.testing.assert_allclose(task2vec.distance(a, b, kind=kind), want, rtol=1e-12)
  np.testing.assert_allclose(NAMED[kind](a, b), want, rtol=1e-12)
  # A plain array is the hessian with scale = ones.
  want_plain = reference_distance(kind, list(a.hessian), [1.0] * 50, list(b.hessian), [1.0] * 50)
  np.testing.assert_allclose(task2vec.distance(jnp.asarray(a.hessian), jnp.asarray(b.hessian),
                                               kind=kind), want_plain, rtol=1e-12)


def test_distance_properties():
  """science.md §15 A.11: d(F, F) = 0, d(F, cF) = 0, symmetry; trivial at positive distance."""
  rng = np.random.default_rng(1)
  a = jnp.asarray(rng.gamma(2.0, size=50), jnp.float32)
  b = jnp.asarray(rng.gamma(2.0, size=50), jnp.float32)
  for kind in KINDS:
    assert abs(float(task2vec.distance(a, a, kind=kind))) < 1e-6, kind
  for kind in SCALE_FREE:
    for c in (1e-3, 0.5, 7.0):
      assert abs(float(task2vec.distance(a, c * a, kind=kind))) < 1e-6, (kind, c)
  for kind in SYMMETRIC:
    d_ab, d_ba = task2vec.distance(a, b, kind=kind), task2vec.distance(b, a, kind=kind)
    assert float(d_ab) > 1e-3
    np.testing.assert_allclose(d_ab, d_ba, rtol=1e-6)
  assert abs(float(task2vec.asymmetric_kl(a, b) - task2vec.asymmetric_kl(b, a))) > 1e-2
  # KL-based distances are not scale-blind: d(F, 2F) > 0.
  assert float(task2vec.symmetric_kl(a, 2.0 * a)) > 1.0
  # The trivial embedding: hessian = scale; ones for a Fisher embedding.
  trivial = task2vec.trivial_embedding(a)
  np.testing.assert_array_equal(trivial.hessian, np.ones(50))
  assert float(task2vec.cosine_distance(a, trivial)) > 1e-2
  variational = task2vec.Embedding(a, jnp.asarray(rng.uniform(0.5, 2.0, size=50), jnp.float32))
  trivial_v = task2vec.trivial_embedding(variational)
  np.testing.assert_array_equal(trivial_v.hessian, variational.scale)
  assert float(task2vec.cosine_distance(variational, trivial_v)) > 1e-2
  assert float(task2vec.cosine_distance(trivial_v, trivial_v)) < 1e-6


def test_asymmetric_distance(x64):
  rng = np.random.default_rng(2)
  a, b = rng.gamma(2.0, size=20), rng.gamma(2.0, size=20)
  trivial = np.ones(20)
  want = reference_distance("cosine", a, None, b, None) - 0.3 * reference_distance(
      "cosine", a, None, trivial, None)
  np.testing.assert_allclose(task2vec.asymmetric_distance(a, b, trivial, alpha=0.3), want,
                             rtol=1e-12)
  default = task2vec.asymmetric_distance(a, b, trivial)
  np.testing.assert_allclose(default, reference_distance("cosine", a, None, b, None)
                             - 0.15 * reference_distance("cosine", a, None, trivial, None),
                             rtol=1e-12)
  # Not symmetric: the complexity of the source task enters.
  assert abs(float(default - task2vec.asymmetric_distance(b, a, trivial))) > 1e-4


def test_jit_vmap_and_matrix(x64):
  rng = np.random.default_rng(3)
  hessians = jnp.asarray(rng.gamma(2.0, size=(4, 30)))
  scales = jnp.asarray(rng.uniform(0.5, 2.0, size=(4, 30)))
  stacked = task2vec.Embedding(hessians, scales)
  hessians_np, scales_np = np.asarray(hessians), np.asarray(scales)
  for kind in KINDS:
    matrix = task2vec.distance_matrix(stacked, kind=kind)
    assert matrix.shape == (4, 4)
    for i, j in itertools.product(range(4), range(4)):
      want = 0.0 if i == j else reference_distance(kind, hessians_np[i], scales_np[i],
                                                   hessians_np[j], scales_np[j])
      np.testing.assert_allclose(matrix[i, j], want, rtol=1e-12, atol=1e-15)
  vmapped = jax.vmap(task2vec.cosine_distance, in_axes=(0, None))(hessians, hessians[0])
  jitted = jax.jit(task2vec.asymmetric_distance)(hessians[1], hessians[2], hessians[3])
  for i in range(4):
    np.testing.assert_allclose(vmapped[i], task2vec.cosine_distance(hessians[i], hessians[0]),
                               rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(
      jitted, task2vec.asymmetric_distance(hessians[1], hessians[2], hessians[3]), rtol=1e-12)


def test_distance_errors():
  a = jnp.ones(5)
  with pytest.raises(ValueError, match="a and b must have the same shape"):
    task2vec.cosine_distance(a, jnp.ones(6))
  with pytest.raises(ValueError, match="b: embedding entries .* non-negative"):
    task2vec.cosine_distance(a, jnp.array([1.0, -1.0, 1.0, 1.0, 1.0]))
  with pytest.raises(ValueError, match="a: .*strictly positive"):
    task2vec.symmetric_kl(jnp.array([0.0, 1.0, 1.0, 1.0, 1.0]), a)
  with pytest.raises(ValueError, match="kind must be one of"):
    task2vec.distance(a, a, kind="euclidean")
  with pytest.raises(ValueError, match="kind must be one of"):
    task2vec.distance_matrix(jnp.ones((2, 5)), kind="kl")
  with pytest.raises(ValueError, match="embeddings: expected"):
    task2vec.distance_matrix(a)
  with pytest.raises(ValueError, match=r"embeddings\[1\]: .*non-negative"):
    task2vec.distance_matrix(jnp.array([[1.0, 1.0], [1.0, -2.0]]))
  with pytest.raises(ValueError, match="a and trivial must have the same shape"):
    task2vec.asymmetric_distance(a, a, jnp.ones(3))
  with pytest.raises(ValueError, match="a: an embedding is a 1-D vector"):
    task2vec.cosine_distance(jnp.ones((5, 1)), jnp.ones((5, 1)))


# ----------------------------------------------------------------------------------------------
# Embeddings: a tiny tanh MLP with hand-written float64 numpy gradients.
# ----------------------------------------------------------------------------------------------

NUM_CLASSES = 3


def mlp_apply(params, inputs):
  hidden = jnp.tanh(inputs @ params["hidden"]["kernel"] + params["hidden"]["bias"][None])
  return hidden @ params["head"]["kernel"] + params["head"]["bias"][None]


def _make_task(num_examples=7, labels=(0, 0, 0, 1, 1, 2, 2)):
  rng = np.random.default_rng(4)
  params = {
      "hidden": {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=(4,)) * 0.5},
      "head": {"kernel": rng.normal(size=(4, NUM_CLASSES)),
               "bias": rng.normal(size=(NUM_CLASSES,)) * 0.5},
  }
  inputs = rng.normal(size=(num_examples, 3))
  return params, inputs, np.asarray(labels, np.int32)


def _np_probs_and_grad(params, x, y):
  """Softmax probabilities and the gradient of -log p(y|x) in the hidden layer (numpy)."""
  w1, b1 = params["hidden"]["kernel"], params["hidden"]["bias"]
  w2, b2 = params["head"]["kernel"], params["head"]["bias"]
  h = np.tanh(x @ w1 + b1)
  z = h @ w2 + b2
  p = np.exp(z - z.max())
  p /= p.sum()
  dz = p.copy()
  dz[y] -= 1.0
  da = (w2 @ dz) * (1.0 - h * h)
  return p, {"kernel": np.outer(x, da), "bias": da}


def _np_true_fisher(params, x):
  """Per-example true Fisher of the hidden layer: sum_y p(y|x) g(x, y)**2."""
  p, _ = _np_probs_and_grad(params, x, 0)
  total = {"kernel": np.zeros((3, 4)), "bias": np.zeros(4)}
  for y in range(NUM_CLASSES):
    _, g = _np_probs_and_grad(params, x, y)
    for name in total:
      total[name] += p[y] * g[name] ** 2
  return total


def _np_embedding(fishers, weights):
  kernel = sum(w * f["kernel"] for f, w in zip(fishers, weights))
  bias = sum(w * f["bias"] for f, w in zip(fishers, weights))
  # tree order: hidden/bias, then hidden/kernel (per-filter mean over the input axis).
  return np.concatenate([bias, kernel.mean(axis=0)])


def _balanced_weights(labels):
  counts = np.bincount(labels, minlength=NUM_CLASSES)
  return 1.0 / (NUM_CLASSES * counts[labels])


def test_filter_means_layout():
  rng = np.random.default_rng(5)
  tree = {"conv": {"kernel": rng.uniform(size=(3, 3, 2, 5)), "bias": rng.uniform(size=(5,))},
          "scalar": np.float32(2.0)}
  got = task2vec.filter_means(tree)
  want = np.concatenate([tree["conv"]["bias"],
                         [tree["conv"]["kernel"][..., k].mean() for k in range(5)], [2.0]])
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_exact_embedding_matches_float64_loops(x64):
  params, inputs, labels = _make_task()
  lik = likelihoods.categorical()
  fishers = [_np_true_fisher(params, inputs[n]) for n in range(len(labels))]
  balanced = task2vec.embedding(mlp_apply, params, (inputs, labels), likelihood=lik,
                                trainable=["hidden"])
  np.testing.assert_allclose(balanced.hessian,
                             _np_embedding(fishers, _balanced_weights(labels)), rtol=1e-10)
  np.testing.assert_array_equal(balanced.scale, np.ones(8))
  plain = task2vec.embedding(mlp_apply, params, (inputs, labels), likelihood=lik,
                             trainable=lambda path: path.startswith("hidden/"),
                             class_balanced=False)
  np.testing.assert_allclose(plain.hessian, _np_embedding(fishers, np.full(7, 1 / 7)), rtol=1e-10)
  jitted = jax.jit(lambda p: task2vec.embedding(
      mlp_apply, p, (inputs, labels), likelihood=lik, trainable=["hidden"],
      class_balanced=False).hessian)(params)
  np.testing.assert_allclose(jitted, plain.hessian, rtol=1e-12)
  # The weighting matters on this imbalanced task.
  assert np.max(np.abs(balanced.hessian - plain.hessian)) > 1e-3


def test_mc_embedding_converges_to_exact(x64):
  params, inputs, labels = _make_task()
  lik = likelihoods.categorical()
  fishers = [_np_true_fisher(params, inputs[n]) for n in range(len(labels))]
  want = _np_embedding(fishers, np.full(7, 1 / 7))
  got = task2vec.embedding(mlp_apply, params, (inputs, labels), likelihood=lik, method="mc",
                           trainable=["hidden"], mc_samples=1000, key=jax.random.key(0),
                           class_balanced=False)
  np.testing.assert_allclose(got.hessian, want, rtol=0.1)
  assert np.max(np.abs(got.hessian - want)) > 0   # sampled, not the exact value


def _np_minibatch_expectation(params, inputs, weights, batch_size):
  """E[g_B**2] by enumeration over B examples drawn with replacement and their model labels."""
  n = len(weights)
  total = {"kernel": np.zeros((3, 4)), "bias": np.zeros(4)}
  mean_grad = {"kernel": np.zeros((3, 4)), "bias": np.zeros(4)}
  for draw in itertools.product(itertools.product(range(n), range(NUM_CLASSES)),
                                repeat=batch_size):
    probability = 1.0
    grad = {"kernel": np.zeros((3, 4)), "bias": np.zeros(4)}
    for example, label in draw:
      p, g = _np_probs_and_grad(params, inputs[example], label)
      probability *= weights[example] * p[label]
      for name in grad:
        grad[name] += g[name] / batch_size
    for name in total:
      total[name] += probability * grad[name] ** 2
      mean_grad[name] += probability * grad[name]
  return total, mean_grad


def test_minibatch_squared_bias_formula(x64):
  """E[g_B**2] = diag(F)/B (the (E g)**2 term vanishes for model-sampled labels)."""
  params, inputs, labels = _make_task(num_examples=4, labels=(0, 1, 2, 2))
  weights = _balanced_weights(labels)
  fishers = [_np_true_fisher(params, inputs[n]) for n in range(4)]
  expectation, mean_grad = _np_minibatch_expectation(params, inputs, weights, batch_size=2)
  for name in expectation:
    assert np.max(np.abs(mean_grad[name])) < 1e-12
    fisher = sum(w * f[name] for f, w in zip(fishers, weights))
    np.testing.assert_allclose(expectation[name], fisher / 2, rtol=1e-10)
  # The implementation: its average over many keys matches that expectation.
  lik = likelihoods.categorical()

  def estimate(key):
    diagonal = task2vec.minibatch_squared_diagonal(mlp_apply, params, inputs, likelihood=lik,
                                                   batch_size=2, key=key, example_weights=weights)
    return diagonal["hidden"]

  samples = jax.jit(jax.vmap(estimate))(jax.random.split(jax.random.key(1), 1000))
  for name in expectation:
    mean = np.mean(samples[name], axis=0)
    standard_error = np.std(samples[name], axis=0) / np.sqrt(1000)
    assert np.all(np.abs(mean - expectation[name]) < 5 * standard_error + 1e-12), name
  # Through `embedding`: the per-filter means of that estimate.
  got = task2vec.embedding(mlp_apply, params, (inputs, labels), likelihood=lik,
                           method="minibatch_squared", trainable=["hidden"], batch_size=2,
                           key=jax.random.key(2))
  direct = estimate(jax.random.key(2))
  np.testing.assert_allclose(got.hessian, np.concatenate([direct["bias"],
                                                          direct["kernel"].mean(axis=0)]),
                             rtol=1e-12)


def test_embedding_errors():
  params, inputs, labels = _make_task()
  lik = likelihoods.categorical()

  def call(**kwargs):
    arguments = dict(likelihood=lik, trainable=["hidden"])
    data = kwargs.pop("data", (inputs, labels))
    arguments.update(kwargs)
    return task2vec.embedding(mlp_apply, params, data, **arguments)

  with pytest.raises(ValueError, match="method must be one of"):
    call(method="laplace")
  with pytest.raises(NotImplementedError, match="issue 13"):
    call(method="variational")
  with pytest.raises(ValueError, match="needs a PRNG key"):
    call(method="mc")
  with pytest.raises(ValueError, match="batch_size"):
    call(method="minibatch_squared", key=jax.random.key(0))
  with pytest.raises(ValueError, match="batch_size must be an integer in"):
    call(method="minibatch_squared", key=jax.random.key(0), batch_size=8)
  with pytest.raises(ValueError, match="needs at least 3 examples"):
    call(data=(inputs[:2], labels[:2]))
  with pytest.raises(ValueError, match=r"classes \[1\] have none"):
    call(data=(inputs, np.array([0, 0, 0, 2, 2, 2, 2], np.int32)))
  with pytest.raises(ValueError, match="trainable: unknown top-level"):
    call(trainable=["encoder"])
  with pytest.raises(ValueError, match="labels must be integers"):
    call(data=(inputs, labels.astype(np.float32)))


def test_fit_head_matches_float64_adam(x64):
  """fit_head against a hand-written numpy Adam (L2 decay in the gradient) on a softmax head."""
  rng = np.random.default_rng(6)
  features = rng.normal(size=(10, 4))
  labels = rng.integers(0, NUM_CLASSES, size=10).astype(np.int32)
  init = {"kernel": rng.normal(size=(4, NUM_CLASSES)) * 0.1, "bias": np.zeros(NUM_CLASSES)}
  key = jax.random.key(3)
  lr, decay, epochs, batch = 0.05, 0.01, 2, 4

  def head(p, f):
    return f @ p["kernel"] + p["bias"][None]

  got = task2vec.fit_head(head, init, features, labels, key=key, learning_rate=lr,
                          weight_decay=decay, num_epochs=epochs, batch_size=batch)
  w = {name: value.copy() for name, value in init.items()}
  m = {name: np.zeros_like(value) for name, value in w.items()}
  v = {name: np.zeros_like(value) for name, value in w.items()}
  t = 0
  for epoch in range(epochs):
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), 10))
    for step in range(10 // batch):
      index = order[step * batch:(step + 1) * batch]
      grad = {"kernel": np.zeros((4, NUM_CLASSES)), "bias": np.zeros(NUM_CLASSES)}
      for n in index:
        z = features[n] @ w["kernel"] + w["bias"]
        p = np.exp(z - z.max())
        p /= p.sum()
        p[labels[n]] -= 1.0
        grad["kernel"] += np.outer(features[n], p) / batch
        grad["bias"] += p / batch
      t += 1
      for name in w:
        g = grad[name] + decay * w[name]
        m[name] = 0.9 * m[name] + 0.1 * g
        v[name] = 0.999 * v[name] + 0.001 * g * g
        w[name] = w[name] - lr * (m[name] / (1 - 0.9 ** t)) / (
            np.sqrt(v[name] / (1 - 0.999 ** t)) + 1e-8)
  for name in w:
    assert np.max(np.abs(w[name] - init[name])) > 1e-2
    np.testing.assert_allclose(got[name], w[name], rtol=1e-9, atol=1e-12)
  with pytest.raises(ValueError, match="batch_size must be an integer in"):
    task2vec.fit_head(head, init, features, labels, key=key, batch_size=11)
