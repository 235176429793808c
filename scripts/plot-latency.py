#!/usr/bin/python3
"""Plot bdevperf's latency histograms to a PNG (Debian: python3-matplotlib).

Input: either bdevperf's JSON results (--json-output FILE; the perform_tests reply has the same
shape) with Strata's per-job "latency_histogram" buckets, or bdevperf's text output with -ll
(SPDK's "Latency histogram" section: "start - end: cumulative% (count)" lines under each
"Job: ..." heading; SPDK's own bdevperf prints the same lines).

  scripts/plot-latency.py results.json -o latency.png
  bdevperf ... -ll | tee out.txt; scripts/plot-latency.py out.txt -o latency.png
  scripts/plot-latency.py --summary results.json      # text only, no matplotlib needed
"""
import argparse
import json
import re
import sys

BUCKET = re.compile(r"^\s*([\d.]+)\s*-\s*([\d.]+):\s*([\d.]+)%\s*\(\s*(\d+)\)\s*$")
JOB = re.compile(r"^\s*Job:\s*(\S+)\s*\(Core Mask (\S+?)\)")


def read_jobs(path):
    """[(label, [(start_us, end_us, count), ...]), ...] from a JSON result or -ll text."""
    text = open(path).read()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    jobs = []
    if isinstance(doc, dict):
        for r in doc.get("results", []):
            h = r.get("latency_histogram")
            if not h:
                continue
            jobs.append(("%s (%s)" % (r.get("job"), r.get("core_mask")),
                         [(float(a), float(b), int(c)) for a, b, c in h.get("buckets", [])]))
        return jobs
    in_hist, cur = False, None
    for line in text.splitlines():
        if "Latency histogram" in line:
            in_hist = True
            continue
        if not in_hist:
            continue
        m = JOB.match(line)
        if m:
            cur = ("%s (%s)" % (m.group(1), m.group(2)), [])
            jobs.append(cur)
            continue
        m = BUCKET.match(line)
        if m and cur is not None:
            cur[1].append((float(m.group(1)), float(m.group(2)), int(m.group(4))))
    return jobs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="bdevperf JSON results or text output with -ll")
    ap.add_argument("-o", "--output", default="latency.png", help="PNG to write (default latency.png)")
    ap.add_argument("--summary", action="store_true", help="print each job's I/O count and median, no plot")
    args = ap.parse_args()
    jobs = [j for j in read_jobs(args.input) if j[1]]
    if not jobs:
        sys.exit("plot-latency: no latency histogram in %s (run bdevperf with -ll or --json-output)" % args.input)
    if args.summary:
        for label, buckets in jobs:
            total = sum(c for _, _, c in buckets)
            seen, median = 0, 0.0
            for _, end, c in buckets:
                seen += c
                if seen * 2 >= total:
                    median = end
                    break
            print("job %s: %d I/Os, median <= %.3f us" % (label, total, median))
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot-latency: matplotlib is missing (Debian: apt-get install python3-matplotlib)")
    fig, (ax, cx) = plt.subplots(2, 1, figsize=(10, 8))
    for label, buckets in jobs:
        total = sum(c for _, _, c in buckets)
        mids = [(a + b) / 2 for a, b, _ in buckets]
        # Bucket widths differ (SPDK's log-linear buckets): plot the share per bucket.
        ax.plot(mids, [100.0 * c / total for _, _, c in buckets], marker=".", linewidth=1, label=label)
        cum, run = [], 0
        for _, _, c in buckets:
            run += c
            cum.append(100.0 * run / total)
        cx.plot([b for _, b, _ in buckets], cum, linewidth=1, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency (us)")
    ax.set_ylabel("I/Os in bucket (%)")
    ax.set_title("bdevperf latency histogram")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    cx.set_xscale("log")
    cx.set_xlabel("latency (us)")
    cx.set_ylabel("cumulative (%)")
    cx.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print("plot-latency: wrote %s (%d jobs)" % (args.output, len(jobs)))


if __name__ == "__main__":
    main()
