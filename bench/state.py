#!/usr/bin/env python3
"""Prints, as JSON, the state a workload leaves on a host: for every path given, its type,
mode, owner, group and SHA-256 (files, recursively for directories); the passwd, group and
shadow entries of the users given (shadow without the last-change day); for `--packages`,
every installed package and version; for `--services`, is-enabled/is-active of each.

Runs inside a test host as root with the guest's python3 (stdlib only), through
`testhost exec NAME python3 -c "$(cat state.py)" ARGS...`. Arguments:
  state.py [--users u1,u2] [--services s1,s2] [--packages] [--skip PATH,...] PATH...
"""
import grp
import hashlib
import json
import os
import pwd
import stat
import subprocess
import sys


def describe(path, skip, out):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        out[path] = None
        return
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    e = {"mode": "%04o" % stat.S_IMODE(st.st_mode), "owner": owner, "group": group}
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        e.update(type="file", sha256=h.hexdigest(), size=st.st_size)
    elif stat.S_ISLNK(st.st_mode):
        e.update(type="link", target=os.readlink(path))
    elif stat.S_ISDIR(st.st_mode):
        e["type"] = "dir"
        out[path] = e
        for name in sorted(os.listdir(path)):
            child = os.path.join(path, name)
            if child not in skip:
                describe(child, skip, out)
        return
    else:
        e["type"] = "other"
    out[path] = e


def main(argv):
    users, services, packages, skip, paths = [], [], False, set(), []
    it = iter(argv)
    for a in it:
        if a == "--users":
            users = [u for u in next(it).split(",") if u]
        elif a == "--services":
            services = [s for s in next(it).split(",") if s]
        elif a == "--skip":
            skip = {p for p in next(it).split(",") if p}
        elif a == "--packages":
            packages = True
        else:
            paths.append(a)
    state = {"paths": {}, "users": {}, "groups": {}}
    for p in paths:
        describe(p, skip, state["paths"])
    shadow = {}
    with open("/etc/shadow") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            shadow[fields[0]] = fields
    for u in users:
        try:
            pw = pwd.getpwnam(u)
        except KeyError:
            state["users"][u] = None
            continue
        sh = list(shadow.get(u, []))
        if len(sh) > 2:
            sh[2] = "<last change>"
        state["users"][u] = {
            "passwd": [pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_gecos, pw.pw_dir, pw.pw_shell],
            "primary_group": grp.getgrgid(pw.pw_gid).gr_name,
            "groups": sorted(g.gr_name for g in grp.getgrall() if u in g.gr_mem),
            "shadow": sh,
        }
        g = grp.getgrgid(pw.pw_gid)
        state["groups"][g.gr_name] = [g.gr_gid, sorted(g.gr_mem)]
    if packages:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n"],
                           capture_output=True, text=True, check=True)
        state["packages"] = sorted(line.strip() for line in r.stdout.splitlines() if line.strip())
    if services:
        state["services"] = {}
        for s in services:
            en = subprocess.run(["systemctl", "is-enabled", s], capture_output=True, text=True).stdout.strip()
            ac = subprocess.run(["systemctl", "is-active", s], capture_output=True, text=True).stdout.strip()
            state["services"][s] = [en, ac]
    json.dump(state, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
