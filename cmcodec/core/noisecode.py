"""The noise section (spec §10): what a noise-mode file says about the decoder's sampling noise, with no torch.

A noise-mode file codes the reverse diffusion's own noise (Turbo-DDCM, Vaisman et al., ICLR 2026, after DDCM,
Ohayon et al., ICML 2025): at each coded step the encoder picks, from a codebook of K Gaussian atoms that both
sides generate from the file's seed, the M atoms whose signed sum moves the sample toward the original, and the
file stores the set's combinatorial rank and the signs. This module is the normative half: the codebook
generator (Philox4x32-10 and the quantile table, §10.2), the schedule and step list (§10.3), the index coding
(§10.4) and the payload (§10.5), in numpy and plain integers. ``cmcodec.models.noise`` runs the sampler and the
same generator on torch devices, bit for bit.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import FormatError, LimitError

# --- §10.2 codebook generator ------------------------------------------------------------------------------
PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # Philox4x32 multipliers (Salmon et al., SC'11; Random123)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)  # Weyl key increments
PHILOX_ROUNDS = 10
MASK32 = 0xFFFFFFFF
QUANTILE_BITS = 16  # each 32-bit word gives two 16-bit table indices
VALUES_PER_BLOCK = 8  # 4 words per Philox call, 2 values per word
STREAM_INITIAL, STREAM_ATOMS = 0, 1  # counter word 3: which stream a block belongs to
# SHA-256 of the quantile table as 65536 little-endian float32 (spec §10.2): any implementation checks its own
QUANTILE_SHA256 = "1cfbba1e07e34386a57626f82aeb43e6ed54ba70a3ea6b7d964dc66a841074a8"


def philox4x32_10(counter: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x32-10 of an (N, 4) array of 32-bit counter words under a 2-word key: (N, 4) uint32 outputs
    (Random123's known-answer vectors hold, tests/test_noise.py)."""
    c = [counter[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = key[0] & MASK32, key[1] & MASK32
    for r in range(PHILOX_ROUNDS):
        if r:
            k0, k1 = (k0 + PHILOX_W[0]) & MASK32, (k1 + PHILOX_W[1]) & MASK32
        p0 = c[0] * np.uint64(PHILOX_M[0])  # 32 x 32 bits: exact in uint64
        p1 = c[2] * np.uint64(PHILOX_M[1])
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(MASK32)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(MASK32)
        c = [hi1 ^ c[1] ^ np.uint64(k0), lo1, hi0 ^ c[3] ^ np.uint64(k1), lo0]
    return np.stack(c, axis=1).astype(np.uint32)


@lru_cache(maxsize=1)
def quantile_table() -> np.ndarray:
    """The 65536 float32 values Q[i] = Phi^-1((i + 1/2) / 65536), exactly antisymmetric (Q[65535 - i] = -Q[i]),
    each the float32 nearest to the float64 inverse normal CDF (spec §10.2); checked against its SHA-256."""
    from statistics import NormalDist

    n = 1 << QUANTILE_BITS
    inv = NormalDist().inv_cdf
    low = np.array([inv((i + 0.5) / n) for i in range(n // 2)], dtype=np.float64).astype(np.float32)
    table = np.concatenate([low, -low[::-1]])
    digest = hashlib.sha256(table.astype("<f4").tobytes()).hexdigest()
    if digest != QUANTILE_SHA256:
        raise RuntimeError(f"quantile table SHA-256 {digest} differs from the spec's {QUANTILE_SHA256}: this "
                           "platform's float64 inverse normal CDF rounds differently; the table cannot be trusted")
    return table


def gaussian_blocks(seed: int, step: int, atoms: np.ndarray, stream: int, n: int) -> np.ndarray:
    """(len(atoms), n) float32: the values of each atom (spec §10.2). Block b of atom a at step s is
    Philox4x32-10 of counter (b, a, s, stream) under key (seed, 0); its word j gives values 8b + 2j (high 16
    bits) and 8b + 2j + 1 (low 16 bits) through the quantile table."""
    atoms = np.asarray(atoms, dtype=np.int64)
    nb = -(-n // VALUES_PER_BLOCK)
    ctr = np.zeros((len(atoms), nb, 4), dtype=np.uint64)
    ctr[:, :, 0] = np.arange(nb, dtype=np.uint64)[None, :]
    ctr[:, :, 1] = atoms.astype(np.uint64)[:, None]
    ctr[:, :, 2] = step
    ctr[:, :, 3] = stream
    words = philox4x32_10(ctr.reshape(-1, 4), (seed, 0)).astype(np.uint32)
    idx = np.stack([words >> 16, words & 0xFFFF], axis=-1).reshape(len(atoms), nb * VALUES_PER_BLOCK)
    return quantile_table()[idx[:, :n]]


def initial_noise(seed: int, n: int) -> np.ndarray:
    """(n,) float32: the starting sample x_T (stream 0, atom 0, step 0)."""
    return gaussian_blocks(seed, 0, np.array([0]), STREAM_INITIAL, n)[0]


def atoms(seed: int, step: int, indices: np.ndarray, n: int) -> np.ndarray:
    """(len(indices), n) float32: codebook atoms of a coded step (stream 1)."""
    return gaussian_blocks(seed, step, indices, STREAM_ATOMS, n)


# --- §10.3 schedule ------------------------------------------------------------------------------------------
TRAIN_STEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012  # Stable Diffusion's scaled-linear schedule


@lru_cache(maxsize=1)
def alphas_cumprod() -> tuple[float, ...]:
    """abar_t for t = 0..999 in float64: betas linear in sqrt between BETA_START and BETA_END, squared."""
    s0, s1 = math.sqrt(BETA_START), math.sqrt(BETA_END)
    out, prod = [], 1.0
    for t in range(TRAIN_STEPS):
        b = (s0 + (s1 - s0) * t / (TRAIN_STEPS - 1)) ** 2
        prod *= 1.0 - b
        out.append(prod)
    return tuple(out)


def timesteps(steps: int) -> tuple[int, ...]:
    """The step list of a T-step trajectory: t_i = (T - 1 - i) * floor(1000 / T) + 1, i = 0..T-1 (DDIM's
    leading spacing with offset 1, as Stable Diffusion's scheduler configs set it)."""
    stride = TRAIN_STEPS // steps
    return tuple((steps - 1 - i) * stride + 1 for i in range(steps))


@dataclass(frozen=True)
class StepCoefs:
    """Float64 coefficients of step i: x0_hat = (x - s1 * eps) / s0; then x_prev = a * x0_hat + b * eps + c * z
    (c = 0 on an uncoded step). last: x_prev = x0_hat."""

    t: int
    sqrt_abar: float
    sqrt_one_minus: float
    a: float
    b_coded: float
    c_coded: float
    b_plain: float
    last: bool


def step_coefs(steps: int) -> tuple[StepCoefs, ...]:
    """Coefficients of every step: coded steps are DDPM steps (DDIM eta = 1) with the coded noise, uncoded
    ones deterministic DDIM steps (eta = 0); the last step outputs x0_hat (spec §10.3)."""
    ab = alphas_cumprod()
    ts = timesteps(steps)
    out = []
    for i, t in enumerate(ts):
        a_t = ab[t]
        last = i == steps - 1
        a_p = 1.0 if last else ab[ts[i + 1]]
        var = (1 - a_p) / (1 - a_t) * (1 - a_t / a_p)
        out.append(StepCoefs(t, math.sqrt(a_t), math.sqrt(1 - a_t), math.sqrt(a_p), math.sqrt(max(0.0, 1 - a_p - var)),
                             math.sqrt(var), math.sqrt(1 - a_p), last))
    return tuple(out)


# --- §10.4 index coding ----------------------------------------------------------------------------------------
def rank_bits(k: int, m: int) -> int:
    """ceil(log2 C(K, M)): bits of a set's rank (0 when there is one set)."""
    return (math.comb(k, m) - 1).bit_length()


def step_bits(k: int, m: int) -> int:
    """Bits of one coded step with m atoms: the rank and m signs."""
    return rank_bits(k, m) + m


def rank(indices: list[int] | tuple[int, ...]) -> int:
    """Combinatorial-number-system rank of a set of distinct indices: sum of C(c_i, i + 1) over the indices in
    increasing order; a bijection of the M-subsets of 0..K-1 onto 0..C(K, M) - 1."""
    s = sorted(indices)
    if len(set(s)) != len(s):
        raise ValueError("atom indices must be distinct")
    return sum(math.comb(c, i + 1) for i, c in enumerate(s))


def unrank(r: int, k: int, m: int) -> list[int]:
    """The increasing indices of rank r (the inverse of rank); r must be below C(k, m)."""
    if not 0 <= r < math.comb(k, m):
        raise FormatError(f"corrupt noise section: set rank {r} outside 0..C({k}, {m}) - 1")
    out, hi = [], k
    for i in range(m, 0, -1):
        lo, top = i - 1, hi - 1  # largest c in [i-1, hi-1] with C(c, i) <= r
        while lo < top:
            mid = (lo + top + 1) // 2
            if math.comb(mid, i) <= r:
                lo = mid
            else:
                top = mid - 1
        out.append(lo)
        r -= math.comb(lo, i)
        hi = lo
    return out[::-1]


# --- §10.5 payload -------------------------------------------------------------------------------------------
MAX_STEPS = TRAIN_STEPS  # a trajectory has at most one step per training timestep
MAX_LOG2_K = 20  # codebooks of up to 2^20 atoms
MAX_ATOMS = 4096  # atoms per step: bounds a decoder's work per step (M + 1 atoms of n values)
# fit_plan fills at least 90% of a budget above the empty plan once the budget exceeds it by this many bytes
# (one-atom steps cost 2 bytes each at K = 2^14; below this a step's granularity is above 10%)
FILL_MARGIN = 20


@dataclass(frozen=True)
class Plan:
    """The shape of a noise code: T steps, the first C coded, K = 2^log2_k atoms, M atoms per coded step and
    M + 1 on the first R of them."""

    steps: int
    coded: int = 0
    log2_k: int = 14
    atoms: int = 1
    extra: int = 0

    @property
    def k(self) -> int:
        return 1 << self.log2_k

    def atoms_at(self, i: int) -> int:
        """Atoms of coded step i."""
        return self.atoms + 1 if i < self.extra else self.atoms

    def bits(self) -> int:
        """Bits of the whole payload before its padding."""
        return _header_bits(self) + sum(step_bits(self.k, self.atoms_at(i)) for i in range(self.coded))

    def nbytes(self) -> int:
        """Bytes of the payload."""
        return -(-self.bits() // 8)

    def check(self) -> None:
        """FormatError unless every field is within spec §10.5."""
        if not 1 <= self.steps <= MAX_STEPS:
            raise FormatError(f"corrupt noise section: {self.steps} steps, expected 1..{MAX_STEPS}")
        if not 0 <= self.coded < self.steps:
            raise FormatError(f"corrupt noise section: {self.coded} coded steps of {self.steps}, expected at most "
                              f"{self.steps - 1} (the last step is never coded)")
        if self.coded == 0:
            return
        if not 1 <= self.log2_k <= MAX_LOG2_K:
            raise FormatError(f"corrupt noise section: codebook of 2^{self.log2_k} atoms, expected 2^1..2^{MAX_LOG2_K}")
        top = self.atoms + (1 if self.extra else 0)
        if not self.atoms >= 1 or top > min(self.k - 1, MAX_ATOMS):
            raise LimitError(f"noise section with {top} atoms per step of a codebook of {self.k}: expected 1.."
                             f"{min(self.k - 1, MAX_ATOMS)}") if top > MAX_ATOMS else \
                FormatError(f"corrupt noise section: {top} atoms per step of a codebook of {self.k}")
        if not 0 <= self.extra < self.coded:
            raise FormatError(f"corrupt noise section: {self.extra} steps with an extra atom, expected fewer than "
                              f"{self.coded}")


def _ue_bits(v: int) -> int:
    return 2 * (v + 1).bit_length() - 1


def _header_bits(p: Plan) -> int:
    n = _ue_bits(p.steps - 1) + _ue_bits(p.coded)
    if p.coded:
        n += 5 + _ue_bits(p.atoms - 1) + _ue_bits(p.extra)
    return n


@dataclass(frozen=True)
class StepCode:
    """One coded step: the atom indices in increasing order and a sign per index (+1 or -1)."""

    indices: tuple[int, ...]
    signs: tuple[int, ...]


def pack(plan: Plan, codes: list[StepCode]) -> bytes:
    """The noise section payload (spec §10.5)."""
    from .bitstream import BitWriter

    plan.check()
    if len(codes) != plan.coded:
        raise ValueError(f"{len(codes)} step codes for {plan.coded} coded steps")
    w = BitWriter()
    w.ue(plan.steps - 1)
    w.ue(plan.coded)
    if plan.coded:
        w.u(plan.log2_k, 5)
        w.ue(plan.atoms - 1)
        w.ue(plan.extra)
    for i, sc in enumerate(codes):
        m = plan.atoms_at(i)
        increasing = list(sc.indices) == sorted(set(sc.indices))
        if len(sc.indices) != m or not increasing or not all(0 <= c < plan.k for c in sc.indices):
            raise ValueError(f"step {i} needs {m} distinct increasing indices below {plan.k}")
        nb = rank_bits(plan.k, m)
        if nb:
            w.u(rank(sc.indices), nb)
        for s in sc.signs:
            w.u(1 if s > 0 else 0, 1)
    return w.to_bytes()


def read_plan(payload: bytes) -> tuple[Plan, int]:
    """The plan and the bit offset of the first step record."""
    from .bitstream import BitReader
    from .errors import TruncatedError

    r = BitReader(payload)
    try:
        steps = _ue(r, "steps") + 1
        coded = _ue(r, "coded steps")
        log2_k, m, extra = 14, 1, 0
        if coded:
            log2_k = r.u(5)
            m = _ue(r, "atoms") + 1
            extra = _ue(r, "extra-atom steps")
    except TruncatedError:
        raise FormatError("truncated noise section: its parameters run past the payload") from None
    plan = Plan(steps, coded, log2_k, m, extra)
    plan.check()
    return plan, r.pos


def _ue(r: object, what: str) -> int:
    v = r.ue(what)  # type: ignore[attr-defined]
    if v > 1 << 20:  # every field here is far smaller: refuse before any loop runs on it
        raise FormatError(f"corrupt noise section: {what} field {v}")
    return v


def unpack(payload: bytes, steps_available: int | None = None) -> tuple[Plan, list[StepCode]]:
    """Plan and step codes of a payload; the payload MUST end exactly after its records and zero padding.
    steps_available keeps the first k records (a prefix decode, §10.6)."""
    from .bitstream import BitReader

    plan, pos = read_plan(payload)
    if plan.nbytes() != len(payload):
        raise FormatError(f"corrupt noise section: {plan.coded} coded steps of {plan.atoms} atoms need "
                          f"{plan.nbytes()} bytes, found {len(payload)}")
    r = BitReader(payload)
    r.pos = pos
    codes = []
    for i in range(plan.coded):
        m = plan.atoms_at(i)
        nb = rank_bits(plan.k, m)
        idx = unrank(r.u(nb), plan.k, m)
        signs = tuple(1 if r.bit() else -1 for _ in range(m))
        codes.append(StepCode(tuple(idx), signs))
    while r.pos & 7:
        if r.bit():
            raise FormatError("corrupt noise section: padding bits must be zero, found a one")
    if steps_available is not None and steps_available < plan.coded:
        if steps_available < 0:
            raise ValueError("steps_available must be at least 0")
        codes = codes[:steps_available]
        if steps_available <= plan.extra:  # every kept step has M + 1 atoms
            plan = Plan(plan.steps, steps_available, plan.log2_k, plan.atoms + 1 if steps_available else 1)
        else:
            plan = Plan(plan.steps, steps_available, plan.log2_k, plan.atoms, plan.extra)
    return plan, codes


def fit_plan(steps: int, log2_k: int, max_bytes: int, max_atoms: int = MAX_ATOMS) -> Plan:
    """The plan of the most bits whose payload fits max_bytes (spec §10.7): every step but the last coded with M
    atoms, M the largest that fits, and an extra atom on as many leading steps as then fit; fewer coded steps of
    one atom when even that is too much; 0 coded steps when nothing fits."""
    k = 1 << log2_k
    top = min(max_atoms, k - 2)  # M + 1 atoms must stay below K
    best = Plan(steps)
    c = steps - 1
    if c == 0 or Plan(steps).nbytes() > max_bytes:
        return best
    lo, hi = 0, top  # largest M with all c steps fitting
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if Plan(steps, c, log2_k, mid).nbytes() <= max_bytes:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:  # not every step fits one atom: the longest prefix of one-atom steps, then extra atoms on it
        n = 0
        while n < c and Plan(steps, n + 1, log2_k, 1).nbytes() <= max_bytes:
            n += 1
        if n == 0:
            return best
        c, lo = n, 1
    base = Plan(steps, c, log2_k, lo)
    r = 0
    while r + 1 < c and lo + 1 <= top and Plan(steps, c, log2_k, lo, r + 1).nbytes() <= max_bytes:
        r += 1
    return Plan(steps, c, log2_k, lo, r) if r else base
