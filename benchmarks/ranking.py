"""Speed of the graph-native soft rank against a numba PAV baseline.

    python benchmarks/ranking.py [--json=PATH] [--quick]

For [batch, n] in [32, 10], [256, 16], [2048, 32], [1024, 64] it times soft_rank
("l2", ASCENDING, strength 1) forward and forward+backward (the gradient of
sum(upstream * soft_rank(x))) as

  ours/function  audio_perm.ranking.soft_rank inside tf.function
  ours/xla       the same with jit_compile=True
  numba          a numba-compiled sequential pool-adjacent-violators row loop
                 (sort, PAV, un-sort; backward = block averaging): the
                 baseline's core, called from numpy, no TensorFlow involved
  numba/graph    that loop called through tf.numpy_function with a custom
                 gradient inside a tf.function (the best a graph can do with a
                 numpy implementation)
  pav_loop/xla   a batched sequential PAV written as a tf.while_loop (the
                 alternative to the O(n^2) formulation), forward only

Each figure is the median of repeated wall-clock timings after warm-up, in
milliseconds per call; the implementations for one shape are timed in turns
(round-robin), so that load from other processes hits them alike. It also
reports how the time per call grows with n at batch 256, and the kl variant
of ours.

Long rows: fwd+bwd for n = 16, 32, ..., 16384 at batch 1 and 32, as

  ours           soft_rank inside tf.function (l2, and kl), whichever path
                 its length takes (the O(n) path above soft.LARGE_N)
  ours/n^2       the O(n^2) path forced (up to n = 1024)
  numba          the numba loop above (its fwd+bwd)

and the peak memory of one fwd+bwd: in a child process whose large
allocations are mmapped (MALLOC_MMAP_THRESHOLD_=128 KiB, so that freed
memory leaves the resident set) and which runs with TF_ENABLE_ONEDNN_OPTS=0
(with the 1 that importing audio_perm sets, freed buffers stayed resident
and a warm call showed ~0 even for the O(n^2) path), after warm-up calls
(compilation excluded), the peak resident set size (VmHWM, reset through
/proc/self/clear_refs) minus the resident set size just before, over three
calls. Buffers under 128 KiB come from the heap and may not show.

Figures depend on the machine and its load; run on an idle machine for
numbers worth quoting.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# audio_perm before TensorFlow: it turns oneDNN on, as in training.
import audio_perm  # noqa: E402,F401  pylint: disable=unused-import
import numba  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from audio_perm import ranking  # noqa: E402
from audio_perm.ranking import soft  # noqa: E402

SHAPES = ((32, 10), (256, 16), (2048, 32), (1024, 64))
SCALING_BATCH = 256
SCALING_NS = (8, 16, 32, 64, 128)
LONG_BATCHES = (1, 32)
LONG_NS = tuple(2 ** k for k in range(4, 15))  # 16 ... 16384
SQUARE_MAX_N = 1024  # the O(n^2) path is timed up to this n
# (impl, batch, n) whose peak memory is measured.
MEMORY_CONFIGS = tuple(
    [("ours", 1, n) for n in (64, 256, 1024, 4096, 16384)] +
    [("ours/n^2", 1, n) for n in (256, 1024, 4096, 16384)] +
    [("ours", 32, 16384), ("numba", 1, 16384), ("numba", 32, 16384)])


# ----------------------------------------------------------------------------
# Baseline: sequential PAV per row, compiled with numba.


@numba.njit(cache=False)
def _numba_soft_rank_forward(values, strength):
  """Soft ranks (l2, ASCENDING) of each row by sort + sequential PAV.

  Returns (ranks [M, n], order [M, n], block_start [M, n]) where order sorts
  each row decreasingly and block_start[r, p] is the first sorted position of
  the isotonic block holding sorted position p.
  """
  m, n = values.shape
  ranks = np.empty_like(values)
  orders = np.empty((m, n), np.int64)
  starts = np.empty((m, n), np.int64)
  sums = np.empty(n, values.dtype)
  counts = np.empty(n, np.int64)
  begins = np.empty(n, np.int64)
  for r in range(m):
    theta = values[r] / strength
    order = np.argsort(-theta)
    top = 0
    for i in range(n):
      # y = s - w with s = sorted theta, w = (n, ..., 1).
      sums[top] = theta[order[i]] - (n - i)
      counts[top] = 1
      begins[top] = i
      top += 1
      while top > 1 and (sums[top - 2] / counts[top - 2] <=
                         sums[top - 1] / counts[top - 1]):
        sums[top - 2] += sums[top - 1]
        counts[top - 2] += counts[top - 1]
        top -= 1
    for b in range(top):
      v = sums[b] / counts[b]
      for p in range(begins[b], begins[b] + counts[b]):
        ranks[r, order[p]] = theta[order[p]] - v
        starts[r, p] = begins[b]
    orders[r] = order
  return ranks, orders, starts


@numba.njit(cache=False)
def _numba_soft_rank_vjp(upstream, orders, starts, strength):
  """Vector-Jacobian product of _numba_soft_rank_forward."""
  m, n = upstream.shape
  grad = np.empty_like(upstream)
  for r in range(m):
    p = 0
    while p < n:
      q = p
      total = 0.0
      while q < n and starts[r, q] == p:
        total += upstream[r, orders[r, q]]
        q += 1
      mean = total / (q - p)
      for t in range(p, q):
        i = orders[r, t]
        grad[r, i] = (upstream[r, i] - mean) / strength
      p = q
  return grad


def numba_graph_soft_rank(values, strength=1.0):
  """The numba loop behind tf.numpy_function, with a custom gradient."""
  strength = np.float32(strength) if values.dtype == tf.float32 else strength

  @tf.custom_gradient
  def _op(x):
    ranks, orders, starts = tf.numpy_function(
        lambda v: _numba_soft_rank_forward(v, strength), [x],
        [x.dtype, tf.int64, tf.int64], stateful=False)
    ranks.set_shape(x.shape)

    def grad(upstream):
      out = tf.numpy_function(
          lambda g, o, s: _numba_soft_rank_vjp(g, o, s, strength),
          [upstream, orders, starts], x.dtype, stateful=False)
      out.set_shape(x.shape)
      return out

    return ranks, grad

  return _op(values)


# ----------------------------------------------------------------------------
# Alternative: batched sequential PAV as a tf.while_loop.


def while_loop_isotonic_l2(y):
  """Decreasing isotonic regression of [M, n] rows by a batched PAV loop.

  A stack of blocks per row; item i is pushed, then the top two blocks are
  merged while they violate the order, for every row at once (rows that need
  no merge are masked).
  """
  m = tf.shape(y)[0]
  n = y.shape[-1]
  rows = tf.range(m)

  def top_indices(top, offset):
    return tf.stack([rows, tf.maximum(top - offset, 0)], axis=-1)

  def push(i, sums, counts, top):
    idx = top_indices(top, 0)
    sums = tf.tensor_scatter_nd_update(sums, idx, y[:, i])
    counts = tf.tensor_scatter_nd_update(counts, idx, tf.ones([m], y.dtype))
    top = top + 1

    def violated(sums, counts, top):
      last = tf.gather_nd(sums, top_indices(top, 1)) / tf.gather_nd(
          counts, top_indices(top, 1))
      prev = tf.gather_nd(sums, top_indices(top, 2)) / tf.gather_nd(
          counts, top_indices(top, 2))
      return (top > 1) & (prev <= last)

    def cond(sums, counts, top):
      return tf.reduce_any(violated(sums, counts, top))

    def body(sums, counts, top):
      merge = violated(sums, counts, top)
      add_s = tf.gather_nd(sums, top_indices(top, 1))
      add_c = tf.gather_nd(counts, top_indices(top, 1))
      idx = top_indices(top, 2)
      sums = tf.tensor_scatter_nd_add(sums, idx, tf.where(merge, add_s, 0.0))
      counts = tf.tensor_scatter_nd_add(counts, idx,
                                        tf.where(merge, add_c, 0.0))
      return sums, counts, top - tf.cast(merge, tf.int32)

    sums, counts, top = tf.while_loop(cond, body, (sums, counts, top))
    return i + 1, sums, counts, top

  zeros = tf.zeros_like(y)
  _, sums, counts, top = tf.while_loop(
      lambda i, *_: i < n, push,
      (tf.constant(0), zeros, zeros, tf.zeros([m], tf.int32)))
  # Expand blocks: position p lies in block b with ends[b-1] <= p < ends[b].
  valid = tf.range(n)[None, :] < top[:, None]
  counts = tf.where(valid, counts, 0.0)
  ends = tf.cumsum(counts, axis=-1)  # [M, n]
  means = sums / tf.maximum(counts, 1.0)
  positions = tf.broadcast_to(tf.cast(tf.range(n), y.dtype)[None], tf.shape(y))
  block = tf.searchsorted(ends, positions, side="right")
  return tf.gather(means, block, batch_dims=1)


def while_loop_soft_rank(values, strength=1.0):
  """soft_rank (l2, ASCENDING) forward with the while-loop PAV."""
  n = values.shape[-1]
  theta = values / strength
  order = tf.argsort(theta, axis=-1, direction="DESCENDING")
  s = tf.gather(theta, order, batch_dims=1)
  w = tf.cast(tf.range(n, 0, -1), values.dtype)[None]
  primal = s - while_loop_isotonic_l2(s - w)
  return tf.gather(primal, tf.argsort(order, axis=-1), batch_dims=1)


# ----------------------------------------------------------------------------
# Timing.


def _interleaved_medians(callables, min_time_s, min_rounds=40, warmup=3):
  """Median wall-clock ms per call of each callable, timed round-robin.

  Taking turns (rather than timing one implementation after another) keeps
  the comparison fair when other processes load the machine unevenly.
  """
  for fn in callables.values():
    for _ in range(warmup):
      fn()
  times = {name: [] for name in callables}
  begin = time.perf_counter()
  rounds = 0
  while rounds < min_rounds or time.perf_counter() - begin < min_time_s:
    for name, fn in callables.items():
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
    rounds += 1
    if rounds >= 2000:
      break
  return {name: (1e3 * statistics.median(t), len(t))
          for name, t in times.items()}


def _tf_callables(op, x, upstream, jit_compile):
  """(forward, forward+backward) zero-argument callables returning numpy."""
  forward = tf.function(lambda v: op(v), jit_compile=jit_compile)

  def _both(v, g):
    with tf.GradientTape() as tape:
      tape.watch(v)
      y = op(v)
    return y, tape.gradient(y, v, output_gradients=g)

  both = tf.function(_both, jit_compile=jit_compile)
  return (lambda: forward(x).numpy(),
          lambda: [t.numpy() for t in both(x, upstream)])


def _numba_callables(x, upstream):
  xs, gs = x.numpy(), upstream.numpy()

  def forward():
    return _numba_soft_rank_forward(xs, np.float32(1.0))[0]

  def both():
    ranks, orders, starts = _numba_soft_rank_forward(xs, np.float32(1.0))
    return ranks, _numba_soft_rank_vjp(gs, orders, starts, np.float32(1.0))

  return forward, both


def _square_path(op):
  """op with every row on the O(n^2) path (soft.LARGE_N raised)."""
  def forced(v):
    saved = soft.LARGE_N
    soft.LARGE_N = 10 ** 9
    try:
      return op(v)
    finally:
      soft.LARGE_N = saved

  return forced


def _check_long_agreement(x, upstream):
  """ours (float32) against numba run in float64, values and vjp."""
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = ranking.soft_rank(x)
  grad = tape.gradient(y, x, output_gradients=upstream)
  ranks, orders, starts = _numba_soft_rank_forward(
      x.numpy().astype(np.float64), 1.0)
  expected = _numba_soft_rank_vjp(upstream.numpy().astype(np.float64),
                                  orders, starts, 1.0)
  n = x.shape[-1]  # float32 ranks up to n: rounding ~ n * 6e-8
  np.testing.assert_allclose(y.numpy(), ranks, rtol=1e-5, atol=1e-4 + 2e-7 * n)
  np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-4, atol=1e-4)


def _long_callables(x, upstream, with_square):
  """{(impl, mode, regularization): fwd+bwd callable} for long rows."""
  callables = {}
  for regularization in ("l2", "kl"):
    op = lambda v, r=regularization: ranking.soft_rank(v, regularization=r)
    _, both = _tf_callables(op, x, upstream, False)
    callables[("ours", "fwd+bwd", regularization)] = both
  if with_square:
    _, both = _tf_callables(_square_path(ranking.soft_rank), x, upstream,
                            False)
    callables[("ours/n^2", "fwd+bwd", "l2")] = both
  _, both = _numba_callables(x, upstream)
  callables[("numba", "fwd+bwd", "l2")] = both
  return callables


def _status_kib(field):
  """A field of /proc/self/status in KiB (VmRSS, VmHWM)."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise KeyError(field)


