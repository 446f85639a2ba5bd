#!/usr/bin/env python3
"""GitLab REST API (v4) stand-in for the bootstrap integration tests: the runner endpoints only.

Mirrors upstream GitLab (doc/api/users.md "Create a runner linked to a user", doc/api/runners.md,
lib/api/ci/runner.rb, lib/api/ci/runners.rb), state in memory:

  POST   /api/v4/user/runners                    create a runner (PRIVATE-TOKEN, scope create_runner or api) -> 201
  POST   /api/v4/runners                         legacy registration with a registration token -> 201 / 403 / 410
  POST   /api/v4/runners/verify                  check an authentication token -> 200 / 403
  POST   /api/v4/runners/reset_authentication_token   rotate a runner's own token -> 201 / 403
  DELETE /api/v4/runners                         delete the runner of `token` -> 204 / 403
  DELETE /api/v4/runners/:id                     delete by id (PRIVATE-TOKEN) -> 204 / 401 / 403 / 404
  GET    /api/v4/runners/:id                     details
  GET    /api/v4/runners, /runners/all (admin), /groups/:id/runners, /projects/:id/runners
                                                 lists; filters type, status, paused, tag_list; page/per_page
  POST   /api/v4/jobs/request                    a runner asks for a job: always 204 (no job); records contact
Test controls (not upstream): GET /_standin/state, POST /_standin/faults, POST /_standin/reset.

Bodies may be JSON, x-www-form-urlencoded or multipart/form-data; query parameters count too.
Run `standin.py --help` for the flags. Requests are logged to stderr without token values.
"""
import argparse
import email.parser
import email.policy
import fnmatch
import json
import secrets
import signal
import ssl
import string
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

RUNNER_TYPES = ("instance_type", "group_type", "project_type")
ACCESS_LEVELS = ("not_protected", "ref_protected")
STATUSES = ("online", "offline", "stale", "never_contacted", "active", "paused")
STALE_SECONDS = 7 * 24 * 3600  # upstream: 7 days
INSUFFICIENT_SCOPE = "The request requires higher privileges than provided by the access token."


class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__(status)
        self.status, self.body = status, body


def bad_param(text):  # Grape's parameter validation answer
    return ApiError(400, {"error": text})


def iso(t):
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def as_bool(params, name, default=None):
    v = params.get(name)
    if v is None:
        return default
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("true", "1", "t", "yes", "y", "on"):
        return True
    if s in ("false", "0", "f", "no", "n", "off"):
        return False
    raise bad_param(f"{name} is invalid")


def as_int(params, name, default=None):
    v = params.get(name)
    if v is None or v == "":
        return default
    if isinstance(v, bool) or not str(v).strip().lstrip("-").isdigit():
        raise bad_param(f"{name} is invalid")
    return int(v)


def as_tags(v):
    items = v if isinstance(v, list) else str(v or "").split(",")
    out = []
    for t in (str(x).strip() for x in items):
        if t and t not in out:
            out.append(t)
    return out


def choice(params, name, values, default=None):
    v = params.get(name, default)
    if v is not None and v not in values:
        raise bad_param(f"{name} does not have a valid value")
    return v


def parse_form_pairs(pairs):
    """a=1&tag_list[]=x&tag_list[]=y&info[name]=r -> {"a": "1", "tag_list": [...], "info": {...}}"""
    out = {}
    for k, v in pairs:
        if k.endswith("[]"):
            out.setdefault(k[:-2], []).append(v)
        elif "[" in k and k.endswith("]"):
            outer, inner = k[:-1].split("[", 1)
            out.setdefault(outer, {})[inner] = v
        else:
            out[k] = v
    return out


def new_token(prefix):
    alphabet = string.ascii_letters + string.digits + "_-"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(20))


