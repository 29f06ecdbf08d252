"""CountSketch of a layer's flat weights: k numbers per layer, whatever its size.

A CountSketch :math:`S \\in \\mathbb{R}^{m \\times n}` sends coordinate :math:`i` of a vector
:math:`x \\in \\mathbb{R}^n` to one bucket :math:`h(i) \\in \\{0..m-1\\}` with a random sign
:math:`s(i) \\in \\{\\pm 1\\}`: :math:`(Sx)_j = \\sum_{i: h(i) = j} s(i)\\, x_i`. It is linear, so
:math:`\\|S\\theta(t) - S\\theta^*\\| = \\|S(\\theta(t) - \\theta^*)\\|` needs no copy of
:math:`\\theta^*`, and :math:`\\|Sx\\|^2` is an unbiased estimate of :math:`\\|x\\|^2` with variance
:math:`\\frac{2}{m}(\\|x\\|^4 - \\sum_i x_i^4) \\le 2\\|x\\|^4/m`.

A sketch of size ``k`` is :data:`ROWS` independent CountSketches of ``m = k / ROWS`` buckets
each, shape ``(ROWS, m)``. The distance estimate averages the rows' squared norms (the variance
of one k-bucket sketch, :math:`2\\|x\\|^4/k`); the spread between the rows' own estimates gives
every number computed from them an error bar with no assumption on the weights (Student's t with
``ROWS - 1`` degrees of freedom: a 95% band, see :func:`half_width`).

Hashing: the bucket and sign of coordinate ``i`` of a layer come from one 64-bit SplitMix64 hash
of ``(seed, layer salt, i)``, computed on the fly in chunks: nothing of size ``n`` is stored,
each snapshot costs O(n) time and ``k`` floats per layer. The seed and ``k`` are stored with
the trajectory, so a resumed run sketches the same way.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

__all__ = [
    "ROWS",
    "T95",
    "check_size",
    "half_width",
    "sketch",
    "sketch_agreement",
    "sketch_layers",
    "sketched",
    "small_window_errors",
    "window_errors",
]

#: the sketch's independent rows (estimates), each of ``k / ROWS`` buckets
ROWS = 4
#: Student's t quantile of a two-sided 95% band with ROWS - 1 = 3 degrees of freedom
T95 = 3.1824
CHUNK = 1 << 16  # coordinates per chunk: their hashes (512 KiB) stay in cache through its steps
_FIELD = 16  # bits of the hash per row: 15 for the bucket, 1 for the sign
_M1, _M2, _GOLDEN = -4658895280553007687, -7723592293110705685, -7046029254386353131  # uint64


def _splitmix(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 of int64 ``x`` (two's-complement wrapping; shifts made logical by masking),
    computed in place in ``x`` with one scratch tensor."""
    x.add_(_GOLDEN)
    y = torch.empty_like(x)
    for shift, mult in ((30, _M1), (27, _M2), (31, None)):
        torch.bitwise_right_shift(x, shift, out=y).bitwise_and_((1 << (64 - shift)) - 1)
        x.bitwise_xor_(y)
        if mult is not None:
            x.mul_(mult)
    return x


def _salt(seed: int, layer: str) -> int:
    """A per-(seed, layer) offset, so that layers and seeds get independent hashes."""
    return (zlib.crc32(f"{seed}:{layer}".encode()) << 31) ^ ((seed * 0x9E3779B1) & (2**62 - 1))


