#!/usr/bin/env python3
"""The benchmark harness behind bench/run (which installs its dependencies first).

For each workload, each N and each repetition, every tool (bootstrap, ansible-playbook,
pyinfra) gets N freshly booted test hosts, applies its playbook once (the first run) and again
(the converged re-run). The tools' order rotates across repetitions so that drift in the
machine's speed hits all of them alike. Boot time is never measured. Per run it records wall
time, controller CPU (every process the tool started, ssh ControlPersist masters included, from a
cpuacct cgroup of its own), getrusage of the tool's process tree, peak RSS (GNU time -v), the
CPU the test hosts themselves spent, the machine's load and, for bootstrap, the SSH round trips
per host (--output json). After each re-run it reads the state of every host (files with their
SHA-256, modes and owners; users; packages and services where the workload has them) and checks
that all three tools left the same state. Results: results.md, results.csv, samples.csv,
chart.png in --out.
"""
import argparse
import csv
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTHOST = os.path.join(ROOT, "tests", "hosts", "testhost")
WORKLOADS_DIR = os.path.join(HERE, "workloads")
STATE_PY = os.path.join(HERE, "state.py")
HOSTS_STATE = "/var/lib/bootstrap-testhosts"
CPUACCT = "/sys/fs/cgroup/cpuacct"
CACHE = "/var/cache/bootstrap-bench"
TOOLS = ("bootstrap", "ansible", "pyinfra")
TOOL_LABEL = {"bootstrap": "bootstrap", "ansible": "ansible-playbook", "pyinfra": "pyinfra"}
INDEX_FIRST, INDEX_LAST = 100, 199       # this benchmark's share of the test host indexes
NAME_PREFIX = "bb"

# Packages that Ansible's apt module installs on a host for itself (python3-apt and what it
# pulls in): not part of the workload, left out when package lists are compared.
ANSIBLE_OWN_PACKAGES = {"python3-apt", "python-apt-common", "distro-info-data", "iso-codes", "lsb-release"}


class Workload:
    def __init__(self, key, name, title, net, timeout, state_args, seed_packages=()):
        self.key, self.name, self.title, self.net, self.timeout = key, name, title, net, timeout
        self.state_args, self.seed_packages = state_args, seed_packages

    def playbook(self, tool):
        # bootstrap and ansible-playbook run the same playbook.
        ext = {"bootstrap": "yml", "ansible": "yml", "pyinfra": "pyinfra.py"}[tool]
        return os.path.join(WORKLOADS_DIR, f"{self.name}.{ext}")


WORKLOADS = {
    "a": Workload(
        "a", "four-tasks", "four tasks (pyinfra's published comparison)", net=False, timeout=900,
        state_args=["--users", "bench", "/home/bench", "/var/log/bench.log"],
    ),
    "b": Workload(
        "b", "runner", "runner host without GitLab (docker.io, gitlab-runner upload, config, services)",
        net=True, timeout=3600,
        state_args=["--users", "gitlab-runner", "--services", "docker,gitlab-runner", "--packages",
                    "--skip", "/etc/docker/key.json,/etc/gitlab-runner/.runner_system_id",
                    "/etc/docker", "/usr/local/bin/gitlab-runner", "/etc/systemd/system/gitlab-runner.service",
                    "/etc/gitlab-runner", "/builds", "/cache", "/home/gitlab-runner"],
        # downloaded once into the cache and put into each fresh host's apt cache (not timed)
        seed_packages=("docker.io", "python3-apt"),
    ),
}


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def sh(argv, check=True, timeout=None, **kw):
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout, **kw)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---- the machine ----------------------------------------------------------------------------------

def cpu_times():
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    total = sum(v[:8])
    return total - idle, total


def cg_usage(path):
    """(total, user, sys) nanoseconds of CPU of a cpuacct cgroup, 0 if it is gone."""
    try:
        with open(os.path.join(path, "cpuacct.usage")) as f:
            total = int(f.read())
        user = sys_ = None
        try:
            with open(os.path.join(path, "cpuacct.usage_user")) as f:
                user = int(f.read())
            with open(os.path.join(path, "cpuacct.usage_sys")) as f:
                sys_ = int(f.read())
        except OSError:
            pass
        return total, user, sys_
    except OSError:
        return 0, None, None


def cg_pids(path):
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def builders_running():
    """Names of compilers/builds running on the machine right now (someone else's load)."""
    seen = set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/comm") as f:
                c = f.read().strip()
        except OSError:
            continue
        if c in ("cargo", "rustc", "cc1", "cc1plus", "ld", "rust-lld", "clang") or c.startswith("build-script"):
            seen.add(c)
    return sorted(seen)


