"""`snip classify`: run a classifier on image files, score one on a labelled folder, or list them.

    snip classify IMAGE... --model NAME[,NAME] [--device DEV] [--top-k K]   -> JSON
    snip classify --evaluate DIR --model NAME [--json]                       -> accuracy, precision,
                                                                                recall, confusion matrix
    snip classify --list [--json]

Exit status: 0, or 1 when some image got an error result (the JSON still says which), or 2 for a
usage problem (unknown model, missing file, weights not available). Heavy imports (torch, OpenCV)
happen only once a command runs, so `snip --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="classify images (animal describer, real vs animated) or score a classifier on a folder",
        description=(
            "Classify image files and print JSON, score a classifier on DIR/<label>/* with --evaluate, or list the classifiers with --list."
        ),
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files to classify")
    parser.add_argument("--model", "-m", metavar="NAME[,NAME]", help="classifier(s): see --list")
    parser.add_argument("--list", action="store_true", help="list the classifiers and exit")
    parser.add_argument("--evaluate", metavar="DIR", type=Path, help="score --model on DIR/<label>/<images>")
    parser.add_argument("--device", default="auto", help="torch device: auto (CUDA if present), cpu, cuda, cuda:1")
    parser.add_argument("--top-k", type=int, metavar="K", help="animal: alternatives to list (default 5)")
    parser.add_argument("--threshold", type=float, metavar="P", help="animal: min. probability, 0..1 (0.2)")
    parser.add_argument("--arch", help="animal: torchvision architecture (default convnext_tiny)")
    parser.add_argument("--weights", metavar="FILE", help="animal: your own model (state_dict/TorchScript/safetensors)")
    parser.add_argument("--labels", metavar="FILE", help="animal: labels JSON for --weights (original format)")
    parser.add_argument("--input-size", type=int, metavar="PX", help="animal: input side for --weights (224)")
    parser.add_argument("--trust-pickle", action="store_true", help="animal: allow a pickled whole model (runs code)")
    parser.add_argument("--no-download", action="store_true", help="animal: never try to download weights")
    parser.add_argument("--params", metavar="FILE", help="real-vs-animated: fitted parameter file to use")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per forward pass (8)")
    parser.add_argument("--json", action="store_true", help="--list / --evaluate: print JSON")
    parser.set_defaults(func=run)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "device": args.device,
        "top_k": args.top_k,
        "threshold": args.threshold,
        "arch": args.arch,
        "model_path": args.weights,
        "labels_path": args.labels,
        "input_size": args.input_size,
        "trust_pickle": True if args.trust_pickle else None,
        "download": False if args.no_download else None,
        "params_path": args.params,
    }


def _weights_status() -> str:
    try:
        from apps.classifier.animal.weights import imagenet_spec, missing_message

        spec = imagenet_spec()
        return f"weights present: {spec.path}" if spec.path.is_file() else missing_message(spec)
    except Exception as exc:  # listing must work without torch installed
        return f"unavailable: {exc}"


def _list(as_json: bool) -> int:
    from apps.classifier import registry

    rows = [(name, registry.describe(name)) for name in registry.available()]
    status = _weights_status()
    if as_json:
        listing = [{"name": n, "description": d} | ({"status": status} if n == "animal" else {}) for n, d in rows]
        print(json.dumps(listing, indent=2))
        return 0
    width = max(len(name) for name, _ in rows) + 2
    for name, description in rows:
        print(f"{name:<{width}}{description}")
        if name == "animal":
            print(f"{'':<{width}}{status}")
    return 0


def _check_options(names: list[str], args: argparse.Namespace) -> None:
    from apps.cli import CommandError

    options = _options(args)
    animal_only = ("top_k", "threshold", "arch", "model_path", "labels_path", "input_size", "trust_pickle", "download")
    if "animal" not in names:
        stray = [f"--{k.replace('_', '-')}" for k in animal_only if options[k] is not None]
        stray = [s.replace("--model-path", "--weights").replace("--labels-path", "--labels") for s in stray]
        if stray:
            raise CommandError(f"{', '.join(stray)} only apply to --model animal")
    if options["params_path"] is not None and not set(names) - {"animal"}:
        raise CommandError("--params only applies to the real-vs-animated models")


def _create(names: list[str], args: argparse.Namespace) -> list[Any]:
    from apps.classifier import registry
    from apps.classifier.base import ClassifierError
    from apps.cli import CommandError

    options = _options(args)
    created = []
    for name in names:
        accepted = registry.accepted_options(name)
        chosen = {k: v for k, v in options.items() if k in accepted and v is not None}
        try:
            created.append(registry.create(name, **chosen))
        except ClassifierError as exc:
            raise CommandError(str(exc)) from None
    return created


def run(args: argparse.Namespace) -> int:
    from apps.classifier import registry
    from apps.classifier.base import UnknownClassifierError
    from apps.cli import CommandError

    if args.list:
        return _list(args.json)
    if not args.model:
        raise CommandError(f"choose a classifier with --model NAME (one of {', '.join(registry.available())})")
    if args.batch_size < 1:
        raise CommandError("--batch-size must be at least 1")
    try:
        names = [registry.canonical(n) for n in args.model.split(",") if n.strip()]
    except UnknownClassifierError as exc:
        raise CommandError(str(exc)) from None
    if not names:
        raise CommandError("--model needs at least one classifier name")
    _check_options(names, args)
    if args.evaluate is not None:
        if args.images:
            raise CommandError("give either IMAGE files or --evaluate DIR, not both")
        if len(names) != 1:
            raise CommandError("--evaluate scores one classifier at a time")
        return _evaluate(_create(names, args)[0], args)
    if not args.images:
        raise CommandError("no images given (or use --evaluate DIR / --list)")
    for image in args.images:
        if not Path(image).is_file():
            raise CommandError(f"cannot read {image}: no such file")
    classifiers = _create(names, args)
    per_image: list[list[dict[str, Any]]] = []
    # Read a batch at a time so a long list of files never sits in memory at once.
    for start in range(0, len(args.images), args.batch_size):
        blobs = []
        for image in args.images[start : start + args.batch_size]:
            try:
                blobs.append(Path(image).read_bytes())
            except OSError as exc:
                raise CommandError(f"cannot read {image}: {exc.strerror or exc}") from None
        by_model = [classifier.classify_batch(blobs) for classifier in classifiers]
        per_image.extend([results[i] for results in by_model] for i in range(len(blobs)))
    output = [
        {"image": image, **results[0]} if len(classifiers) == 1 else {"image": image, "results": results}
        for image, results in zip(args.images, per_image, strict=True)
    ]
    print(json.dumps(output[0] if len(output) == 1 else output, indent=2))
    return 1 if any("error" in result for results in per_image for result in results) else 0


def _evaluate(classifier: Any, args: argparse.Namespace) -> int:
    from apps.classifier.evaluate import evaluate_folder
    from apps.cli import CommandError

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    try:
        score = evaluate_folder(classifier, args.evaluate, batch_size=args.batch_size, progress=progress)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(score.to_json(), indent=2) if args.json else f"{classifier.name} on {args.evaluate}\n" + score.render())
    return 0
