"""Differentially private k-anonymous attribute obfuscation: Algorithm 1 of book Ch. 4.

Given the feature φ(x) of a face x and a labelled reference set D (feature and 13 binary attributes
per face), Algorithm 1 releases 13 attribute values for a replacement face:

1. **Poisson subsampling** (Ch. 4.3.2): D' keeps each record of D independently with probability γ
   (:mod:`facedeid.privacy.sampling`). If |D'| < k all of D' is used (k_used = |D'|) and that is reported.
2. **k nearest neighbours** N of φ(x) in D' by Euclidean feature distance (ties by record order).
3. **Votes**: every record j casts a one-hot vote vector v_j ∈ {0,1}^23 made of B = 10 *blocks*: one
   block of 2 entries (value 0 / 1) for each of the 8 independent attributes, one block of 4 entries
   for the valid configurations of G1 = {Black_Hair, Blond_Hair, Brown_Hair} (none, black, blond,
   brown: at most one hair colour) and one block of 3 entries for G2 = {Mustache, No_Beard} (no facial
   hair, beard without mustache, mustache; Mustache together with No_Beard is contradictory). A
   record whose group labels are contradictory (a handful of CelebA rows) casts no vote in that block.
4. **τ-approximation** (Def. 4.3): v̂_j = v_j · min(1, τ / ‖v_j‖₁), so that ‖v̂_j‖₁ ≤ τ; the vote
   histogram is V = Σ_{j∈N} v̂_j (Eq. 4.4). Adding or removing one record of D changes the k-NN set by
   at most one substitution (one record enters, the k-th leaves) or one addition/removal when
   |D'| < k, hence ‖V(D) − V(D±1)‖₁ ≤ 2τ: **the L1 sensitivity of V is 2τ**.
5. **Exponential mechanism** per block with utility q(x, r) = V[r], the τ-clipped number of neighbours
   voting for value / configuration r: P[r] ∝ exp(ε q(x, r) / (2Δq)) for an independent attribute
   (Eq. 4.5, r ∈ {0, 1}) and for a conflict group (Eq. 4.6, r ranges over the group's valid joint
   configurations only, so the output is never contradictory).

Privacy accounting (what a careful reading gives; the book leaves the constants open):

* Per block, one record moves each entry of V by at most w = min(1, τ) ≤ Δq (we require Δq ≥ min(1, τ);
  the book's Δq = 1 is the sensitivity of an unclipped count), so each selection is ε-DP.
* For the joint release of all B blocks, the log-likelihood ratio is at most
  (ε/Δq) Σ_b max_r |δ_b[r]| ≤ (ε/Δq) · min(B, 2τ): **ε_total = ε · min(B, 2τ) / Δq**. With τ ≥ B/2 this
  is plain composition over the 10 selections (10ε); τ < B/2 trades vote weight for a smaller total.
* Poisson subsampling amplifies it: ε'_total = ln(1 + γ(e^{ε_total} − 1)) (Ch. 4.3.2), likewise ε' per
  selection. The unit of privacy is one reference *face* (a person with m faces in D gets m·ε').
  Every call is a new release; answers for several query faces compose.

Randomness: with a secure :class:`PrivacyRandom` (default) each selection is drawn by OpenDP's vetted
Gumbel report-noisy-max (``make_noisy_max`` with zero-concentrated divergence selects the Gumbel
sampler; argmax of q/scale + Gumbel with scale = 2Δq/ε is exactly Eq. 4.5/4.6), subsampling coins
come from ``os.urandom``. A research seed switches to numpy's Gumbel-max (reproducible, not private).
The batched sampler used by benchmarks (:func:`exponential_mechanism_batch`) is Gumbel-max on
``rng.uniform`` (secure words unless seeded). ε = 0 gives the uniform choice, ε = ∞ the majority
(plurality) vote with uniform tie-breaking.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from .randomness import PrivacyRandom
from .sampling import amplified_epsilon, poisson_mask

# The 13 attributes of Ch. 4.5.2 (CelebA names, in this order everywhere in the package).
ATTRIBUTES: tuple[str, ...] = (
    "Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows", "Eyeglasses", "Male",
    "Mouth_Slightly_Open", "Mustache", "No_Beard", "Pale_Skin", "Young",
)
GROUPS: dict[str, tuple[str, ...]] = {
    "G1": ("Black_Hair", "Blond_Hair", "Brown_Hair"),
    "G2": ("Mustache", "No_Beard"),
}
INDEPENDENT: tuple[str, ...] = tuple(a for a in ATTRIBUTES if not any(a in g for g in GROUPS.values()))


@dataclass(frozen=True)
class Block:
    """One selection of Algorithm 1: an independent attribute or a conflict group with its valid
    joint configurations (rows of ``configs``, 0/1 per attribute of ``attributes``)."""

    name: str
    attributes: tuple[str, ...]
    configs: np.ndarray = field(compare=False)

    @property
    def columns(self) -> list[int]:
        return [ATTRIBUTES.index(a) for a in self.attributes]


def _blocks() -> tuple[Block, ...]:
    out = [Block(a, (a,), np.array([[0], [1]])) for a in INDEPENDENT]
    out.append(Block("G1", GROUPS["G1"], np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])))
    out.append(Block("G2", GROUPS["G2"], np.array([[0, 1], [0, 0], [1, 0]])))
    return tuple(out)


BLOCKS: tuple[Block, ...] = _blocks()
N_BLOCKS = len(BLOCKS)
_OFFSETS = np.cumsum([0] + [len(b.configs) for b in BLOCKS])
N_CHOICES = int(_OFFSETS[-1])


def block_slices() -> list[slice]:
    """Where each block's entries lie in a vote vector / histogram."""
    return [slice(int(_OFFSETS[i]), int(_OFFSETS[i + 1])) for i in range(N_BLOCKS)]


