"""The long command-line fuzz (issue 21): thousands of generated `tilesim` command lines, in process, by hand.

    python benchmarks/fuzz_cli.py [--cases 4000] [--seed 0] [--limit-s 60]

The generator is tests/test_fuzz.py's cli_cases (arguments, --set values, arch YAML, topology CSV, HF config.json
files; CI runs a short profile of it). Each case runs tilesim.cli.main.main(argv) with stdout and stderr captured
(SystemExit caught); prints the exit statuses, the problems (an exit status other than 0 and 2, a traceback, an
exit 2 without its one-line error) with the first example of each, and cases slower than --limit-s.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hypothesis import HealthCheck, given, seed, settings
from test_fuzz import CaseTimeout, cli_cases, cli_problem, run_cli_case


def main() -> None:
    """Run the cases and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit-s", type=int, default=60, help="a case running longer is stopped and counted as slow")
    args = p.parse_args()
    codes, problems, first, slow = Counter(), Counter(), {}, []
    root = Path(tempfile.mkdtemp(prefix="tilesim-fuzz-"))
    start = time.time()

    @seed(args.seed)
    @settings(max_examples=args.cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(cli_cases())
    def one(case):
        argv, files = case
        folder = Path(tempfile.mkdtemp(dir=root))
        try:
            code, _, err = run_cli_case(argv, files, folder, args.limit_s)
        except CaseTimeout:
            slow.append(argv)
            codes["slow"] += 1
            return
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        codes[code] += 1
        problem = cli_problem(code, err)
        if problem:
            problems[problem] += 1
            first.setdefault(problem, (argv, {k: v[:200] for k, v in files.items()}, err.strip()[-600:]))

    one()
    shutil.rmtree(root, ignore_errors=True)
    total = sum(codes.values())
    print(f"{total} generated command lines in {time.time() - start:.0f} s (seed {args.seed})")
    print(f"{'exit status':<14} {'cases':>7}")
    for code, n in sorted(codes.items(), key=lambda kv: str(kv[0])):
        print(f"{code!s:<14} {n:>7}")
    print(f"problems: {sum(problems.values())} (exit status other than 0 and 2, traceback, exit 2 without a one-line "
          "error)")
    for problem, n in problems.items():
        argv, files, err = first[problem]
        print(f"  {problem}: {n}; first: {argv} files {files}\n    {err}")
    for argv in slow[:5]:
        print(f"  slower than {args.limit_s} s: {argv}")


if __name__ == "__main__":
    main()
