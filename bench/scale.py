"""bench/run --scale: one controller, up to 1,000 hosts, simulated on this machine.

A few test hosts (default 10, bb100..) each answer sshd on many addresses of their own
(`testhost up --extra-addrs`); the inventory names every address as a host, interleaved so that
any N spreads evenly over the test hosts. The workload is workloads/scale.yml (the four tasks,
per inventory host). The hosts are converged once (N = the largest, the largest --forks), then,
for every N and --forks, a converged `apply` and a `check` are timed. Per run: wall time,
controller CPU (cpuacct cgroup), peak RSS (GNU time), the time from start to the first
`host_start` event (the first connection), round trips per host, the machine's load average.
Before any of it: everything up to the first connection at the largest N (`apply --list-hosts`,
the best of 5) and bench/parse.py (1,000 hosts, the runner playbook). After the grid, at
--peers-n (100), bootstrap, ansible-playbook (the same playbook) and pyinfra (scale.pyinfra.py)
side by side on the same converged hosts, --peers-reps rounds in a rotating order (see peers()).
Results: scale.md, scale-samples.csv, scale-run.json, scale.png in --out. Figures and ratios are
printed; nothing is asserted on time.
"""
import csv
import datetime
import json
import os
import subprocess
import sys
import threading
import time

SCALE_FIELDS = ["run_id", "kind", "tool", "n", "forks", "round", "exit", "wall_s", "first_conn_s", "cpu_s", "cpu_ms_per_host",
                "maxrss_mib", "pss_peak_mib", "changed", "failed", "hosts_seen", "rt_min", "rt_max", "guests_cpu_s", "other_cpu_s",
                "load1", "load5", "builders", "started"]


def fit(xs, ys):
    """Least-squares line y = a + b x -> (a, b, r2)."""
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    return a, b, (1 - ss_res / ss_tot) if ss_tot else 1.0


def inventory_hosts(fleet, names, n):
    """N inventory hosts h0000.., the i-th on test host i mod len(names): any N spreads evenly."""
    out = []
    for i in range(n):
        g = fleet.hosts[names[i % len(names)]]
        out.append((f"h{i:04d}", g["extra"][i // len(names)], g["hostkey"]))
    return out


def write_access(d, key, hosts):
    os.makedirs(d, exist_ok=True)
    kh, inv = os.path.join(d, "known_hosts"), os.path.join(d, "inventory.yml")
    with open(kh, "w") as f:
        f.writelines(f"{addr} {hk}\n" for _, addr, hk in hosts)
    with open(inv, "w") as f:
        f.write(f"all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {key}\n  hosts:\n")
        f.writelines(f"    {name}: {{ansible_host: {addr}}}\n" for name, addr, _ in hosts)
    return kh, inv


def cg_pss_kib(cg):
    """The summed PSS (proportional set size: shared pages split among the processes that share
    them) of every process in a cgroup, KiB."""
    total = 0
    for pid in open(os.path.join(cg, "cgroup.procs")).read().split():
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def run_one(b, session, argv, env, cwd, log_path, timeout, guest_names, fleet, stream=True):
    """One tool invocation in the session's cgroup. stream (bootstrap): its JSON events read as
    they come, the time of the first host_start event is the time to the first connection;
    otherwise (the peers) the output goes to the log file (no pipe that ssh ControlPersist
    masters could hold open). Besides GNU time's peak RSS (the largest single process of the
    tree) the summed PSS of the cgroup's processes is sampled every 0.25 s: for ansible-playbook
    that counts its forks (and the ssh processes) together."""
    timefile = log_path + ".time"
    cmd = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', session.cg,
           "/usr/bin/time", "-v", "-o", timefile, *argv]
    cg0 = b.cg_usage(session.cg)
    guests0 = fleet.guests_cpu_ns(guest_names)
    busy0, _ = b.cpu_times()
    load = os.getloadavg()
    builders = b.builders_running()
    first = [None]
    lines = []
    pss = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.25):
            try:
                pss[0] = max(pss[0], cg_pss_kib(session.cg))
            except OSError:
                pass
    sampler = threading.Thread(target=sample, daemon=True)
    timer = threading.Timer(timeout, session.kill_all)
    t0 = time.monotonic()
    if stream:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                             stdin=subprocess.DEVNULL, text=True, bufsize=1)
    else:
        logf = open(log_path, "w")
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    timer.start()
    sampler.start()
    if stream:
        for line in p.stdout:
            if first[0] is None and '"host_start"' in line:
                first[0] = time.monotonic() - t0
            lines.append(line)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    timer.cancel()
    done.set()
    sampler.join()
    if not stream:
        logf.close()
        with open(log_path) as f:
            lines = [f.read()]
    busy1, _ = b.cpu_times()
    cg1 = b.cg_usage(session.cg)
    guests1 = fleet.guests_cpu_ns(guest_names)
    out = "".join(lines)
    if stream:
        with open(log_path, "w") as f:
            f.write(out)
    tool_cpu = (cg1[0] - cg0[0]) / 1e9
    guests_cpu = (guests1 - guests0) / 1e9
    machine_cpu = (busy1 - busy0) / os.sysconf("SC_CLK_TCK")
    gt = b.parse_gnu_time(timefile)
    return {
        "exit": os.waitstatus_to_exitcode(status),
        "wall_s": wall,
        "first_conn_s": first[0],
        "cpu_s": tool_cpu,
        "maxrss_mib": gt.get("maxrss_kib", ru.ru_maxrss) / 1024,
        "pss_peak_mib": pss[0] / 1024 if pss[0] else None,
        "guests_cpu_s": guests_cpu,
        "other_cpu_s": max(0.0, machine_cpu - tool_cpu - guests_cpu),
        "load1": load[0],
        "load5": load[1],
        "builders": " ".join(sorted(set(builders) | set(b.builders_running()))),
    }, out