def sketch(
    flat: torch.Tensor, k: int, *, seed: int, layer: str, offset: int = 0, out=None
) -> torch.Tensor:
    """The ``(ROWS, k // ROWS)`` CountSketch (float64) of ``flat``, whose first element is
    coordinate ``offset`` of the layer's whole flat vector (a rank's shard: the shards' sketches
    sum to the whole vector's). ``out`` accumulates into an existing sketch.

    One 64-bit hash per coordinate holds the four rows' 16-bit fields (sign in bit 0, bucket in
    the bits above), read as an int16 view: one hash per coordinate, one scatter-add per row and
    chunk of the values themselves into ``2m`` slots (a sign is a slot), no product."""
    m = check_size(k) // ROWS
    device = flat.device
    # bucket and sign as one index into 2m slots per row: slot 2b holds +x, 2b+1 holds -x
    slots = torch.zeros(ROWS, 2 * m, dtype=torch.float64, device=device)
    salt = _salt(seed, layer)
    base = torch.arange(min(CHUNK, flat.numel()), device=device)
    flat = flat.detach().reshape(-1)
    wide = torch.float64 if flat.dtype == torch.float64 else torch.float32
    part = torch.empty(ROWS, 2 * m, dtype=wide, device=device)
    slot = torch.empty(ROWS, len(base), dtype=torch.int32, device=device)
    for start in range(0, flat.numel(), CHUNK):
        values = flat[start : start + CHUNK].to(wide)
        index = base[: len(values)] + (start + offset)
        fields = _splitmix(index.bitwise_xor_(salt)).view(torch.int16).view(-1, ROWS)  # (c, R)
        rows = slot[:, : len(values)]
        rows.copy_(fields.t()).bitwise_and_(2 * m - 1)  # bits 0..: sign, then bucket
        part.zero_()
        for r in range(ROWS):
            part[r].index_add_(0, rows[r], values)  # a contiguous index: no copy inside
        slots += part  # float64 across chunks
    sk = slots[:, 0::2] - slots[:, 1::2]
    return sk if out is None else out.add_(sk)


def check_size(k) -> int:
    """``k`` if it is a valid sketch size (``ROWS`` times a power of two), else ``ValueError``."""
    m = k // ROWS if isinstance(k, int) and not isinstance(k, bool) else 0
    if m < 1 or k % ROWS or m & (m - 1) or m > 1 << (_FIELD - 1):
        raise ValueError(
            f"sketch size k must be {ROWS} times a power of two, at most {ROWS << 15}; got {k!r}"
        )
    return k