def is_valid(attributes: np.ndarray) -> np.ndarray:
    """Whether each 13-attribute row respects G1 (≤ 1 hair colour) and G2 (not Mustache ∧ No_Beard)."""
    a = np.atleast_2d(np.asarray(attributes))
    ok = np.ones(len(a), dtype=bool)
    for b in BLOCKS[len(INDEPENDENT):]:
        ok &= (a[:, None, b.columns] == b.configs[None]).all(axis=2).any(axis=1)
    return ok


# --------------------------------------------------------------------------- votes (Def. 4.3, Eq. 4.4)
def vote_matrix(attributes: np.ndarray) -> np.ndarray:
    """One-hot vote vectors (n, 23) of reference records with 13 binary attributes each (block layout
    of :data:`BLOCKS`; a contradictory group configuration votes for nothing in its block)."""
    a = np.atleast_2d(np.asarray(attributes))
    if np.isnan(a.astype(float)).any():
        raise ValueError("reference attributes must be complete (fill unknown labels with predictions)")
    a = a.astype(np.int64)
    votes = np.zeros((len(a), N_CHOICES), dtype=np.float64)
    for b, sl in zip(BLOCKS, block_slices()):
        votes[:, sl] = (a[:, None, b.columns] == b.configs[None]).all(axis=2)
    return votes


def tau_approximation(votes: np.ndarray, tau: float) -> np.ndarray:
    """Def. 4.3: scale each vote vector to L1 norm at most τ, v̂ = v · min(1, τ/‖v‖₁)."""
    if tau <= 0:
        raise ValueError("tau must be positive")
    votes = np.atleast_2d(np.asarray(votes, dtype=np.float64))
    norm = np.abs(votes).sum(axis=1, keepdims=True)
    return votes * np.minimum(1.0, tau / np.maximum(norm, 1e-300))


