"""Pure-TensorFlow synthetic masks: geometry per kind, determinism, dispatch, tf.data."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from colourise_tf import masks

S = 32  # output side, as in tests/test_data.py

_PY_FUNC_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc", "NumpyFunction"}


def _seed(i: int, j: int = 17) -> tf.Tensor:
    return tf.constant([i, j], tf.int64)


def _dataset_ops(ds: tf.data.Dataset) -> set[str]:
    """Op types of a dataset's serialised graph, its function library included."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(ds._as_serialized_graph().numpy())
    ops = {node.op for node in graph_def.node}
    for fn in graph_def.library.function:
        ops |= {node.op for node in fn.node_def}
    return ops


def _check_geometry(kind: str, m: np.ndarray) -> None:
    """The assertions of tests/test_data.py::test_mask_geometry, for one mask."""
    assert m.shape == (S, S, 1) and m.dtype == np.float32
    assert set(np.unique(m)) <= {0.0, 1.0}
    m = m[..., 0]
    if kind == "half_vertical":
        assert m.sum() == S * S / 2 and np.all(m == m[:1])  # columns constant
        assert m[:, : S // 2].all() != m[:, S // 2 :].any()  # exactly one side on
    elif kind == "half_horizontal":
        assert m.sum() == S * S / 2 and np.all(m == m[:, :1])
        assert m[: S // 2].all() != m[S // 2 :].any()
    elif kind == "stripes_h":
        assert np.all(m == m[:, :1]) and 0 < m.sum() < S * S
        assert np.count_nonzero(np.diff(m[:, 0])) >= 1
    elif kind == "stripes_v":
        assert np.all(m == m[:1]) and 0 < m.sum() < S * S
        assert np.count_nonzero(np.diff(m[0])) >= 1
    elif kind == "grid":
        xor = np.logical_xor(np.logical_xor(m[:, :1], m[:1, :]), m[0, 0])
        np.testing.assert_array_equal(m, xor.astype(np.float32))
        assert not np.all(m == m[:1]) and not np.all(m == m[:, :1])
    else:
        assert kind == "random_blobs"
        assert 0 < m.sum() < S * S


def test_kinds_match_data_module():
    from colourise_tf import data

    assert masks.MASK_KINDS == data.MASK_KINDS


@pytest.mark.parametrize("seed", range(5))
def test_mask_geometry(seed):
    for kind in masks.MASK_KINDS:
        m = masks.make_mask(kind, S, _seed(seed))
        assert isinstance(m, tf.Tensor) and m.shape == (S, S, 1)
        _check_geometry(kind, m.numpy())
    with pytest.raises(ValueError, match="unknown mask kind"):
        masks.make_mask("spiral", S, _seed(seed))


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown mask kind"):
        masks.make_mask(len(masks.MASK_KINDS), S, _seed(0))
    with pytest.raises(ValueError, match="unknown mask kind"):
        masks.random_mask(S, _seed(0), kinds=("grid", "spiral"))
    with pytest.raises(ValueError):
        masks.random_mask(S, _seed(0), kinds=())
    with pytest.raises(ValueError):
        masks.make_mask("grid", 0, _seed(0))
    with pytest.raises(ValueError):
        masks.make_mask("grid", S, tf.constant([1, 2, 3]))
    with pytest.raises(TypeError):
        masks.make_mask("grid", S, tf.constant([1.0, 2.0]))


def test_stripe_widths_and_grid_cells_in_range():
    lo, hi = max(1, S // 16), min(max(1, S // 4), S // 2)
    for i in range(10):
        for kind in ("stripes_h", "stripes_v", "grid"):
            m = masks.make_mask(kind, S, _seed(i)).numpy()[..., 0]
            line = m[:, 0] if kind == "stripes_h" else m[0]
            edges = np.flatnonzero(np.diff(line)) + 1
            runs = np.diff(np.concatenate([[0], edges, [S]]))
            inner = runs[1:-1]  # the first and last runs may be cut by the phase
            assert np.all(runs <= hi) and np.all((inner >= lo) & (inner <= hi)), (kind, runs)
            assert len(runs) >= 2


def test_deterministic():
    for kind in masks.MASK_KINDS:
        a = masks.make_mask(kind, S, _seed(3)).numpy()
        b = masks.make_mask(kind, S, _seed(3)).numpy()
        c = masks.make_mask(kind, S, tf.constant([3, 17], tf.int32)).numpy()
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)  # int32 and int64 seeds agree
    blobs = {masks.make_mask("random_blobs", S, _seed(i)).numpy().tobytes() for i in range(10)}
    assert len(blobs) == 10
    k1, m1 = masks.random_mask(S, _seed(5))
    k2, m2 = masks.random_mask(S, _seed(5))
    k3, m3 = masks.random_mask(S, tf.constant([5, 17], tf.int32))
    assert int(k1) == int(k2) == int(k3)
    np.testing.assert_array_equal(m1.numpy(), m2.numpy())
    np.testing.assert_array_equal(m1.numpy(), m3.numpy())


def test_tensor_kind_index_matches_name():
    @tf.function(input_signature=[tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int64)])
    def traced(index, seed):
        return masks.make_mask(index, S, seed)

    assert traced.get_concrete_function().structured_outputs.shape == (S, S, 1)
    for seed in range(3):
        for i, kind in enumerate(masks.MASK_KINDS):
            want = masks.make_mask(kind, S, _seed(seed)).numpy()
            eager = masks.make_mask(tf.constant(i, tf.int32), S, _seed(seed)).numpy()
            np.testing.assert_array_equal(eager, want)
            np.testing.assert_array_equal(traced(tf.constant(i), _seed(seed)).numpy(), want)


def test_random_mask_covers_all_kinds():
    seen = []
    for i in range(60):
        index, mask = masks.random_mask(S, _seed(i, 99))
        assert index.dtype == tf.int32 and index.shape == ()
        kind = masks.MASK_KINDS[int(index)]
        seen.append(kind)
        _check_geometry(kind, mask.numpy())
        if i < 6:  # the mask is make_mask of the drawn kind with the documented sub-seed
            sub = tf.random.experimental.stateless_fold_in(_seed(i, 99), tf.constant(1, tf.int64), alg="philox")
            np.testing.assert_array_equal(mask.numpy(), masks.make_mask(kind, S, sub).numpy())
    assert set(seen) == set(masks.MASK_KINDS)
    subset = ("grid", "half_horizontal")
    drawn = {int(masks.random_mask(S, _seed(i), kinds=subset)[0]) for i in range(20)}
    assert drawn == {masks.MASK_KINDS.index(k) for k in subset}


def test_dataset_map_is_pure_tensorflow():
    def draw(i):
        index, mask = masks.random_mask(S, tf.stack([tf.constant(7, tf.int64), i]))
        return {"kind": index, "mask": mask}

    ds = tf.data.Dataset.range(8).map(draw, num_parallel_calls=2)
    assert ds.element_spec["mask"].shape == (S, S, 1)
    out = list(ds.as_numpy_iterator())
    assert len(out) == 8
    for ex in out:
        _check_geometry(masks.MASK_KINDS[ex["kind"]], ex["mask"])
    ops = _dataset_ops(ds)
    assert "StatelessRandomUniformIntV2" in ops or "StatelessRandomUniformV2" in ops
    assert not ops & _PY_FUNC_OPS, ops & _PY_FUNC_OPS

    # the check itself sees a numpy_function when there is one
    leaky = tf.data.Dataset.range(2).map(lambda i: tf.numpy_function(lambda v: v + 1, [i], tf.int64, stateful=False))
    assert _dataset_ops(leaky) & _PY_FUNC_OPS


def test_half_vertical_sides_are_balanced():
    left = 0
    for i in range(200):
        m = masks.make_mask("half_vertical", S, _seed(i, 5)).numpy()[..., 0]
        left += int(m[0, 0] == 1.0)
    assert 60 <= left <= 140, left


@pytest.mark.parametrize("size", [1, 2, 5, 33])
def test_small_and_odd_sizes(size):
    for kind in masks.MASK_KINDS:
        m = masks.make_mask(kind, size, _seed(size)).numpy()
        assert m.shape == (size, size, 1) and set(np.unique(m)) <= {0.0, 1.0}
        if kind.startswith("half"):
            assert m.sum() == size * (size // 2)  # an odd side leaves the middle line off
        elif kind == "random_blobs":
            assert m.sum() > 0
