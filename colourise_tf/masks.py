"""Synthetic binary masks for partial colourisation, in pure TensorFlow.

The partial-colourisation preset (after the IMPA project,
2018) trains the generator to colour only where a binary mask asks for colour. The
masks are synthetic; this module draws them with stateless TensorFlow random ops
only, so a ``tf.data`` pipeline that calls it contains no ``PyFunc`` ops and runs
under tf.data service and on TPU hosts.

Kinds (:data:`MASK_KINDS`), for a square mask of side ``S``; ones mark where colour
is wanted:

* ``half_vertical``: a vertical split; the left or the right ``S // 2`` columns are
  ones (each with probability 1/2).
* ``half_horizontal``: a horizontal split; the top or the bottom ``S // 2`` rows.
* ``stripes_h``: alternating horizontal bands ``w`` rows high, so every row is
  constant. ``w`` is uniform in ``[max(1, S // 16), max(1, S // 4)]`` and then capped
  to ``max(1, S // 2)`` so at least two bands show; the band pattern starts at a
  random phase in ``[0, 2w)``: row ``i`` is on when ``((i + phase) // w) % 2 == 0``.
* ``stripes_v``: the same with vertical bands ``w`` columns wide.
* ``grid``: a checkerboard of ``w x w`` cells, the XOR of a row band pattern and a
  column band pattern (one width, independent phases).
* ``random_blobs``: the union of 1-5 (uniformly) axis-aligned shapes, each an ellipse
  or a rectangle with probability 1/2; centres uniform in ``[0, S)`` on both axes,
  radii (half-extents for rectangles) uniform in ``[max(1, S / 10), max(1, S / 3)]``
  on each axis independently. Pixel ``(i, j)`` has its centre at ``(i + 0.5, j + 0.5)``;
  an ellipse covers it when ``((y - cy) / ry)^2 + ((x - cx) / rx)^2 <= 1``, a rectangle
  when ``|y - cy| <= ry`` and ``|x - cx| <= rx``. The mask is never empty: should no
  pixel be covered, the centre block (rows and columns ``S // 4`` to ``3 S // 4``) is
  used instead. The blobs are computed as five fixed slots plus a count mask, so
  nothing loops over a tensor.

These are the same geometry and parameter ranges as the numpy drawing in
:mod:`colourise_tf.data`; the random streams differ, so the same seed does not give
the same mask as the numpy version.

Randomness: every function takes a shape-``[2]`` int32/int64 ``seed`` as used by
``tf.random.stateless_*``; the mask is a pure function of ``(kind, size, seed)``.
Sub-seeds are derived with :func:`tf.random.experimental.stateless_split` /
:func:`tf.random.experimental.stateless_fold_in`, and every op pins the Philox
algorithm, so a seed gives the same mask on every device. An int32 seed and the
int64 seed with the same values give the same mask.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import tensorflow as tf

__all__ = ["MASK_KINDS", "make_mask", "random_mask"]

#: Synthetic mask families of the partial-colourisation preset, in index order
#: (the same names and order as :data:`colourise_tf.data.MASK_KINDS`).
MASK_KINDS: tuple[str, ...] = (
    "half_vertical",
    "half_horizontal",
    "stripes_h",
    "stripes_v",
    "grid",
    "random_blobs",
)

_ALG = "philox"  # pinned: "auto_select" would pick ThreeFry on TPU, another stream
_MAX_BLOBS = 5


# --------------------------------------------------------------------------- helpers


def _check_size(size: int) -> int:
    s = operator.index(size)
    if s < 1:
        raise ValueError(f"mask size must be a positive int, got {size!r}")
    return s


def _as_seed(seed) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        raise TypeError(f"seed must be an int32 or int64 tensor of shape [2], got {seed.dtype!r}")
    if not seed.shape.is_compatible_with([2]):
        raise ValueError(f"seed must have shape [2], got {seed.shape}")
    seed = tf.cast(seed, tf.int64)
    seed.set_shape([2])
    return seed


def _split(seed: tf.Tensor, num: int) -> tf.Tensor:
    return tf.random.experimental.stateless_split(seed, num=num, alg=_ALG)


def _fold_in(seed: tf.Tensor, data: int) -> tf.Tensor:
    """An int64 sub-seed; int64 ``data`` makes its first word a full 64-bit draw."""
    return tf.random.experimental.stateless_fold_in(seed, tf.constant(data, tf.int64), alg=_ALG)


def _coin(seed: tf.Tensor, shape=()) -> tf.Tensor:
    """Fair coins: True with probability 1/2."""
    return tf.random.stateless_uniform(shape, seed, alg=_ALG) < 0.5


def _randint(seed: tf.Tensor, low, high) -> tf.Tensor:
    """A scalar int32 uniform in ``[low, high)`` (``high`` may be a tensor)."""
    return tf.random.stateless_uniform([], seed, minval=low, maxval=high, dtype=tf.int32, alg=_ALG)


def _half(s: int, seed: tf.Tensor) -> tf.Tensor:
    """Bool ``[S]``: the first or the last ``S // 2`` entries on."""
    idx = tf.range(s)
    return tf.where(_coin(seed), idx < s // 2, idx >= s - s // 2)


def _band_width(s: int, seed: tf.Tensor) -> tf.Tensor:
    width = _randint(seed, max(1, s // 16), max(1, s // 4) + 1)
    return tf.clip_by_value(width, 1, max(1, s // 2))  # at least two bands


def _bands(s: int, width: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Bool ``[S]``: alternating runs of ``width``, random phase in ``[0, 2 width)``."""
    phase = _randint(seed, 0, 2 * width)
    return ((tf.range(s) + phase) // width) % 2 == 0


# --------------------------------------------------------------------------- kinds
# Each takes (S, seed) and returns a bool [S, S].


def _half_vertical(s: int, seed: tf.Tensor) -> tf.Tensor:
    return tf.broadcast_to(_half(s, seed)[None, :], [s, s])


def _half_horizontal(s: int, seed: tf.Tensor) -> tf.Tensor:
    return tf.broadcast_to(_half(s, seed)[:, None], [s, s])


def _stripes_h(s: int, seed: tf.Tensor) -> tf.Tensor:
    seeds = _split(seed, 2)
    rows = _bands(s, _band_width(s, seeds[0]), seeds[1])
    return tf.broadcast_to(rows[:, None], [s, s])


def _stripes_v(s: int, seed: tf.Tensor) -> tf.Tensor:
    seeds = _split(seed, 2)
    cols = _bands(s, _band_width(s, seeds[0]), seeds[1])
    return tf.broadcast_to(cols[None, :], [s, s])


def _grid(s: int, seed: tf.Tensor) -> tf.Tensor:
    seeds = _split(seed, 3)
    width = _band_width(s, seeds[0])
    rows = _bands(s, width, seeds[1])
    cols = _bands(s, width, seeds[2])
    return tf.math.logical_xor(rows[:, None], cols[None, :])


def _random_blobs(s: int, seed: tf.Tensor) -> tf.Tensor:
    seeds = _split(seed, 4)
    count = _randint(seeds[0], 1, _MAX_BLOBS + 1)
    active = tf.range(_MAX_BLOBS) < count  # [K]
    centres = tf.random.stateless_uniform([_MAX_BLOBS, 2], seeds[1], minval=0.0, maxval=float(s), alg=_ALG)
    lo, hi = max(1.0, s / 10.0), max(1.0, s / 3.0)
    radii = tf.random.stateless_uniform([_MAX_BLOBS, 2], seeds[2], minval=lo, maxval=hi, alg=_ALG)
    ellipse = _coin(seeds[3], [_MAX_BLOBS])  # [K]

    centre = tf.range(s, dtype=tf.float32) + 0.5  # pixel centres
    # Per-slot squared offsets along each axis, in radii: [K, S]. A pixel is in slot k
    # when cost_y[k, i] + cost_x[k, j] <= 1. For an ellipse the costs are dy^2 and
    # dx^2; for a rectangle 0 inside the half-extent and 2 outside (so the sum is <= 1
    # iff both axes are inside); an inactive slot costs 2 everywhere.
    dy2 = tf.square((centre[None, :] - centres[:, :1]) / radii[:, :1])
    dx2 = tf.square((centre[None, :] - centres[:, 1:]) / radii[:, 1:])
    ellipse, active = ellipse[:, None], active[:, None]
    cost_y = tf.where(active, tf.where(ellipse, dy2, tf.where(dy2 <= 1.0, 0.0, 2.0)), 2.0)
    cost_x = tf.where(ellipse, dx2, tf.where(dx2 <= 1.0, 0.0, 2.0))
    mask = tf.reduce_min(cost_y[:, :, None] + cost_x[:, None, :], axis=0) <= 1.0  # [S, S]

    idx = tf.range(s)
    lo_px, hi_px = s // 4, max(s // 4 + 1, 3 * s // 4)
    block_1d = tf.logical_and(idx >= lo_px, idx < hi_px)
    block = tf.logical_and(block_1d[:, None], block_1d[None, :])
    return tf.where(tf.reduce_any(mask), mask, block)


_KIND_FNS: dict[str, Callable[[int, tf.Tensor], tf.Tensor]] = {
    "half_vertical": _half_vertical,
    "half_horizontal": _half_horizontal,
    "stripes_h": _stripes_h,
    "stripes_v": _stripes_v,
    "grid": _grid,
    "random_blobs": _random_blobs,
}
assert tuple(_KIND_FNS) == MASK_KINDS


def _draw(kind: str, s: int, seed: tf.Tensor) -> tf.Tensor:
    mask = tf.cast(_KIND_FNS[kind](s, seed), tf.float32)[..., None]
    mask.set_shape([s, s, 1])
    return mask


def _switch(index: tf.Tensor, kinds: Sequence[str], s: int, seed: tf.Tensor) -> tf.Tensor:
    mask = tf.switch_case(index, [lambda k=k: _draw(k, s, seed) for k in kinds])
    mask.set_shape([s, s, 1])
    return mask


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    if isinstance(kinds, str):
        raise TypeError("kinds must be a sequence of kind names, not a single str")
    kinds = tuple(kinds)
    if not kinds:
        raise ValueError("kinds must name at least one mask kind")
    for kind in kinds:
        if kind not in _KIND_FNS:
            raise ValueError(f"unknown mask kind {kind!r}; expected one of {MASK_KINDS}")
    return kinds


# --------------------------------------------------------------------------- public


def make_mask(kind: str | int | tf.Tensor, size: int, seed) -> tf.Tensor:
    """Draws one synthetic binary mask of the given kind (see the module docstring).

    Works eagerly and inside ``tf.function`` / ``tf.data.Dataset.map``.

    Args:
        kind: a name from :data:`MASK_KINDS`, or an integer scalar (int32 tensor,
            Python int) indexing it. A tensor index dispatches with
            ``tf.switch_case``; it gives the same mask as the name at that index. A
            statically known index out of range raises ``ValueError``; a traced one
            out of range runs the last kind (``tf.switch_case``'s default).
        size: side ``S`` of the square mask, a positive Python int.
        seed: shape-``[2]`` int32 or int64 tensor (or sequence), as for
            ``tf.random.stateless_uniform``; the mask is a pure function of it.

    Returns:
        float32 ``[S, S, 1]`` tensor of zeros and ones (ones where colour is wanted),
        with that static shape.

    Raises:
        ValueError: for an unknown kind name, an out-of-range static index, a bad
            ``size`` or a seed of the wrong shape.
        TypeError: for a seed that is not integer.
    """
    s = _check_size(size)
    seed = _as_seed(seed)
    if isinstance(kind, str):
        if kind not in _KIND_FNS:
            raise ValueError(f"unknown mask kind {kind!r}; expected one of {MASK_KINDS}")
        return _draw(kind, s, seed)
    index = tf.convert_to_tensor(kind)
    if not index.dtype.is_integer or index.shape.rank not in (None, 0):
        raise TypeError(f"kind must be a str or an integer scalar, got {kind!r}")
    static = tf.get_static_value(index)
    if static is not None and not 0 <= int(static) < len(MASK_KINDS):
        raise ValueError(f"unknown mask kind index {int(static)}; expected 0..{len(MASK_KINDS) - 1}")
    return _switch(tf.cast(index, tf.int32), MASK_KINDS, s, seed)


def random_mask(size: int, seed, kinds: Sequence[str] = MASK_KINDS) -> tuple[tf.Tensor, tf.Tensor]:
    """Draws a mask of a random kind.

    With ``seed64`` the seed cast to int64 and ``sub(n)`` the int64 sub-seed
    ``tf.random.experimental.stateless_fold_in(seed64, tf.constant(n, tf.int64),
    alg="philox")``, the kind is drawn uniformly from ``kinds`` with ``sub(0)`` and the
    mask is exactly ``make_mask(kind, size, sub(1))``.

    Args:
        size: side ``S`` of the square mask, a positive Python int.
        seed: shape-``[2]`` int32 or int64 tensor, as for the stateless random ops.
        kinds: names from :data:`MASK_KINDS` to choose from, uniformly (a name given
            twice is drawn twice as often).

    Returns:
        ``(kind_index, mask)``: ``kind_index`` an int32 scalar tensor indexing
        :data:`MASK_KINDS` (not ``kinds``, so ``MASK_KINDS[kind_index]`` always names
        the kind, and it can be passed back to :func:`make_mask`); ``mask`` float32
        ``[S, S, 1]`` of zeros and ones.

    Raises:
        ValueError: for an empty ``kinds`` or an unknown name in it, or a bad ``size``
            or seed shape.
        TypeError: for ``kinds`` given as a single str, or a seed that is not integer.
    """
    s = _check_size(size)
    kinds = _check_kinds(kinds)
    seed = _as_seed(seed)
    kind_seed = _fold_in(seed, 0)
    mask_seed = _fold_in(seed, 1)
    local = _randint(kind_seed, 0, len(kinds))
    mask = _switch(local, kinds, s, mask_seed)
    global_index = tf.gather(tf.constant([MASK_KINDS.index(k) for k in kinds], tf.int32), local)
    return global_index, mask