def list_hosts_best(b, bootstrap, inv, playbook, cwd, reps=5):
    """Everything before the first connection: `apply --list-hosts` (inventory, variables, every
    host's program compiled), the best of `reps` wall times, and its peak RSS."""
    best, rss = None, None
    for _ in range(reps):
        t0 = time.perf_counter()
        p = subprocess.Popen([bootstrap, "apply", inv, "--playbook", playbook, "--list-hosts"], cwd=cwd,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            return None, None
        best = dt if best is None else min(best, dt)
        rss = ru.ru_maxrss / 1024
    return best, rss


def first_event_runner(bootstrap, n=1000, reps=5):
    """Start to the first host_start event with the built-in runner playbook on bench/parse.py's
    inventory of n hosts (group_vars, host_vars): every host pointed at 127.0.0.1 port 1 (nothing
    listens; loopback only) and the process killed at its first host_start event. The best of
    `reps`, in seconds."""
    import tempfile
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import parse
    env = {**os.environ, "ANSIBLE_CONFIG": "/nonexistent", "GITLAB_TOKEN": "glpat-bench"}
    best = None
    with tempfile.TemporaryDirectory(prefix="bench-first-") as root:
        parse.write_inventory(root, n)
        open(os.path.join(root, "known_hosts"), "w").close()
        argv = [bootstrap, "apply", "-i", "hosts", "-e", "ansible_host=127.0.0.1", "-e", "ansible_port=1",
                "--known-hosts", "known_hosts", "--output", "json", "--forks", "200"]
        for _ in range(reps):
            t0 = time.perf_counter()
            p = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            dt = None
            for line in p.stdout:
                if '"host_start"' in line:
                    dt = time.perf_counter() - t0
                    break
            p.kill()
            p.wait()
            if dt is None:
                return None
            best = dt if best is None else min(best, dt)
    return best


def run(b, args, ns, forks_list, workdir, key, fleet, tl, run_id, out_dir, parse_line):
    """The --scale mode; returns the exit status (1 if a check failed)."""
    guests = args.scale_hosts
    per = -(-max(ns) // guests)
    if per > 251:
        raise SystemExit(f"bench: {max(ns)} hosts on {guests} test hosts is {per} addresses each (at most 251)")
    started = time.monotonic()
    names = b.Fleet.names(guests)
    fleet.extra_addrs = per
    fleet.preflight(guests)
    t0 = time.monotonic()
    fleet.up(names)
    fleet.settle(names)
    b.log(f"{guests} test hosts with {per} addresses each up in {time.monotonic() - t0:.0f} s")
    playbook = os.path.join(b.WORKLOADS_DIR, "scale.yml")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/root"),
           "LANG": "C.UTF-8", "USER": "root", "LOGNAME": "root"}
    access = {n: write_access(os.path.join(workdir, f"scale-n{n}"), key, inventory_hosts(fleet, names, n)) for n in ns}
    checks, samples = [], []
    info = {"run_id": run_id, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "argv": "bench/run " + " ".join(sys.argv[1:]), "machine": b.machine_info(), "versions": tl.versions(),
            "guests": guests, "addresses_per_guest": per, "parse": parse_line}

    lh, lh_rss = list_hosts_best(b, tl.bootstrap, access[max(ns)][1], playbook, b.WORKLOADS_DIR)
    info["list_hosts"] = {"n": max(ns), "s": lh, "rss_mib": lh_rss}
    info["first_event_runner"] = first_event_runner(tl.bootstrap)

    session = b.Session(workdir, "scale")
    rc = 0

    def one(kind, n, forks):
        nonlocal rc
        kh, inv = access[n]
        cmd = "check" if kind == "check" else "apply"
        # --connect-timeout 30: a thousand logins on the two cores the test hosts share can keep
        # an sshd from answering within the default 10 s; this measures work, not that timeout.
        argv = [tl.bootstrap, cmd, inv, "--playbook", playbook, "--known-hosts", kh, "--forks", str(forks),
                "--connect-timeout", "30", "--output", "json"]
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        s, out = run_one(b, session, argv, env, b.WORKLOADS_DIR, os.path.join(session.dir, f"{kind}-n{n}-f{forks}.log"),
                         900, names, fleet)
        r = b.Tools.parse("bootstrap", out, n)
        rts = r["round_trips"] or []
        s.update(run_id=run_id, kind=kind, tool="bootstrap", n=n, forks=forks, started=started, changed=r["changed"],
                 failed=r["failed"], hosts_seen=r["hosts_seen"], rt_min=min(rts) if rts else None,
                 rt_max=max(rts) if rts else None, cpu_ms_per_host=1000 * s["cpu_s"] / n)
        want_exit = 0
        problems = []
        if s["exit"] != want_exit:
            problems.append(f"exit {s['exit']}")
        if r["hosts_seen"] != n:
            problems.append(f"{r['hosts_seen']} hosts in the recap, not {n}")
        if r["failed"]:
            problems.append(f"{r['failed']} failed/unreachable")
        if kind == "first" and r["changed_hosts"] != n:
            problems.append(f"{r['changed_hosts']} of {n} hosts changed")
        if kind != "first" and r["changed"]:
            problems.append(f"changed={r['changed']}")
        if kind != "first" and (len(rts) != n or any(x != 1 for x in rts)):
            problems.append(f"round trips per host {s['rt_min']}..{s['rt_max']} (want 1)")
        ok = not problems
        checks.append({"check": f"{kind} N={n} forks={forks}", "ok": ok, "detail": "; ".join(problems)})
        if not ok:
            rc = 1
            tail = [x for x in out.splitlines() if '"failed"' in x or '"unreachable"' in x or "error" in x.lower()][:3]
            b.log(f"{kind} N={n} forks={forks}: {'; '.join(problems)} {tail}")
        samples.append(s)
        fc = f"{s['first_conn_s'] * 1000:.0f} ms" if s["first_conn_s"] is not None else "-"
        print(f"bench-scale: {kind:6} N={n:4} forks={forks:3}: {s['wall_s']:6.2f} s, CPU {s['cpu_s']:.3f} s "
              f"({s['cpu_ms_per_host']:.2f} ms/host), peak RSS {s['maxrss_mib']:.1f} MiB, first connection {fc}, "
              f"round trips {s['rt_min']}..{s['rt_max']}, load {s['load1']:.1f}{'' if ok else '  FAILED'}", flush=True)

    try:
        one("first", max(ns), max(forks_list))
        # the converged runs: for each N, the --forks values in a rotating order, apply then check
        for i, n in enumerate(ns):
            order = forks_list[i % len(forks_list):] + forks_list[:i % len(forks_list)]
            for _ in range(args.reps):
                for forks in order:
                    one("rerun", n, forks)
                    one("check", n, forks)
        if args.peers_n:
            info["peers"] = {"n": args.peers_n, "reps": args.peers_reps}
            rc |= peers(b, args, tl, fleet, names, key, workdir, env, run_id, samples, checks)
        # every inventory host left its own directory on its test host
        for g in names:
            r = fleet.exec(g, ["sh", "-c", "ls /srv/bench | wc -l"])
            want = sum(1 for i in range(max(ns)) if names[i % guests] == g)
            got = r.stdout.strip()
            checks.append({"check": f"{g}: one /srv/bench directory per inventory host", "ok": got == str(want),
                           "detail": f"{got} of {want}"})
            if got != str(want):
                rc = 1
    finally:
        session.close()
    info["duration"] = f"{time.monotonic() - started:.0f} s (boot and teardown of the test hosts included)"
    write(out_dir, info, samples, checks, ns, forks_list)
    return rc


PEERS = ("bootstrap", "ansible", "pyinfra")
GRID_KINDS = ("first", "rerun", "check")
LABEL = {"bootstrap": "bootstrap", "ansible": "ansible-playbook", "pyinfra": "pyinfra"}


def write_pyinfra_inventory(d, key, kh, hosts):
    """pyinfra's inventory.py for the scale hosts: the inventory name (host.name in the deploy)
    -> its address; root by key, strict host key checking against the same known_hosts."""
    path = os.path.join(d, "inventory.py")
    with open(path, "w") as f:
        f.write("# pyinfra inventory: root by key, strict host key checking against known_hosts\n")
        f.write(f"_data = {{'ssh_user': 'root', 'ssh_key': {key!r}, 'ssh_known_hosts_file': {kh!r}, "
                f"'ssh_strict_host_key_checking': 'yes'}}\n")
        f.write("hosts = [\n")
        f.writelines(f"    ({name!r}, dict(_data, ssh_hostname={addr!r})),\n" for name, addr, _ in hosts)
        f.write("]\n")
    return path


def what_changed(tool, out):
    """The tasks/operations a peer reported as changed, with their host counts."""
    import re
    counts, task = {}, None
    if tool == "ansible":
        for line in out.splitlines():
            m = re.match(r"^TASK \[(.*)\]", line)
            if m:
                task = m.group(1)
            elif line.startswith("changed: ["):
                counts[task] = counts.get(task, 0) + 1
    elif tool == "pyinfra":
        for line in out.splitlines():
            m = re.match(r"^--> Starting operation: (.*)$", line.strip())
            if m:
                task = m.group(1)
            elif re.match(r"^\s*\[\S+\] Success", line):
                counts[task] = counts.get(task, 0) + 1
    return ", ".join(f"{t!r} on {c} hosts" for t, c in counts.items()) or "?"


def peers(b, args, tl, fleet, names, key, workdir, env, run_id, samples, checks):
    """bootstrap, ansible-playbook and pyinfra side by side on the first --peers-n inventory
    hosts (converged by the bootstrap grid), forks = N for all three, as in the regular
    benchmark. pyinfra's warm-up first, then --peers-reps rounds, the order rotated per round
    (ansible, pyinfra, bootstrap; pyinfra, bootstrap, ansible; ...). Every tool run has a Session
    (cgroup) of its own, except that ansible-playbook's timed converged run follows, in the same
    session, an untimed-for-the-ratio converged run that opened its ssh ControlPersist masters:
    the regular benchmark's re-run reuses the first run's masters (Ansible's default within
    60 s), so this one does too; the masters are killed when the session closes. The first of
    those ansible runs, and pyinfra's warm-up, are also the check that the peers find nothing to
    change on hosts bootstrap converged. Returns 1 if a check failed."""
    n = args.peers_n
    rc = 0
    d = os.path.join(workdir, f"peers-n{n}")
    kh, inv = write_access(d, key, inventory_hosts(fleet, names, n))
    pyinv = write_pyinfra_inventory(d, key, kh, inventory_hosts(fleet, names, n))
    wl = b.Workload("s", "scale", "four tasks per inventory host", net=False, timeout=1800, state_args=[])
    t_phase = time.monotonic()

    def one(kind, tool, rnd, session):
        nonlocal rc
        argv, tenv = tl.command(tool, wl, n, (kh, inv, pyinv), session.dir)
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        s, out = run_one(b, session, argv, tenv, b.WORKLOADS_DIR,
                         os.path.join(session.dir, f"{kind}-r{rnd}-{tool}.log"), wl.timeout, names, fleet,
                         stream=(tool == "bootstrap"))
        r = b.Tools.parse(tool, out, n)
        rts = r["round_trips"] or []
        s.update(run_id=run_id, kind=kind, tool=tool, n=n, forks=n, round=rnd, started=started, changed=r["changed"],
                 failed=r["failed"], hosts_seen=r["hosts_seen"], rt_min=min(rts) if rts else None,
                 rt_max=max(rts) if rts else None, cpu_ms_per_host=1000 * s["cpu_s"] / n)
        problems = []
        if s["exit"] != 0:
            problems.append(f"exit {s['exit']}")
        if r["hosts_seen"] != n:
            problems.append(f"{r['hosts_seen']} hosts seen, not {n}")
        if r["failed"]:
            problems.append(f"{r['failed']} failed/unreachable")
        if r["changed"] is None:
            problems.append("no recap in the output")
        elif r["changed"]:
            problems.append(f"changed={r['changed']} on hosts bootstrap converged: {what_changed(tool, out)}")
        if tool == "bootstrap" and (len(rts) != n or any(x != 1 for x in rts)):
            problems.append(f"round trips per host {s['rt_min']}..{s['rt_max']} (want 1)")
        what = {"peers-warmup": "warm-up, converged", "peers-cold": "converged, no ssh masters yet",
                "peers": "converged re-run"}[kind]
        checks.append({"check": f"{LABEL[tool]} N={n} round {rnd} ({what}): no changes, every host",
                       "ok": not problems, "detail": "; ".join(problems)})
        if problems:
            rc = 1
            tail = " | ".join(out.strip().splitlines()[-4:])[-400:]
            b.log(f"peers {kind} {tool}: {'; '.join(problems)}; {tail}")
        samples.append(s)
        print(f"bench-scale: {kind:12} {LABEL[tool]:16} N={n} round {rnd}: {s['wall_s']:6.2f} s, CPU {s['cpu_s']:.3f} s, "
              f"peak RSS {s['maxrss_mib']:.1f} MiB (PSS sum {s['pss_peak_mib'] or 0:.0f} MiB), changed {r['changed']}, "
              f"load {s['load1']:.1f}{'' if not problems else '  FAILED'}", flush=True)

    session = b.Session(workdir, f"peers-warmup-pyinfra")
    try:
        one("peers-warmup", "pyinfra", 0, session)
    finally:
        session.close()
    for rnd in range(args.peers_reps):
        base = ["ansible", "pyinfra", "bootstrap"]
        order = base[rnd % 3:] + base[:rnd % 3]
        for tool in order:
            session = b.Session(workdir, f"peers-r{rnd}-{tool}")
            try:
                if tool == "ansible":
                    one("peers-cold", tool, rnd, session)
                one("peers", tool, rnd, session)
            finally:
                session.close()
    b.log(f"side by side at N={n}: {time.monotonic() - t_phase:.0f} s")
    return rc


def report_only(out_dir):
    """scale.md and scale.png again from scale-samples.csv and scale-run.json."""
    with open(os.path.join(out_dir, "scale-run.json")) as f:
        saved = json.load(f)
    samples = []
    with open(os.path.join(out_dir, "scale-samples.csv")) as f:
        for row in csv.DictReader(f):
            s = {}
            for k, v in row.items():
                if k in ("kind", "run_id", "builders", "started", "tool"):
                    s[k] = v
                elif k in ("n", "forks", "round", "exit", "changed", "failed", "hosts_seen", "rt_min", "rt_max"):
                    s[k] = int(v) if v not in ("", None) else None
                else:
                    s[k] = float(v) if v not in ("", None) else None
            s["tool"] = s.get("tool") or "bootstrap"     # older files: bootstrap only, no tool column
            samples.append(s)
    grid = [s for s in samples if s["kind"] in GRID_KINDS]
    ns = sorted({s["n"] for s in grid})
    forks_list = sorted({s["forks"] for s in grid})
    write(out_dir, saved["run"], samples, saved["checks"], ns, forks_list)
    return 0


def summarize(samples, ns, forks_list):
    """Medians per (kind, N, forks), fits, target lines."""
    from statistics import median
    cell = {}
    for s in samples:
        if s["kind"] not in GRID_KINDS:      # the side-by-side runs: peers_summary
            continue
        cell.setdefault((s["kind"], s["n"], s["forks"]), []).append(s)
    med = {k: {f: median([x[f] for x in v if x.get(f) is not None]) if any(x.get(f) is not None for x in v) else None
               for f in ("wall_s", "cpu_s", "cpu_ms_per_host", "maxrss_mib", "first_conn_s", "load1", "load5",
                         "guests_cpu_s", "other_cpu_s")} | {"reps": len(v)}
           for k, v in cell.items()}
    fits = {}
    for kind in ("rerun", "check"):
        for forks in forks_list:
            pts = [(n, med[(kind, n, forks)]["wall_s"]) for n in ns if (kind, n, forks) in med]
            if len(pts) >= 2:
                fits[(kind, forks)] = fit([p[0] for p in pts], [p[1] for p in pts])
        pts = [(n / forks, med[(kind, n, forks)]["wall_s"]) for n in ns for forks in forks_list if (kind, n, forks) in med]
        if len(pts) >= 2:
            fits[(kind, "n/forks")] = fit([p[0] for p in pts], [p[1] for p in pts])
    return med, fits


def peers_summary(samples):
    """The side-by-side runs: per (kind, tool) medians (RSS: the largest, as results.md) -> dict,
    and the per-round wall ratios."""
    from statistics import median
    cell = {}
    for s in samples:
        if s["kind"] in ("peers", "peers-cold", "peers-warmup"):
            cell.setdefault((s["kind"], s["tool"]), []).append(s)
    g = lambda v, f: [x[f] for x in v if x.get(f) is not None]
    med = {}
    for k, v in cell.items():
        med[k] = {f: (median(g(v, f)) if g(v, f) else None)
                  for f in ("wall_s", "cpu_s", "cpu_ms_per_host", "guests_cpu_s", "other_cpu_s", "load1")}
        med[k].update(reps=len(v), n=v[0]["n"], wall_min=min(g(v, "wall_s")), wall_max=max(g(v, "wall_s")),
                      maxrss_mib=max(g(v, "maxrss_mib"), default=None), pss_peak_mib=max(g(v, "pss_peak_mib"), default=None),
                      changed=max(g(v, "changed"), default=None))
    rounds = {}
    for s in samples:
        if s["kind"] == "peers":
            rounds.setdefault(s.get("round"), {})[s["tool"]] = s["wall_s"]
    per_round = {t: [r[t] / r["bootstrap"] for _, r in sorted(rounds.items(), key=lambda kv: str(kv[0]))
                     if t in r and r.get("bootstrap")] for t in ("ansible", "pyinfra")}
    return med, per_round


def peers_markdown(samples, info):
    med, per_round = peers_summary(samples)
    bs = med.get(("peers", "bootstrap"))
    if not bs:
        return []
    n = bs["n"]
    f = lambda x, nd=2: "-" if x is None else f"{x:.{nd}f}"
    L = [f"## Side by side at N={n}", "",
         f"The same {n} inventory hosts (converged by the runs above), `workloads/scale.yml` for bootstrap and "
         f"ansible-playbook, `workloads/scale.pyinfra.py` for pyinfra; forks = {n} for all three (bootstrap "
         f"`--forks {n}`; ansible-playbook `forks = {n}`, pipelining on, Ansible's default ssh_args with "
         f"ControlPersist 60 s; pyinfra `--parallel {n}`), host keys checked strictly. pyinfra's warm-up first, "
         f"then {info.get('peers', {}).get('reps', bs['reps'])} rounds, the tools' order rotated per round "
         "(ansible, pyinfra, bootstrap; pyinfra, bootstrap, ansible; bootstrap, ansible, pyinfra). Each tool's "
         "runs are in a cgroup of their own. ansible-playbook's timed re-run follows a converged run in the same "
         "session and **reuses the ssh master connections** that run left, as the regular benchmark's re-run "
         "does (bench/README.md); bootstrap and pyinfra open new connections every run. The ansible runs without "
         "masters (fresh connections, like the other two) are the row `no masters`. Medians; wall range min-max; "
         "CPU = controller CPU, user+sys of every process the tool started (ssh masters included); peak RSS = GNU "
         "time's maximum resident set size, the largest single process (as in results.md: one of "
         "ansible-playbook's forks, not their sum), the largest over the runs; PSS sum = the peak of the summed "
         "proportional set size of every process in the tool's cgroup (forks and ssh processes together, "
         "shared pages split), sampled every 0.25 s; host CPU = the test hosts' CPU during the run.", "",
         "| tool | runs | wall s | wall min-max | wall / bootstrap | CPU s | CPU / bootstrap | CPU ms/host | "
         "peak RSS MiB | PSS sum MiB | host CPU s | changed |",
         "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [("peers", "bootstrap", "bootstrap"), ("peers", "ansible", "ansible-playbook (re-run, masters reused)"),
            ("peers-cold", "ansible", "ansible-playbook (no masters)"), ("peers", "pyinfra", "pyinfra"),
            ("peers-warmup", "pyinfra", "pyinfra (warm-up)")]
    for kind, tool, label in rows:
        m = med.get((kind, tool))
        if not m:
            continue
        wr = f"{m['wall_s'] / bs['wall_s']:.1f}x" if tool != "bootstrap" and bs["wall_s"] else "1"
        cr = f"{m['cpu_s'] / bs['cpu_s']:.0f}x" if tool != "bootstrap" and bs["cpu_s"] else "1"
        L.append(f"| {label} | {m['reps']} | {f(m['wall_s'])} | {f(m['wall_min'])}-{f(m['wall_max'])} | {wr} | "
                 f"{f(m['cpu_s'], 3)} | {cr} | {f(m['cpu_ms_per_host'], 1)} | {f(m['maxrss_mib'], 1)} | "
                 f"{f(m['pss_peak_mib'], 0)} | {f(m['guests_cpu_s'], 1)} | {m['changed']} |")
    L.append("")
    cores = (info.get("machine") or {}).get("cores") or 0
    if cores:
        L.append(f"The test hosts run on the controller's own {cores} cores: during a run, the CPU the hosts spent "
                 f"(sshd logins, the tools' commands on the hosts) divided by {cores} is a floor under its wall "
                 "time on this machine. " + "; ".join(
                     f"{LABEL[t]} {f(m['guests_cpu_s'], 1)} s of host CPU, at least {m['guests_cpu_s'] / cores:.1f} s of "
                     f"wall (ran {f(m['wall_s'])} s)" for t in PEERS for m in [med.get(("peers", t))]
                     if m and m.get("guests_cpu_s") is not None)
                 + ". bootstrap's converged run is bound by the hosts' logins, so its wall ratios to the peers "
                 "are those of this machine; controller CPU is the figure that does not depend on it.")
        L.append("")
    for tool, goal in (("ansible", 20), ("pyinfra", 6)):
        m = med.get(("peers", tool))
        if not m or not bs["wall_s"]:
            L.append(f"- converged re-run at least {goal}x faster than {LABEL[tool]}: not measured")
            continue
        x = m["wall_s"] / bs["wall_s"]
        pr = " / ".join(f"{r:.1f}x" for r in per_round.get(tool, []))
        extra = ""
        cold = med.get(("peers-cold", "ansible"))
        if tool == "ansible" and cold:
            extra = f"; without ssh masters {cold['wall_s'] / bs['wall_s']:.1f}x ({f(cold['wall_s'])} s)"
        L.append(f"- converged re-run at least {goal}x faster than {LABEL[tool]}: **{x:.1f}x** "
                 f"({'met' if x >= goal else 'not met'}; {f(bs['wall_s'], 3)} s vs {f(m['wall_s'])} s, per round "
                 f"{pr or '-'}{extra}); controller CPU {f(bs['cpu_s'], 3)} s vs {f(m['cpu_s'], 2)} s "
                 f"({m['cpu_s'] / bs['cpu_s']:.0f}x)" if bs["cpu_s"] else "")
    L.append("")
    return L


def write(out_dir, info, samples, checks, ns, forks_list):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "scale-samples.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SCALE_FIELDS, extrasaction="ignore")
        w.writeheader()
        for s in samples:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in s.items()})
    with open(os.path.join(out_dir, "scale-run.json"), "w") as f:
        json.dump({"run": info, "checks": checks}, f, indent=1)
    med, fits = summarize(samples, ns, forks_list)
    f3 = lambda x, nd=2: "-" if x is None else f"{x:.{nd}f}"
    L = [f"# bootstrap at scale: up to {max(ns)} hosts from one controller", "",
         f"Measured {info['date']} by `{info['argv']}`: {info['guests']} test hosts, each answering sshd on "
         f"{info['addresses_per_guest']} addresses (`testhost up --extra-addrs`), every address an inventory "
         f"host; workload `workloads/scale.yml` (the four tasks per inventory host). Machine: "
         f"{info['machine'].get('cores')} cores, {info['machine'].get('cpu', '?')}, {info['machine'].get('mem_gib', '?')} GiB; "
         f"{info['versions'].get('bootstrap')} ({info['versions'].get('bootstrap_git')}, sha256 "
         f"`{info['versions'].get('bootstrap_sha256')}`), {info['versions'].get('openssh')}. "
         f"Duration {info.get('duration', '?')}.", "",
         "Converged runs (`rerun` = `apply` with nothing to do, `check` = drift check); medians when repeated. "
         "CPU = controller CPU (user+sys of every process bootstrap started); first conn. = start to the first "
         "`host_start` event; load = 1-/5-minute load average when the run started.", "",
         "| run | N | forks | wall s | CPU s | CPU ms/host | peak RSS MiB | first conn. ms | host CPU s | others' CPU s | load 1/5 |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for kind in ("first", "rerun", "check"):
        for n in ns:
            for forks in forks_list:
                m = med.get((kind, n, forks))
                if not m:
                    continue
                fc = "-" if m["first_conn_s"] is None else f"{m['first_conn_s'] * 1000:.0f}"
                L.append(f"| {kind} | {n} | {forks} | {f3(m['wall_s'])} | {f3(m['cpu_s'], 3)} | {f3(m['cpu_ms_per_host'])} | "
                         f"{f3(m['maxrss_mib'], 1)} | {fc} | {f3(m['guests_cpu_s'], 1)} | {f3(m['other_cpu_s'], 1)} | "
                         f"{f3(m['load1'], 1)} / {f3(m['load5'], 1)} |")
    L += ["", "Least-squares fits of the converged wall time (seconds) against N, per --forks, and against N/forks:", "",
          "| run | forks | per-host cost ms | intercept s | R² | wall N=max / N=min |", "|---|---:|---:|---:|---:|---:|"]
    for (kind, forks), fr in sorted(fits.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        if fr is None:
            continue
        a, bb, r2 = fr
        if forks == "n/forks":
            L.append(f"| {kind} | (x = N/forks) | {bb * 1000:.1f} per N/forks | {a:.2f} | {r2:.3f} | |")
            continue
        lo, hi = med.get((kind, min(ns), forks)), med.get((kind, max(ns), forks))
        ratio = f"{hi['wall_s'] / lo['wall_s']:.1f} (N ratio {max(ns) / min(ns):.0f})" if lo and hi else "-"
        L.append(f"| {kind} | {forks} | {bb * 1000:.2f} | {a:.2f} | {r2:.3f} | {ratio} |")
    # targets
    top = [m for (k, n, _), m in med.items() if n == max(ns)]
    rss = max((m["maxrss_mib"] for m in top), default=None)
    cpu = max((m["cpu_ms_per_host"] for (k, _, _), m in med.items() if k in ("rerun", "check")), default=None)
    fc = [m["first_conn_s"] for (k, n, _), m in med.items() if n == max(ns) and m["first_conn_s"] is not None]
    lh = info.get("list_hosts") or {}
    L += ["", "Targets (issue 15):", "",
          f"- controller peak RSS at N={max(ns)} under 100 MiB: **{f3(rss, 1)} MiB** ({'met' if rss is not None and rss < 100 else 'not met'})",
          f"- controller CPU per converged host at most 2 ms, at every N and forks: worst **{f3(cpu)} ms** "
          f"({'met' if cpu is not None and cpu <= 2 else 'not met'})",
          f"- start to the first connection at N={max(ns)} under 200 ms: in the runs {', '.join(f'{x * 1000:.0f}' for x in sorted(fc)) or '-'} ms "
          f"(median **{f3(sorted(fc)[len(fc) // 2] * 1000 if fc else None, 0)} ms**); "
          f"`apply --list-hosts` (everything before connecting) best of 5 **{f3(lh.get('s') and lh['s'] * 1000, 0)} ms**, "
          f"peak RSS {f3(lh.get('rss_mib'), 1)} MiB; with the built-in runner playbook on bench/parse.py's "
          f"1,000-host inventory (hosts at 127.0.0.1:1, killed at the first event) best of 5 "
          f"**{f3(info.get('first_event_runner') and info['first_event_runner'] * 1000, 0)} ms**",
          f"- {info.get('parse') or 'bench/parse.py: not run'}", ""]
    L += peers_markdown(samples, info)
    L += ["Checks: " + (f"all {len(checks)} passed" if all(c["ok"] for c in checks) else
                            "FAILED: " + "; ".join(f"{c['check']}: {c['detail']}" for c in checks if not c["ok"])), ""]
    text = "\n".join(L) + "\n"
    with open(os.path.join(out_dir, "scale.md"), "w") as f:
        f.write(text)
    print(text, flush=True)
    try:
        chart(out_dir, med, ns, forks_list, peers_summary(samples)[0])
    except Exception as e:  # the chart is a convenience; the figures are in scale.md
        print(f"bench: no chart: {e}", file=sys.stderr)


def chart(out_dir, med, ns, forks_list, pmed=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:cyan", "tab:olive", "tab:pink")
    for kind, style in (("rerun", "-o"), ("check", "--s")):
        for i, forks in enumerate(forks_list):
            pts = [(n, med[(kind, n, forks)]) for n in ns if (kind, n, forks) in med]
            if not pts:
                continue
            label = f"bootstrap {'apply (converged)' if kind == 'rerun' else 'check'}, forks {forks}"
            c = colors[i % len(colors)]
            ax1.plot([p[0] for p in pts], [p[1]["wall_s"] for p in pts], style, color=c, label=label)
            ax2.plot([p[0] for p in pts], [p[1]["maxrss_mib"] for p in pts], style, color=c, label=label)
    # the side-by-side runs of this one (same hosts, forks = N for all three): points
    for (kind, tool), marker, color, label in (
            (("peers", "bootstrap"), "D", "black", "bootstrap"),
            (("peers", "ansible"), "*", "tab:red", "ansible-playbook (ssh masters reused)"),
            (("peers-cold", "ansible"), "X", "tab:red", "ansible-playbook (no ssh masters)"),
            (("peers", "pyinfra"), "P", "tab:purple", "pyinfra")):
        m = (pmed or {}).get((kind, tool))
        if not m:
            continue
        lab = f"{label}, side by side, forks {m['n']}"
        ax1.plot([m["n"]], [m["wall_s"]], marker, color=color, ms=11, ls="none", label=lab)
        ax2.plot([m["n"]], [m["maxrss_mib"]], marker, color=color, ms=11, ls="none", label=lab + " (largest process)")
        if tool != "bootstrap" and kind == "peers" and m.get("pss_peak_mib"):
            ax2.plot([m["n"]], [m["pss_peak_mib"]], marker, mfc="none", color=color, ms=11, ls="none",
                     label=f"{label}, side by side: PSS sum of all its processes")
    # the peers of an earlier run of the regular benchmark (results.csv, workload a, converged
    # re-run, one host per test host): lines, for the trend below N=100
    peers = os.path.join(out_dir, "results.csv")
    if os.path.exists(peers):
        rows = [r for r in csv.DictReader(open(peers)) if r["workload"].startswith("a ") and r["run"] == "re-run"]
        rows.sort(key=lambda r: int(r["n"]))
        for tool, color in (("bootstrap", "grey"), ("ansible", "tab:red"), ("pyinfra", "tab:purple")):
            pts = [(int(r["n"]), float(r[f"{tool}_wall_s"]), float(r[f"{tool}_peak_rss_mib"])) for r in rows
                   if r.get(f"{tool}_wall_s") and r.get(f"{tool}_peak_rss_mib")]
            if pts:
                label = (f"{'ansible-playbook' if tool == 'ansible' else tool} re-run, forks = N "
                         f"(earlier run, results.md: workload a, one host per test host)")
                ax1.plot([p[0] for p in pts], [p[1] for p in pts], ":^", color=color, label=label)
                ax2.plot([p[0] for p in pts], [p[2] for p in pts], ":^", color=color, label=label)
    for ax, yl in ((ax1, "wall time (s)"), (ax2, "controller peak RSS (MiB)")):
        ax.set_xscale("log")
        ax.set_xlabel("hosts (N)")
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_yscale("log")
    if pmed:     # the peers' summed PSS is 10-100x bootstrap's
        ax2.set_yscale("log")
    ax2.axhline(100, color="black", lw=0.8, ls="-.", label="target at N=1000: 100 MiB")
    ax1.set_title("converged runs against N")
    ax2.set_title("controller peak memory against N")
    ax2.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "scale.png"), dpi=110)
    plt.close(fig)