def machine_info():
    info = {"kernel": platform.release(), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    info["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return info


# ---- test hosts -------------------------------------------------------------------------------------

class Fleet:
    """This run's test hosts: bb<INDEX>, INDEX 100..199, booted and torn down with tests/hosts/testhost."""

    def __init__(self, workdir, pubkey, boot_parallel, alive_file):
        self.workdir, self.pubkey, self.boot_parallel, self.alive_file = workdir, pubkey, boot_parallel, alive_file
        self.hosts = {}            # name -> {"address", "hostkey", "index"}
        self.pending = set()       # names being booted or up: torn down on exit
        self.lock = threading.Lock()
        self.extra_addrs = 0       # --scale: each host also answers on this many addresses

    @staticmethod
    def names(n):
        if n > INDEX_LAST - INDEX_FIRST + 1:
            raise SystemExit(f"bench: at most {INDEX_LAST - INDEX_FIRST + 1} hosts (indexes {INDEX_FIRST}-{INDEX_LAST})")
        return [f"{NAME_PREFIX}{INDEX_FIRST + i}" for i in range(n)]

    def _save_alive(self):
        if self.alive_file:
            with open(self.alive_file + ".tmp", "w") as f:
                f.write("".join(n + "\n" for n in sorted(self.pending)))
            os.replace(self.alive_file + ".tmp", self.alive_file)

    def preflight(self, n):
        """Refuse indexes that someone else's host holds; tear down our own leftovers."""
        want = set(range(INDEX_FIRST, INDEX_FIRST + n))
        leftovers = []
        for name in sorted(os.listdir(HOSTS_STATE)) if os.path.isdir(HOSTS_STATE) else []:
            try:
                with open(os.path.join(HOSTS_STATE, name, "index")) as f:
                    idx = int(f.read())
            except (OSError, ValueError):
                continue
            if re.fullmatch(rf"{NAME_PREFIX}\d+", name) and INDEX_FIRST <= idx <= INDEX_LAST:
                leftovers.append(name)
            elif idx in want:
                raise SystemExit(f"bench: index {idx} is held by test host {name} (not this benchmark's); "
                                 f"this benchmark uses indexes {INDEX_FIRST}-{INDEX_LAST}")
        if leftovers:
            log(f"tearing down leftovers of an earlier run: {' '.join(leftovers)}")
            self.down(leftovers)

    def _up_one(self, name):
        idx = int(name[len(NAME_PREFIX):])
        with self.lock:
            self.pending.add(name)
            self._save_alive()
        for attempt in (1, 2):
            extra = ["--extra-addrs", str(self.extra_addrs)] if self.extra_addrs else []
            r = subprocess.run([TESTHOST, "up", name, str(idx), self.pubkey, *extra], capture_output=True, text=True)
            if r.returncode == 0:
                kv = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
                with self.lock:
                    self.hosts[name] = {"address": kv["address"], "hostkey": kv["hostkey_ed25519"], "index": idx,
                                        "statedir": kv.get("statedir"),
                                        "extra": [a for a in kv.get("extra_addresses", "").split(",") if a]}
                return
            log(f"{name}: testhost up failed (attempt {attempt}): {r.stderr.strip().splitlines()[-3:]}")
        raise RuntimeError(f"{name}: could not boot")

    def _down_one(self, name):
        subprocess.run([TESTHOST, "down", name], capture_output=True, text=True)
        with self.lock:
            self.hosts.pop(name, None)
            self.pending.discard(name)
            self._save_alive()

    def up(self, names):
        with ThreadPoolExecutor(self.boot_parallel) as ex:
            list(ex.map(self._up_one, names))

    def down(self, names):
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(self._down_one, names))

    def down_all(self):
        names = sorted(self.pending | set(self.hosts))
        if names:
            log(f"tearing down {len(names)} test host(s)")
            self.down(names)
        # What `testhost up` and `net-up` set for the whole machine (the controller address on lo,
        # raised sysctls, the guests' nft table) goes with the last test host; while instances of
        # someone else are still up it stays theirs.
        left = subprocess.run([TESTHOST, "list"], capture_output=True, text=True).stdout.split()
        if left:
            log(f"test hosts not ours still up ({' '.join(left)}): the machine-wide test-host settings stay")
        else:
            r = subprocess.run([TESTHOST, "down-all"], capture_output=True, text=True)
            if r.returncode != 0:
                log(f"testhost down-all failed: {r.stderr.strip()}")

    def fresh(self, names):
        """Fresh hosts: tear down any of these that are up, boot them again, wait until settled."""
        t0 = time.monotonic()
        gone = [n for n in names if n in self.pending]
        if gone:
            self.down(gone)
        self.up(names)
        self.settle(names)
        return time.monotonic() - t0

    def exec(self, name, argv, timeout=120):
        return subprocess.run([TESTHOST, "exec", name, *argv], capture_output=True, text=True, timeout=timeout)

    def settle(self, names, quiet_busy=0.35, max_wait=20.0):
        """Wait until each guest finished booting, then (bounded) until the machine is quiet."""
        def one(name):
            r = self.exec(name, ["systemctl", "is-system-running", "--wait"], timeout=90)
            return name, r.stdout.strip()
        with ThreadPoolExecutor(16) as ex:
            states = dict(ex.map(one, names))
        bad = {n: s for n, s in states.items() if s not in ("running",)}
        if bad:
            log(f"guests not 'running' after boot: {bad}")
        deadline = time.monotonic() + max_wait
        while time.monotonic() < deadline:
            b0, t0 = cpu_times()
            time.sleep(0.5)
            b1, t1 = cpu_times()
            if t1 > t0 and (b1 - b0) / (t1 - t0) < quiet_busy:
                break

    def guests_cpu_ns(self, names):
        return sum(cg_usage(os.path.join(CPUACCT, n))[0] for n in names)

    def write_access(self, names, d, key, forks):
        """known_hosts (strict checking for all three tools), the YAML inventory (bootstrap and
        Ansible read the same file) and pyinfra's inventory.py."""
        os.makedirs(d, exist_ok=True)
        kh = os.path.join(d, "known_hosts")
        with open(kh, "w") as f:
            for n in names:
                h = self.hosts[n]
                f.write(f"{h['address']} {h['hostkey']}\n")
        inv = os.path.join(d, "inventory.yml")
        with open(inv, "w") as f:
            f.write(f"all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {key}\n  hosts:\n")
            for n in names:
                f.write(f"    {n}: {{ansible_host: {self.hosts[n]['address']}}}\n")
        pyinv = os.path.join(d, "inventory.py")
        with open(pyinv, "w") as f:
            f.write("# pyinfra inventory: root by key, strict host key checking against known_hosts\n")
            f.write(f"_data = {{'ssh_user': 'root', 'ssh_key': {key!r}, 'ssh_known_hosts_file': {kh!r}, "
                    f"'ssh_strict_host_key_checking': 'yes'}}\n")
            f.write("hosts = [\n")
            for n in names:
                f.write(f"    ({n!r}, dict(_data, ssh_hostname={self.hosts[n]['address']!r})),\n")
            f.write("]\n")
        return kh, inv, pyinv

    def snapshot(self, names, workload):
        src = open(STATE_PY).read()

        def one(n):
            r = self.exec(n, ["python3", "-c", src, *workload.state_args])
            if r.returncode != 0:
                return n, {"error": r.stderr.strip()[-500:]}
            return n, json.loads(r.stdout)
        with ThreadPoolExecutor(16) as ex:
            return dict(ex.map(one, names))


def canonical_state(st):
    st = json.loads(json.dumps(st))
    if "packages" in st:
        st["packages"] = [p for p in st["packages"] if p.split()[0] not in ANSIBLE_OWN_PACKAGES]
    return json.dumps(st, sort_keys=True)


def state_diff(a, b, limit=6):
    """A short description of how state b differs from state a."""
    a, b = json.loads(a), json.loads(b)
    out = []
    for section in sorted(set(a) | set(b)):
        x, y = a.get(section), b.get(section)
        if x == y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                if x.get(k) != y.get(k):
                    out.append(f"{section} {k}: {json.dumps(x.get(k))} vs {json.dumps(y.get(k))}")
        elif isinstance(x, list) and isinstance(y, list):
            only_a, only_b = sorted(set(x) - set(y)), sorted(set(y) - set(x))
            out.append(f"{section}: only first {only_a[:5]}, only second {only_b[:5]}")
        else:
            out.append(f"{section}: {json.dumps(x)[:200]} vs {json.dumps(y)[:200]}")
    return out[:limit]


# ---- the tools ----------------------------------------------------------------------------------------

class Tools:
    def __init__(self, workdir, venv, bootstrap_bin):
        self.workdir, self.venv = workdir, venv
        self.bootstrap = os.path.join(workdir, "bootstrap")      # a copy: a rebuild mid-run changes nothing
        shutil.copy2(bootstrap_bin, self.bootstrap)
        self.bootstrap_src = bootstrap_bin
        self.ansible = os.path.join(venv, "bin", "ansible-playbook")
        self.pyinfra = os.path.join(venv, "bin", "pyinfra")

    def versions(self):
        v = {}
        v["bootstrap"] = sh([self.bootstrap, "--version"], check=False).stdout.strip()
        with open(self.bootstrap, "rb") as f:
            v["bootstrap_sha256"] = hashlib.sha256(f.read()).hexdigest()[:16]
        g = sh(["git", "-C", ROOT, "describe", "--always", "--dirty", "--abbrev=12"], check=False)
        v["bootstrap_git"] = g.stdout.strip() or "?"
        v["bootstrap_built"] = datetime.datetime.fromtimestamp(os.path.getmtime(self.bootstrap_src)).strftime("%Y-%m-%d %H:%M")
        v["ansible-core"] = sh([os.path.join(self.venv, "bin", "python"), "-c",
                                "import ansible.release as r; print(r.__version__)"]).stdout.strip()
        v["pyinfra"] = sh([os.path.join(self.venv, "bin", "python"), "-c",
                           "from importlib.metadata import version; print(version('pyinfra'))"]).stdout.strip()
        v["python (controller, peers)"] = sh([os.path.join(self.venv, "bin", "python"), "-V"]).stdout.strip()
        v["openssh"] = sh(["ssh", "-V"], check=False).stderr.strip()
        return v

    def command(self, tool, workload, n, access, session_dir):
        kh, inv, pyinv = access
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/root"),
               "LANG": "C.UTF-8", "USER": "root", "LOGNAME": "root"}
        if tool == "bootstrap":
            argv = [self.bootstrap, "apply", inv, "--playbook", workload.playbook(tool), "--known-hosts", kh,
                    "--forks", str(n), "--output", "json"]
        elif tool == "ansible":
            cfg = os.path.join(session_dir, "ansible.cfg")
            if not os.path.exists(cfg):
                with open(cfg, "w") as f:
                    f.write("# ansible-playbook settings of the benchmark: forks = N, pipelining on, host keys\n"
                            "# checked strictly against the run's known_hosts; everything else Ansible's default\n"
                            "# (ssh_args keep -C -o ControlMaster=auto -o ControlPersist=60s).\n"
                            f"[defaults]\nforks = {n}\nhost_key_checking = True\n"
                            f"[ssh_connection]\npipelining = True\n"
                            f"ssh_extra_args = -o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes\n"
                            f"control_path_dir = {os.path.join(session_dir, 'cp')}\n")
            env["ANSIBLE_CONFIG"] = cfg
            argv = [self.ansible, "-i", inv, workload.playbook(tool)]
        else:
            argv = [self.pyinfra, pyinv, workload.playbook(tool), "--parallel", str(n), "-y"]
        return argv, env

    @staticmethod
    def parse(tool, out, n):
        """-> dict(changed=total, changed_hosts, failed, unreachable, hosts_seen, round_trips=[...])"""
        r = {"changed": None, "changed_hosts": None, "failed": None, "hosts_seen": None, "round_trips": None}
        if tool == "bootstrap":
            rts, recap = {}, None
            for line in out.splitlines():
                if not line.startswith("{"):
                    continue
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("event") == "host_end":
                    rts[e["host"]] = e.get("round_trips")
                elif e.get("event") == "recap":
                    recap = e["hosts"]
            if recap is not None:
                r["changed"] = sum(h.get("changed", 0) for h in recap.values())
                r["changed_hosts"] = sum(1 for h in recap.values() if h.get("changed", 0))
                r["failed"] = sum(h.get("failed", 0) + h.get("unreachable", 0) for h in recap.values())
                r["hosts_seen"] = len(recap)
            r["round_trips"] = [rts[h] for h in sorted(rts)]
        elif tool == "ansible":
            rows = re.findall(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out, re.M)
            if rows:
                r["changed"] = sum(int(x[2]) for x in rows)
                r["changed_hosts"] = sum(1 for x in rows if int(x[2]))
                r["failed"] = sum(int(x[3]) + int(x[4]) for x in rows)
                r["hosts_seen"] = len(rows)
        else:
            m = re.search(r"^\s*Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
            num = lambda s: 0 if s == "-" else int(s)
            if m:
                r["changed"] = num(m.group(2))
                r["failed"] = num(m.group(3))
            # hosts that connected: "[name] Connected"
            r["hosts_seen"] = len(set(re.findall(r"^\s*\[(\S+)\] Connected", out, re.M)))
            per_host = {}
            for h, word in re.findall(r"^\s*\[(\S+)\] (Success|No changes|Error)", out, re.M):
                per_host.setdefault(h, set()).add(word)
            if per_host:
                r["changed_hosts"] = sum(1 for s in per_host.values() if "Success" in s)
        return r


def parse_gnu_time(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.strip().rpartition(": ")
                if k == "Maximum resident set size (kbytes)":
                    out["maxrss_kib"] = int(v)
                elif k == "User time (seconds)":
                    out["time_user"] = float(v)
                elif k == "System time (seconds)":
                    out["time_sys"] = float(v)
    except OSError:
        pass
    return out


ACTIVE_SESSIONS = set()


class Session:
    """One tool on one set of fresh hosts: a cpuacct cgroup holding every process it starts
    (ssh ControlPersist masters outlive ansible-playbook and are counted, and reused by the
    re-run as Ansible does by default); torn down after the re-run."""

    def __init__(self, workdir, tag):
        self.dir = os.path.join(workdir, tag)
        os.makedirs(self.dir, exist_ok=True)
        self.cg = os.path.join(CPUACCT, f"bootstrap-bench-{os.getpid()}-{tag}")
        os.makedirs(self.cg, exist_ok=True)
        ACTIVE_SESSIONS.add(self)

    def kill_all(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = cg_pids(self.cg)
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            for _ in range(20):
                if not cg_pids(self.cg):
                    break
                time.sleep(0.05)

    def close(self):
        ACTIVE_SESSIONS.discard(self)
        self.kill_all()
        for _ in range(20):
            try:
                os.rmdir(self.cg)
                return
            except OSError:
                time.sleep(0.05)


def measure(session, argv, env, cwd, log_path, timeout, fleet_names, fleet):
    """Run one tool invocation; everything it starts lands in the session's cgroup."""
    timefile = log_path + ".time"
    cmd = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', session.cg,
           "/usr/bin/time", "-v", "-o", timefile, *argv]
    cg0 = cg_usage(session.cg)
    guests0 = fleet.guests_cpu_ns(fleet_names)
    busy0, tot0 = cpu_times()
    load1 = os.getloadavg()[0]
    builders = builders_running()
    timed_out = threading.Event()

    def on_timeout():
        timed_out.set()
        session.kill_all()
    timer = threading.Timer(timeout, on_timeout)
    with open(log_path, "w") as logf:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                             stdin=subprocess.DEVNULL)
        timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
    busy1, tot1 = cpu_times()
    cg1 = cg_usage(session.cg)
    guests1 = fleet.guests_cpu_ns(fleet_names)
    builders = sorted(set(builders) | set(builders_running()))
    hz = os.sysconf("SC_CLK_TCK")
    machine_cpu = (busy1 - busy0) / hz
    tool_cpu = (cg1[0] - cg0[0]) / 1e9
    guests_cpu = (guests1 - guests0) / 1e9
    gt = parse_gnu_time(timefile)
    s = {
        "exit": p.returncode if not timed_out.is_set() else "timeout",
        "wall_s": wall,
        "cpu_s": tool_cpu,
        "cpu_user_s": (cg1[1] - cg0[1]) / 1e9 if cg1[1] is not None and cg0[1] is not None else None,
        "cpu_sys_s": (cg1[2] - cg0[2]) / 1e9 if cg1[2] is not None and cg0[2] is not None else None,
        "cpu_rusage_s": ru.ru_utime + ru.ru_stime,
        "maxrss_kib": gt.get("maxrss_kib", ru.ru_maxrss),
        "guests_cpu_s": guests_cpu,
        "other_cpu_s": max(0.0, machine_cpu - tool_cpu - guests_cpu),
        "machine_busy_pct": 100.0 * (busy1 - busy0) / max(1, tot1 - tot0),
        "load1": load1,
        "builders": " ".join(builders),
    }
    with open(log_path) as f:
        out = f.read()
    return s, out


# ---- results ----------------------------------------------------------------------------------------

SAMPLE_FIELDS = ["run_id", "workload", "n", "rep", "tool", "kind", "order", "exit", "wall_s", "cpu_s", "cpu_user_s",
                 "cpu_sys_s", "cpu_rusage_s", "maxrss_kib", "changed", "changed_hosts", "failed", "hosts_seen",
                 "rt_min", "rt_max", "rt_mean", "guests_cpu_s", "other_cpu_s", "machine_busy_pct", "load1",
                 "builders", "started"]


def fnum(x, nd=2):
    if x is None or x == "":
        return "-"
    return f"{float(x):.{nd}f}"


class Report:
    def __init__(self, out_dir, quick):
        self.out_dir, self.quick = out_dir, quick
        os.makedirs(out_dir, exist_ok=True)
        self.samples_path = os.path.join(out_dir, "samples.csv")
        self.runs_path = os.path.join(out_dir, "runs.json")
        self.checks_path = os.path.join(out_dir, "checks.json")
        self.samples, self.runs, self.checks = [], {}, []

    def load_previous(self, replace):
        """Keep rows of earlier invocations for (workload, N) this one does not measure."""
        if os.path.exists(self.samples_path):
            with open(self.samples_path) as f:
                for row in csv.DictReader(f):
                    if (row["workload"], int(row["n"])) not in replace:
                        self.samples.append(row)
        if os.path.exists(self.runs_path):
            with open(self.runs_path) as f:
                self.runs = json.load(f)
        if os.path.exists(self.checks_path):
            with open(self.checks_path) as f:
                self.checks = [c for c in json.load(f) if (c["workload"], c["n"]) not in replace]
        used = {r["run_id"] for r in self.samples} | {c["run_id"] for c in self.checks}
        self.runs = {k: v for k, v in self.runs.items() if k in used}

    def add_sample(self, row):
        self.samples.append({k: ("" if row.get(k) is None else row.get(k)) for k in SAMPLE_FIELDS})

    def add_check(self, run_id, workload, n, rep, name, ok, detail=""):
        self.checks.append({"run_id": run_id, "workload": workload, "n": n, "rep": rep, "name": name,
                            "ok": bool(ok), "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'}: [{workload} N={n} rep {rep}] {name}" + (f": {detail}" if detail and not ok else ""),
              flush=True)

    def aggregate(self):
        """(workload, n, tool, kind) -> medians"""
        groups = {}
        for r in self.samples:
            groups.setdefault((r["workload"], int(r["n"]), r["tool"], r["kind"]), []).append(r)
        agg = {}
        for k, rows in groups.items():
            g = lambda f: [float(r[f]) for r in rows if r.get(f) not in ("", None)]
            agg[k] = {
                "reps": len(rows),
                "wall_s": median(g("wall_s")),
                "wall_min": min(g("wall_s")) if g("wall_s") else None,
                "wall_max": max(g("wall_s")) if g("wall_s") else None,
                "cpu_s": median(g("cpu_s")),
                "cpu_rusage_s": median(g("cpu_rusage_s")),
                "maxrss_mib": (max(g("maxrss_kib")) / 1024) if g("maxrss_kib") else None,
                "rt_min": min(g("rt_min")) if g("rt_min") else None,
                "rt_max": max(g("rt_max")) if g("rt_max") else None,
                "changed": median(g("changed")),
                "other_cpu_s": median(g("other_cpu_s")),
                "guests_cpu_s": median(g("guests_cpu_s")),
                "busy": median(g("machine_busy_pct")),
                "load1": median(g("load1")),
            }
        return agg

    def write(self, meta_now, argv):
        with open(self.samples_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=SAMPLE_FIELDS)
            w.writeheader()
            for r in self.samples:
                w.writerow({k: r.get(k, "") for k in SAMPLE_FIELDS})
        with open(self.runs_path, "w") as f:
            json.dump(self.runs, f, indent=1, sort_keys=True)
        with open(self.checks_path, "w") as f:
            json.dump(self.checks, f, indent=1)
        agg = self.aggregate()
        keys = sorted({(w, n, kind) for (w, n, t, kind) in agg}, key=lambda k: (k[0], k[2] != "first", k[1]))
        # results.csv: one row per workload, N and run kind
        cols = ["workload", "n", "run", "reps"]
        for t in TOOLS:
            cols += [f"{t}_wall_s", f"{t}_cpu_s"]
        cols += ["ansible_over_bootstrap", "pyinfra_over_bootstrap", "ansible_cpu_over_bootstrap",
                 "pyinfra_cpu_over_bootstrap", "bootstrap_round_trips_min", "bootstrap_round_trips_max",
                 "bootstrap_peak_rss_mib", "ansible_peak_rss_mib", "pyinfra_peak_rss_mib"]
        table = []
        for (wk, n, kind) in keys:
            row = {"workload": f"{wk} ({WORKLOADS[wk].name})", "n": n, "run": "first" if kind == "first" else "re-run"}
            a = {t: agg.get((wk, n, t, kind)) for t in TOOLS}
            row["reps"] = min((x["reps"] for x in a.values() if x), default=0)
            row["reps_by_tool"] = {t: x["reps"] for t, x in a.items() if x}
            for t in TOOLS:
                row[f"{t}_wall_s"] = a[t]["wall_s"] if a[t] else None
                row[f"{t}_cpu_s"] = a[t]["cpu_s"] if a[t] else None
                row[f"{t}_peak_rss_mib"] = a[t]["maxrss_mib"] if a[t] else None
            b = a["bootstrap"]
            for t in ("ansible", "pyinfra"):
                row[f"{t}_over_bootstrap"] = (a[t]["wall_s"] / b["wall_s"]) if a[t] and b and b["wall_s"] else None
                row[f"{t}_cpu_over_bootstrap"] = (a[t]["cpu_s"] / b["cpu_s"]) if a[t] and b and b["cpu_s"] else None
            row["bootstrap_round_trips_min"] = b["rt_min"] if b else None
            row["bootstrap_round_trips_max"] = b["rt_max"] if b else None
            table.append(row)
        with open(os.path.join(self.out_dir, "results.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            for row in table:
                w.writerow({k: (f"{row[k]:.4f}" if isinstance(row.get(k), float) else row.get(k, "")) for k in cols})
        chart = None if self.quick else self.chart(agg)
        self.markdown(table, agg, meta_now, argv, chart)

    def chart(self, agg):
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            log("matplotlib missing: no chart")
            return None
        wls = sorted({w for (w, n, t, k) in agg})
        fig, axes = plt.subplots(len(wls), 2, figsize=(11, 4.2 * len(wls)), squeeze=False)
        colors = {"bootstrap": "tab:green", "ansible": "tab:red", "pyinfra": "tab:blue"}
        for i, wk in enumerate(wls):
            for j, kind in enumerate(("first", "rerun")):
                ax = axes[i][j]
                for t in TOOLS:
                    pts = sorted((n, v["wall_s"], v["wall_min"], v["wall_max"]) for (w, n, tt, k), v in agg.items()
                                 if w == wk and tt == t and k == kind and v["wall_s"] is not None)
                    if not pts:
                        continue
                    ns = [p[0] for p in pts]
                    ax.plot(ns, [p[1] for p in pts], marker="o", color=colors[t], label=TOOL_LABEL[t])
                    ax.fill_between(ns, [p[2] for p in pts], [p[3] for p in pts], color=colors[t], alpha=0.15)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xlabel("hosts (N)")
                ax.set_ylabel("wall time, s (median; band: min-max)")
                ax.set_title(f"({wk}) {WORKLOADS[wk].name}: {'first run on fresh hosts' if kind == 'first' else 'converged re-run'}")
                ax.grid(True, which="both", alpha=0.3)
                ax.legend()
                allns = sorted({n for (w, n, tt, k) in agg if w == wk})
                ax.set_xticks(allns)
                ax.set_xticklabels([str(n) for n in allns])
        fig.tight_layout()
        path = os.path.join(self.out_dir, "chart.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def markdown(self, table, agg, meta_now, argv, chart):
        L = []
        title = "bench/run --quick" if self.quick else "bootstrap vs ansible-playbook vs pyinfra"
        L.append(f"# {title}\n")
        L.append(f"Measured by the runs listed under \"Machine and load\" (results of later runs replace those of "
                 f"earlier ones for the same workload and N); written {meta_now['date']}. Every figure is the median of the "
                 "repetitions (wall time of the tool's command; boot of the test hosts not included). "
                 "`a : b` ratios are peer time / bootstrap time (how many times faster bootstrap is). "
                 "CPU: user+sys of every controller process the tool started (cpuacct cgroup; includes "
                 "ssh ControlPersist masters). Details: bench/README.md.\n")
        if self.quick:
            L.append("Quick mode: the three tools ran at the same time, each on 2 hosts of its own, to check that "
                     "they do the same work; their times disturb each other and are not a comparison (the full "
                     "benchmark runs them one after another).\n")
        L.append("## Wall time and controller CPU\n")
        L.append("| workload | N | run | reps | bootstrap s | ansible-playbook s | pyinfra s | bootstrap : ansible | "
                 "bootstrap : pyinfra | CPU s bootstrap | CPU s ansible | CPU s pyinfra |")
        L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in table:
            ratio = lambda x: f"1 : {x:.1f}" if x else "-"
            L.append(f"| {r['workload']} | {r['n']} | {r['run']} | {r['reps']} | {fnum(r['bootstrap_wall_s'], 3)} | "
                     f"{fnum(r['ansible_wall_s'])} | {fnum(r['pyinfra_wall_s'])} | {ratio(r['ansible_over_bootstrap'])} | "
                     f"{ratio(r['pyinfra_over_bootstrap'])} | {fnum(r['bootstrap_cpu_s'], 3)} | {fnum(r['ansible_cpu_s'])} | "
                     f"{fnum(r['pyinfra_cpu_s'])} |")
        uneven = [f"({r['workload'][0]}) N={r['n']} {r['run']}: " + ", ".join(f"{TOOL_LABEL[t]} {k}" for t, k in r["reps_by_tool"].items())
                  for r in table if len(set(r["reps_by_tool"].values())) > 1]
        if uneven:
            L.append("\nNot every tool has the same number of repetitions in: " + "; ".join(uneven)
                     + " (see the runs' notes below).")
        L.append("")
        L.append("## bootstrap: round trips and memory\n")
        L.append("| workload | N | run | SSH round trips per host after connecting (min-max) | controller peak RSS MiB "
                 "(bootstrap) | peak RSS MiB of the largest process: ansible-playbook / pyinfra |")
        L.append("|---|---:|---|---|---:|---|")
        for r in table:
            rt = "-" if r["bootstrap_round_trips_min"] is None else (
                f"{int(r['bootstrap_round_trips_min'])}" if r["bootstrap_round_trips_min"] == r["bootstrap_round_trips_max"]
                else f"{int(r['bootstrap_round_trips_min'])}-{int(r['bootstrap_round_trips_max'])}")
            L.append(f"| {r['workload']} | {r['n']} | {r['run']} | {rt} | {fnum(r['bootstrap_peak_rss_mib'], 1)} | "
                     f"{fnum(r['ansible_peak_rss_mib'], 0)} / {fnum(r['pyinfra_peak_rss_mib'], 0)} |")
        L.append("")
        L.append("## CPU spent on the test hosts\n")
        L.append("The test hosts run on the controller's own cores: when they are busy (sshd's key exchanges, "
                 "the peers' Python modules on the hosts), the wall times above measure the machine as much as "
                 "the tool. Seconds of CPU of all N hosts together during the run (cpuacct cgroups of the hosts):\n")
        L.append("| workload | N | run | bootstrap | ansible-playbook | pyinfra |")
        L.append("|---|---:|---|---:|---:|---:|")
        for (wk, n, kind) in sorted({(w, n, k) for (w, n, t, k) in agg}, key=lambda k: (k[0], k[2] != "first", k[1])):
            c = [agg.get((wk, n, t, kind), {}).get("guests_cpu_s") for t in TOOLS]
            L.append(f"| {wk} ({WORKLOADS[wk].name}) | {n} | {'first' if kind == 'first' else 're-run'} | "
                     + " | ".join(fnum(x) for x in c) + " |")
        L.append("")
        if chart:
            L.append(f"![time against N]({os.path.basename(chart)})\n")
        L.append("## Targets\n")
        L.extend(self.targets(agg))
        L.append("")
        L.append("## Checks (same state, converged re-runs)\n")
        failed = [c for c in self.checks if not c["ok"]]
        L.append(f"{len(self.checks) - len(failed)} passed, {len(failed)} failed.\n")
        for c in failed:
            L.append(f"- FAIL [{c['workload']} N={c['n']} rep {c['rep']}] {c['name']}: {c['detail']}")
        if failed:
            L.append("")
        L.append("## Machine and load\n")
        runs = sorted(self.runs.values(), key=lambda m: m["date"])
        for m in runs:
            note = f" **{m['note']}**" if m.get("note") else ""
            L.append(f"- run {m['run_id']} ({m['date']}, `{m['argv']}`, {m.get('duration', '?')}){note}: "
                     f"{m['machine'].get('cpu', '?')}, {m['machine'].get('cores')} cores, "
                     f"{m['machine'].get('mem_gib')} GiB, {m['machine'].get('os', '')}, kernel {m['machine'].get('kernel')}")
            v = m["versions"]
            L.append(f"  - {v.get('bootstrap')} (git {v.get('bootstrap_git')}, binary built {v.get('bootstrap_built')}, "
                     f"sha256 {v.get('bootstrap_sha256')}), ansible-core {v.get('ansible-core')}, pyinfra "
                     f"{v.get('pyinfra')}, {v.get('python (controller, peers)')}, {v.get('openssh')}")
        loads = [float(r["load1"]) for r in self.samples if r.get("load1") not in ("", None)]
        other = [float(r["other_cpu_s"]) for r in self.samples if r.get("other_cpu_s") not in ("", None)]
        walls = [float(r["wall_s"]) for r in self.samples if r.get("wall_s") not in ("", None)]
        builders = sorted({b for r in self.samples for b in (r.get("builders") or "").split()})
        busy_runs = sum(1 for r in self.samples if r.get("builders"))
        if loads:
            L.append(f"\nLoad: 1-minute load average at the start of a measured run: median {statistics.median(loads):.2f}, "
                     f"max {max(loads):.2f} (2 cores). CPU spent during the measured runs by processes that were "
                     f"neither the tool nor the test hosts (someone else's load): {sum(other):.1f} s over "
                     f"{sum(walls):.1f} s of measured wall time. Runs with a compiler/build process of someone "
                     f"else running on the machine: {busy_runs} of {len(self.samples)}"
                     + (f" ({', '.join(builders)})." if builders else "."))
        L.append("")
        with open(os.path.join(self.out_dir, "results.md"), "w") as f:
            f.write("\n".join(L) + "\n")

    def targets(self, agg):
        L = []
        def get(w, n, t, k):
            return agg.get((w, n, t, k))
        ns = sorted({n for (w, n, t, k) in agg})
        for wk in sorted({w for (w, n, t, k) in agg}):
            n50 = 50 if any(w == wk and n == 50 for (w, n, t, k) in agg) else None
            if n50:
                b = get(wk, 50, "bootstrap", "rerun")
                for t, goal in (("ansible", 10), ("pyinfra", 5)):
                    p = get(wk, 50, t, "rerun")
                    if b and p and b["wall_s"]:
                        x = p["wall_s"] / b["wall_s"]
                        L.append(f"- ({wk}) converged re-run at N=50, bootstrap >= {goal}x faster than "
                                 f"{TOOL_LABEL[t]}: **{x:.1f}x** ({b['wall_s']:.3f} s vs {p['wall_s']:.2f} s): "
                                 f"{'met' if x >= goal else 'MISSED'}")
            else:
                L.append(f"- ({wk}) N=50 not measured in these results: speed targets not evaluated")
            rts = [(n, v["rt_min"], v["rt_max"]) for (w, n, t, k), v in agg.items()
                   if w == wk and t == "bootstrap" and k == "rerun" and v["rt_min"] is not None]
            if rts:
                bad = [(n, lo, hi) for n, lo, hi in rts if lo != 1 or hi != 1]
                L.append(f"- ({wk}) exactly one probe round trip per converged host: "
                         + ("met at every N" if not bad else
                            "MISSED: " + ", ".join(f"N={n}: {int(lo)}-{int(hi)}" for n, lo, hi in sorted(bad))))
        mem = [(n, v["maxrss_mib"]) for (w, n, t, k), v in agg.items() if t == "bootstrap" and v["maxrss_mib"]]
        if mem:
            at100 = [m for n, m in mem if n >= 100]
            top_n = max(n for n, m in mem)
            top = max(m for n, m in mem if n == top_n)
            if at100:
                L.append(f"- controller peak memory < 64 MiB at N=100: **{max(at100):.1f} MiB**: "
                         f"{'met' if max(at100) < 64 else 'MISSED'}")
            else:
                L.append(f"- controller peak memory at N=100: not measured here; largest N measured {top_n}: "
                         f"{top:.1f} MiB")
        return L


# ---- the benchmark ----------------------------------------------------------------------------------------

def debs_dir(workload):
    key = hashlib.sha256(" ".join(workload.seed_packages).encode()).hexdigest()[:12]
    return os.path.join(CACHE, f"debs-{key}")


def cached_debs(workload):
    d = debs_dir(workload)
    return d if os.path.isdir(d) and any(f.endswith(".deb") for f in os.listdir(d)) else None


def seed_debs(fleet, name, workload):
    """The .deb files a workload installs, downloaded once (into the cache) on a booted host,
    which must be made fresh again afterwards. Returns the cache dir."""
    d = debs_dir(workload)
    log(f"downloading {' '.join(workload.seed_packages)} and dependencies once into {d} (not timed)")
    r = fleet.exec(name, ["sh", "-c", "apt-get -q update >/dev/null && DEBIAN_FRONTEND=noninteractive "
                                      f"apt-get -q -y --download-only install {' '.join(workload.seed_packages)} >/dev/null"],
                   timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"seeding .debs failed: {r.stderr[-500:]}")
    src = os.path.join(fleet.hosts[name]["statedir"], "merged", "var", "cache", "apt", "archives")
    tmp = d + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for f in os.listdir(src):
        if f.endswith(".deb"):
            shutil.copy2(os.path.join(src, f), tmp)
    os.replace(tmp, d)
    return d


def put_debs(fleet, names, debs):
    def one(n):
        dst = os.path.join(fleet.hosts[n]["statedir"], "merged", "var", "cache", "apt", "archives")
        for f in os.listdir(debs):
            shutil.copy2(os.path.join(debs, f), dst)
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, names))
    os.sync()


def main():
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default=None,
                    help="host counts, comma separated (default 1,10,50; at most 100; --scale: 100,500,1000)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per N (default 3)")
    ap.add_argument("--workload", default="a,b", help="a (four tasks), b (runner host), or a,b (default)")
    ap.add_argument("--tools", default=",".join(TOOLS), help="subset of bootstrap,ansible,pyinfra (default all)")
    ap.add_argument("--quick", action="store_true",
                    help="N=2, 1 repetition, workload a unless --workload is given: checks that the three tools "
                         "converge the hosts to the same state; exit status 1 if not")
    ap.add_argument("--out", default=None, help="results directory (default bench/results, --quick: bench/results/quick)")
    ap.add_argument("--bootstrap", default=os.path.join(ROOT, "target", "release", "bootstrap"),
                    help="the bootstrap binary (default target/release/bootstrap; copied at the start)")
    ap.add_argument("--boot-parallel", type=int, default=10, help="test hosts booted at once (default 10)")
    ap.add_argument("--no-seed-debs", action="store_true",
                    help="workload b: let every host download its packages from the mirror on its first run "
                         "(default: put the .debs into each fresh host's apt cache before the timed run)")
    ap.add_argument("--keep-workdir", action="store_true", help="keep the logs of every run (printed at the end)")
    ap.add_argument("--scale", action="store_true",
                    help="bootstrap on up to 1,000 hosts: --scale-hosts test hosts answering on many addresses "
                         "each, converged once, then converged apply and check timed for every --n and --forks, "
                         "then bootstrap, ansible-playbook and pyinfra side by side at --peers-n "
                         "(results: scale.md, scale-samples.csv, scale-run.json, scale.png; see bench/README.md)")
    ap.add_argument("--forks", default="50,100,200", help="--scale: the --forks values (default 50,100,200)")
    ap.add_argument("--scale-hosts", type=int, default=10,
                    help="--scale: test hosts that carry the N inventory hosts (default 10; at most 251 addresses each)")
    ap.add_argument("--peers-n", type=int, default=100,
                    help="--scale: after the bootstrap grid, bootstrap, ansible-playbook and pyinfra side by side on the "
                         "first N inventory hosts (default 100, at most the largest --n; 0 skips it)")
    ap.add_argument("--peers-reps", type=int, default=3,
                    help="--scale: rounds of the side-by-side runs, the tools' order rotated per round (default 3)")
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: write results.md, results.csv and chart.png again from the samples in --out")
    args = ap.parse_args()
    argv_str = "bench/run " + " ".join(sys.argv[1:])

    if args.quick:
        ns, reps = [2], 1
        if "--workload" not in " ".join(sys.argv[1:]):
            args.workload = "a"
    elif args.scale:
        ns = sorted({int(x) for x in (args.n or "100,500,1000").split(",") if x})
        reps = args.reps if "--reps" in " ".join(sys.argv[1:]) else 1
        args.reps = reps
    else:
        ns = sorted({int(x) for x in (args.n or "1,10,50").split(",") if x})
        reps = args.reps
    wls = [w for w in args.workload.split(",") if w] if not args.scale else []   # --scale: its own workload
    tools = [t for t in args.tools.split(",") if t]
    for w in wls:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w} (a, b)")
    for t in tools:
        if t not in TOOLS:
            ap.error(f"unknown tool {t}")
    if args.scale:
        forks_list = [int(x) for x in args.forks.split(",") if x]
        if not ns or any(n < 1 for n in ns) or not forks_list or any(f < 1 for f in forks_list):
            ap.error("--scale: N and --forks must be positive")
        if not 1 <= args.scale_hosts <= INDEX_LAST - INDEX_FIRST + 1:
            ap.error(f"--scale-hosts must be 1..{INDEX_LAST - INDEX_FIRST + 1}")
        if not 0 <= args.peers_n <= max(ns) or args.peers_reps < 1:
            ap.error(f"--peers-n must be 0..{max(ns)} (the largest --n) and --peers-reps at least 1")
    elif any(n < 1 or n > 100 for n in ns):
        ap.error("N must be 1..100")
    out_dir = args.out or os.path.join(HERE, "results", "quick" if args.quick else "")
    out_dir = os.path.abspath(out_dir)
    venv = os.environ.get("BENCH_VENV") or os.path.dirname(os.path.dirname(sys.executable))
    if not os.path.exists(args.bootstrap):
        raise SystemExit(f"bench: no bootstrap binary at {args.bootstrap} (cargo build --release)")
    if not os.path.isdir(CPUACCT):
        raise SystemExit(f"bench: no cpuacct cgroup hierarchy at {CPUACCT}")

    if args.report_only and args.scale:
        import scale
        return scale.report_only(out_dir)
    if args.report_only:
        report = Report(out_dir, args.quick)
        report.load_previous(set())
        report.write({"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}, [])
        log(f"results in {out_dir}")
        return 0

    # Reading a 1,000-host inventory with group_vars: bootstrap and ansible-inventory.
    parse = subprocess.run([sys.executable, os.path.join(HERE, "parse.py"), args.bootstrap, venv, "1000"],
                           capture_output=True, text=True)
    print(parse.stdout.strip() or f"bench-parse: failed: {parse.stderr.strip()[-300:]}", flush=True)

    started = time.monotonic()
    run_id = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for old in os.listdir("/var/tmp"):      # work dirs of runs that were killed
        m = re.fullmatch(r"bootstrap-bench\.(\d+)\.\w+", old)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            shutil.rmtree(os.path.join("/var/tmp", old), ignore_errors=True)
    workdir = tempfile.mkdtemp(prefix=f"bootstrap-bench.{os.getpid()}.", dir="/var/tmp")
    key = os.path.join(workdir, "id_ed25519")
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bootstrap-bench", "-f", key])
    fleet = Fleet(workdir, key + ".pub", args.boot_parallel, os.environ.get("BENCH_ALIVE_FILE"))
    report = Report(out_dir, args.quick)
    report.load_previous({(w, n) for w in wls for n in ns})

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    rc = 0
    try:
        sh([TESTHOST, "base"], timeout=600)
        tl = Tools(workdir, venv, args.bootstrap)
        versions = tl.versions()
        log(f"{versions['bootstrap']} ({versions['bootstrap_git']}), ansible-core {versions['ansible-core']}, "
            f"pyinfra {versions['pyinfra']}; work dir {workdir}")
        if any(WORKLOADS[w].net for w in wls):
            sh([TESTHOST, "net-up"])
        if not args.scale:       # --scale writes scale.md/csv/png of its own, never results.md
            report.runs[run_id] = {"run_id": run_id, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                                   "argv": argv_str, "machine": machine_info(), "versions": versions}
            fleet.preflight(2 * len(tools) if args.quick else max(ns))

        if args.scale:
            import scale
            rc = scale.run(sys.modules[__name__], args, ns, forks_list, workdir, key, fleet, tl, run_id, out_dir,
                           parse.stdout.strip() or None)
        elif args.quick:
            rc = quick(fleet, tl, report, run_id, wls, tools, workdir, args)
        else:
            rc = full(fleet, tl, report, run_id, wls, ns, reps, tools, workdir, args)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); tearing down")
        if run_id in report.runs:
            report.runs[run_id]["note"] = f"interrupted ({e}); the measurement under way is lost"
        rc = 130
    finally:
        for session in list(ACTIVE_SESSIONS):
            session.kill_all()
        fleet.down_all()
        dur = time.monotonic() - started
        if run_id in report.runs:
            report.runs[run_id]["duration"] = f"{dur:.0f} s"
            report.write({"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}, ["bench/run"] + sys.argv[1:])
        log(f"results in {out_dir} ({dur:.0f} s)")
        if args.keep_workdir:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return rc


def run_tool(fleet, tl, report, run_id, workload, n, rep, order, tool, names, workdir, debs):
    """Fresh hosts, the first run, the converged re-run; returns (state by host, problems)."""
    tag = f"{workload.key}-n{n}-r{rep}-{tool}"
    session = Session(workdir, tag)
    try:
        t_boot = fleet.fresh(names)
        if debs:
            put_debs(fleet, names, debs)
        access = fleet.write_access(names, session.dir, os.path.join(workdir, "id_ed25519"), n)
        log(f"[{workload.key} N={n} rep {rep}] {tool}: {n} fresh host(s) in {t_boot:.1f} s")
        results = {}
        for kind in ("first", "rerun"):
            argv, env = tl.command(tool, workload, n, access, session.dir)
            s, out = measure(session, argv, env, WORKLOADS_DIR, os.path.join(session.dir, f"{kind}.log"),
                             workload.timeout, names, fleet)
            p = Tools.parse(tool, out, n)
            rts = p.pop("round_trips")
            row = dict(s, **p, run_id=run_id, workload=workload.key, n=n, rep=rep, tool=tool, kind=kind, order=order,
                       started=datetime.datetime.now().isoformat(timespec="seconds"))
            if rts:
                row.update(rt_min=min(rts), rt_max=max(rts), rt_mean=sum(rts) / len(rts))
            report.add_sample(row)
            results[kind] = (row, out)
            log(f"[{workload.key} N={n} rep {rep}] {tool} {kind}: {s['wall_s']:.3f} s, CPU {s['cpu_s']:.3f} s, "
                f"exit {s['exit']}, changed {p['changed']}" + (f", round trips {min(rts)}-{max(rts)}" if rts else "")
                + (f", peak RSS {s['maxrss_kib'] / 1024:.1f} MiB" if tool == "bootstrap" else ""))
        # checks of this tool's runs
        first, fo = results["first"]
        rer, ro = results["rerun"]
        tail = lambda o: " | ".join(o.strip().splitlines()[-4:])[-400:]
        ok1 = first["exit"] == 0 and not first["failed"] and (first["changed_hosts"] == n) and first["hosts_seen"] == n
        report.add_check(run_id, workload.key, n, rep, f"{tool}: first run succeeds and changes every host", ok1,
                         f"exit {first['exit']}, failed {first['failed']}, hosts changed {first['changed_hosts']}/{n}, "
                         f"hosts seen {first['hosts_seen']}; {tail(fo)}")
        ok2 = rer["exit"] == 0 and not rer["failed"] and rer["changed"] == 0 and rer["hosts_seen"] == n
        report.add_check(run_id, workload.key, n, rep, f"{tool}: converged re-run changes nothing", ok2,
                         f"exit {rer['exit']}, failed {rer['failed']}, changed {rer['changed']}, hosts seen "
                         f"{rer['hosts_seen']}; {tail(ro)}")
        if tool == "bootstrap":
            rt_ok = rer.get("rt_min") == 1 and rer.get("rt_max") == 1
            report.add_check(run_id, workload.key, n, rep, "bootstrap: one round trip per converged host", rt_ok,
                             f"round trips after connecting: {rer.get('rt_min')}-{rer.get('rt_max')}")
        states = fleet.snapshot(names, workload)
        return {h: canonical_state(st) for h, st in states.items()}
    finally:
        session.close()


def compare_states(report, run_id, workload, n, rep, by_tool):
    """All hosts of all tools must be in one state (per workload)."""
    ref_tool = next(iter(by_tool))
    ref_host, ref = next(iter(by_tool[ref_tool].items()))
    for tool, states in by_tool.items():
        bad = [h for h, s in states.items() if s != ref]
        what = (f"{TOOL_LABEL[tool]}'s hosts in the same state as {TOOL_LABEL[ref_tool]}'s"
                if tool != ref_tool else f"{TOOL_LABEL[tool]}'s hosts all in the same state")
        detail = ""
        if bad:
            detail = f"{len(bad)}/{len(states)} differ, e.g. {bad[0]} vs {ref_host}: " + "; ".join(
                state_diff(ref, states[bad[0]]))
        report.add_check(run_id, workload.key, n, rep, f"same state: {what}", not bad, detail)


def quick(fleet, tl, report, run_id, wls, tools, workdir, args):
    """N=2 per tool; all tools' hosts booted at once (fastest), the tools run one after the other."""
    n = 2
    for wk in wls:
        w = WORKLOADS[wk]
        groups = {t: Fleet.names(n * len(tools))[i * n:(i + 1) * n] for i, t in enumerate(tools)}
        everyone = [h for t in tools for h in groups[t]]
        t0 = time.monotonic()
        fleet.up(everyone)
        fleet.settle(everyone, max_wait=0)      # no wait for a quiet machine: quick mode times nothing
        debs = None
        if w.seed_packages and not args.no_seed_debs:
            debs = cached_debs(w)
            if not debs:
                debs = seed_debs(fleet, everyone[0], w)
                fleet.fresh([everyone[0]])
            put_debs(fleet, everyone, debs)
        log(f"[{wk}] {len(everyone)} hosts up in {time.monotonic() - t0:.1f} s")
        by_tool = {}

        def one_tool(order_tool):
            order, tool = order_tool
            names = groups[tool]
            session = Session(workdir, f"{wk}-quick-{tool}")
            try:
                access = fleet.write_access(names, session.dir, os.path.join(workdir, "id_ed25519"), n)
                results = {}
                for kind in ("first", "rerun"):
                    argv, env = tl.command(tool, w, n, access, session.dir)
                    s, out = measure(session, argv, env, WORKLOADS_DIR, os.path.join(session.dir, f"{kind}.log"),
                                     w.timeout, names, fleet)
                    p = Tools.parse(tool, out, n)
                    rts = p.pop("round_trips")
                    row = dict(s, **p, run_id=run_id, workload=wk, n=n, rep=0, tool=tool, kind=kind, order=order,
                               started=datetime.datetime.now().isoformat(timespec="seconds"))
                    if rts:
                        row.update(rt_min=min(rts), rt_max=max(rts), rt_mean=sum(rts) / len(rts))
                    results[kind] = (row, out)
                    log(f"[{wk}] {tool} {kind}: {s['wall_s']:.3f} s, exit {s['exit']}, changed {p['changed']}"
                        + (f", round trips {min(rts)}-{max(rts)}" if rts else ""))
                return tool, results
            finally:
                session.close()

        # The three tools at once, each on its own hosts: fastest; the times are not comparable.
        with ThreadPoolExecutor(len(tools)) as ex:
            done = dict(ex.map(one_tool, enumerate(tools)))
        for tool in tools:
            results = done[tool]
            for kind in ("first", "rerun"):
                report.add_sample(results[kind][0])
            first, fo = results["first"]
            rer, ro = results["rerun"]
            tail = lambda o: " | ".join(o.strip().splitlines()[-4:])[-400:]
            report.add_check(run_id, wk, n, 0, f"{tool}: first run succeeds and changes every host",
                             first["exit"] == 0 and not first["failed"] and first["changed_hosts"] == n
                             and first["hosts_seen"] == n,
                             f"exit {first['exit']}, failed {first['failed']}, hosts changed "
                             f"{first['changed_hosts']}/{n}; {tail(fo)}")
            report.add_check(run_id, wk, n, 0, f"{tool}: converged re-run changes nothing",
                             rer["exit"] == 0 and not rer["failed"] and rer["changed"] == 0 and rer["hosts_seen"] == n,
                             f"exit {rer['exit']}, failed {rer['failed']}, changed {rer['changed']}; {tail(ro)}")
            if tool == "bootstrap":
                report.add_check(run_id, wk, n, 0, "bootstrap: one round trip per converged host",
                                 rer.get("rt_min") == 1 and rer.get("rt_max") == 1,
                                 f"round trips after connecting: {rer.get('rt_min')}-{rer.get('rt_max')}")
        states = fleet.snapshot(everyone, w)
        for tool in tools:
            by_tool[tool] = {h: canonical_state(states[h]) for h in groups[tool]}
        compare_states(report, run_id, w, n, 0, by_tool)
        fleet.down(everyone)
    mine = [c for c in report.checks if c["run_id"] == run_id]
    failed = sum(1 for c in mine if not c["ok"])
    print(f"bench-quick: {len(mine) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def full(fleet, tl, report, run_id, wls, ns, reps, tools, workdir, args):
    for wk in wls:
        w = WORKLOADS[wk]
        for n in ns:
            names = Fleet.names(n)
            debs = None
            if w.seed_packages and not args.no_seed_debs:
                debs = cached_debs(w)
                if not debs:
                    fleet.fresh(names[:1])
                    debs = seed_debs(fleet, names[0], w)
            for rep in range(reps):
                order = tools[rep % len(tools):] + tools[:rep % len(tools)]
                by_tool = {}
                for pos, tool in enumerate(order):
                    by_tool[tool] = run_tool(fleet, tl, report, run_id, w, n, rep, pos, tool, names, workdir, debs)
                compare_states(report, run_id, w, n, rep, {t: by_tool[t] for t in tools if t in by_tool})
                report.write({"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")},
                             ["bench/run"] + sys.argv[1:])   # partial results survive an interruption
            fleet.down(names)
    mine = [c for c in report.checks if c["run_id"] == run_id]
    failed = sum(1 for c in mine if not c["ok"])
    print(f"bench: checks {len(mine) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
