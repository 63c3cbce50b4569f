"""The unbounded fuzzing campaign: random HLO modules, numpy programs and mutated HLO text, for N minutes.

    python bench/fuzz.py --minutes 10                  # all three kinds, a random base seed
    python bench/fuzz.py --minutes 5 --kind hlo --seed 1234

Cases run in a worker subprocess (with faulthandler on), one at a time; the
parent reads one line per finished case. A worker that dies (a segfault, an
abort) or goes silent past `--case-timeout` counts as a crash or a hang for
the case it was running, and a new worker carries on with the next seed, so
nothing stops the campaign. Every failing case is saved to
tests/data/fuzz_regressions/ (`hlojit.testing.regressions`), where
tests/reliability/test_regressions.py replays it. Case `i` of a run uses
seed `base + i`, so a run is reproducible from the base seed it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "data" / "fuzz_regressions"
KINDS = ("hlo", "numpy", "parser")
CASE_NAMES = {"hlo": "HLO modules", "numpy": "numpy programs", "parser": "parser mutations"}


# --- the worker ---------------------------------------------------------------------------------------


def _corpus_texts() -> list[str]:
    return [p.read_text() for p in sorted((ROOT / "tests" / "data" / "hlo_corpus").glob("*.hlo"))]


def make_case(kind: str, seed: int, corpus: list[str]):
    """The case of `kind` for `seed` (deterministic)."""
    if kind == "hlo":
        from hlojit.testing.hlo_strategies import random_case

        return random_case(seed)
    if kind == "numpy":
        from hlojit.testing.numpy_strategies import random_program

        return random_program(seed)
    from hlojit.testing.source import RandomSource
    from hlojit.testing.text_mutations import mutate

    source = RandomSource(seed)
    return mutate(corpus[source.integer(0, len(corpus) - 1)], source)


def run_case(kind: str, case) -> None:
    """Raise AssertionError (or anything) when the case fails."""
    if kind == "hlo":
        from hlojit.testing.oracle import check_case

        check_case(case)
    elif kind == "numpy":
        from hlojit.testing.numpy_strategies import check_program

        check_program(case)
    else:
        from hlojit.testing.text_mutations import check_parser_input

        check_parser_input(case)


def save_case(kind: str, case, out: Path, name: str) -> Path:
    from hlojit.testing import regressions

    if kind == "hlo":
        return regressions.save_hlo_case(case, out, name)
    if kind == "numpy":
        return regressions.save_numpy_program(case, out, name)
    return regressions.save_parser_input(case, out, name)


def worker(kind: str, first_seed: int, out: Path) -> None:
    """Run cases from `first_seed` on until killed; one JSON line per finished case on stdout."""
    import faulthandler
    import warnings

    faulthandler.enable()
    warnings.simplefilter("ignore")
    os.environ.setdefault("HLOJIT_DISABLE_CACHE", "1")
    corpus = _corpus_texts()
    seed = first_seed
    while True:
        started = time.perf_counter()
        record = {"seed": seed}
        try:
            case = make_case(kind, seed, corpus)
        except Exception as error:  # a generator bug: reported, not saved (there is no case)
            record.update(status="generator", message=f"{type(error).__name__}: {error}"[:2000])
        else:
            try:
                run_case(kind, case)
                record["status"] = "ok"
            except Exception as error:
                record.update(status="fail", message=f"{type(error).__name__}: {error}"[:4000])
                record["saved"] = str(save_case(kind, case, out, f"{kind}_seed{seed}"))
        record["seconds"] = round(time.perf_counter() - started, 3)
        print(json.dumps(record), flush=True)
        seed += 1


# --- the campaign ---------------------------------------------------------------------------------------


class Campaign:
    def __init__(self, kinds: list[str], base_seed: int, out: Path, case_timeout: float, log: Path):
        self.kinds = kinds
        self.out = out
        self.case_timeout = case_timeout
        self.log = log
        self.next_seed = {kind: base_seed for kind in kinds}
        self.counts = {kind: Counter() for kind in kinds}
        self.saved: list[str] = []
        self.messages: list[str] = []

    def run_kind(self, kind: str, deadline: float) -> None:
        """Run workers of `kind` until `deadline`, restarting after each crash or hang."""
        corpus = _corpus_texts()
        while time.time() < deadline:
            seed = self.next_seed[kind]
            with open(self.log, "a") as log:
                process = subprocess.Popen(
                    [sys.executable, __file__, "--worker", kind, "--seed", str(seed), "--out", str(self.out)],
                    stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT,
                )
                outcome = self._follow(kind, process, deadline)
            if outcome is None:
                continue
            status, crashed_seed = outcome
            self.counts[kind][status] += 1
            self.counts[kind]["tried"] += 1
            case = make_case(kind, crashed_seed, corpus)
            path = save_case(kind, case, self.out, f"{kind}_seed{crashed_seed}_{status}")
            self.saved.append(str(path))
            self.messages.append(f"{kind} seed {crashed_seed}: {status} (see {self.log})")
            self.next_seed[kind] = crashed_seed + 1

    def _follow(self, kind: str, process: subprocess.Popen, deadline: float):
        """Read the worker's lines; None when the deadline passed, else (crash|hang, seed) when it died."""
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        last_progress = time.time()
        try:
            while True:
                now = time.time()
                if now >= deadline:
                    return None
                if now - last_progress > self.case_timeout:
                    return "hang", self.next_seed[kind]
                if not selector.select(timeout=min(1.0, deadline - now)):
                    if process.poll() is not None:
                        return "crash", self.next_seed[kind]
                    continue
                line = process.stdout.readline()
                if not line:
                    process.wait()
                    return "crash", self.next_seed[kind]
                if not line.startswith('{"seed"'):
                    continue  # anything else the code under test printed
                record = json.loads(line)
                last_progress = time.time()
                self._record(kind, record)
                self.next_seed[kind] = record["seed"] + 1
        finally:
            selector.close()
            if process.poll() is None:
                process.kill()
                process.wait()

    def _record(self, kind: str, record: dict) -> None:
        counts = self.counts[kind]
        counts["tried"] += 1
        counts[record["status"]] += 1
        if record["status"] != "ok":
            first_line = record.get("message", "").splitlines()[0] if record.get("message") else ""
            self.messages.append(f"{kind} seed {record['seed']}: {record['status']}: {first_line[:300]}")
            if "saved" in record:
                self.saved.append(record["saved"])

    def report(self, minutes: float, base_seed: int) -> int:
        print(f"\nfuzz campaign: {minutes:g} min, base seed {base_seed}")
        print(f"{'kind':18} {'tried':>7} {'passed':>7} {'failures':>9} {'crashes':>8} {'hangs':>6} {'gen-bugs':>9}")
        bad = 0
        for kind in self.kinds:
            c = self.counts[kind]
            print(f"{CASE_NAMES[kind]:18} {c['tried']:7} {c['ok']:7} {c['fail']:9} {c['crash']:8} {c['hang']:6} "
                  f"{c['generator']:9}")
            bad += c["fail"] + c["crash"] + c["hang"] + c["generator"]
        for message in self.messages:
            print("  " + message)
        if self.saved:
            print(f"saved {len(self.saved)} regression(s) to {self.out}:")
            for path in self.saved:
                print("  " + path)
        return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="how long to run (split across the kinds)")
    parser.add_argument("--kind", choices=(*KINDS, "all"), default="all")
    parser.add_argument("--seed", type=int, default=None, help="base seed (default: random, printed)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where failing cases are saved")
    parser.add_argument("--case-timeout", type=float, default=120.0, help="seconds before a silent case is a hang")
    parser.add_argument("--log", type=Path, default=Path("/tmp/hlojit-fuzz-worker.log"),
                        help="the workers' stderr (faulthandler tracebacks of crashes)")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.seed, args.out)
        return 0
    base_seed = args.seed if args.seed is not None else random.randrange(2**31)
    kinds = list(KINDS) if args.kind == "all" else [args.kind]
    # Time split: the HLO generator is the broadest and slowest per case.
    shares = {"hlo": 0.6, "numpy": 0.3, "parser": 0.1}
    total = sum(shares[k] for k in kinds)
    campaign = Campaign(kinds, base_seed, args.out, args.case_timeout, args.log)
    start = time.time()
    for kind in kinds:
        campaign.run_kind(kind, time.time() + args.minutes * 60 * shares[kind] / total)
    return campaign.report((time.time() - start) / 60, base_seed)


if __name__ == "__main__":
    sys.exit(main())
