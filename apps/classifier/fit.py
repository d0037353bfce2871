"""Refit the real-vs-animated models and rewrite their shipped parameters.

    python -m apps.classifier.fit [--seed 0] [--per-photo 24] [--splits 8] [--out PATH]
                                  [--corpus DIR | --no-corpus]

Builds the labelled set (``apps.classifier.realanimated.dataset``: the generated pictures plus the
hand-labelled Debian corpus of ``corpus.py``, fetched on first use), fits the four models on the
training sources, scores them on the held-out sources, repeats the fit over ``--splits`` further
source splits for a spread, scores each corpus family and each generated kind with the models
fitted on everything else (leave one family out: the closest this set comes to pictures from
nowhere in it), writes the parameters (with those figures as provenance) and prints Markdown tables
for RESULTS.md. Seeded: the same arguments and corpus give the same file.
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
from apps.classifier.realanimated.corpus import CorpusError, CorpusImage, default_cache, fetch
from apps.classifier.realanimated.corpus import images as corpus_images
from apps.classifier.realanimated.dataset import (
    CORPUS_GROUP,
    LABELS,
    Sample,
    build_dataset,
    corpus_family,
    split_heldout,
)
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


def family(sample: Sample) -> str:
    """The family a leave-one-out score holds out: a corpus family, or a kind of generated picture."""
    from_corpus = corpus_family(sample)
    if from_corpus is not None:
        return from_corpus
    if sample.group.startswith("drawing"):
        return "generated drawings"
    return "generated graphics" if sample.style == "graphic" else "generated photos"


def leave_family_out(samples: Sequence[Sample], features: Sequence[Features]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    families = [family(s) for s in samples]
    for name in sorted(set(families)):
        train = [i for i, f in enumerate(families) if f != name]
        test = [i for i, f in enumerate(families) if f == name]
        params = fit_models([features[i] for i in train], [samples[i].label for i in train])
        reports = score(params, [features[i] for i in test], [samples[i].label for i in test])
        out[name] = {"images": len(test), "label": samples[test[0]].label} | {
            model: round(reports[model].accuracy, 4) for model in MODEL_NAMES
        }
    return out


def run(seed: int, per_photo: int, splits: int, out: Path | None, corpus: Sequence[CorpusImage] = ()) -> str:
    started = time.perf_counter()
    samples = build_dataset(seed, per_photo, corpus=corpus)
    features = sample_features(samples)
    params, reports, test = fit_and_score(samples, features, seed)
    corpus_test = [s for s in test if corpus_family(s) is not None]
    corpus_reports = score(params, _subset(samples, features, corpus_test), [s.label for s in corpus_test]) if corpus_test else {}
    families = leave_family_out(samples, features)
    spread: dict[str, list[float]] = {name: [] for name in MODEL_NAMES}
    for k in range(1, splits + 1):
        _, extra, _ = fit_and_score(samples, features, seed + k)
        for name in MODEL_NAMES:
            spread[name].append(extra[name].accuracy)
    held_groups = sorted({s.group for s in test if not s.group.startswith(("drawing", CORPUS_GROUP))})
    provenance: dict[str, Any] = {
        "command": f"python -m apps.classifier.fit --seed {seed} --per-photo {per_photo} --splits {splits}"
        + ("" if corpus else " --no-corpus"),
        "corpus_images": len(corpus),
        "images": {label: sum(1 for s in samples if s.label == label) for label in LABELS},
        "heldout_images": {label: sum(1 for s in test if s.label == label) for label in LABELS},
        "heldout_sources": held_groups,
        "heldout": {name: reports[name].to_json() for name in MODEL_NAMES},
        "heldout_corpus": {name: corpus_reports[name].to_json() for name in corpus_reports},
        "leave_family_out": families,
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
        f"{len(test)} images {provenance['heldout_images']} from sources {', '.join(held_groups)}, "
        f"a quarter of the drawings and of each corpus family ({len(corpus_test)} corpus images)",
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
    if corpus_reports:
        lines += ["", "held-out corpus images only: " + ", ".join(
            f"{name} {corpus_reports[name].accuracy:.1%}" for name in MODEL_NAMES
        )]  # fmt: skip
    lines += ["", "| left-out family | images | label | " + " | ".join(MODEL_NAMES) + " |"]
    lines.append("|---|---|---|" + "---|" * len(MODEL_NAMES))
    for name, row in families.items():
        cells = " | ".join(f"{row[m]:.1%}" for m in MODEL_NAMES)
        lines.append(f"| {name} | {row['images']} | {row['label']} | {cells} |")
    means = " | ".join(f"{statistics.fmean(r[m] for r in families.values()):.1%}" for m in MODEL_NAMES)
    lines.append(f"| mean over families | | | {means} |")
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
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--corpus", type=Path, default=None, help="corpus cache folder (default: corpus.py's)")
    source.add_argument("--no-corpus", action="store_true", help="fit on the generated set alone")
    args = parser.parse_args(argv)
    images: list[CorpusImage] = []
    if not args.no_corpus:
        cache = args.corpus or default_cache()
        try:
            fetch(cache)
            images = corpus_images(cache)
        except CorpusError as exc:
            print(f"error: {exc} (or pass --no-corpus)", file=sys.stderr)
            return 1
    print(run(args.seed, args.per_photo, args.splits, None if args.dry_run else args.out, images))
    return 0


if __name__ == "__main__":
    sys.exit(main())