class State:
    def __init__(self, opts):
        self.opts = opts
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.runners = {}      # id -> dict
        self.deleted = []      # [{"id", "description", "how"}]
        self.faults = []
        self.requests = []     # [{"time", "method", "path", "status", "remote"}], newest last
        self.next_id = 1

    # --- runners -------------------------------------------------------------------------------------
    def status(self, r, now):
        c = r["contacted_at"]
        if c is not None and now - c < self.opts.online_seconds:
            return "online"
        if now - r["created_at"] > STALE_SECONDS and (c is None or now - c > STALE_SECONDS):
            return "stale"
        return "never_contacted" if c is None else "offline"

    def expiry(self):
        secs = self.opts.token_expires_in
        return None if secs is None else time.time() + secs

    def by_token(self, token):
        """The runner of a current (not expired) token."""
        if not token:
            return None
        for r in self.runners.values():
            if secrets.compare_digest(r["token"], str(token)):
                exp = r.get("token_expires_at")
                return None if exp is not None and exp < time.time() else r
        return None

    def create(self, params, runner_type, scope_id, how, creator, token_prefix):
        tags = as_tags(params.get("tag_list"))
        run_untagged = as_bool(params, "run_untagged", True)
        paused = as_bool(params, "paused", None)
        if paused is None and "active" in params:  # legacy endpoint's deprecated `active`
            paused = not as_bool(params, "active")
        locked = as_bool(params, "locked", False)
        access = choice(params, "access_level", ACCESS_LEVELS, "not_protected")
        timeout = as_int(params, "maximum_timeout")
        errors = {}
        if not run_untagged and not tags:  # upstream model validation Ci::Runner#tag_constraints
            errors["tags_list"] = ["can not be empty when runner is not allowed to pick untagged jobs"]
        if timeout is not None and timeout < 600:
            errors["maximum_timeout"] = ["needs to be at least 10 minutes"]
        if errors:
            raise ApiError(400, {"message": errors})
        info = params.get("info") if isinstance(params.get("info"), dict) else {}
        r = {
            "id": self.next_id, "token": new_token(token_prefix), "runner_type": runner_type,
            "token_expires_at": self.expiry(),
            "group_id": scope_id if runner_type == "group_type" else None,
            "project_id": scope_id if runner_type == "project_type" else None,
            "description": str(params.get("description") or ""), "tag_list": tags,
            "run_untagged": run_untagged, "locked": locked, "access_level": access,
            "paused": bool(paused), "maximum_timeout": timeout,
            "maintenance_note": params.get("maintenance_note"), "registration": how,
            "created_by": creator, "created_at": time.time(), "contacted_at": None, "contacts": 0,
            "ip_address": None, "info": {k: info.get(k) for k in ("version", "revision", "platform", "architecture")},
            "managers": {}, "token_rotations": 0,
        }
        self.next_id += 1
        self.runners[r["id"]] = r
        return r

    def list_entry(self, r, now):
        st = self.status(r, now)
        return {"id": r["id"], "description": r["description"], "ip_address": r["ip_address"],
                "active": not r["paused"], "paused": r["paused"], "is_shared": r["runner_type"] == "instance_type",
                "runner_type": r["runner_type"], "name": (r["info"].get("name") or None),
                "online": st == "online", "status": st, "created_at": iso(r["created_at"])}

    def details(self, r, now):
        d = self.list_entry(r, now)
        d.update({"contacted_at": iso(r["contacted_at"]), "tag_list": r["tag_list"],
                  "run_untagged": r["run_untagged"], "locked": r["locked"],
                  "maximum_timeout": r["maximum_timeout"], "access_level": r["access_level"],
                  "maintenance_note": r["maintenance_note"], **r["info"],
                  "groups": [{"id": r["group_id"]}] if r["group_id"] is not None else [],
                  "projects": [{"id": r["project_id"]}] if r["project_id"] is not None else []})
        return d

    def dump(self):
        now = time.time()
        runners = []
        for r in sorted(self.runners.values(), key=lambda r: r["id"]):
            x = {k: v for k, v in r.items() if k not in ("managers", "info")}
            x.update(created_at=iso(r["created_at"]), contacted_at=iso(r["contacted_at"]), token_expires_at=iso(r["token_expires_at"]),
                     status=self.status(r, now), info=r["info"],
                     managers=[{"system_id": s, "contacts": m["contacts"], "contacted_at": iso(m["contacted_at"])}
                               for s, m in r["managers"].items()])
            runners.append(x)
        return {"runners": runners, "deleted": self.deleted, "faults": self.faults, "requests": self.requests,
                "legacy_registration": "disabled" if self.opts.legacy_disabled else "enabled",
                "online_seconds": self.opts.online_seconds}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gitlab-standin/1"
    state: State = None  # set in main()

    # --- plumbing --------------------------------------------------------------------------------------
    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def log_message(self, fmt, *args):  # the default would print the request line (query strings hold tokens)
        pass

    def read_params(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raw = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                raw += self.rfile.read(size) if size else b""
                self.rfile.readline()  # CRLF after the chunk (or after the trailers when size == 0)
                if size == 0:
                    break
        else:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
        url = urlsplit(self.path)
        params = parse_form_pairs(parse_qsl(url.query, keep_blank_values=True))
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if raw and ctype == "application/json":
            try:
                body = json.loads(raw)
            except ValueError:
                raise ApiError(400, {"error": "The provided content-type 'application/json' is not supported."})
            if not isinstance(body, dict):
                raise ApiError(400, {"error": "body must be a JSON object"})
            params.update(body)
        elif raw and ctype == "multipart/form-data":
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
            pairs = [(p.get_param("name", header="content-disposition"), p.get_content().strip("\r\n")
                      if p.get_content_maintype() == "text" else p.get_payload(decode=True).decode())
                     for p in msg.iter_parts()]
            params.update(parse_form_pairs(pairs))
        elif raw:
            params.update(parse_form_pairs(parse_qsl(raw.decode(), keep_blank_values=True)))
        return url.path.rstrip("/") or "/", params

    def send(self, status, body=None, headers=None):
        data = b""
        if body is not None:
            data = (json.dumps(body) if not isinstance(body, (bytes, str)) else body)
            data = data.encode() if isinstance(data, str) else data
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if status != 204:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 204:
            self.wfile.write(data)
        self.status_sent = status

    def dispatch(self, method):
        t0, st, path = time.time(), self.state, urlsplit(self.path).path
        self.status_sent = None
        self.fault_after = None
        try:
            path, params = self.read_params()
            if path.startswith("/api/") and self.apply_fault(method, path):
                return
            route = self.route(method, path)
            if route is None:
                raise ApiError(404, {"error": "404 Not Found"})
            fn, args = route
            with st.lock:
                status, body, headers = fn(params, *args)
            after = getattr(self, "fault_after", None)
            if after is not None:  # done, but the answer is lost on its way (a proxy's 502, a dropped connection)
                self.fault_after = None
                if after.get("close"):
                    self.close_connection = True
                    self.status_sent = "closed"
                    return
                self.send(int(after.get("status", 502)), after.get("body", {"message": "502 Bad Gateway (injected after the request was done)"}),
                          after.get("headers"))
                return
            self.send(status, body, headers)
        except ApiError as e:
            self.send(e.status, e.body)
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception as e:  # a bug in the stand-in: answer like a server error, say what it was
            print(f"standin: internal error on {method} {path}: {e!r}", file=sys.stderr, flush=True)
            self.send(500, {"message": "500 Internal Server Error"})
        finally:
            if not path.startswith("/_standin"):
                with st.lock:
                    st.requests.append({"time": iso(t0), "method": method, "path": path,
                                        "status": self.status_sent, "remote": self.client_address[0]})
                    del st.requests[:-2000]
            print(f"standin: {method} {path} -> {self.status_sent} ({(time.time() - t0) * 1000:.0f} ms)",
                  file=sys.stderr, flush=True)

    def apply_fault(self, method, path):
        """Faults: {"method", "path" (glob), "count", "status", "body", "headers", "delay", "close"}."""
        st = self.state
        with st.lock:
            f = next((f for f in st.faults if f["count"] > 0 and f.get("method", "*").upper() in (method, "*")
                      and fnmatch.fnmatchcase(path, f["path"])), None)
            if f is None:
                return False
            f["count"] -= 1
            f["used"] = f.get("used", 0) + 1
            st.faults[:] = [x for x in st.faults if x["count"] > 0]
        if f.get("delay"):
            time.sleep(float(f["delay"]))
        if f.get("after"):
            self.fault_after = f  # the request is done first; then this answer replaces GitLab's
            return False
        if f.get("close"):
            self.close_connection = True
            self.status_sent = "closed"
            return True
        if f.get("status") is None:
            return False  # delay only: answer normally afterwards
        self.send(int(f["status"]), f.get("body", {"message": f"{f['status']} (injected by the stand-in)"}),
                  f.get("headers"))
        return True

    def route(self, method, path):
        p = path.split("/")[1:]
        table = [
            ("POST", ["api", "v4", "user", "runners"], self.create_user_runner),
            ("POST", ["api", "v4", "runners"], self.register_legacy),
            ("POST", ["api", "v4", "runners", "verify"], self.verify),
            ("POST", ["api", "v4", "runners", "reset_authentication_token"], self.reset_token),
            ("DELETE", ["api", "v4", "runners"], self.delete_by_token),
            ("POST", ["api", "v4", "jobs", "request"], self.jobs_request),
            ("GET", ["api", "v4", "runners"], self.list_owned),
            ("GET", ["api", "v4", "runners", "all"], self.list_all),
            ("GET", ["api", "v4", "runners", ":id"], self.show),
            ("DELETE", ["api", "v4", "runners", ":id"], self.delete_by_id),
            ("GET", ["api", "v4", "groups", ":id", "runners"], self.list_group),
            ("GET", ["api", "v4", "projects", ":id", "runners"], self.list_project),
            ("GET", ["_standin", "state"], self.ctl_state),
            ("POST", ["_standin", "faults"], self.ctl_faults),
            ("POST", ["_standin", "reset"], self.ctl_reset),
        ]
        for m, pattern, fn in table:
            if m != method or len(pattern) != len(p):
                continue
            args = []
            for want, got in zip(pattern, p):
                if want == ":id":
                    if not got.isdigit():
                        break
                    args.append(int(got))
                elif want != got:
                    break
            else:
                return fn, args
        return None

    # --- authentication -------------------------------------------------------------------------------
    def user(self, params, scopes):
        """PRIVATE-TOKEN header, Authorization: Bearer or ?private_token= -> the token's user."""
        value = self.headers.get("PRIVATE-TOKEN") or params.get("private_token")
        auth = self.headers.get("Authorization") or ""
        if not value and auth.lower().startswith("bearer "):
            value = auth[7:].strip()
        tok = next((t for t in self.state.opts.token if value and secrets.compare_digest(t["value"], value)), None)
        if tok is None:
            raise ApiError(401, {"message": "401 Unauthorized"})
        if not (set(scopes) & tok["scopes"]):
            raise ApiError(403, {"error": "insufficient_scope", "error_description": INSUFFICIENT_SCOPE,
                                 "scope": " ".join(scopes)})
        return tok

    def runner_by_token(self, params):
        if not params.get("token"):
            raise bad_param("token is missing")
        r = self.state.by_token(params["token"])
        if r is None:
            raise ApiError(403, {"message": "403 Forbidden"})
        return r

    def check_scope_id(self, kind, value):
        known = self.state.opts.group if kind == "group" else self.state.opts.project
        return value is not None and value > 0 and (not known or value in known)

    # --- upstream endpoints ---------------------------------------------------------------------------
    def create_user_runner(self, params):
        tok = self.user(params, ["create_runner", "api"])
        if "runner_type" not in params:
            raise bad_param("runner_type is missing")
        rtype = choice(params, "runner_type", RUNNER_TYPES)
        scope_id = None
        if rtype == "group_type":
            scope_id = as_int(params, "group_id")
            if not self.check_scope_id("group", scope_id):
                raise ApiError(400, {"message": "400 Bad request - Missing/invalid scope"})
        elif rtype == "project_type":
            scope_id = as_int(params, "project_id")
            if not self.check_scope_id("project", scope_id):
                raise ApiError(400, {"message": "400 Bad request - Missing/invalid scope"})
        elif not tok["admin"]:
            raise ApiError(403, {"message": "403 Forbidden - Insufficient permissions"})
        r = self.state.create(params, rtype, scope_id, "user_runners", tok["name"], "glrt-")
        return 201, {"id": r["id"], "token": r["token"], "token_expires_at": iso(r["token_expires_at"])}, None

    def register_legacy(self, params):
        if not params.get("token"):
            raise bad_param("token is missing")
        reg = next((t for t in self.state.opts.registration_token
                    if secrets.compare_digest(t["value"], str(params["token"]))), None)
        if reg is None:
            raise ApiError(403, {"message": "403 Forbidden"})
        if self.state.opts.legacy_disabled:
            raise ApiError(410, {"message": "410 Gone - runner registration disallowed"})
        r = self.state.create(params, reg["type"], reg["id"], "legacy", None, "")
        return 201, {"id": r["id"], "token": r["token"], "token_expires_at": iso(r["token_expires_at"])}, None

    def verify(self, params):
        r = self.runner_by_token(params)
        if params.get("system_id"):
            r["managers"].setdefault(str(params["system_id"]), {"contacts": 0, "contacted_at": None})
        return 200, {"id": r["id"], "token": r["token"], "token_expires_at": iso(r["token_expires_at"])}, None

    def reset_token(self, params):
        r = self.runner_by_token(params)
        r["token"] = new_token("glrt-" if r["registration"] == "user_runners" else "")
        r["token_rotations"] += 1
        r["token_expires_at"] = self.state.expiry()
        return 201, {"token": r["token"], "token_expires_at": iso(r["token_expires_at"])}, None

    def delete_by_token(self, params):
        r = self.runner_by_token(params)
        del self.state.runners[r["id"]]
        self.state.deleted.append({"id": r["id"], "description": r["description"], "how": "token"})
        return 204, None, None

    def jobs_request(self, params):
        r = self.runner_by_token(params)
        now = time.time()
        r["contacted_at"], r["contacts"], r["ip_address"] = now, r["contacts"] + 1, self.client_address[0]
        info = params.get("info") if isinstance(params.get("info"), dict) else {}
        for k in ("version", "revision", "platform", "architecture", "name"):
            if info.get(k):
                r["info"][k] = info[k]
        m = r["managers"].setdefault(str(params.get("system_id") or ""), {"contacts": 0, "contacted_at": None})
        m["contacts"] += 1
        m["contacted_at"] = now
        return 204, None, {"X-GitLab-Last-Update": secrets.token_hex(16)}

    def show(self, params, rid):
        self.user(params, ["api", "read_api", "manage_runner"])
        r = self.state.runners.get(rid)
        if r is None:
            raise ApiError(404, {"message": "404 Runner Not Found"})
        return 200, self.state.details(r, time.time()), None

    def delete_by_id(self, params, rid):
        tok = self.user(params, ["api", "manage_runner"])
        r = self.state.runners.get(rid)
        if r is None:
            raise ApiError(404, {"message": "404 Runner Not Found"})
        if r["runner_type"] == "instance_type" and not tok["admin"]:  # upstream: only an admin may
            raise ApiError(403, {"message": "403 Forbidden"})
        del self.state.runners[rid]
        self.state.deleted.append({"id": r["id"], "description": r["description"], "how": "id"})
        return 204, None, None

    def listing(self, params, runners, allowed_types=RUNNER_TYPES):
        rtype = choice(params, "type", allowed_types)
        status = choice(params, "status", STATUSES)
        paused = as_bool(params, "paused")
        tags = as_tags(params.get("tag_list"))
        page, per_page = max(as_int(params, "page", 1), 1), min(max(as_int(params, "per_page", 20), 1), 100)
        now, out = time.time(), []
        for r in sorted(runners, key=lambda r: r["id"]):
            e = self.state.list_entry(r, now)
            if rtype and r["runner_type"] != rtype:
                continue
            if status in ("active", "paused"):
                if e["paused"] != (status == "paused"):
                    continue
            elif status and e["status"] != status:
                continue
            if paused is not None and r["paused"] != paused:
                continue
            if any(t not in r["tag_list"] for t in tags):
                continue
            out.append(e)
        total, pages = len(out), max((len(out) + per_page - 1) // per_page, 1)
        headers = {"X-Total": total, "X-Total-Pages": pages, "X-Page": page, "X-Per-Page": per_page,
                   "X-Next-Page": page + 1 if page < pages else "", "X-Prev-Page": page - 1 if page > 1 else ""}
        base = f"http://{self.headers.get('Host', 'localhost')}{urlsplit(self.path).path}"
        keep = [(k, v) for k, v in params.items() if k not in ("page", "private_token") and isinstance(v, (str, int))]
        def link(p, rel):
            q = "&".join(f"{k}={v}" for k, v in keep + [("page", p)])
            return f'<{base}?{q}>; rel="{rel}"'
        links = [link(page + 1, "next")] if page < pages else []
        links += [link(page - 1, "prev")] if page > 1 else []
        links += [link(1, "first"), link(pages, "last")]
        headers["Link"] = ", ".join(links)
        return 200, out[(page - 1) * per_page: page * per_page], headers

    def list_all(self, params):
        tok = self.user(params, ["api", "read_api", "manage_runner"])
        if not tok["admin"]:
            raise ApiError(403, {"message": "403 Forbidden"})
        return self.listing(params, self.state.runners.values())

    def list_owned(self, params):
        tok = self.user(params, ["api", "read_api", "manage_runner"])
        return self.listing(params, [r for r in self.state.runners.values()
                                     if r["runner_type"] != "instance_type" and r["created_by"] == tok["name"]])

    def group_chain(self, gid):
        """The group and its ancestors."""
        chain, seen = [], set()
        while gid is not None and gid not in seen:
            chain.append(gid)
            seen.add(gid)
            gid = self.state.opts.group_parent.get(gid)
        return chain

    def list_group(self, params, gid):
        # Upstream: the group's runners, its ancestor groups' and the instance's.
        self.user(params, ["api", "read_api", "manage_runner"])
        if not self.check_scope_id("group", gid):
            raise ApiError(404, {"message": "404 Group Not Found"})
        chain = self.group_chain(gid)
        return self.listing(params, [r for r in self.state.runners.values() if r["runner_type"] == "instance_type"
                                     or (r["runner_type"] == "group_type" and r["group_id"] in chain)])

    def list_project(self, params, pid):
        # Upstream: the project's runners, its groups' (with ancestors) and the instance's.
        self.user(params, ["api", "read_api", "manage_runner"])
        if not self.check_scope_id("project", pid):
            raise ApiError(404, {"message": "404 Project Not Found"})
        chain = self.group_chain(self.state.opts.project_group.get(pid))
        return self.listing(params, [r for r in self.state.runners.values() if r["runner_type"] == "instance_type"
                                     or (r["runner_type"] == "group_type" and r["group_id"] in chain)
                                     or r["project_id"] == pid])

    # --- test controls --------------------------------------------------------------------------------
    def ctl_state(self, params):
        return 200, self.state.dump(), None

    def ctl_faults(self, params):
        faults = params.get("faults", [params])
        for f in faults:
            if not isinstance(f, dict) or "path" not in f:
                raise ApiError(400, {"error": "a fault needs at least \"path\" (glob) and one of status/delay/close"})
            f["count"] = int(f.get("count", 1))
            f["method"] = str(f.get("method", "*")).upper()
            self.state.faults.append(f)
        return 200, {"faults": self.state.faults}, None

    def ctl_reset(self, params):
        self.state.reset()
        return 200, {"reset": True}, None


def parse_token(spec):
    """NAME=VALUE:scope1,scope2  (scope `admin` makes the user an administrator)."""
    name, sep, rest = spec.partition("=")
    value, _, scopes = rest.rpartition(":") if ":" in rest else (rest, "", "api")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"--token wants NAME=VALUE:scope1,scope2, got {spec!r}")
    scopes = {s.strip() for s in scopes.split(",") if s.strip()}
    return {"name": name, "value": value, "scopes": scopes - {"admin"}, "admin": "admin" in scopes}


def parse_scope(spec):
    """ID or ID:PARENT (both integers)."""
    a, _, b = spec.partition(":")
    try:
        return int(a), (int(b) if b else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants ID[:PARENT], got {spec!r}")


def parse_registration_token(spec):
    """VALUE[:instance_type | :group_type:ID | :project_type:ID]"""
    parts = spec.split(":")
    rtype = parts[1] if len(parts) > 1 else "instance_type"
    if rtype not in RUNNER_TYPES or (rtype != "instance_type") != (len(parts) == 3) or not parts[0]:
        raise argparse.ArgumentTypeError(f"--registration-token wants VALUE[:TYPE[:ID]], got {spec!r}")
    return {"value": parts[0], "type": rtype, "id": int(parts[2]) if len(parts) == 3 else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 picks a free one)")
    ap.add_argument("--token", action="append", type=parse_token, default=[], metavar="NAME=VALUE:SCOPES",
                    help="a personal access token; scopes: api, read_api, create_runner, manage_runner, "
                         "and `admin` for an administrator (repeatable)")
    ap.add_argument("--registration-token", action="append", type=parse_registration_token, default=[],
                    metavar="VALUE[:TYPE[:ID]]", help="legacy registration token (repeatable)")
    ap.add_argument("--legacy-disabled", action="store_true",
                    help="POST /api/v4/runners answers 410 Gone (upstream default since 17.0)")
    ap.add_argument("--group", action="append", type=parse_scope, default=[], metavar="ID[:PARENT]",
                    help="an existing group id, in group PARENT (repeatable; none given: every id exists)")
    ap.add_argument("--project", action="append", type=parse_scope, default=[], metavar="ID[:GROUP]",
                    help="an existing project id, in group GROUP (repeatable; none given: every id exists)")
    ap.add_argument("--token-expires-in", type=float, default=None, metavar="SECONDS",
                    help="runner tokens expire this long after they are made (upstream: runner_token_expiration_interval)")
    ap.add_argument("--online-seconds", type=float, default=7200,
                    help="a runner is online if it asked for a job this recently (upstream: 2 h)")
    ap.add_argument("--tls-cert", metavar="FILE",
                    help="serve HTTPS with this PEM certificate (chain) instead of HTTP; needs --tls-key")
    ap.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    opts = ap.parse_args()
    # ID -> parent group (None: top level); a later --group/--project of an id wins.
    opts.group_parent = {i: p for i, p in opts.group}
    opts.project_group = {i: g for i, g in opts.project}
    opts.group, opts.project = list(opts.group_parent), list(opts.project_group)
    if bool(opts.tls_cert) != bool(opts.tls_key):
        ap.error("--tls-cert and --tls-key go together")

    host, _, port = opts.listen.rpartition(":")
    Handler.state = State(opts)
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    scheme = "http"
    if opts.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    h, p = server.server_address[:2]
    print(f"url={scheme}://{h}:{p}", flush=True)
    print(f"standin: listening on {h}:{p}; {len(opts.token)} token(s), "
          f"legacy registration {'disabled' if opts.legacy_disabled else 'enabled'}", file=sys.stderr, flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    print("standin: stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
