"""The privacy option of `Monitor`: sensitive features, dropped fields and hashed fields.

- A *sensitive* feature is never sent raw. The caller's thread takes it out of the prediction's
  features before the record is queued (`Privacy.split`); the sender thread counts it into a
  per-interval histogram (`FeatureHistograms`) and sends only the counts, as samples of the
  `feature_histogram` series: numbers by bucket (label `le`, the bucket's upper edge), everything
  else by category (label `category`, at most `max_categories` distinct values per feature, the
  rest as `__other__`; missing values as `__missing__`).
- A *dropped* field is removed in the caller's thread; it never leaves the process.
- A *hashed* field is replaced, in the sender thread, by the first 16 hex digits of its
  HMAC-SHA256 under the service's secret `hash_key`: equal values give equal hashes (joins and
  group-bys still work) but the value cannot be recovered without the key. `"prediction_id"` in
  `hash_fields` hashes the id of predictions and of labels alike, so labels still join.

Settings are checked at construction (`ValueError` naming the argument); a `Privacy` object
is immutable; the running counts live in a `FeatureHistograms` owned by the sender thread.

    >>> p = Privacy(sensitive=("income",), drop_fields=("email",))
    >>> features = p.split({"income": 52_000, "email": "a@b.c", "age": 41})
    >>> dict(features), features.sensitive
    ({'age': 41}, (52000,))
    >>> h = p.histograms()
    >>> h.observe(features.sensitive)
    >>> h.take()
    [('income', 'le', '100000.0', 1)]
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any, Final

from prometheus_client.utils import floatToGoString

from . import sanitize

__all__ = [
    "ABSENT",
    "DEFAULT_BUCKETS",
    "HISTOGRAM_SERIES",
    "FeatureHistograms",
    "HistogramCount",
    "Privacy",
    "PrivateFeatures",
]

HISTOGRAM_SERIES = "feature_histogram"
"""Name of the sample series that carries the counts of sensitive features."""

DEFAULT_BUCKETS: tuple[float, ...] = (
    *(-(10.0**k) for k in range(6, -1, -1)),
    0.0,
    *(m * 10.0**k for k in range(-1, 6) for m in (1.0, 2.5, 5.0)),
    1e6,
)
"""Upper bucket edges for a sensitive number when none are given: negative decades, 0, then
1-2.5-5 steps from 0.1 to 1,000,000 (probabilities, ages, amounts alike); above the last edge
counts as `le="+Inf"`."""

DEFAULT_MAX_CATEGORIES = 50
MIN_KEY_BYTES = 16
MAX_EDGES = 1000
HASH_CHARS = 16
OTHER = "__other__"
MISSING = "__missing__"
PREDICTION_ID = "prediction_id"

ABSENT: Final = object()
"""Stands for a sensitive feature the prediction did not have (nothing is counted)."""

HistogramCount = tuple[str, str, str, int]
"""`(feature, "le" or "category", upper edge or category, count)`."""


class PrivateFeatures(dict[Any, Any]):
    """A prediction's features without its sensitive and dropped ones; `sensitive` holds the
    sensitive values in the order of `Privacy.sensitive` (`ABSENT` where missing)."""

    __slots__ = ("sensitive",)

    sensitive: tuple[object, ...]


class Privacy:
    """What of a prediction may leave the process (see the module docstring).

    Parameters are public attributes; `hash_key` is kept private and never printed.
    """

    def __init__(
        self,
        *,
        sensitive: Iterable[str] = (),
        sensitive_buckets: Mapping[str, Sequence[float]] | None = None,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
        drop_fields: Iterable[str] = (),
        hash_fields: Iterable[str] = (),
        hash_key: str | bytes | None = None,
    ) -> None:
        self.sensitive = _names("sensitive", sensitive)
        self.drop_fields = _names("drop_fields", drop_fields)
        self.hash_fields = _names("hash_fields", hash_fields)
        for a, b in (
            ("sensitive", "drop_fields"),
            ("sensitive", "hash_fields"),
            ("drop_fields", "hash_fields"),
        ):
            both = sorted(set(getattr(self, a)) & set(getattr(self, b)))
            if both:
                raise ValueError(f"{both[0]!r} is in both {a} and {b}; choose one")
        for what in ("sensitive", "drop_fields"):
            if PREDICTION_ID in getattr(self, what):
                raise ValueError(
                    f"{what} cannot hold 'prediction_id' (labels join on it); "
                    "put it in hash_fields instead"
                )
        if isinstance(max_categories, bool) or not isinstance(max_categories, int):
            raise ValueError(f"max_categories must be a positive integer, got {max_categories!r}")
        if max_categories < 1:
            raise ValueError(f"max_categories must be a positive integer, got {max_categories!r}")
        self.max_categories = max_categories
        self.buckets = _buckets(self.sensitive, sensitive_buckets)

        if self.hash_fields and hash_key is None:
            raise ValueError("hash_fields needs a hash_key (a secret of at least 16 bytes)")
        if hash_key is not None and not self.hash_fields:
            raise ValueError("hash_key is given but hash_fields is empty")
        key = hash_key.encode() if isinstance(hash_key, str) else hash_key
        if key is not None and (not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES):
            raise ValueError(
                f"hash_key must be a str or bytes of at least {MIN_KEY_BYTES} bytes "
                "(e.g. secrets.token_hex(16)), kept secret"
            )
        self._key = key or b""
        self.hash_prediction_id = PREDICTION_ID in self.hash_fields
        self._hashed_features = tuple(n for n in self.hash_fields if n != PREDICTION_ID)
        self._removed = self.sensitive + self.drop_fields
        self._absent = (ABSENT,) * len(self.sensitive)

    def __repr__(self) -> str:
        key = ", hash_key=***" if self._key else ""
        return (
            f"Privacy(sensitive={self.sensitive!r}, drop_fields={self.drop_fields!r}, "
            f"hash_fields={self.hash_fields!r}{key})"
        )

    @property
    def removes_features(self) -> bool:
        """Whether `split` has anything to take out (sensitive or dropped features)."""
        return bool(self._removed)

    # ------------------------------------------------------------------ caller's thread

    def split(self, features: Any) -> Any:
        """A copy of `features` without the sensitive and dropped ones (a `PrivateFeatures`).

        Runs in the service's thread, so it only copies and pops. A non-mapping is returned as
        it is (the sender refuses it as invalid).
        """
        if type(features) is not dict and not isinstance(features, Mapping):
            return features
        out = PrivateFeatures(features)
        pop = out.pop
        out.sensitive = tuple(map(pop, self.sensitive, self._absent))  # no comprehension frame
        for name in self.drop_fields:
            pop(name, None)
        return out

    # ------------------------------------------------------------------ sender thread

    def hash(self, value: str) -> str:
        """The keyed hash of `value`: 16 hex digits of HMAC-SHA256."""
        digest = hmac.new(self._key, value.encode("utf-8", "replace"), hashlib.sha256)
        return digest.hexdigest()[:HASH_CHARS]

    def hash_features(self, features: dict[str, sanitize.Scalar]) -> None:
        """Replace the hashed features of a sanitized feature dict in place (None stays None:
        a missing value is not a secret)."""
        for name in self._hashed_features:
            value = features.get(name)
            if value is not None:
                features[name] = self.hash(value if isinstance(value, str) else json.dumps(value))

    def histograms(self) -> FeatureHistograms:
        """Fresh, empty running counts for these settings."""
        return FeatureHistograms(self)


class FeatureHistograms:
    """Counts of the sensitive features' values since they were last taken.

    Owned by one sender thread (not thread-safe). Memory is bounded: per feature, its buckets
    plus at most `max_categories` categories and the special ones.
    """

    def __init__(self, privacy: Privacy) -> None:
        self._features = privacy.sensitive
        self._edges = [privacy.buckets[name] for name in privacy.sensitive]
        self._edge_labels = [
            [floatToGoString(e) for e in edges] + ["+Inf"]  # type: ignore[no-untyped-call]
            for edges in self._edges
        ]
        self._max_categories = privacy.max_categories
        self._known: list[set[str]] = [set() for _ in privacy.sensitive]
        self._buckets: list[dict[int, int]] = [{} for _ in privacy.sensitive]
        self._categories: list[dict[str, int]] = [{} for _ in privacy.sensitive]
        self._pending = 0

    @property
    def pending(self) -> bool:
        """Whether some counts were observed and not taken yet."""
        return self._pending > 0

    def observe(self, values: tuple[object, ...]) -> None:
        """Count one prediction's sensitive values (`ABSENT` ones are not counted)."""
        for i, raw in enumerate(values):
            if raw is ABSENT:
                continue
            self._pending += 1
            try:
                value = sanitize.scalar(raw, "feature")
            except sanitize.Invalid:
                self._count_category(i, OTHER)
                continue
            if value is None:
                self._count_category(i, MISSING)
            elif isinstance(value, bool):
                self._count_category(i, "true" if value else "false")
            elif isinstance(value, int | float):
                bucket = bisect_left(self._edges[i], value)
                counts = self._buckets[i]
                counts[bucket] = counts.get(bucket, 0) + 1
            else:
                self._count_category(i, value)

    def _count_category(self, i: int, category: str) -> None:
        known = self._known[i]
        if category not in known and category not in (OTHER, MISSING):
            if len(known) >= self._max_categories or len(category) > sanitize.MAX_NAME_CHARS:
                category = OTHER
            else:
                known.add(category)
        counts = self._categories[i]
        counts[category] = counts.get(category, 0) + 1

    def take(self) -> list[HistogramCount]:
        """The non-zero counts since the last `take`, and start counting afresh."""
        out: list[HistogramCount] = []
        for i, feature in enumerate(self._features):
            labels = self._edge_labels[i]
            for bucket, n in sorted(self._buckets[i].items()):
                out.append((feature, "le", labels[bucket], n))
            for category, n in sorted(self._categories[i].items()):
                out.append((feature, "category", category, n))
            self._buckets[i] = {}
            self._categories[i] = {}
        self._pending = 0
        return out

    def restore(self, counts: Iterable[HistogramCount]) -> None:
        """Add counts taken but not delivered back, to be sent with the next interval."""
        index = {name: i for i, name in enumerate(self._features)}
        for feature, kind, key, n in counts:
            i = index[feature]
            if kind == "le":
                bucket = self._edge_labels[i].index(key)
                self._buckets[i][bucket] = self._buckets[i].get(bucket, 0) + n
            else:
                self._categories[i][key] = self._categories[i].get(key, 0) + n
            self._pending += n


