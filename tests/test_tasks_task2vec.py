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
from infojax.weights import posterior

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
    "entropy": task2vec.entropy_distance,
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
  if kind == "correlation":
    mean_a, mean_b = sum(var_a) / d, sum(var_b) / d
    return _loop_cosine([x - mean_a for x in var_a], [x - mean_b for x in var_b])
  assert kind == "entropy"
  return _loop_entropy(ha, hb)


def _loop_entropy(ha, hb):
  """log 2 - the mean binary entropy of a_j/(a_j + b_j), over the coordinates with a_j + b_j > 0."""
  total, count = 0.0, 0
  for x, y in zip(ha, hb):
    if x + y == 0:
      continue
    p = x / (x + y)
    entropy = sum(-q * math.log(q) for q in (p, 1.0 - p) if q > 0)
    total += math.log(2.0) - entropy
    count += 1
  return total / count


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
  with pytest.raises(ValueError, match="needs a PRNG key"):
    call(method="variational")
  with pytest.raises(ValueError, match="num_steps must be a positive integer"):
    call(method="variational", key=jax.random.key(0), num_steps=0)
  with pytest.raises(ValueError, match="beta must be a positive finite number"):
    call(method="variational", key=jax.random.key(0), beta=-1.0)
  with pytest.raises(ValueError, match="batch_size must be None or a positive integer"):
    call(method="variational", key=jax.random.key(0), batch_size=0)
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


# ----------------------------------------------------------------------------------------------
# The official code's entropy distance and normalised embeddings.
# ----------------------------------------------------------------------------------------------


def test_entropy_distance_skips_empty_coordinates_and_spans_zero_to_log_two(x64):
  rng = np.random.default_rng(7)
  a, b = rng.gamma(2.0, size=12), rng.gamma(2.0, size=12)
  a[[2, 5]] = 0.0
  b[[5, 9]] = 0.0   # coordinate 5 is 0/0: left out; 2 and 9 are carried by one task alone
  want = _loop_entropy(list(a), list(b))
  np.testing.assert_allclose(task2vec.entropy_distance(a, b), want, rtol=1e-12)
  np.testing.assert_allclose(task2vec.entropy_distance(b, a), want, rtol=1e-12)
  assert 0.0 < want < math.log(2.0)
  disjoint = task2vec.entropy_distance(np.array([1.0, 0.0, 3.0]), np.array([0.0, 2.0, 0.0]))
  np.testing.assert_allclose(disjoint, math.log(2.0), rtol=1e-12)
  # Not blind to a rescaling: the shares move away from 1/2.
  assert float(task2vec.entropy_distance(a, 3.0 * a)) > 0.1
  jitted = jax.jit(jax.vmap(task2vec.entropy_distance, in_axes=(0, None)))(np.stack([a, b]), b)
  np.testing.assert_allclose(jitted, [want, 0.0], rtol=1e-12, atol=1e-15)


def test_normalized_embeddings_divide_by_the_rms_across_tasks(x64):
  rng = np.random.default_rng(8)
  hessians = rng.gamma(2.0, size=(4, 6))
  hessians[:, 3] = 0.0   # a coordinate zero in every task stays zero
  rms = [math.sqrt(sum(hessians[t, j] ** 2 for t in range(4)) / 4) for j in range(6)]
  want = [[hessians[t, j] / rms[j] if rms[j] > 0 else 0.0 for j in range(6)] for t in range(4)]
  scales = rng.uniform(0.5, 2.0, size=(4, 6))
  for embeddings in (hessians, task2vec.Embedding(hessians, scales)):
    normalized, normalization = task2vec.normalized_embeddings(embeddings)
    np.testing.assert_allclose(normalized, want, rtol=1e-12)
    np.testing.assert_allclose(normalization, rms, rtol=1e-12)
  # The same divisors applied to other tasks, under jit.
  others = rng.gamma(2.0, size=(2, 6))
  divisors = np.asarray(rms)
  divisors[3] = 1.0
  applied, _ = jax.jit(task2vec.normalized_embeddings)(others, divisors)
  np.testing.assert_allclose(applied, others / divisors[None], rtol=1e-12)
  with pytest.raises(ValueError, match=r"normalization must have shape \(6,\)"):
    task2vec.normalized_embeddings(hessians, np.ones(5))
  with pytest.raises(ValueError, match="normalization must be positive"):
    task2vec.normalized_embeddings(hessians, np.zeros(6))
  with pytest.raises(ValueError, match=r"embeddings\[0\]: .*non-negative"):
    task2vec.normalized_embeddings(-hessians)


