#!/usr/bin/env python3
"""Median time from each system call's return to the next one's entry, per thread and kind
(read from `perf script` of raw_syscalls enter/exit events; see bench/gaps)."""
import collections
import re
import sys

NAMES = {0: "read", 1: "write", 19: "readv", 20: "writev", 44: "sendto", 45: "recvfrom",
         46: "sendmsg", 47: "recvmsg", 202: "futex", 232: "epoll_wait", 281: "epoll_pwait"}


def main():
    server, client = sys.argv[1], sys.argv[2]
    last = {}
    gaps = collections.defaultdict(list)
    line_re = re.compile(r"\s*(\d+)/(\d+)\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit):\s+NR (\d+)(.*)")
    for line in sys.stdin:
        m = line_re.match(line)
        if not m:
            continue
        pid, tid, t, kind, nr, rest = m.groups()
        who = "server" if pid == server else "client" if pid == client else pid
        name = NAMES.get(int(nr), nr)
        if kind == "exit":
            ret = re.search(r"=\s*(-?\d+)", rest)
            if ret and int(ret.group(1)) == -11:
                name += "(EAGAIN)"
            last[tid] = (float(t), name)
        elif tid in last:
            since, previous = last.pop(tid)
            gaps[(who, tid, previous, name)].append((float(t) - since) * 1e6)
    for key in sorted(gaps, key=lambda k: (k[0], k[1], -len(gaps[k]))):
        values = sorted(gaps[key])
        if len(values) < 50:
            continue
        who, tid, previous, name = key
        print(f"  {who:7} {tid:>8} {previous + ' -> ' + name:32} {len(values):7}  median {values[len(values) // 2]:5.2f} µs")


if __name__ == "__main__":
    main()