def vote_histogram(votes: np.ndarray, neighbours: np.ndarray, tau: float) -> np.ndarray:
    """Eq. 4.4: V = Σ_{j ∈ N} v̂_j over the neighbours' τ-approximated votes (L1 sensitivity 2τ)."""
    return tau_approximation(votes[np.asarray(neighbours, dtype=np.int64)], tau).sum(axis=0) if len(neighbours) else np.zeros(votes.shape[1])


# --------------------------------------------------------------------------- exponential mechanism (Eq. 4.5/4.6)
def selection_probabilities(scores: np.ndarray, epsilon: float, delta_q: float = 1.0) -> np.ndarray:
    """P[r] = exp(ε q_r / (2Δq)) / Σ_r' exp(ε q_r' / (2Δq)) along the last axis (Eq. 4.5 / 4.6).

    ε = 0 gives the uniform distribution; ε = ∞ the uniform distribution over the maximal scores.
    """
    q = np.asarray(scores, dtype=np.float64)
    if epsilon < 0 or delta_q <= 0:
        raise ValueError("need epsilon >= 0 and delta_q > 0")
    if math.isinf(epsilon):
        top = q == q.max(axis=-1, keepdims=True)
        return top / top.sum(axis=-1, keepdims=True)
    z = epsilon * q / (2.0 * delta_q)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@functools.lru_cache(maxsize=256)
def _opendp_gumbel(scale: float):
    from .mechanisms import _opendp

    dp = _opendp()
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.linf_distance(T=float)
    # zCDP as the output measure selects OpenDP's Gumbel noise: report-noisy-max with Gumbel noise is
    # the exponential mechanism (with exponential noise it would be permute-and-flip instead).
    return dp.m.make_noisy_max(*space, dp.zero_concentrated_divergence(), scale=scale)


def exponential_mechanism(scores: np.ndarray, epsilon: float, delta_q: float = 1.0, rng: PrivacyRandom | None = None) -> int:
    """Draw index r with probability ∝ exp(ε q_r / (2Δq)) (Eq. 4.5 / 4.6); ε-DP when the utility's
    sensitivity is at most Δq.

    Secure ``rng``: OpenDP's Gumbel noisy max with scale 2Δq/ε. Seeded: numpy Gumbel-max.
    ε = 0: uniform index (``rng.integers``); ε = ∞: argmax, ties uniformly.
    """
    rng = rng or PrivacyRandom()
    q = np.asarray(scores, dtype=np.float64).ravel()
    if q.size == 0:
        raise ValueError("no candidates")
    if epsilon < 0 or delta_q <= 0:
        raise ValueError("need epsilon >= 0 and delta_q > 0")
    if epsilon == 0:
        return int(rng.integers(q.size, 1)[0])
    if math.isinf(epsilon) or not rng.secure:
        return int(exponential_mechanism_batch(q[None], epsilon, delta_q, rng)[0])
    scale = 2.0 * delta_q / float(epsilon)
    if not math.isfinite(scale):  # ε below ~1e-308: the distribution is uniform to machine precision
        return int(rng.integers(q.size, 1)[0])
    return int(_opendp_gumbel(scale)((q - q.max()).tolist()))


def exponential_mechanism_batch(scores: np.ndarray, epsilon: float, delta_q: float, rng: PrivacyRandom) -> np.ndarray:
    """Row-wise exponential mechanism on a (r, m) score matrix by the Gumbel-max trick:
    argmax_j(ε q_j / (2Δq) + G_j), G_j = −ln(−ln U_j), U_j from ``rng.uniform`` (os.urandom unless
    seeded). Gives exactly the probabilities of Eq. 4.5 / 4.6 (in real arithmetic)."""
    q = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if epsilon < 0 or delta_q <= 0:
        raise ValueError("need epsilon >= 0 and delta_q > 0")
    g = -np.log(-np.log(rng.uniform(q.shape)))
    if math.isinf(epsilon):
        return np.argmax(np.where(q == q.max(axis=1, keepdims=True), g, -np.inf), axis=1)
    return np.argmax(epsilon * q / (2.0 * delta_q) + g, axis=1)


