#!/usr/bin/env python3
"""bench/parse.py: how long reading an Ansible inventory of N hosts takes.

Writes an INI inventory of N hosts in 20 groups under 2 parents, with
group_vars/ (files and folders) and host_vars/ for a tenth of the hosts,
then times `bootstrap inventory --list` and `ansible-inventory --list` on it
(the best of 5 runs each; the whole process: start, read, merge, print),
and `bootstrap apply --list-hosts` with the built-in runner playbook: all
that happens before the first connection (inventory, variables, every
host's program compiled), with its peak RSS.
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
    # What the built-in runner playbook needs to compile without a GitLab.
    with open(os.path.join(gv, "all", "runner.yml"), "w") as f:
        f.write("gitlab_url: https://gitlab.example.com\ndocker_install: distro\n"
                "gitlab_runner_install: upload\ngitlab_runner_binary: gitlab-runner\n")
    with open(os.path.join(root, "gitlab-runner"), "w") as f:
        f.write("#!/bin/sh\n")


def best(argv, cwd, reps=5):
    """The best wall time of `reps` runs, and the peak RSS (MiB) of the last."""
    times, rss = [], 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "ANSIBLE_CONFIG": "/nonexistent", "GITLAB_TOKEN": "glpat-bench"})
        _, status, usage = os.wait4(p.pid, 0)
        times.append(time.perf_counter() - t0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{argv[0]} failed in {cwd}")
        rss = usage.ru_maxrss / 1024
    return min(times), rss


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    bootstrap, venv = os.path.abspath(sys.argv[1]), sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as root:
        write_inventory(root, n)
        b, _ = best([bootstrap, "inventory", "-i", "hosts", "--list"], root)
        a, _ = best([os.path.join(venv, "bin", "ansible-inventory"), "-i", "hosts", "--list"], root, reps=3)
        c, rss = best([bootstrap, "apply", "-i", "hosts", "--list-hosts"], root)
    print(f"bench-parse: {n} hosts, 20 groups, group_vars and host_vars: "
          f"bootstrap inventory --list {b * 1000:.0f} ms, ansible-inventory --list {a * 1000:.0f} ms "
          f"({a / b:.0f}x); up to the first connection with the runner playbook "
          f"(apply --list-hosts) {c * 1000:.0f} ms, peak RSS {rss:.0f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
