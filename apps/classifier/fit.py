"""Refit the real-vs-animated models and rewrite their shipped parameters.

    python -m apps.classifier.fit [--seed 0] [--per-photo 24] [--splits 8] [--out PATH]

Builds the generated labelled set (``apps.classifier.realanimated.dataset``), fits the four models
on the training sources, scores them on the held-out sources, repeats the fit over ``--splits``
further source splits for a spread, writes the parameters (with those figures as provenance) and
prints a Markdown table for RESULTS.md. Seeded: the same arguments give the same file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apps.classifier.metrics import Report
from apps.classifier.realanimated.dataset import LABELS, Sample, build_dataset, split_heldout
from apps.classifier.realanimated.features import Features
from apps.classifier.realanimated.fitting import MODEL_NAMES, fit_models, sample_features, score
from apps.classifier.realanimated.models import PARAMS_PATH, FittedParams

ORIGINAL_ACCURACY = {"bytes": "53% / 58%", "bilateral": "69%", "colors": "77%", "combined": "-"}


def _subset(samples: Sequence[Sample], features: Sequence[Features], chosen: Sequence[Sample]) -> list[Features]:
    index = {id(s): i for i, s in enumerate(samples)}
    return [features[index[id(s)]] for s in chosen]


def fit_and_score(
    samples: Sequence[Sample], features: Sequence[Features], split_seed: int, provenance: dict[str, Any] | None = None
) -> tuple[FittedParams, dict[str, Report], list[Sample]]:
    train, test = split_heldout(samples, split_seed)
    params = fit_models(_subset(samples, features, train), [s.label for s in train], provenance)
    reports = score(params, _subset(samples, features, test), [s.label for s in test])
    return params, reports, test


def run(seed: int, per_photo: int, splits: int, out: Path | None) -> str:
    started = time.perf_counter()
    samples = build_dataset(seed, per_photo)
    features = sample_features(samples)
    params, reports, test = fit_and_score(samples, features, seed)
    spread: dict[str, list[float]] = {name: [] for name in MODEL_NAMES}
    for k in range(1, splits + 1):
        _, extra, _ = fit_and_score(samples, features, seed + k)
        for name in MODEL_NAMES:
            spread[name].append(extra[name].accuracy)
    held_groups = sorted({s.group for s in test if not s.group.startswith("drawing")})
    provenance: dict[str, Any] = {
        "command": f"python -m apps.classifier.fit --seed {seed} --per-photo {per_photo} --splits {splits}",
        "images": {label: sum(1 for s in samples if s.label == label) for label in LABELS},
        "heldout_images": {label: sum(1 for s in test if s.label == label) for label in LABELS},
        "heldout_sources": held_groups,
        "heldout": {name: reports[name].to_json() for name in MODEL_NAMES},
        "resplit_accuracy": {
            name: {"mean": round(statistics.fmean(v), 4), "stdev": round(statistics.pstdev(v), 4), "splits": len(v)}
            for name, v in spread.items()
            if v
        },
    }
    shipped = FittedParams(params.bytes, params.bilateral, params.colors, params.combined, provenance)
    if out is not None:
        shipped.save(out)
    lines = [
        f"generated set: {len(samples)} images {provenance['images']}; held out: "
        f"{len(test)} images {provenance['heldout_images']} from sources {', '.join(held_groups)} "
        "and a quarter of the drawings",
        "",
        "| model | held-out accuracy | precision (animated) | recall (animated) | re-split mean ± sd | original |",
        "|---|---|---|---|---|---|",
    ]
    for name in MODEL_NAMES:
        report = reports[name]
        cv = provenance["resplit_accuracy"].get(name)
        cv_text = f"{cv['mean']:.1%} ± {cv['stdev']:.1%} ({cv['splits']})" if cv else "-"
        lines.append(
            f"| {name} | {report.accuracy:.1%} | {report.precision('animated'):.1%} | "
            f"{report.recall('animated'):.1%} | {cv_text} | {ORIGINAL_ACCURACY[name]} |"
        )
    lines.append("")
    lines.append(f"fitted in {time.perf_counter() - started:.1f} s" + (f"; wrote {out}" if out else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apps.classifier.fit",
        description="Refit the real-vs-animated models and rewrite their shipped parameters.",
    )
    parser.add_argument("--seed", type=int, default=0, help="dataset and split seed (default 0)")
    parser.add_argument("--per-photo", type=int, default=24, help="variants per source photo (default 24)")
    parser.add_argument("--splits", type=int, default=8, help="extra source splits for the spread (default 8)")
    parser.add_argument("--out", type=Path, default=PARAMS_PATH, help=f"parameter file (default {PARAMS_PATH})")
    parser.add_argument("--dry-run", action="store_true", help="fit and report, write nothing")
    args = parser.parse_args(argv)
    print(run(args.seed, args.per_photo, args.splits, None if args.dry_run else args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