# ----------------------------------------------------------------------------------------------
# The variational ("robust") Fisher.
# ----------------------------------------------------------------------------------------------


def _np_variational_optimum(weights_by_leaf, curvature_by_leaf, beta):
  """The optimum of E_Q[mean NLL] + beta * 2 KL for a quadratic loss, in float64 numpy.

  With E_Q L = L(w) + 1/2 sum_i H_ii sigma_i^2 (exact for a quadratic), the stationarity
  conditions are 1/sigma_j^2 = mean_{i in filter j} H_ii / (2 beta) + 1/lambda^2 and
  lambda^2 = (||w||^2 + sum_i sigma_i^2) / k; lambda^2 is the root of the increasing function
  k lambda^2 - ||w||^2 - sum_j n_j / (a_j + 1/lambda^2), found by bisection.
  Returns per leaf (1/sigma_j^2 per filter, 1/lambda^2).
  """
  result = []
  for w, h in zip(weights_by_leaf, curvature_by_leaf):
    filters = w.shape[-1]
    per_filter = w.size // filters
    a = [sum(h.reshape(-1, filters)[i, j] for i in range(per_filter)) / per_filter / (2 * beta)
         for j in range(filters)]
    norm = float(np.sum(w * w))
    low, high = 1e-12, 1e12
    for _ in range(400):
      middle = math.sqrt(low * high)
      value = w.size * middle - norm - sum(per_filter / (aj + 1.0 / middle) for aj in a)
      low, high = (middle, high) if value < 0 else (low, middle)
    lam2 = math.sqrt(low * high)
    result.append((np.array([aj + 1.0 / lam2 for aj in a]), 1.0 / lam2))
  return result


def test_variational_fisher_reaches_the_closed_form_optimum_of_a_quadratic_loss(x64):
  """A linear model with a Gaussian likelihood: the loss is exactly quadratic in the weights."""
  rng = np.random.default_rng(9)
  n, d, c, noise, beta = 20, 3, 2, 0.5, 1.0
  inputs = rng.normal(size=(n, d)) * np.array([0.5, 1.0, 2.0])[None]
  params = {"kernel": rng.normal(size=(d, c)), "bias": rng.normal(size=(c,))}
  targets = inputs @ params["kernel"] + params["bias"][None]   # the weights are the LS minimum
  weights = rng.uniform(0.5, 1.5, size=n)
  weights /= weights.sum()

  def apply_fn(p, x):
    return x @ p["kernel"] + p["bias"][None]

  # Hessian diagonal of the weighted mean NLL sum_n w_n |y_n - f(x_n)|^2 / (2 s^2), by loops.
  h_kernel, h_bias = np.zeros((d, c)), np.zeros(c)
  for m in range(n):
    for i in range(d):
      for k in range(c):
        h_kernel[i, k] += weights[m] * inputs[m, i] ** 2 / noise ** 2
    h_bias += weights[m] / noise ** 2
  (bias_h, bias_s), (kernel_h, kernel_s) = _np_variational_optimum(
      [params["bias"], params["kernel"]], [h_bias, h_kernel], beta)
  want_hessian = np.concatenate([bias_h, kernel_h])   # leaves: bias, kernel
  want_scale = np.array([bias_s] * c + [kernel_s] * c)
  # beta is large enough for the prior's 1/lambda^2 to be a sizeable part of 1/sigma^2.
  assert np.all(want_scale > 0.1 * want_hessian), want_scale / want_hessian

  fit = task2vec.variational_fisher(apply_fn, params, likelihood=likelihoods.gaussian(noise),
                                    beta=beta)
  data = (inputs, targets, weights)

  def run(key):
    """20 snapshots, 50 steps apart, after 1,500 steps."""
    state, metrics = posterior.fit(fit.update, fit.init(key), data, num_steps=1500)

    def chunk(state, _):
      state, _ = posterior.fit(fit.update, state, data, num_steps=50)
      return state, fit.embedding(state)

    return jax.lax.scan(chunk, state, None, length=20)[1], metrics["objective"]

  runs = 32
  snapshots, objective = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(4), runs))
  assert np.mean(objective[:, -100:]) < np.mean(objective[:, :10])
  # The iterates jitter around the optimum (one weight draw per step, Adam's constant step); in
  # log space (the fitted variables are logs, and a mean of exp(-log sigma^2) would carry the
  # jitter's Jensen bias) the mean agrees within 5 standard errors (from the spread of the runs'
  # means, which are independent), themselves under 1%. (At this learning rate the runs sit about
  # 0.5% above the optimum, Adam's stationary bias under the sampling noise; at lr 2e-3 it is
  # gone, within 0.3% standard errors.)
  for got, want in ((snapshots.hessian, want_hessian), (snapshots.scale, want_scale)):
    run_means = np.mean(np.log(got), axis=1)
    standard_error = np.std(run_means, axis=0, ddof=1) / np.sqrt(runs)
    assert np.all(standard_error < 0.01)
    assert np.all(np.abs(np.mean(run_means, axis=0) - np.log(want)) < 5 * standard_error), (
        np.exp(np.mean(run_means, axis=0)), want)
  # The initial noise is far from it: the fit moved the variances.
  initial = fit.embedding(fit.init(jax.random.key(0)))
  assert np.all(np.abs(initial.hessian - want_hessian) > 0.5 * want_hessian)


