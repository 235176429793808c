#!/usr/bin/python3
"""ci/perf-profile.py SHORT LONG IOS_SHORT IOS_LONG [TOP]: per-function instructions per I/O.

From two callgrind outputs of the same bdevperf command at two run lengths (ci/perf's pair),
prints the marginal cost per I/O of each function, self and inclusive (callgrind_annotate
--inclusive), as (count_long - count_short) / (ios_long - ios_short): start-up cancels out as
it does for ci/perf's whole-process figure. Inclusive counts of functions that call each other
overlap (a caller includes its callees): read them to split a path into parts (for example the
NVMe driver against the controller model), not to add them up.
"""
import re
import subprocess
import sys

COMPONENTS = ("strata::nvme::", "strata::hwemu::", "strata::bdev::", "strata::runtime::",
              "strata::env::", "strata::", "(anonymous namespace)::")
LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*?)\s*$")


def counts(path, inclusive):
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--auto=no", "--show-percs=no",
         f"--inclusive={'yes' if inclusive else 'no'}", path],
        check=True, capture_output=True, text=True).stdout
    res = {}
    started = False
    for line in out.splitlines():
        if not started:
            started = line.startswith("Ir") and "file:function" in line
            continue
        m = LINE.match(line)
        if not m or ":" not in m.group(2):
            continue
        name = m.group(2)
        name = re.sub(r"\s+\[[^\]]*\]$", "", name)  # object file
        name = name.split(":", 1)[1] if not name.startswith("???") else name
        res[name] = res.get(name, 0) + int(m.group(1).replace(",", ""))
    return res


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    short, long_, n1, n2 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    top = int(sys.argv[5]) if len(sys.argv) > 5 else 25
    if n2 <= n1:
        sys.exit("perf-profile: the long run completed no more I/O than the short one")
    # Self counts summed by component (the namespace of the function; C library and the rest
    # apart): a split that adds up, unlike inclusive counts.
    a, b = counts(short, False), counts(long_, False)
    groups = {}
    for f in set(a) | set(b):
        g = next((c for c in COMPONENTS if f.startswith(c)), "other")
        if g == "other" and re.match(r"^_*(mem|str)\w*", f):
            g = "libc mem*/str*"
        groups[g] = groups.get(g, 0) + (b.get(f, 0) - a.get(f, 0)) / (n2 - n1)
    print("# self instructions per I/O by component")
    for g, v in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"{v:10.1f}  {g}")
    for inclusive in (False, True):
        a, b = counts(short, inclusive), counts(long_, inclusive)
        per = {f: (b.get(f, 0) - a.get(f, 0)) / (n2 - n1) for f in set(a) | set(b)}
        print(f"# {'inclusive' if inclusive else 'self'} instructions per I/O (top {top})")
        for f, v in sorted(per.items(), key=lambda kv: -kv[1])[:top]:
            print(f"{v:10.1f}  {f[:150]}")


if __name__ == "__main__":
    main()
