"""Form letters (R14): comment items with identical normalized text, and near-duplicates above a similarity.

Identical: the same `duplicate_key` (NFKC, dash/tilde variants unified, whitespace removed), the key behind
the `duplicate_text` flag. Near-identical: the Jaccard similarity of the keys' character n-gram sets is at
least `threshold`. Candidate pairs come from MinHash signatures with LSH banding (so thousands of items are not
compared pairwise); each candidate is then checked with the exact Jaccard similarity, so the result does not
depend on MinHash's estimate. Like regulations.gov's `duplicateComments`, each group has a count.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from daemon.stages.comment import duplicate_key

DEFAULT_SIMILARITY = 0.8
DEFAULT_NGRAM = 3
NUM_PERM = 64
MIN_NEAR_CHARS = 20  # shorter keys are grouped only when identical: a few shared n-grams mean little
_MASK64 = (1 << 64) - 1
_MERSENNE = (1 << 61) - 1


def shingles(key: str, n: int = DEFAULT_NGRAM) -> frozenset[str]:
    if len(key) <= n:
        return frozenset([key]) if key else frozenset()
    return frozenset(key[i : i + n] for i in range(len(key) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class MinHasher:
    """MinHash over 64-bit hashes of n-grams with `num_perm` universal hash functions (a·x + b mod p)."""

    def __init__(self, num_perm: int = NUM_PERM, seed: int = 20260129) -> None:
        rnd = random.Random(seed)  # fixed: the same items always give the same signatures
        self.params = [(rnd.randrange(1, _MERSENNE), rnd.randrange(0, _MERSENNE)) for _ in range(num_perm)]

    @staticmethod
    def _h(s: str) -> int:
        return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big")

    def signature(self, grams: frozenset[str]) -> tuple[int, ...]:
        hs = [self._h(g) for g in grams] or [0]
        return tuple(min((a * h + b) % _MERSENNE for h in hs) for a, b in self.params)


def lsh_bands(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """(bands, rows): the most rows per band whose S-curve still catches pairs well below the threshold
    (the exact check removes the false positives; false negatives would be lost)."""
    for rows in (8, 4, 2, 1):
        bands = num_perm // rows
        if (1 / bands) ** (1 / rows) <= threshold * 0.7:
            return bands, rows
    return num_perm, 1


class _Union:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Group:
    id: str  # G1, G2 … by size, then by first appearance
    members: list[int] = field(default_factory=list)  # indexes into the texts given to find_groups
    identical: bool = True  # every member has the same normalized text

    @property
    def count(self) -> int:
        return len(self.members)


def find_groups(texts: Sequence[str], threshold: float = DEFAULT_SIMILARITY, ngram: int = DEFAULT_NGRAM) -> list[Group]:
    """Groups of two or more texts (in the given order, which decides which member is first)."""
    keys = [duplicate_key(t) for t in texts]
    distinct: dict[str, int] = {}  # key -> index into uniq
    uniq: list[str] = []
    of_text: list[int] = []
    for k in keys:
        if k not in distinct:
            distinct[k] = len(uniq)
            uniq.append(k)
        of_text.append(distinct[k])
    uf = _Union(len(uniq))
    if threshold < 1.0:
        grams = [shingles(k, ngram) for k in uniq]
        hasher = MinHasher()
        bands, rows = lsh_bands(threshold)
        buckets: dict[tuple[int, tuple[int, ...]], list[int]] = defaultdict(list)
        for u, k in enumerate(uniq):
            if len(k) < MIN_NEAR_CHARS:
                continue
            sig = hasher.signature(grams[u])
            for b in range(bands):
                buckets[(b, sig[b * rows : (b + 1) * rows])].append(u)
        checked: set[tuple[int, int]] = set()
        for members in buckets.values():
            for i, a in enumerate(members):
                for b in members[i + 1 :]:
                    pair = (a, b) if a < b else (b, a)
                    if pair in checked:
                        continue
                    checked.add(pair)
                    if jaccard(grams[a], grams[b]) >= threshold:
                        uf.union(a, b)
    by_root: dict[int, list[int]] = defaultdict(list)
    for t, u in enumerate(of_text):
        if keys[t]:
            by_root[uf.find(u)].append(t)
    found = [m for m in by_root.values() if len(m) >= 2]
    found.sort(key=lambda m: (-len(m), m[0]))
    groups = []
    for n, members in enumerate(found, 1):
        groups.append(Group(id=f"G{n}", members=members, identical=len({keys[t] for t in members}) == 1))
    return groups