def test_variational_initialisation_is_the_official_one(x64):
  rng = np.random.default_rng(10)
  params = {"conv": rng.normal(size=(2, 2, 3, 4)), "bias": rng.normal(size=(4,)),
            "scalar": np.float64(0.7)}

  def apply_fn(p, x):
    return x @ jnp.reshape(p["conv"], (12, 4)) + p["bias"][None] * p["scalar"]

  fit = task2vec.variational_fisher(apply_fn, params, likelihood=likelihoods.categorical())
  initial = fit.embedding(fit.init(jax.random.key(0)))
  want_h, want_s = [], []
  for name in ("bias", "conv", "scalar"):   # jax.tree.leaves order
    w = np.asarray(params[name], float)
    second_moment = float(np.mean(w * w))
    if w.ndim >= 2:
      columns = w.reshape(-1, w.shape[-1])
      per_filter = []
      for j in range(columns.shape[1]):
        mean = sum(columns[:, j]) / columns.shape[0]
        per_filter.append(sum((v - mean) ** 2 for v in columns[:, j]) / (columns.shape[0] - 1))
    else:
      per_filter = [second_moment] * max(w.size, 1)   # one weight per filter: the leaf's w^2
    want_h += [1.0 / (0.05 * v + 1e-8) for v in per_filter]
    want_s += [1.0 / (second_moment + 1e-8)] * len(per_filter)
  np.testing.assert_allclose(initial.hessian, want_h, rtol=1e-10)
  np.testing.assert_allclose(initial.scale, want_s, rtol=1e-10)


def _mlp_task():
  """A tanh MLP whose filters' Fisher is set by the head's rows (spread over two decades), while
  the initial variational noise is set by the hidden kernel's columns (drawn alike): the two are
  unrelated, so a fit that ranks the filters as the Fisher does has learned it."""
  rng = np.random.default_rng(11)
  n, d, width = 128, 6, 12
  inputs = rng.normal(size=(n, d)).astype(np.float32)
  params = {
      "hidden": {"kernel": (0.6 * rng.normal(size=(d, width))).astype(np.float32),
                 "bias": np.zeros(width, np.float32)},
      "head": {"kernel": (rng.normal(size=(width, NUM_CLASSES))
                          * np.geomspace(0.1, 2.0, width)[rng.permutation(width), None]).astype(
                              np.float32),
               "bias": np.zeros(NUM_CLASSES, np.float32)},
  }
  logits = np.asarray(mlp_apply(params, inputs))
  labels = np.argmax(logits + rng.gumbel(size=logits.shape), axis=-1).astype(np.int32)
  return params, inputs, labels


def _ranks(values):
  order = np.argsort(values)
  ranks = np.empty(len(values))
  ranks[order] = np.arange(len(values))
  return ranks


def test_variational_embedding_grows_with_the_exact_fisher():
  """On a tanh MLP, the fitted 1/sigma^2 ranks the filters as the exact Fisher does."""
  params, inputs, labels = _mlp_task()
  lik = likelihoods.categorical()

  def kernel_only(path):
    return path == "hidden/kernel"

  def rank_correlation(a, b):   # Spearman's
    return np.corrcoef(_ranks(np.asarray(a)), _ranks(np.asarray(b)))[0, 1]

  options = dict(likelihood=lik, trainable=kernel_only, class_balanced=False)
  exact = task2vec.embedding(mlp_apply, params, (inputs, labels), **options)
  # Minibatches of 32 examples drawn with replacement.
  got = task2vec.embedding(mlp_apply, params, (inputs, labels), method="variational", beta=1e-3,
                           num_steps=300, batch_size=32, key=jax.random.key(0), **options)
  fit = task2vec.variational_fisher(mlp_apply, params, likelihood=lik, trainable=kernel_only)
  initial = fit.embedding(fit.init(jax.random.key(0)))
  assert got.hessian.shape == exact.hessian.shape == (12,)
  assert np.max(exact.hessian) > 30 * np.min(exact.hessian)
  assert rank_correlation(exact.hessian, initial.hessian) < 0.5   # the start knows nothing
  assert rank_correlation(exact.hessian, got.hessian) > 0.9
  assert np.all(np.asarray(got.hessian) > np.asarray(got.scale))


