"""Efficacy against late labels: classification and regression metrics, and the check.

Labels are joined to predictions by id; a window is judged only when enough of it is
labelled (coverage is reported either way). A metric is compared with the reference's
(one-sided: only getting worse pages): binomial tests for accuracy, precision and recall,
Welch's t-test on absolute and squared errors for MAE and RMSE; F1 gets a seeded bootstrap
interval. The p-values join the model's correction family.
"""

from __future__ import annotations

import math

import numpy as np

from watchkeeper.config import EfficacyCheck

from .candidate import Candidate
from .frame import Batch, missing_mask
from .profile import Baseline
from .stats import binomial_cdf, normal_cdf, wilson_interval

BOOTSTRAP_ROUNDS = 200


def positive_class(y: np.ndarray) -> str | None:
    """The class precision and recall speak about: `1`/`true`/`yes` if present among two
    classes, else the rarer of the two; None for more than two classes."""
    classes, counts = np.unique(y[y != None].astype(str), return_counts=True)  # noqa: E711
    if classes.size != 2:
        return None
    for name in ("1", "true", "True", "yes", "positive"):
        if name in classes:
            return name
    return str(classes[int(np.argmin(counts))])


def classification_metrics(
    y: np.ndarray, yhat: np.ndarray, positive: str | None
) -> dict[str, float]:
    """Accuracy always; precision, recall and F1 of `positive` for binary tasks (NaN when a
    denominator is zero)."""
    y = y.astype(str)
    yhat = yhat.astype(str)
    out = {"accuracy": float(np.mean(y == yhat)) if y.size else math.nan}
    if positive is not None:
        tp = float(np.sum((yhat == positive) & (y == positive)))
        fp = float(np.sum((yhat == positive) & (y != positive)))
        fn = float(np.sum((yhat != positive) & (y == positive)))
        out["precision"] = tp / (tp + fp) if tp + fp else math.nan
        out["recall"] = tp / (tp + fn) if tp + fn else math.nan
        out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    return out


def is_score(output: np.ndarray, label_keys: np.ndarray) -> bool:
    """Whether numeric outputs are scores of a binary 0/1 label (in [0, 1], not all whole)."""
    values = output[~np.isnan(output)]
    classes = {str(k) for k in label_keys[label_keys != None]}  # noqa: E711
    return (
        values.size > 0
        and classes <= {"0", "1"}
        and float(values.min()) >= 0.0
        and float(values.max()) <= 1.0
        and bool(np.any(values != np.round(values)))
    )


def predicted_classes(batch: Batch, scores: bool) -> np.ndarray:
    """The predicted class of every prediction: the output itself, or `1` where a score is at
    least 0.5."""
    if not scores:
        return batch.class_keys("output")
    output = batch.output_numeric()
    keys = np.where(output >= 0.5, "1", "0").astype(object)
    keys[np.isnan(output)] = None
    return keys


def joint_class_codes(batch: Batch, scores: bool) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Every prediction's label and predicted class as codes into one vocabulary of class
    names, computed once per batch: (label codes, predicted codes, name -> code).

    An absent label or prediction is the name "None", as `str` makes of it: the per-window
    comparisons give what comparing `astype(str)` strings gave, on integers.
    """

    def make() -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        label_codes, label_names = batch.class_codes("label")
        if scores:
            output = batch.output_numeric()
            predicted = np.where(output >= 0.5, 1, 0).astype(np.int64)
            predicted[np.isnan(output)] = -1
            predicted_names: tuple[str, ...] = ("0", "1")
        else:
            predicted, predicted_names = batch.class_codes("output")
        vocabulary: dict[str, int] = {}

        def joint(codes: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
            # code -1 (absent) takes the last entry: the name "None"
            lookup = [vocabulary.setdefault(name, len(vocabulary)) for name in (*names, "None")]
            joined: np.ndarray = np.array(lookup, dtype=np.int64)[codes]
            return joined

        return joint(label_codes, label_names), joint(predicted, predicted_names), vocabulary

    return batch.memo(f"efficacy-classes-{scores}", make)


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive scores above a random negative
    (ties count half), from the Mann-Whitney U statistic. Missing scores are left out."""
    ok = ~np.isnan(scores)
    positive, scores = positive[ok], scores[ok]
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return math.nan
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    u = float(ranks[positive].sum()) - n1 * (n1 + 1) / 2.0
    return u / (n1 * n0)


def auc_drop_p_value(auc: float, reference: float, n1: int, n0: int) -> float:
    """One-sided p-value that the AUC is below the reference's, with the Hanley-McNeil
    standard error of an AUC estimated from `n1` positives and `n0` negatives."""
    q1, q2 = auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc)
    variance = (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0)
    if variance <= 0:
        return 1.0 if auc >= reference else 0.0
    return normal_cdf((auc - reference) / math.sqrt(variance))


def _f1(y: np.ndarray, yhat: np.ndarray, positive: str | int) -> float:
    tp = np.sum((yhat == positive) & (y == positive))
    wrong = np.sum((yhat == positive) != (y == positive))
    return float(2 * tp / (2 * tp + wrong)) if 2 * tp + wrong else math.nan