def select_attributes(histogram: np.ndarray, epsilon: float, delta_q: float, rng: PrivacyRandom) -> np.ndarray:
    """One exponential-mechanism selection per block of a vote histogram (…, 23) → attributes (…, 13).

    Independent attributes by Eq. 4.5, conflict groups G1, G2 by Eq. 4.6 over their valid configurations.
    A single histogram with a secure ``rng`` goes through :func:`exponential_mechanism` (OpenDP);
    a stack of histograms through :func:`exponential_mechanism_batch`.
    """
    h = np.asarray(histogram, dtype=np.float64)
    single = h.ndim == 1
    h2 = np.atleast_2d(h)
    out = np.zeros((len(h2), len(ATTRIBUTES)), dtype=np.int8)
    for b, sl in zip(BLOCKS, block_slices()):
        if single:
            idx = np.array([exponential_mechanism(h2[0, sl], epsilon, delta_q, rng)])
        else:
            idx = exponential_mechanism_batch(h2[:, sl], epsilon, delta_q, rng)
        out[:, b.columns] = b.configs[idx]
    return out[0] if single else out


def majority_attributes(histogram: np.ndarray, rng: PrivacyRandom) -> np.ndarray:
    """k-anonymity average attributes: the plurality value / valid configuration of every block of
    the (unclipped) vote histogram, ties broken uniformly — the ε → ∞ limit of Eq. 4.5 / 4.6."""
    h = np.asarray(histogram, dtype=np.float64)
    single = h.ndim == 1
    out = np.zeros((len(np.atleast_2d(h)), len(ATTRIBUTES)), dtype=np.int8)
    for b, sl in zip(BLOCKS, block_slices()):
        out[:, b.columns] = b.configs[exponential_mechanism_batch(np.atleast_2d(h)[:, sl], math.inf, 1.0, rng)]
    return out[0] if single else out