def memory_probe(configs):
  """Prints one JSON line per (impl, batch, n): peak MiB of one fwd+bwd.

  Run in a child process started by measure_memory (mmapped allocations).
  """
  rng = np.random.default_rng(0)
  for impl, batch, n in configs:
    x = tf.constant(rng.normal(size=(batch, n)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(batch, n)).astype(np.float32))
    if impl == "numba":
      _, both = _numba_callables(x, upstream)
    else:
      op = (_square_path(ranking.soft_rank) if impl == "ours/n^2" else
            ranking.soft_rank)
      _, both = _tf_callables(op, x, upstream, False)
    both()  # compile and warm up
    both()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")  # resets VmHWM to the current resident set size
    for _ in range(3):
      both()
    peak = _status_kib("VmHWM")
    print(json.dumps(dict(impl=impl, batch=batch, n=n,
                          peak_mib=(peak - before) / 1024)), flush=True)


def measure_memory(configs):
  """Runs memory_probe in a child process; returns its records."""
  env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072",
             TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="3")
  out = subprocess.run(
      [sys.executable, os.path.abspath(__file__), "--memory_probe",
       json.dumps(configs)], env=env, check=True, capture_output=True,
      text=True)
  records = [json.loads(line) for line in out.stdout.splitlines()
             if line.startswith("{")]
  for r in records:
    print(f"  memory   [{r['batch']:4d}, {r['n']:5d}] {r['impl']:10s} "
          f"fwd+bwd peak +{r['peak_mib']:.1f} MiB", flush=True)
  return records