def efficacy_candidates(
    batch: Batch,
    baseline: Baseline,
    start: float,
    end: float,
    now: float,
    cfg: EfficacyCheck,
    rule: str,
    reference_id: str,
    alpha: float,
) -> list[Candidate]:
    """Candidates for the predictions of `[start, end)` with the labels known by `now`."""
    low, high = batch.bounds(start, end)
    total = high - low
    known = batch.label_time[low:high] <= now
    labels = batch.label[low:high]
    present = known & ~missing_mask(labels)
    k = int(present.sum())
    coverage = k / total if total else 0.0
    enough = total > 0 and coverage >= cfg.min_coverage and k >= cfg.min_labels
    where = f"coverage {coverage:.0%} of {total} predictions"

    def make(
        subject: str,
        value: float,
        reference: float,
        p_value: float | None,
        drop: float,
        interval: tuple[float, float] | None,
        effect: bool,
    ) -> Candidate:
        relation = "below" if effect else "not clearly below"
        summary = (
            f"{subject} {value:.3g} {relation} reference {reference:.3g} (drop {drop:.3g}) "
            f"over {k} labels, {where}"
            if enough
            else f"not judged: {where} (need {cfg.min_coverage:.0%} and {cfg.min_labels} labels)"
        )
        return Candidate(
            check="efficacy",
            subject=subject,
            statistic=subject,
            value=value,
            threshold=reference,
            effect=enough and effect,
            severity=cfg.severity,
            window_start=start,
            window_end=end,
            rule_hash=rule,
            summary=summary,
            n=k,
            p_value=p_value if enough else None,
            alpha=alpha,
            interval=interval,
            reference_id=reference_id,
        )

    if baseline.task == "regression":
        y = batch.label_numeric()[low:high][present]
        yhat = batch.output_numeric()[low:high][present]
        ok = ~np.isnan(y) & ~np.isnan(yhat)
        err = yhat[ok] - y[ok]
        out = []
        for subject, values, var in (
            ("mae", np.abs(err), baseline.abs_error_var),
            ("rmse", err**2, baseline.sq_error_var),
        ):
            ref = baseline.metrics[subject]
            if values.size < 2:
                out.append(make(subject, math.nan, ref, None, 0.0, None, False))
                continue
            mean = float(np.mean(values))
            value = mean if subject == "mae" else math.sqrt(mean)
            ref_mean = ref if subject == "mae" else ref**2
            from scipy.stats import ttest_ind_from_stats

            p_value = float(
                ttest_ind_from_stats(
                    mean,
                    math.sqrt(float(np.var(values, ddof=1))),
                    values.size,
                    ref_mean,
                    math.sqrt(var),
                    baseline.n,
                    equal_var=False,
                    alternative="greater",
                ).pvalue
            )
            rise = value / ref - 1.0 if ref > 0 else math.inf
            out.append(make(subject, value, ref, p_value, rise, None, rise >= cfg.min_drop))
        return out

    label_codes, predicted_codes, vocabulary = joint_class_codes(batch, baseline.scores)
    y = label_codes[low:high][present]
    yhat = predicted_codes[low:high][present]
    out = []
    # a class absent from the data gets a code no prediction has
    positive = None if baseline.positive is None else vocabulary.get(baseline.positive, -2)
    counts: dict[str, tuple[int, int]] = {"accuracy": (int(np.sum(y == yhat)), int(y.size))}
    if positive is not None:
        predicted = yhat == positive
        actual = y == positive
        counts["precision"] = (int(np.sum(predicted & actual)), int(np.sum(predicted)))
        counts["recall"] = (int(np.sum(predicted & actual)), int(np.sum(actual)))
    for subject, (hits, trials) in counts.items():
        ref = baseline.metrics.get(subject, math.nan)
        if trials == 0 or math.isnan(ref):
            out.append(make(subject, math.nan, ref, None, 0.0, None, False))
            continue
        value = hits / trials
        p_value = binomial_cdf(hits, trials, min(ref, 1.0))
        interval = wilson_interval(hits, trials, cfg.confidence)
        out.append(
            make(subject, value, ref, p_value, ref - value, interval, ref - value >= cfg.min_drop)
        )
    if baseline.scores and "roc_auc" in baseline.metrics:
        ref = baseline.metrics["roc_auc"]
        actual = y == vocabulary.get("1", -2)
        scores = batch.output_numeric()[low:high][present]
        value = roc_auc(actual, scores)
        n1, n0 = int(actual.sum()), int((~actual).sum())
        if math.isnan(value):
            out.append(make("roc_auc", math.nan, ref, None, 0.0, None, False))
        else:
            p_value = auc_drop_p_value(value, ref, n1, n0)
            out.append(
                make("roc_auc", value, ref, p_value, ref - value, None, ref - value >= cfg.min_drop)
            )
    if positive is not None and "f1" in baseline.metrics and y.size:
        ref = baseline.metrics["f1"]
        value = _f1(y, yhat, positive)
        # Resampling predictions with replacement only moves counts between the four cells
        # of the confusion matrix, so the bootstrap draws those counts directly.
        predicted, actual = yhat == positive, y == positive
        cells = np.array(
            [
                np.sum(predicted & actual),
                np.sum(predicted & ~actual),
                np.sum(~predicted & actual),
                np.sum(~predicted & ~actual),
            ],
            dtype=float,
        )
        rng = np.random.default_rng(12345)
        draws = rng.multinomial(int(y.size), cells / cells.sum(), size=BOOTSTRAP_ROUNDS)
        denominators = 2 * draws[:, 0] + draws[:, 1] + draws[:, 2]
        scores = 2 * draws[:, 0][denominators > 0] / denominators[denominators > 0]
        tail = (1.0 - cfg.confidence) / 2.0
        f1_interval = (
            (float(np.quantile(scores, tail)), float(np.quantile(scores, 1.0 - tail)))
            if scores.size
            else None
        )
        effect = (
            f1_interval is not None and ref - f1_interval[1] >= 0 and ref - value >= cfg.min_drop
        )
        out.append(make("f1", value, ref, None, ref - value, f1_interval, effect))
    return out
