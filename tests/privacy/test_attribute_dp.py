"""Algorithm 1 of Ch. 4 (DP k-anonymous attribute obfuscation) on real CelebA faces."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from facedeid.attributes.features import image_features
from facedeid.attributes.train import records
from facedeid.media.images import read_image
from facedeid.privacy.attributes import (
    ATTRIBUTES,
    BLOCKS,
    INDEPENDENT,
    N_BLOCKS,
    AttributeDPParams,
    attribute_accuracy,
    block_slices,
    exponential_mechanism,
    exponential_mechanism_batch,
    is_valid,
    k_nearest,
    majority_attributes,
    obfuscate_attributes,
    privacy_guarantee,
    select_attributes,
    selection_probabilities,
    tau_approximation,
    vote_histogram,
    vote_matrix,
)
from facedeid.privacy.randomness import PrivacyRandom
from facedeid.privacy.sampling import amplified_epsilon, poisson_mask, poisson_subsample


@pytest.fixture(scope="module")
def celeba(data):
    """φ (dlib 128-D) and the 13 labels of 30 real CelebA faces of 30 different people."""
    seen, phis, labels, ids = set(), [], [], []
    recs = [r for r in records(data, ("celeba",)) if is_valid(np.nan_to_num(r.labels))[0]]
    for r in recs[::3]:
        if r.identity in seen:
            continue
        f = image_features(read_image(data / r.path).rgb)
        if f is None:
            continue
        seen.add(r.identity)
        phis.append(f.phi), labels.append(r.labels.astype(np.int8)), ids.append(r.identity)
        if len(phis) == 30:
            break
    return np.array(phis, dtype=np.float64), np.array(labels), ids


def chi2_ok(counts, probs, alpha=1e-4):
    counts, probs = np.asarray(counts, float), np.asarray(probs, float)
    keep = probs > 0
    assert counts[~keep].sum() == 0
    return stats.chisquare(counts[keep], counts.sum() * probs[keep]).pvalue > alpha


# --------------------------------------------------------------------------- sampling (Ch. 4.3.2)
def test_amplified_epsilon_formula():
    for eps, g in [(0.1, 0.05), (1.0, 0.05), (3.0, 0.5), (0.3, 1.0)]:
        assert math.isclose(amplified_epsilon(eps, g), math.log(1 + g * (math.exp(eps) - 1)), rel_tol=1e-12)
    assert amplified_epsilon(0.3, 1.0) == pytest.approx(0.3)
    assert amplified_epsilon(0.0, 0.05) == 0.0
    assert amplified_epsilon(1e-4, 0.05) == pytest.approx(0.05e-4, rel=1e-3)  # ≈ γε for small ε
    assert amplified_epsilon(2000.0, 0.05) == pytest.approx(2000.0 + math.log(0.05))  # no overflow
    assert all(amplified_epsilon(e, 0.05) <= e for e in np.linspace(0, 20, 41))


@pytest.mark.parametrize("rng", [PrivacyRandom(), PrivacyRandom(7)], ids=["secure", "seeded"])
def test_poisson_subsampling_is_bernoulli_per_record(rng):
    n, gamma, reps = 200, 0.05, 400
    masks = np.array([poisson_mask(n, gamma, rng) for _ in range(reps)])
    sizes = masks.sum(axis=1)
    # size ~ Binomial(n, γ); every record is kept with probability γ independently of its index
    edges = [0, 6, 8, 10, 12, 14, n + 1]  # chi-square on binned sizes (KS is wrong for discrete laws)
    observed = np.histogram(sizes, bins=edges)[0]
    cdf = stats.binom(n, gamma).cdf
    probs = np.diff([cdf(e - 1) for e in edges])
    assert chi2_ok(observed, probs / probs.sum())
    assert abs(sizes.mean() - n * gamma) < 4 * math.sqrt(n * gamma * (1 - gamma) / reps)
    per_record = masks.sum(axis=0)
    assert stats.chisquare(per_record).pvalue > 1e-4
    assert np.array_equal(poisson_subsample(10, 1.0, rng), np.arange(10))


# --------------------------------------------------------------------------- votes (Def. 4.3, Eq. 4.4)
def test_votes_blocks_and_tau_approximation(celeba):
    _, labels, _ = celeba
    v = vote_matrix(labels)
    assert v.shape == (len(labels), sum(len(b.configs) for b in BLOCKS)) and N_BLOCKS == 10
    assert np.all(v.sum(axis=1) == N_BLOCKS)  # valid rows: one vote per block
    for b, sl in zip(BLOCKS, block_slices()):  # decoding a vote gives back the labels
        assert np.array_equal(b.configs[v[:, sl].argmax(axis=1)], labels[:, b.columns])
    bad = labels[:1].copy()
    bad[0, [ATTRIBUTES.index("Mustache"), ATTRIBUTES.index("No_Beard")]] = 1  # contradictory G2
    assert vote_matrix(bad)[0, block_slices()[-1]].sum() == 0 and not is_valid(bad)[0]
    for tau in (0.5, 3.0, 10.0, 50.0):
        t = tau_approximation(v, tau)
        assert np.all(t.sum(axis=1) <= tau + 1e-12)
        assert np.allclose(t, v * min(1.0, tau / N_BLOCKS))


@pytest.mark.parametrize("tau", [1.0, 4.0, 10.0])
def test_vote_histogram_l1_sensitivity_is_2tau(celeba, tau):
    phi, labels, _ = celeba
    votes = vote_matrix(labels)
    worst = 0.0
    for q in range(len(phi)):
        others = np.array([i for i in range(len(phi)) if i != q])
        for k in (1, 5, 40):
            full = vote_histogram(votes, k_nearest(phi[q], phi, k, others), tau)
            for j in others:  # neighbouring reference set: record j removed
                rest = others[others != j]
                worst = max(worst, np.abs(full - vote_histogram(votes, k_nearest(phi[q], phi, k, rest), tau)).sum())
    assert worst <= 2 * tau + 1e-9
    assert worst >= min(2 * tau, 2 * N_BLOCKS) * 0.5  # the bound is not vacuous on real data


# --------------------------------------------------------------------------- exponential mechanism (Eq. 4.5 / 4.6)
@pytest.mark.parametrize("scores,eps,dq", [([3.0, 7.0], 0.5, 1.0), ([10.0, 0.0, 6.0, 4.0], 0.3, 1.0), ([2.5, 2.0, 0.5], 1.2, 0.5)])
def test_secure_exponential_mechanism_matches_eq_4_5_and_4_6(scores, eps, dq):
    rng = PrivacyRandom()
    n = 3000
    draws = [exponential_mechanism(scores, eps, dq, rng) for _ in range(n)]  # OpenDP Gumbel noisy max
    counts = np.bincount(draws, minlength=len(scores))
    p = selection_probabilities(scores, eps, dq)
    expect = np.exp(eps * np.array(scores) / (2 * dq))
    assert np.allclose(p, expect / expect.sum())
    assert chi2_ok(counts, p)


@pytest.mark.parametrize("rng", [PrivacyRandom(), PrivacyRandom(11)], ids=["secure", "seeded"])
def test_batched_sampler_matches_exponential_mechanism(rng):
    scores = np.array([[4.0, 1.0, 0.0, 2.5]] * 40000)
    for eps in (0.0, 0.2, 1.0, 3.0):
        counts = np.bincount(exponential_mechanism_batch(scores, eps, 1.0, rng), minlength=4)
        assert chi2_ok(counts, selection_probabilities(scores[0], eps, 1.0))


def test_edge_cases_uniform_at_zero_and_majority_at_large_epsilon():
    rng = PrivacyRandom()
    scores = [9.0, 1.0, 0.0]
    counts = np.bincount([exponential_mechanism(scores, 0.0, 1.0, rng) for _ in range(3000)], minlength=3)
    assert chi2_ok(counts, [1 / 3] * 3)
    assert np.allclose(selection_probabilities(scores, 0.0), 1 / 3)
    assert all(exponential_mechanism(scores, 1e4, 1.0, rng) == 0 for _ in range(200))
    assert all(exponential_mechanism(scores, math.inf, 1.0, rng) == 0 for _ in range(50))
    tie = [5.0, 5.0, 1.0]  # majority with a tie: uniform among the tied maxima
    counts = np.bincount(exponential_mechanism_batch(np.array([tie] * 20000), math.inf, 1.0, rng), minlength=3)
    assert counts[2] == 0 and chi2_ok(counts, [0.5, 0.5, 0.0])


def test_group_selection_only_valid_configurations(celeba):
    _, labels, _ = celeba
    hist = vote_matrix(labels).sum(axis=0)
    rng = PrivacyRandom(3)
    out = select_attributes(np.array([hist] * 5000), 0.05, 1.0, rng)
    assert is_valid(out).all()
    for b, sl in zip(BLOCKS, block_slices()):  # per-block frequencies follow Eq. 4.5 / 4.6
        chosen = (out[:, None, b.columns] == b.configs[None]).all(axis=2).argmax(axis=1)
        assert chi2_ok(np.bincount(chosen, minlength=len(b.configs)), selection_probabilities(hist[sl], 0.05, 1.0))


# --------------------------------------------------------------------------- Algorithm 1 on real faces
def test_algorithm1_large_epsilon_is_k_anonymous_majority(celeba):
    phi, labels, _ = celeba
    rng = PrivacyRandom()
    for q in range(0, 30, 6):
        params = AttributeDPParams(k=7, epsilon=1e4, gamma=1.0)
        res = obfuscate_attributes(phi[q], phi, labels, params, rng, exclude=np.array([q]))
        nb = k_nearest(phi[q], phi, 7, np.array([i for i in range(30) if i != q]))
        assert np.array_equal(res.neighbours, nb) and q not in res.neighbours
        assert res.subsample_size == 29 and res.k_used == 7
        hist = vote_matrix(labels)[nb].sum(axis=0)
        # k = 7 is odd: independent attributes have no ties, so the output is the majority exactly
        ind = [ATTRIBUTES.index(a) for a in INDEPENDENT]
        assert np.array_equal(res.attributes[ind], np.round(labels[nb].mean(axis=0))[ind])
        assert attribute_accuracy(res.attributes, res.majority) >= 11 / 13  # groups may tie
        assert is_valid(res.attributes).all() and res.as_dict().keys() == set(ATTRIBUTES)
        assert np.allclose(res.histogram, hist)


def test_algorithm1_epsilon_zero_is_uniform_and_independent_of_the_data(celeba):
    phi, labels, _ = celeba
    rng = PrivacyRandom(5)
    outs = np.array([obfuscate_attributes(phi[0], phi, labels, AttributeDPParams(k=5, epsilon=0.0, gamma=1.0), rng).attributes
                     for _ in range(1500)])
    for b in BLOCKS:
        chosen = (outs[:, None, b.columns] == b.configs[None]).all(axis=2).argmax(axis=1)
        assert chi2_ok(np.bincount(chosen, minlength=len(b.configs)), np.full(len(b.configs), 1 / len(b.configs)))


def test_algorithm1_selection_frequencies_follow_eq_4_5(celeba):
    phi, labels, _ = celeba
    params = AttributeDPParams(k=20, epsilon=0.15, gamma=1.0, tau=4.0)  # fixed neighbours, τ scales votes by 0.4
    rng = PrivacyRandom(9)
    runs = [obfuscate_attributes(phi[3], phi, labels, params, rng, exclude=[3]) for _ in range(1500)]
    hist = runs[0].histogram
    assert np.allclose(hist, vote_matrix(labels)[runs[0].neighbours].sum(axis=0) * 0.4)
    outs = np.array([r.attributes for r in runs])
    for b, sl in zip(BLOCKS, block_slices()):
        chosen = (outs[:, None, b.columns] == b.configs[None]).all(axis=2).argmax(axis=1)
        assert chi2_ok(np.bincount(chosen, minlength=len(b.configs)), selection_probabilities(hist[sl], 0.15, 1.0))


def test_algorithm1_small_subsample_uses_all_of_it_and_reports_it(celeba):
    phi, labels, _ = celeba
    rng = PrivacyRandom()
    sizes = []
    for _ in range(60):
        res = obfuscate_attributes(phi[0], phi, labels, AttributeDPParams(k=10, epsilon=0.1, gamma=0.2), rng)
        assert res.k_used == min(10, res.subsample_size) == len(res.neighbours)
        assert res.subsample_smaller_than_k == (res.subsample_size < 10)
        sizes.append(res.subsample_size)
    assert 2 <= np.mean(sizes) <= 10  # Binomial(30, 0.2): mean 6
    g = res.guarantee
    assert g["epsilon_total"] == pytest.approx(0.1 * N_BLOCKS) and g["l1_sensitivity"] == 2 * N_BLOCKS
    assert g["epsilon_total_amplified"] == pytest.approx(math.log(1 + 0.2 * (math.exp(1.0) - 1)))


def _block_distributions(phi, labels, q, rest, params):
    hist = vote_histogram(vote_matrix(labels), k_nearest(phi[q], phi, params.k, rest), params.tau)
    return [selection_probabilities(hist[sl], params.epsilon, params.delta_q) for sl in block_slices()]


@pytest.mark.parametrize("tau", [1.5, 10.0])
def test_joint_release_meets_epsilon_total_on_neighbouring_sets(celeba, tau):
    """Without subsampling: max over outputs of |ln P(o|D) − ln P(o|D−j)| ≤ ε·min(B, 2τ)/Δq."""
    phi, labels, _ = celeba
    params = AttributeDPParams(k=6, epsilon=0.4, gamma=1.0, tau=tau)
    bound = privacy_guarantee(params)["epsilon_total"]
    assert bound == pytest.approx(0.4 * min(N_BLOCKS, 2 * tau))
    worst = 0.0
    for q in (0, 11, 22):
        others = np.array([i for i in range(30) if i != q])
        p = _block_distributions(phi, labels, q, others, params)
        for j in others:
            p2 = _block_distributions(phi, labels, q, others[others != j], params)
            worst = max(worst, sum(np.abs(np.log(a) - np.log(b)).max() for a, b in zip(p, p2)))
    assert 0 < worst <= bound + 1e-9


def test_poisson_amplification_bound_exactly_on_a_small_reference_set(celeba):
    """Exact output distribution over all 2^n Poisson subsamples of n = 9 real faces: neighbouring
    sets (one face removed) differ by at most ε' = ln(1 + γ(e^ε_total − 1)) on every output."""
    phi, labels, _ = celeba
    n, q = 9, 20
    params = AttributeDPParams(k=3, epsilon=0.5, gamma=0.3)
    votes = vote_matrix(labels)
    def dist(members):
        total = 0.0
        for keep in itertools.product([0, 1], repeat=len(members)):
            sub = np.array([m for m, kf in zip(members, keep) if kf], dtype=np.int64)
            w = params.gamma ** sum(keep) * (1 - params.gamma) ** (len(members) - sum(keep))
            hist = vote_histogram(votes, k_nearest(phi[q], phi, params.k, sub), params.tau)
            per = [selection_probabilities(hist[sl], params.epsilon) for sl in block_slices()]
            joint = per[0]
            for p in per[1:]:  # independent selections: the joint law is the outer product
                joint = np.multiply.outer(joint, p).ravel()
            total = total + w * joint
        return total

    members = list(range(n))
    full = dist(members)
    assert full.sum() == pytest.approx(1.0)
    g = privacy_guarantee(params)
    worst = max(np.abs(np.log(full) - np.log(dist([m for m in members if m != j]))).max() for j in (0, 4, 8))
    assert worst <= g["epsilon_total_amplified"] + 1e-9
    assert g["epsilon_total_amplified"] < g["epsilon_total"]


def test_majority_attributes_is_plurality_with_valid_groups(celeba):
    _, labels, _ = celeba
    rng = PrivacyRandom(1)
    hist = vote_matrix(labels[:9]).sum(axis=0)
    maj = majority_attributes(hist, rng)
    assert is_valid(maj).all()
    male = ATTRIBUTES.index("Male")
    assert maj[male] == int(labels[:9, male].sum() > 4.5)
    assert attribute_accuracy(maj, maj) == 1.0 and attribute_accuracy(np.zeros(13), np.ones(13)) == 0.0