def _names(what: str, names: Iterable[str]) -> tuple[str, ...]:
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        raise ValueError(
            f"{what} must be a tuple or list of field names, got {names!r}"
            + (f" (did you mean ({names!r},)?)" if isinstance(names, str) else "")
        )
    out = tuple(names)
    for name in out:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{what} must hold non-empty strings, got {name!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{what} lists a name twice: {out!r}")
    return out


def _buckets(
    sensitive: tuple[str, ...], given: Mapping[str, Sequence[float]] | None
) -> dict[str, tuple[float, ...]]:
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise ValueError(f"sensitive_buckets must map feature names to bucket edges, got {given!r}")
    unknown = sorted(set(given) - set(sensitive))
    if unknown:
        raise ValueError(
            f"sensitive_buckets names {unknown[0]!r}, which is not in sensitive={sensitive!r}"
        )
    out: dict[str, tuple[float, ...]] = {}
    for name in sensitive:
        edges = given.get(name)
        if edges is None:
            out[name] = DEFAULT_BUCKETS
            continue
        what = f"sensitive_buckets[{name!r}]"
        if isinstance(edges, str | bytes) or not isinstance(edges, Sequence):
            raise ValueError(f"{what} must be a list of numbers, got {edges!r}")
        if not 1 <= len(edges) <= MAX_EDGES:
            raise ValueError(f"{what} must hold 1 to {MAX_EDGES} edges, got {len(edges)}")
        for edge in edges:
            if isinstance(edge, bool) or not isinstance(edge, int | float):
                raise ValueError(f"{what} must hold numbers, got {edge!r}")
            if not math.isfinite(edge):
                raise ValueError(f"{what} must hold finite numbers, got {edge!r}")
        floats = tuple(float(e) for e in edges)
        if any(b <= a for a, b in pairwise(floats)):
            raise ValueError(f"{what} must be strictly increasing, got {list(edges)!r}")
        out[name] = floats
    return out
