#!/usr/bin/env python3
"""Instructions between system calls: what a request's critical path costs.

`SEGMENTS=1 bench/callgrind ...` runs the process under callgrind with a dump before every
`recv`, `send`, `writev` and `epoll_wait`, so each dump file holds the instructions from one system
call to the next. This script reads those dumps (`bench/segments.py DIR [TOP] [PATTERN...]`) and
prints, per kind of segment (`recv -> send`: from a read's return to the next send), how many there
were, their median and mean instruction counts, and the functions that took them (exclusive
counts, averaged per segment).

At one connection a segment that ends in a send or writev to the next hop (`recv -> send`,
`recv -> writev`, `epoll_wait -> recv`) is on the request's critical path: the next process waits
for it. A segment that starts after such a write (`send -> epoll_wait`) runs while the next hop
works and costs latency only when it is still running when the answer comes back.

PATTERNs split a kind of segment by a function it contains: the server's two `recv -> send`
segments (the visitor's request to the OPEN, the RESPONSE to the visitor) are told apart by
`Connection::open` and `visitor_h1::encode` (the visitor head's writer; bench/callgrind passes those for
the server).
"""
import collections
import glob
import os
import re
import sys


def read_dump(path):
    """(trigger, total, {function: exclusive instructions}) of one callgrind dump."""
    trigger, total, costs, names = "dump", 0, collections.Counter(), {}
    current, after_call = None, False
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("desc: Trigger:"):
                trigger = line.split("=")[-1].strip() if "=" in line else "dump"
            elif line.startswith("summary:"):
                total = int(line.split()[1])
            elif line.startswith("fn="):
                m = re.match(r"fn=\((\d+)\)(?: (.*))?", line.strip())
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                current, after_call = names.get(m.group(1), m.group(1)), False
            elif line.startswith("cfn="):
                m = re.match(r"cfn=\((\d+)\) (.*)", line.strip())
                if m:
                    names[m.group(1)] = m.group(2)
            elif line.startswith("calls="):
                after_call = True  # the next cost line is the call's inclusive cost
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if after_call:
                    after_call = False
                elif len(parts) >= 2 and current is not None:
                    costs[current] += int(parts[1])
    return trigger, total, costs


def main():
    out = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    patterns = sys.argv[3:]
    files = glob.glob(os.path.join(out, "callgrind.out.*.*"))
    files.sort(key=lambda p: int(p.rsplit(".", 1)[1]))
    segments = collections.defaultdict(list)
    previous = None
    for path in files:
        trigger, total, costs = read_dump(path)
        label = f"{previous or '?'} -> {trigger}"
        hit = next((p for p in patterns if any(p in name for name in costs)), None)
        if hit:
            label += f" [{hit}]"
        if total:  # dumps before the instrumentation started are empty
            segments[label].append((total, costs))
        previous = trigger
    for label, runs in sorted(segments.items(), key=lambda kv: -sum(t for t, _ in kv[1])):
        if len(runs) < 5:
            continue  # start-up, shutdown, the odd log line
        totals = sorted(t for t, _ in runs)
        summed = collections.Counter()
        for _, costs in runs:
            summed.update(costs)
        print(f"== {label}: {len(runs)} segments, median {totals[len(totals) // 2]}, mean {sum(totals) // len(totals)}")
        for name, count in summed.most_common(top):
            print(f"   {count // len(runs):7}  {name[:150]}")


if __name__ == "__main__":
    main()