def attribute_accuracy(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Eq. 4.14: the fraction of the 13 attributes on which two attribute vectors agree (row-wise)."""
    acc = (np.asarray(a) == np.asarray(b)).mean(axis=-1)
    return float(acc) if np.ndim(acc) == 0 else acc


# --------------------------------------------------------------------------- Algorithm 1
def k_nearest(query: np.ndarray, features: np.ndarray, k: int, candidates: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` rows of ``features`` (among ``candidates``) nearest to ``query`` in
    Euclidean distance, nearest first; ties by index order. Fewer when there are fewer candidates."""
    idx = np.arange(len(features)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    if len(idx) == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    d = np.linalg.norm(features[idx] - np.asarray(query)[None], axis=1)
    order = np.argsort(d, kind="stable")[:k]
    return idx[order]


@dataclass(frozen=True)
class AttributeDPParams:
    """Parameters of Algorithm 1; defaults from Ch. 4.5 (γ = 0.05, Δq = 1).

    ``tau`` is the L1 bound of each record's vote vector (Def. 4.3); 10 = the number of blocks, which
    leaves valid votes unscaled. ``epsilon`` is the budget of each selection (Eq. 4.5 / 4.6).
    """

    k: int = 10
    epsilon: float = 0.1
    gamma: float = 0.05
    tau: float = float(N_BLOCKS)
    delta_q: float = 1.0

    def __post_init__(self) -> None:
        if self.k < 1 or self.epsilon < 0 or not 0 < self.gamma <= 1 or self.tau <= 0:
            raise ValueError("need k >= 1, epsilon >= 0, 0 < gamma <= 1, tau > 0")
        if self.delta_q < min(1.0, self.tau):
            raise ValueError(f"delta_q={self.delta_q} is below the per-selection sensitivity min(1, tau)={min(1.0, self.tau)}")


def privacy_guarantee(params: AttributeDPParams) -> dict[str, float]:
    """The guarantees of one run of Algorithm 1 (see the module docstring).

    ``epsilon_selection``: each selection w.r.t. the subsample; ``epsilon_total``: the 13-attribute
    release w.r.t. the subsample, ε·min(B, 2τ)/Δq; ``*_amplified``: after Poisson subsampling,
    ln(1 + γ(e^ε − 1)); ``l1_sensitivity``: of the vote histogram, 2τ.
    """
    eps_sel = params.epsilon * min(1.0, params.tau) / params.delta_q
    eps_total = params.epsilon * min(float(N_BLOCKS), 2.0 * params.tau) / params.delta_q
    return {
        "epsilon_selection": eps_sel,
        "epsilon_total": eps_total,
        "epsilon_selection_amplified": amplified_epsilon(eps_sel, params.gamma),
        "epsilon_total_amplified": amplified_epsilon(eps_total, params.gamma),
        "l1_sensitivity": 2.0 * params.tau,
        "gamma": params.gamma,
    }


@dataclass(frozen=True)
class AttributeDPResult:
    """Output of Algorithm 1. Only ``attributes`` (and the guarantee) may be released; ``neighbours``,
    ``histogram`` and ``majority`` depend on the reference set without noise and are for evaluation."""

    attributes: np.ndarray
    subsample_size: int
    k_requested: int
    k_used: int
    guarantee: dict[str, float]
    neighbours: np.ndarray
    histogram: np.ndarray
    majority: np.ndarray
    randomness: str

    @property
    def subsample_smaller_than_k(self) -> bool:
        """|D'| < k: every face of the subsample was used as a neighbour."""
        return self.subsample_size < self.k_requested

    def as_dict(self) -> dict[str, bool]:
        return {a: bool(v) for a, v in zip(ATTRIBUTES, self.attributes)}


def obfuscate_attributes(
    query_phi: np.ndarray,
    reference_phi: np.ndarray,
    reference_attributes: np.ndarray,
    params: AttributeDPParams = AttributeDPParams(),
    rng: PrivacyRandom | None = None,
    exclude: np.ndarray | None = None,
) -> AttributeDPResult:
    """Algorithm 1: differentially private k-anonymous attributes for the face with feature φ(x).

    ``reference_phi`` (n, d) and ``reference_attributes`` (n, 13, 0/1) are the reference set D;
    ``exclude`` (bool mask or indices) removes records before sampling (e.g. the query person's own
    faces in an evaluation). Returns the selected 13 attributes and the privacy guarantee.
    """
    rng = rng or PrivacyRandom()
    ref_phi = np.asarray(reference_phi, dtype=np.float64)
    votes = vote_matrix(reference_attributes)
    n = len(ref_phi)
    pool = np.ones(n, dtype=bool)
    if exclude is not None:
        ex = np.asarray(exclude)
        if ex.dtype == bool:
            pool &= ~ex
        else:
            pool[ex.astype(np.int64)] = False
    pool_idx = np.flatnonzero(pool)
    sub = pool_idx[poisson_mask(len(pool_idx), params.gamma, rng)]  # step 1: Poisson subsample D'
    nb = k_nearest(query_phi, ref_phi, params.k, sub)  # step 2: k-NN in D' (all of D' if |D'| < k)
    hist = vote_histogram(votes, nb, params.tau)  # steps 3–4: τ-approximated votes, Eq. 4.4
    attrs = select_attributes(hist, params.epsilon, params.delta_q, rng)  # step 5: Eq. 4.5 / 4.6
    raw = votes[nb].sum(axis=0) if len(nb) else np.zeros(N_CHOICES)
    return AttributeDPResult(
        attributes=np.asarray(attrs, dtype=np.int8),
        subsample_size=int(len(sub)),
        k_requested=params.k,
        k_used=int(len(nb)),
        guarantee=privacy_guarantee(params),
        neighbours=nb,
        histogram=hist,
        majority=majority_attributes(raw, rng),
        randomness=rng.describe(),
    )
