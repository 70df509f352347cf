"""Start-up time of the ``bas`` command: ``--help`` of the top level and of some commands, against an
empty interpreter (``python -c pass``).

Each case runs in a fresh process (``python -m bas.cli ...``, what the ``bas`` script runs), ``--runs``
times in rotation, and the median wall time is reported. A second process per case checks that
``--help`` left ``torch`` out of ``sys.modules``.

    python benchmarks/cli_startup.py            # 15 runs per case; target: bas --help < 0.5 s
    python benchmarks/cli_startup.py --quick    # smoke run: 2 runs per case, no verdict
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

SMOKE = "smoke run: not a measurement"
TARGET_S = 0.5
CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "bas --help": [sys.executable, "-m", "bas.cli", "--help"],
    "bas train --help": [sys.executable, "-m", "bas.cli", "train", "--help"],
    "bas evaluate-maps --help": [sys.executable, "-m", "bas.cli", "evaluate-maps", "--help"],
}
CHECK = (
    "import sys\nfrom bas.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
    "print('torch' in sys.modules, file=sys.stderr)"
)


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def imports_torch(command: list[str]) -> bool:
    if "bas.cli" not in command:
        return False
    argv = command[command.index("bas.cli") + 1 :]
    done = subprocess.run(
        [sys.executable, "-c", CHECK.format(argv=argv)], capture_output=True, text=True, check=True
    )
    return done.stderr.strip().splitlines()[-1] == "True"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per case (default: 15)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 runs per case, no verdict")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 2
    load = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.runs):  # in rotation, so that a change of load hits every case alike
        for name, command in CASES.items():
            times[name].append(wall(command))
    base = statistics.median(times["python -c pass"])
    print(f"median wall time of {args.runs} runs, {sys.executable} (python {sys.version.split()[0]})")
    print(f"{'case':<28}{'wall s':>8}{'- python s':>12}  torch imported")
    torch_found = False
    for name, command in CASES.items():
        med = statistics.median(times[name])
        torch_loaded = imports_torch(command)
        torch_found |= torch_loaded
        print(f"{name:<28}{med:8.3f}{med - base:12.3f}  {'yes' if torch_loaded else 'no'}")
    print(f"1-min load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, {os.cpu_count()} CPUs")
    if args.quick:
        print(SMOKE)
        return 1 if torch_found else 0
    help_s = statistics.median(times["bas --help"])
    met = help_s < TARGET_S and not torch_found
    print(f"target: bas --help < {TARGET_S} s wall, no torch -> {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