def half_width(per_row) -> np.ndarray:
    """Half-width of the 95% band of the mean of ``ROWS`` independent estimates (the last axis
    of ``per_row``): :math:`t_{0.975, R-1}\\, s / \\sqrt{R}` with :math:`s` their sample standard
    deviation; NaN where an estimate is not finite.

    >>> float(half_width([1.0, 2.0, 3.0, 4.0]))  # s = 1.291
    2.054...
    """
    values = np.asarray(per_row, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        width = T95 * values.std(axis=-1, ddof=1) / math.sqrt(values.shape[-1])
    return np.where(np.isfinite(values).all(axis=-1), width, np.nan)


def sketch_layers(layers, params_of, k: int, *, seed: int) -> dict[str, torch.Tensor]:
    """``{layer: (ROWS, k // ROWS) float64 sketch}`` of each layer's flat vector (its parameters
    concatenated in order; ``params_of(layer)`` gives them as the model holds them now), for the
    layers of more than ``k`` parameters (:func:`sketched`); the others are left to the caller,
    whose exact copy costs no more than a sketch and no error.

    Under FSDP2 each rank sketches its shard of a sharded (``DTensor``) parameter at the shard's
    global coordinates, and one ``all_reduce`` over the shard dimension sums the shards' sketches
    of all layers: no gather, ``k`` floats per layer of extra memory. Parameters that are plain
    tensors (replicated) are sketched whole on every rank and not summed.
    """
    from ..distributed import shard_groups, shard_offset, sum_shards

    plain: dict[str, torch.Tensor] = {}
    sharded: dict[str, torch.Tensor] = {}
    params = []
    layers = [layer for layer in layers if sketched(layer.numel, k)]
    for layer in layers:
        offset = 0
        for p in params_of(layer):
            local, start = shard_offset(p)
            part = sharded if local is not p else plain
            part[layer.name] = sketch(
                local, k, seed=seed, layer=layer.name, offset=offset + start,
                out=part.get(layer.name),
            )  # fmt: skip
            offset += p.numel()
            params.append(p)
    if sharded:
        groups = shard_groups(params)
        if len(groups) != 1:
            raise ValueError("a sketched trajectory needs one shard mesh dimension for all layers")
        names = list(sharded)
        stacked = torch.stack([sharded[n] for n in names])
        sharded = dict(zip(names, sum_shards(stacked, groups[0][1]).unbind()))
    m = k // ROWS
    zero = torch.zeros(ROWS, m, dtype=torch.float64)
    return {
        layer.name: plain.get(layer.name, zero) + sharded.get(layer.name, zero) for layer in layers
    }


def sketched(numel: int, k: int | None) -> bool:
    """Whether a layer of ``numel`` parameters is sketched at size ``k``: only when it has more
    parameters than the sketch has numbers."""
    return k is not None and numel > k


def _windows(exact, sketched, every: int):
    """``(layer, t1, t2, exact rate, sketched rate, band, layer's largest |rate|)`` for every
    window of every ``every``-th snapshot of every sketched layer, but the one from the first
    snapshot to :math:`\\theta^*`."""
    steps = exact.steps.tolist()[::every]
    windows = [(a, b) for k, a in enumerate(steps) for b in steps[k + 1 :]]
    got = {w: (exact.rates(*w), sketched.rates(*w), sketched.errors(*w)) for w in windows}
    rows = sketched.distance_rows
    spread = np.zeros(len(exact.layers)) if rows is None else np.ptp(rows, -1).max(-1)
    held = [n for n, s in zip(exact.layers, spread, strict=True) if s > 0]
    for name in held if got else ():  # no windows: fewer than two snapshots on the grid
        at = dict(zip(exact.steps.tolist(), exact.distance(name).tolist()))
        top = max(abs(ex[name]) for ex, _, _ in got.values())
        for (a, b), (ex, sk, err) in got.items():
            if not (a == exact.steps[0] and at[b] == 0):
                yield name, a, b, ex[name], sk[name], err[name], top


def window_errors(exact, sketched, every: int = 1) -> list[tuple[str, int, int, float, bool]]:
    """Sketched rates (:class:`~depthaware.measure.ConvergenceReport` ``sketched``) against the
    exact ones of the same run, window by window: ``(layer, t1, t2, relative error, covered)``
    for every window of every ``every``-th snapshot whose exact rate is at least 10% of its
    layer's largest, ``covered`` when the 95% band holds the exact rate. Only the layers the
    sketch holds count (a layer kept exactly has equal rows and no error).

    A window from the first snapshot to the one at :math:`\\theta^*` (a distance of 0) is left
    out: its rate is :math:`1 / (t_2 - t_0)` on every trajectory and every sketch row, so it
    measures nothing (and its band is 0 wide)."""
    return [
        (name, a, b, abs(sk - ex) / abs(ex), bool(abs(sk - ex) <= err))
        for name, a, b, ex, sk, err, top in _windows(exact, sketched, every)
        if abs(ex) >= 0.1 * top
    ]


def small_window_errors(exact, sketched, every: int = 1) -> list[tuple[str, int, int, float]]:
    """The windows :func:`window_errors` leaves out (an exact rate below 10% of its layer's
    largest, where a relative error grows without bound as the rate nears 0): ``(layer, t1, t2,
    absolute error over the layer's largest rate)``."""
    return [
        (name, a, b, abs(sk - ex) / top)
        for name, a, b, ex, sk, _, top in _windows(exact, sketched, every)
        if abs(ex) < 0.1 * top
    ]


def sketch_agreement(exact, sketched, every: int = 1) -> dict:
    """:func:`window_errors` summed up: the median and largest relative error, the share of
    windows the 95% band covers, and their number (NaN and 0 when no layer is sketched)."""
    counted = window_errors(exact, sketched, every)
    if not counted:
        return {"median": math.nan, "max": math.nan, "coverage": math.nan, "windows": 0}
    errors = [e for _, _, _, e, _ in counted]
    return {
        "median": float(np.median(errors)),
        "max": max(errors),
        "coverage": sum(c for *_, c in counted) / len(counted),
        "windows": len(counted),
    }