def _check_agreement(x, upstream):
  """All implementations must give the same numbers before being timed."""
  ours = ranking.soft_rank(x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = ranking.soft_rank(x)
  ours_grad = tape.gradient(y, x, output_gradients=upstream)
  ranks, orders, starts = _numba_soft_rank_forward(x.numpy(), np.float32(1.0))
  grad = _numba_soft_rank_vjp(upstream.numpy(), orders, starts, np.float32(1.0))
  np.testing.assert_allclose(ours.numpy(), ranks, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(ours_grad.numpy(), grad, rtol=1e-4, atol=1e-4)
  loop = tf.function(while_loop_soft_rank)(x)
  np.testing.assert_allclose(ours.numpy(), loop.numpy(), rtol=1e-4, atol=1e-4)


def run(min_time_s=0.3, quick=False):
  rng = np.random.default_rng(0)
  records = []

  def measure(kind, shape, callables):
    """callables: {(impl, mode, regularization): fn}."""
    results = _interleaved_medians(callables, min_time_s * len(callables) / 4)
    for (impl, mode, regularization), (ms, reps) in results.items():
      records.append(dict(kind=kind, batch=shape[0], n=shape[1], impl=impl,
                          mode=mode, regularization=regularization,
                          median_ms=ms, repeats=reps))
      print(f"  {kind:8s} [{shape[0]:4d}, {shape[1]:3d}] {impl:14s} "
            f"{mode:8s} {regularization}: {ms:9.3f} ms  ({reps} runs)",
            flush=True)

  shapes = SHAPES[:2] if quick else SHAPES
  for shape in shapes:
    x = tf.constant(rng.normal(size=shape).astype(np.float32))
    upstream = tf.constant(rng.normal(size=shape).astype(np.float32))
    _check_agreement(x, upstream)
    callables = {}
    for regularization in ("l2", "kl"):
      op = lambda v, r=regularization: ranking.soft_rank(v, regularization=r)
      for impl, jit in (("ours/function", False), ("ours/xla", True)):
        fwd, both = _tf_callables(op, x, upstream, jit)
        callables[(impl, "fwd", regularization)] = fwd
        callables[(impl, "fwd+bwd", regularization)] = both
    fwd, both = _numba_callables(x, upstream)
    callables[("numba", "fwd", "l2")] = fwd
    callables[("numba", "fwd+bwd", "l2")] = both
    fwd, both = _tf_callables(numba_graph_soft_rank, x, upstream, False)
    callables[("numba/graph", "fwd", "l2")] = fwd
    callables[("numba/graph", "fwd+bwd", "l2")] = both
    loop = tf.function(while_loop_soft_rank, jit_compile=True)
    callables[("pav_loop/xla", "fwd", "l2")] = lambda: loop(x).numpy()
    measure("main", shape, callables)

  scaling_ns = SCALING_NS[:3] if quick else SCALING_NS
  for n in scaling_ns:
    shape = (SCALING_BATCH, n)
    x = tf.constant(rng.normal(size=shape).astype(np.float32))
    upstream = tf.constant(rng.normal(size=shape).astype(np.float32))
    callables = {}
    for impl, jit in (("ours/function", False), ("ours/xla", True)):
      _, both = _tf_callables(ranking.soft_rank, x, upstream, jit)
      callables[(impl, "fwd+bwd", "l2")] = both
    _, both = _tf_callables(numba_graph_soft_rank, x, upstream, False)
    callables[("numba/graph", "fwd+bwd", "l2")] = both
    _, both = _numba_callables(x, upstream)
    callables[("numba", "fwd+bwd", "l2")] = both
    measure("scaling", shape, callables)

  long_ns = (16, 128, 1024) if quick else LONG_NS
  for batch in LONG_BATCHES:
    for n in long_ns:
      shape = (batch, n)
      x = tf.constant(rng.normal(size=shape).astype(np.float32))
      upstream = tf.constant(rng.normal(size=shape).astype(np.float32))
      _check_long_agreement(x, upstream)
      measure("long", shape,
              _long_callables(x, upstream, n <= SQUARE_MAX_N))
  return records


def _lookup(records, kind, shape, impl, mode, regularization="l2"):
  for r in records:
    if (r["kind"], r["batch"], r["n"], r["impl"], r["mode"],
        r["regularization"]) == (kind, shape[0], shape[1], impl, mode,
                                 regularization):
      return r["median_ms"]
  return None


def summarise(records):
  """Prints the tables; returns the ratio summary as a dict."""
  shapes = sorted(
      {(r["batch"], r["n"]) for r in records if r["kind"] == "main"},
      key=lambda s: s[1])
  impls = ("ours/function", "ours/xla", "numba", "numba/graph", "pav_loop/xla")
  print("\nsoft_rank l2, median ms per call (fwd / fwd+bwd)")
  header = f"{'shape':>12s} " + " ".join(f"{i:>21s}" for i in impls)
  print(header)
  for shape in shapes:
    cells = []
    for impl in impls:
      f = _lookup(records, "main", shape, impl, "fwd")
      b = _lookup(records, "main", shape, impl, "fwd+bwd")
      both = f"{b:9.3f}" if b is not None else f"{'-':>9s}"
      cells.append(f"{f:9.3f} / {both}" if f is not None else f"{'-':>21s}")
    print(f"{str(list(shape)):>12s} " + " ".join(f"{c:>21s}" for c in cells))
  print("\nsoft_rank kl, median ms per call (fwd / fwd+bwd)")
  for shape in shapes:
    cells = []
    for impl in impls[:2]:
      f = _lookup(records, "main", shape, impl, "fwd", "kl")
      b = _lookup(records, "main", shape, impl, "fwd+bwd", "kl")
      cells.append(f"{f:9.3f} / {b:9.3f}")
    print(f"{str(list(shape)):>12s} " + " ".join(f"{c:>21s}" for c in cells))

  ratios = {}
  print("\nfwd+bwd speed-up of ours over numba/graph (>1: ours faster)")
  for shape in shapes:
    base = _lookup(records, "main", shape, "numba/graph", "fwd+bwd")
    key = f"{shape[0]}x{shape[1]}"
    ratios[key] = {}
    for impl in ("ours/function", "ours/xla"):
      ours = _lookup(records, "main", shape, impl, "fwd+bwd")
      ratios[key][impl] = base / ours
    raw = _lookup(records, "main", shape, "numba", "fwd+bwd")
    ratios[key]["numba_raw_over_ours_xla"] = raw / _lookup(
        records, "main", shape, "ours/xla", "fwd+bwd")
    r = ratios[key]
    print(f"{str(list(shape)):>12s}  function {r['ours/function']:6.2f}x"
          f"   xla {r['ours/xla']:6.2f}x   (numba without TF takes "
          f"{r['numba_raw_over_ours_xla']:.2f}x the time of ours/xla)")
  goal = {}
  for key in ("256x16", "2048x32"):
    if key in ratios:
      goal[key] = {impl: ratios[key][impl] >= 1.0
                   for impl in ("ours/function", "ours/xla")}
  print("goal (ours fwd+bwd at least as fast as numba/graph at [256, 16] and "
        "[2048, 32]): " + ", ".join(
            f"{key} {impl}: {'met' if ok else 'NOT met'}"
            for key, by_impl in goal.items() for impl, ok in by_impl.items()))
  print(f"\nscaling with n at batch {SCALING_BATCH}, fwd+bwd ms "
        "(per-row microseconds in brackets)")
  ns = sorted({r["n"] for r in records if r["kind"] == "scaling"})
  simpls = ("ours/function", "ours/xla", "numba/graph", "numba")
  print(f"{'n':>5s} " + " ".join(f"{i:>22s}" for i in simpls))
  for n in ns:
    cells = []
    for impl in simpls:
      ms = _lookup(records, "scaling", (SCALING_BATCH, n), impl, "fwd+bwd")
      cells.append(f"{ms:8.3f} ({1e3 * ms / SCALING_BATCH:7.2f})")
    print(f"{n:5d} " + " ".join(f"{c:>22s}" for c in cells))
  return ratios


def summarise_long(records, memory):
  """Prints the long-row and memory tables; returns the goal figures."""
  print("\nlong rows, fwd+bwd median ms per call (ours/numba in brackets)")
  impls = (("ours", "l2"), ("ours", "kl"), ("ours/n^2", "l2"),
           ("numba", "l2"))
  print(f"{'shape':>14s} " + " ".join(
      f"{i + ' ' + r:>18s}" for i, r in impls))
  shapes = sorted({(r["batch"], r["n"]) for r in records
                   if r["kind"] == "long"})
  for shape in shapes:
    base = _lookup(records, "long", shape, "numba", "fwd+bwd")
    cells = []
    for impl, regularization in impls:
      ms = _lookup(records, "long", shape, impl, "fwd+bwd", regularization)
      cells.append(f"{'-':>18s}" if ms is None else
                   f"{ms:9.3f} ({ms / base:5.2f}x)")
    print(f"{str(list(shape)):>14s} " + " ".join(cells))
  goal = {}
  for shape in shapes:
    if shape[1] == max(LONG_NS):
      ratio = (_lookup(records, "long", shape, "ours", "fwd+bwd") /
               _lookup(records, "long", shape, "numba", "fwd+bwd"))
      goal[f"{shape[0]}x{shape[1]}"] = ratio
  if goal:
    print("goal (ours l2 fwd+bwd within 5x of numba at n = 16384): " +
          ", ".join(f"{k} {v:.2f}x {'met' if v <= 5 else 'NOT met'}"
                    for k, v in goal.items()))
  if memory:
    print("\npeak memory of one fwd+bwd above the resident set before it "
          "(MiB)")
    for r in memory:
      print(f"  {r['impl']:10s} [{r['batch']:4d}, {r['n']:5d}] "
            f"{r['peak_mib']:8.1f}")
  return goal


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", default=None, help="write the figures here")
  parser.add_argument("--quick", action="store_true",
                      help="fewer shapes and ns (a smoke run)")
  parser.add_argument("--min_time_s", type=float, default=0.3,
                      help="time each configuration at least this long")
  parser.add_argument("--memory_probe", default=None,
                      help=argparse.SUPPRESS)  # internal: the child process
  args = parser.parse_args(argv)
  if args.memory_probe:
    memory_probe([tuple(c) for c in json.loads(args.memory_probe)])
    return
  load_before = os.getloadavg()
  print(f"tensorflow {tf.__version__}, numba {numba.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"load average {load_before[0]:.2f}")
  records = run(min_time_s=args.min_time_s, quick=args.quick)
  memory = measure_memory(
      [c for c in MEMORY_CONFIGS if not args.quick or c[2] <= 1024])
  ratios = summarise(records)
  long_goal = summarise_long(records, memory)
  load_after = os.getloadavg()
  print(f"load average before / after: {load_before[0]:.2f} / "
        f"{load_after[0]:.2f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(dict(records=records, speedup_over_numba_graph=ratios,
                     long_rows_ours_over_numba=long_goal,
                     peak_memory=memory, large_n=soft.LARGE_N,
                     tensorflow=tf.__version__, numba=numba.__version__,
                     cpus=os.cpu_count(),
                     load_average=[load_before[0], load_after[0]]), f,
                indent=1)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
  main()
