"""A linear model whose coefficients are fitted at nested group levels.

Level 0 pools every row; each deeper level (e.g. settings, then settings x GPU) refits per group
with a ridge pull toward its parent's coefficients, so a group with few rows stays close to the
pooled physics and a well-measured group follows its data. A prediction uses the most specific
level its row's group was fitted at, and reports that depth (how far it had to back off).

Fitting minimises weighted squared error, by default relative error
sum(((y - offset - X @ coef) / y)^2), with coefficients >= 0 except the `free` columns (e.g. the
VAE's batch-1 memory term, which may lower the peak; callers bound the prediction below).
"""
from __future__ import annotations

from operator import itemgetter
from weakref import WeakKeyDictionary

import numpy as np

# Each table's {group: (coefficients, depth)} found so far: a planner's search predicts the same
# few groups over thousands of rows, in many calls (kept beside the table, so the cache's
# snapshot of it holds its fitted coefficients only).
_LOOKUPS: WeakKeyDictionary = WeakKeyDictionary()


class GroupedLinear:
    """Fitted coefficients: `coefs[depth][group values] -> vector`. numpy only (cache-safe)."""

    def __init__(self, levels: tuple[tuple[str, ...], ...], coefs: list[dict],
                 defaults: tuple[tuple[str, object], ...] = ()):
        self.levels = levels
        self.coefs = coefs
        self.defaults = defaults  # (key, value): a group never fitted tries these in turn

    def lookup(self, row: dict) -> tuple[np.ndarray, int]:
        """Coefficients for one row and the depth of the level they come from: at each level
        from the most specific, the row's group, else that group with `defaults` set one after
        another (a setting never measured takes its default's coefficients)."""
        tries = [row]
        for key, value in self.defaults:
            tries.append({**tries[-1], key: value})
        for depth in range(len(self.levels) - 1, -1, -1):
            for r in tries:
                coef = self.coefs[depth].get(tuple(r.get(k) for k in self.levels[depth]))
                if coef is not None:
                    return coef, depth
        raise AssertionError("level 0 always has the pooled group")

    def predict(self, X: np.ndarray, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(X @ coef per row, depth per row). Rows of one group share a lookup."""
        group_of = _key_getter(tuple(dict.fromkeys(k for level in self.levels for k in level)))
        memo = _LOOKUPS.setdefault(self, {})
        found = []
        for r in rows:
            group = group_of(r)
            if group not in memo:
                memo[group] = self.lookup(r)
            found.append(memo[group])
        if not found:
            return np.zeros(0), np.zeros(0, dtype=int)
        C = np.array([c for c, _ in found])
        return np.einsum("ij,ij->i", X, C), np.array([d for _, d in found])


def fit_grouped_linear(X: np.ndarray, y: np.ndarray, rows: list[dict],
                       levels: tuple[tuple[str, ...], ...], prior_strength: float = 1.0,
                       offset: np.ndarray | None = None, free: tuple[int, ...] = (),
                       root_prior: np.ndarray | None = None,
                       root_strength: np.ndarray | float | None = None,
                       weights: np.ndarray | None = None,
                       twin: tuple[tuple[str, object], ...] = (),
                       defaults: tuple[tuple[str, object], ...] = ()) -> GroupedLinear:
    """Fit level by level, each row weighted by `weights` (default 1 / y: relative error).
    `prior_strength` is the weight of the parent's coefficients in
    pseudo-rows: at 1, the pull toward the parent counts like one typical row. `root_prior`
    (optional) plays the parent for level 0, weighted per coefficient by `root_strength`
    (default `prior_strength`): it settles directions the data cannot (e.g. compute vs
    bandwidth time on one GPU, where they scale alike). `twin`, pairs (key, function): at the
    level that first splits by `key`, a group whose `key` value the function maps to another
    value is pulled toward that twin group (fitted before it) instead of its parent, where the
    twin was fitted; the first pair that maps a group names its twin, which may have a twin of
    its own (a chain, fitted from its end). `defaults`: GroupedLinear's fallback for groups
    never fitted."""
    if levels[0] != ():
        raise ValueError("level 0 must be the pooled level ()")
    y = np.asarray(y, dtype=float)
    offset = np.zeros_like(y) if offset is None else np.asarray(offset, dtype=float)
    w = 1 / y if weights is None else np.asarray(weights, dtype=float)
    A = X * w[:, None]
    b = (y - offset) * w
    # Scale of each column in a typical row, so the prior is unit-free. A column with no data
    # gets scale 1, so that its coefficient is the prior's rather than arbitrary.
    scale = np.sqrt(np.mean(A**2, axis=0)) if len(A) else np.ones(X.shape[1])
    scale[scale == 0] = 1.0
    prior_rows = np.sqrt(prior_strength) * np.diag(scale)
    if root_prior is None:
        root = _solve(A, b, free)
    else:
        strength = prior_strength if root_strength is None else root_strength
        root_rows = np.diag(np.sqrt(np.broadcast_to(strength, scale.shape)) * scale)
        root = _solve(np.vstack([A, root_rows]), np.concatenate([b, root_rows @ root_prior]),
                      free)
    coefs: list[dict] = [{(): root}]
    for depth in range(1, len(levels)):
        keys, parent_keys = levels[depth], levels[depth - 1]
        if parent_keys != keys[:len(parent_keys)]:
            raise ValueError(f"levels must nest: {parent_keys} is not a prefix of {keys}")
        groups: dict[tuple, list[int]] = {}
        for i, group in enumerate(map(_key_getter(keys), rows)):
            groups.setdefault(group, []).append(i)
        twins = _twins(list(groups), keys, [t for t in twin if t[0] not in parent_keys])
        level = {}
        for group in sorted(groups, key=lambda g: _chain(g, twins)):  # twins' twins first
            index = groups[group]
            parent = level.get(twins.get(group), coefs[depth - 1][group[:len(parent_keys)]])
            level[group] = _solve(np.concatenate((A[index], prior_rows)),
                                  np.concatenate((b[index], prior_rows @ parent)), free)
        coefs.append(level)
    return GroupedLinear(levels, coefs, defaults)


def _key_getter(keys: tuple[str, ...]):
    """row -> the tuple of its values at `keys` (a C-level itemgetter: fits call it per row
    and level, millions of times in a validation)."""
    if len(keys) == 1:
        get = itemgetter(keys[0])
        return lambda row: (get(row),)
    return itemgetter(*keys) if keys else (lambda row: ())


def _twins(groups: list[tuple], keys: tuple[str, ...], twin) -> dict[tuple, tuple]:
    """{group: its twin group} for the groups of a level that have one (see `twin`)."""
    out = {}
    for g in groups:
        for key, mapped in twin:
            if key in keys:
                i = keys.index(key)
                t = g[:i] + (mapped(g[i]),) + g[i + 1:]
                if t != g:
                    out[g] = t
                    break
    return out


def _chain(group: tuple, twins: dict) -> int:
    """How many twins lead from `group` to one without a twin."""
    n = 0
    while group in twins and n <= len(twins):
        group, n = twins[group], n + 1
    return n


def _solve(A: np.ndarray, b: np.ndarray, free: tuple[int, ...]) -> np.ndarray:
    """Least squares with coef >= 0 outside `free` (free columns are split into +/- parts)."""
    from scipy.optimize import nnls

    if not free:  # most fits: no split (a validation solves this some 350,000 times)
        return nnls(A, b, maxiter=50 * A.shape[1])[0]
    free = list(free)
    A_split = np.hstack([A, -A[:, free]])
    # Columns that are zero everywhere get a zero coefficient (nnls leaves them at 0).
    x, _ = nnls(A_split, b, maxiter=50 * A_split.shape[1])
    coef = x[:A.shape[1]].copy()
    coef[free] -= x[A.shape[1]:]
    return coef