def test_variational_embedding_weights_each_class_equally():
  """Through `embedding`, class_balanced weights the NLL by 1/(C n_c): the same fit as by hand."""
  params, inputs, labels = _make_task()   # classes of 3, 2 and 2 examples
  lik = likelihoods.categorical()
  options = dict(likelihood=lik, method="variational", trainable=["hidden"], beta=1e-2,
                 num_steps=5, key=jax.random.key(6))
  balanced = task2vec.embedding(mlp_apply, params, (inputs, labels), **options)
  plain = task2vec.embedding(mlp_apply, params, (inputs, labels), class_balanced=False, **options)
  fit = task2vec.variational_fisher(mlp_apply, params, likelihood=lik, trainable=["hidden"],
                                    beta=1e-2)
  for embedded, weights in ((balanced, _balanced_weights(labels)), (plain, np.full(7, 1 / 7))):
    state, _ = posterior.fit(fit.update, fit.init(jax.random.key(6)), (inputs, labels, weights),
                             num_steps=5)
    # The same compiled program on the same float32 inputs.
    np.testing.assert_allclose(embedded.hessian, fit.embedding(state).hessian, rtol=1e-6)
  assert np.max(np.abs(balanced.hessian - plain.hessian)) > 1e-6 * np.max(plain.hessian)
  # jit (class_balanced=False: traced labels) and vmap over the key.
  keys = jax.random.split(jax.random.key(7), 2)
  options.pop("key")
  batched = jax.jit(jax.vmap(lambda key: task2vec.embedding(
      mlp_apply, params, (inputs, labels), class_balanced=False, key=key, **options).hessian))(keys)
  np.testing.assert_allclose(batched[0], task2vec.embedding(
      mlp_apply, params, (inputs, labels), class_balanced=False, key=keys[0], **options).hessian,
                             rtol=1e-5)
  assert np.max(np.abs(batched[1] - batched[0])) > 0   # another key, another noise sequence


# ----------------------------------------------------------------------------------------------
# A batch sharded over 8 devices gives the single-device embedding.
# ----------------------------------------------------------------------------------------------


def _sharded_task(axis_type):
  """16 examples of the MLP task with unequal classes (6, 5, 5), and the batch on 8 devices."""
  params, inputs, _ = _mlp_task()
  inputs = inputs[:16]
  labels = np.random.default_rng(12).permutation([0] * 6 + [1] * 5 + [2] * 5).astype(np.int32)
  mesh = jax.make_mesh((8,), ("batch",), axis_types=(axis_type,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
  sharded = (jax.device_put(inputs, sharding), jax.device_put(labels, sharding))
  assert len(sharded[0].addressable_shards) == 8
  return params, (inputs, labels), sharded, mesh


def test_sharded_batch_gives_the_single_device_exact_embedding():
  """Eager and class-balanced (the per-class route, which gathers each class on the host and so
  reuses the single-device compilations), on an Explicit mesh."""
  params, data, sharded, mesh = _sharded_task(jax.sharding.AxisType.Explicit)
  options = dict(likelihood=likelihoods.categorical(), trainable=["hidden"])
  expected = task2vec.embedding(mlp_apply, params, data, **options)
  with jax.set_mesh(mesh):
    got = task2vec.embedding(mlp_apply, params, sharded, **options)
  np.testing.assert_allclose(got.hessian, expected.hessian, rtol=2e-5, atol=1e-7)


def test_sharded_batch_gives_the_single_device_mc_embedding_under_jit():
  """Jitted on an Explicit mesh (class_balanced=False: the labels are traced)."""
  params, data, sharded, mesh = _sharded_task(jax.sharding.AxisType.Explicit)
  options = dict(likelihood=likelihoods.categorical(), method="mc", trainable=["hidden"],
                 key=jax.random.key(5), mc_samples=4, class_balanced=False)
  expected = task2vec.embedding(mlp_apply, params, data, **options)
  with jax.set_mesh(mesh):
    got = jax.jit(lambda p, batch: task2vec.embedding(mlp_apply, p, batch, **options).hessian)(
        params, sharded)
  np.testing.assert_allclose(got, expected.hessian, rtol=2e-5, atol=1e-7)
