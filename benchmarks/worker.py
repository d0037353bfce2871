"""One end of one benchmark run, as its own process: ``python -m benchmarks.worker receive|send``.

The runner starts the receiver in namespace B and the sender in namespace A (or both locally
behind the UDP relay) and talks to them in JSON lines: each worker prints events on stdout and
reads commands on stdin, so the runner can take its CPU and link counters exactly when timing
starts and stops.

receive: prints ``{"event": "ready", "info": {...}}`` once serving; on ``stop`` (or end of input)
prints ``{"event": "report", "received": [...], "stats": {...}}`` and exits.

send: reads the receiver's ``info`` as its first input line, opens the connection and sends the
warm-up image (untimed), prints ``{"event": "warm", ...}``, waits for ``go``, then sends the images
one at a time, each once the previous one's reply is in, and prints ``{"event": "done", ...}``.
An image whose reply has not come within ``--timeout`` seconds is marked ``timeout`` and the rest
``skipped``: the run ends there instead of hanging.

Times are ``time.monotonic()`` readings: one clock for every process on the machine, namespaces
included, so the runner can subtract a sender's submission time from a receiver's arrival time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
import time
import traceback
from typing import Any

from benchmarks.endpoints import JSON, EndpointModule, EndpointOptions, Receiver, Sender, load
from benchmarks.workloads import BenchImage, Workload, parse_sizes

__all__ = ["main"]


def emit(obj: JSON) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_line() -> str:
    line: str = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip()


class Verifier:
    """The receiver's handler: verify against the expected SHA-256, classify, answer with JSON."""

    def __init__(self, workload: Workload, classifiers: list[str]) -> None:
        self.expected = workload.digests()
        warmup = workload.warmup()
        self.expected[warmup.name] = warmup.sha256
        self.classifiers = classifiers
        self.received: dict[str, JSON] = {}
        self.duplicates = 0

    async def __call__(self, name: str, data: bytes, peer: str) -> JSON:
        received_at = time.monotonic()
        digest = hashlib.sha256(data).hexdigest()
        verified = self.expected.get(name) == digest
        record = {"name": name, "size": len(data), "received_at": received_at, "verified": verified, "peer": peer}
        if name in self.received:
            self.duplicates += 1
        else:
            self.received[name] = record
        reply: JSON = {"name": name, "verified": verified, "sha256": digest, "received_at": received_at}
        if self.classifiers:
            reply["classification"] = await asyncio.to_thread(_classify, self.classifiers, data)
        return reply


def _classify(names: list[str], data: bytes) -> JSON:
    from apps.classifier.registry import classify_with  # heavy imports, receiver only

    started = time.perf_counter()
    result = classify_with(names, data)
    result["elapsed_s"] = round(time.perf_counter() - started, 4)
    return result


def _options(args: argparse.Namespace) -> EndpointOptions:
    extra = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--option wants KEY=VALUE, not {item!r}")
        extra[key] = value
    return EndpointOptions(args.host, args.port, timeout=args.timeout, cc=args.cc, extra=extra)


async def receive(module: EndpointModule, args: argparse.Namespace, workload: Workload) -> int:
    verifier = Verifier(workload, [c for c in args.classify.split(",") if c and c != "none"])
    receiver: Receiver = await module.start_receiver(_options(args), verifier)
    emit({"event": "ready", "info": receiver.info})
    while (await read_line()) not in ("stop", ""):
        pass
    stats = receiver.stats()
    await receiver.stop()
    emit({"event": "report", "received": list(verifier.received.values()), "duplicates": verifier.duplicates,
          "stats": stats})
    return 0


async def _timed(sender: Sender, image: BenchImage, timeout: float) -> JSON:
    submitted = time.monotonic()
    record: JSON = {"name": image.name, "size": image.size, "submitted_at": submitted}
    try:
        sent = await asyncio.wait_for(sender.send(image), timeout)
    except TimeoutError:
        record.update(status="timeout", error=f"no reply within {timeout:g} s")
        return record
    record.update(replied_at=time.monotonic(), acked_s=sent.acked_s, stats=sent.stats)
    if sent.reply is None:
        record.update(status="failed", error=sent.error or "no reply")
        return record
    record["reply_received_at"] = sent.reply.get("received_at")
    record["verified"] = bool(sent.reply.get("verified"))
    record["classification"] = _top_answer(sent.reply.get("classification"))
    record["status"] = "ok" if record["verified"] else "corrupt"
    if sent.error:
        record["error"] = sent.error
    return record


def _top_answer(result: Any) -> JSON | None:
    if not isinstance(result, dict) or not result.get("results"):
        return None
    first = result["results"][0]
    return {"classifier": first.get("classifier"), "answer": first.get("answer"), "elapsed_s": result.get("elapsed_s")}


async def send(module: EndpointModule, args: argparse.Namespace, workload: Workload) -> int:
    peer: JSON = json.loads(await read_line() or "{}")
    sender = module.make_sender(_options(args), peer)
    started = time.monotonic()
    try:
        await asyncio.wait_for(sender.open(), args.timeout)
        warm = await _timed(sender, workload.warmup(), args.timeout)
    except TimeoutError:
        warm = {"status": "timeout", "error": f"the connection did not open within {args.timeout:g} s"}
    except Exception as exc:
        emit({"event": "error", "error": f"cannot open the connection: {type(exc).__name__}: {exc}"})
        return 1
    emit({"event": "warm", "setup_s": time.monotonic() - started, "status": warm["status"], "error": warm.get("error")})
    if warm["status"] != "ok" or (await read_line()) != "go":
        await sender.close()
        return 1
    results: list[JSON] = []
    images = workload.images()
    for image in images:
        record = await _timed(sender, image, args.timeout)
        results.append(record)
        if record["status"] == "timeout":
            break
    for image in images[len(results) :]:
        results.append({"name": image.name, "size": image.size, "status": "skipped",
                        "error": "not sent: an earlier image timed out"})
    emit({"event": "done", "images": results, "stats": sender.stats()})
    await sender.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("receive", "send"))
    parser.add_argument("--transport", required=True)
    parser.add_argument("--host", required=True, help="receive: address to listen on; send: the receiver's")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cc", help="TCP congestion control to pin on the sockets")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per image")
    parser.add_argument("--classify", default="colors", help="classifiers the receiver runs (comma list, or none)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="transport-specific setting (snip: a SessionConfig field)")
    parser.add_argument("--sizes", required=True)
    parser.add_argument("--format", default="png", choices=("png", "jpeg"))
    parser.add_argument("--workload-seed", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    workload = Workload(parse_sizes(args.sizes), args.format, args.workload_seed)
    module = load(args.transport)
    role = receive if args.role == "receive" else send
    try:
        return asyncio.run(role(module, args, workload))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        traceback.print_exc()
        emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 1


if __name__ == "__main__":
    sys.exit(main())
