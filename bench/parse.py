#!/usr/bin/env python3
"""bench/parse.py: how long reading an Ansible inventory of N hosts takes.

Writes an INI inventory of N hosts in 20 groups under 2 parents, with
group_vars/ (files and folders) and host_vars/ for a tenth of the hosts,
then times `bootstrap inventory --list` and `ansible-inventory --list` on it
(the best of 5 runs each; the whole process: start, read, merge, print).
Prints the figures and their ratio; asserts nothing (speed is reported, not
tested). Usage: bench/parse.py BOOTSTRAP VENV [N]
"""
import os
import subprocess
import sys
import tempfile
import time


def write_inventory(root, n):
    groups = 20
    lines = []
    for g in range(groups):
        lines.append(f"[runners{g:02d}]")
        for h in range(g, n, groups):
            lines.append(f"runner-{h:04d} ansible_host=10.0.{h // 250}.{h % 250 + 1} slot={h}")
        lines.append(f"[runners{g:02d}:vars]")
        lines.append(f"zone=z{g % 4}")
    lines.append("[fleet:children]")
    lines += [f"runners{g:02d}" for g in range(groups // 2)]
    lines.append("[canary:children]")
    lines += [f"runners{g:02d}" for g in range(groups // 2, groups)]
    lines.append("[all:vars]")
    lines.append("ansible_user=deploy")
    with open(os.path.join(root, "hosts"), "w") as f:
        f.write("\n".join(lines) + "\n")
    gv = os.path.join(root, "group_vars")
    os.makedirs(os.path.join(gv, "all"))
    with open(os.path.join(gv, "all", "main.yml"), "w") as f:
        f.write("runner_concurrent: 4\nrunner_tags: [dockerd, linux]\ndocker_log_max_size: 10m\n")
    for g in range(groups):
        with open(os.path.join(gv, f"runners{g:02d}.yml"), "w") as f:
            f.write(f"group_index: {g}\nrunner_name: \"{{{{ inventory_hostname }}}}-{g}\"\n")
    for p in ("fleet", "canary"):
        with open(os.path.join(gv, f"{p}.yml"), "w") as f:
            f.write(f"pool: {p}\n")
    hv = os.path.join(root, "host_vars")
    os.makedirs(hv)
    for h in range(0, n, 10):
        with open(os.path.join(hv, f"runner-{h:04d}.yml"), "w") as f:
            f.write("special: true\n")


def best(argv, cwd, reps=5):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                       env={**os.environ, "ANSIBLE_CONFIG": "/nonexistent"})
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    bootstrap, venv = os.path.abspath(sys.argv[1]), sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as root:
        write_inventory(root, n)
        b = best([bootstrap, "inventory", "-i", "hosts", "--list"], root)
        a = best([os.path.join(venv, "bin", "ansible-inventory"), "-i", "hosts", "--list"], root, reps=3)
    print(f"bench-parse: {n} hosts, 20 groups, group_vars and host_vars: "
          f"bootstrap inventory --list {b * 1000:.0f} ms, ansible-inventory --list {a * 1000:.0f} ms "
          f"({a / b:.0f}x)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
