"""How long `chartlight --help` takes, against a bare `python -c pass` in the same run, and against
importing the service stack the CLI used to import before parsing (plugin.app, the CDS Hooks CLI).

    python bench/cli_startup.py [--runs 15]

Prints a table of medians over the runs and each command's ratio to the bare interpreter.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def commands() -> dict[str, list[str]]:
    script = Path(sys.executable).with_name("chartlight")
    chartlight = [str(script)] if script.is_file() else [sys.executable, "-c",
                                                         "from plugin.cli import main; main()"]
    return {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "chartlight --help": [*chartlight, "--help"],
        "chartlight sandbox up --help": [*chartlight, "sandbox", "up", "--help"],
        "import plugin.app, cds_hooks.cli (the old eager imports)": [
            sys.executable, "-c", "import plugin.app, cds_hooks.cli"],
    }


def median_seconds(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    rows = [(name, median_seconds(argv, args.runs)) for name, argv in commands().items()]
    baseline = rows[0][1]
    print(f"{'command':58} {'median s':>9} {'x baseline':>10}   ({args.runs} runs each)")
    for name, seconds in rows:
        print(f"{name:58} {seconds:9.3f} {seconds / baseline:10.1f}")


if __name__ == "__main__":
    main()
