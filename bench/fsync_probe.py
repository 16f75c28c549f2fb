#!/usr/bin/python3
"""fsync_probe.py DIR [--interval-ms MS] [--size BYTES] [--max-seconds S]

The disk's fdatasync latency beside a load, measured two ways, until SIGTERM
(or --max-seconds): write SIZE bytes to a file in DIR and fdatasync it, one
sync every MS milliseconds on a fixed schedule (sync k is due at start +
k * MS; when one runs late, the next starts as soon as it ends).

  service   each sync's own duration, write to return: what a closed loop
            of back-to-back syncs reports.
  arrival   from the moment a sync was due to its return: what work that
            arrives at a steady rate waits for the disk, a sync due while
            the disk stalls included (a closed loop counts a 10 ms stall
            once; on this schedule every sync due during it counts, as
            every message that arrives during it waits for it).

Prints one JSON line on exit: {"n", "interval_ms", "service": {"p50_ms",
"p99_ms", "max_ms"}, "arrival": {...}}.  Runs in a process of its own so
that the bench's Python threads do not delay its clock.
"""

import json
import os
import signal
import sys
import time


def percentiles(samples):
	samples = sorted(samples)
	if not samples:
		return {"p50_ms": None, "p99_ms": None, "max_ms": None}
	return {"p50_ms": samples[len(samples) // 2], "p99_ms": samples[int(len(samples) * 0.99)],
		"max_ms": samples[-1]}


def main():
	import argparse
	ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
	ap.add_argument("dir")
	ap.add_argument("--interval-ms", type=float, default=2.0)
	ap.add_argument("--size", type=int, default=4096)
	ap.add_argument("--max-seconds", type=float, default=600.0)
	a = ap.parse_args()
	stop = []
	signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
	path = os.path.join(a.dir, "fsync-probe-%d" % os.getpid())
	fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
	block = b"x" * a.size
	service, arrival = [], []
	interval = a.interval_ms / 1000.0
	start = time.monotonic()
	try:
		k = 0
		while not stop and len(service) < 1000000:
			due = start + k * interval
			now = time.monotonic()
			if now - start > a.max_seconds:
				break
			if now < due:
				time.sleep(due - now)
				if stop:
					break
			t = time.monotonic()
			os.write(fd, block)
			os.fdatasync(fd)
			end = time.monotonic()
			service.append((end - t) * 1000)
			arrival.append((end - due) * 1000)
			k += 1
			if os.fstat(fd).st_size > (64 << 20):
				os.ftruncate(fd, 0)
				os.lseek(fd, 0, os.SEEK_SET)
	finally:
		os.close(fd)
		os.unlink(path)
	print(json.dumps({"n": len(service), "interval_ms": a.interval_ms,
			  "service": percentiles(service), "arrival": percentiles(arrival)}), flush=True)
	return 0


if __name__ == "__main__":
	sys.exit(main())
