"""Run one command under an address-space cap and a time limit; print one JSON line:
``{"returncode", "seconds", "peak_rss_mib", "stdout", "stderr"}``.

Peak RSS is `getrusage(RUSAGE_CHILDREN).ru_maxrss` of this wrapper: the largest resident set of the
command or any of its worker processes (each waited for), which is what a memory bomb inflates.
Usage: python measure.py CAP_BYTES TIMEOUT_SECONDS COMMAND...
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> None:
    cap, timeout, command = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    start = time.monotonic()
    try:
        done = subprocess.run(command, preexec_fn=limit, capture_output=True, timeout=timeout, check=False)
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        returncode, stdout, stderr = "timeout", expired.stdout or b"", expired.stderr or b""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({
        "returncode": returncode,
        "seconds": time.monotonic() - start,
        "peak_rss_mib": peak,
        "stdout": stdout.decode("utf-8", "replace"),
        "stderr": stderr.decode("utf-8", "replace"),
    }))


if __name__ == "__main__":
    main()
