#!/usr/bin/env python3
"""HTTP tests of custos-gateway, run by tools/gateway_test.sh.

Real HTTP over loopback against a gateway connected to a real database.
Standard library only.  Environment (set by the script):

  GW_URL       http://127.0.0.1:PORT
  GW_TOKENS    JSON file with the test tokens and principal ids
  GW_PID       the gateway's pid (resident memory during an export)
  GW_BINARY    the gateway binary (--routes)
  GW_OPENAPI   docs/openapi.yaml
  GW_PSQL      psql command line as superuser of the test database
  GW_PG_STOP / GW_PG_START   shell commands that stop / start the cluster

Prints "ok - ..." / "FAILED - ..." per check and ends with
"http tests: N passed, M failed".
"""

import csv
import http.client
import io
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse

URL = urllib.parse.urlparse(os.environ["GW_URL"])
HOST, PORT = URL.hostname, URL.port
TOKENS = json.load(open(os.environ["GW_TOKENS"]))
GW_PID = int(os.environ.get("GW_PID", "0"))
PSQL = shlex.split(os.environ["GW_PSQL"])

passed = 0
failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok - " + name, flush=True)
    else:
        failed += 1
        print("FAILED - " + name + (": " + str(detail)[:600] if detail != "" else ""), flush=True)
    return cond


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "%s %s" % (self.status, self.body[:400])


def req(method, path, token=None, body=None, headers=None, timeout=30):
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    data = body
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        data = body.encode()
    c = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return Resp(r.status, r.getheaders(), r.read())
    finally:
        c.close()


def raw_head(path):
    """HEAD over a raw socket: status line, headers and whatever follows
    them until the gateway closes (http.client never reads a HEAD body)."""
    sock = socket.create_connection((HOST, PORT), timeout=10)
    try:
        sock.sendall(("HEAD %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), rest


def psql(sql):
    out = subprocess.run(PSQL + ["-c", sql], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout.strip()


def seal():
    psql("SELECT custos.seal()")


def is_problem(r, status, sqlstate=None):
    if r.status != status:
        return False
    if not r.headers.get("content-type", "").startswith("application/problem+json"):
        return False
    p = r.json()
    if p.get("status") != status or not p.get("type", "").startswith("urn:custos:problem:"):
        return False
    if sqlstate and p.get("sqlstate") != sqlstate:
        return False
    return True


def csv_rows(body):
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def post_events(token, events, headers=None):
    return req("POST", "/v1/events", token, events, headers)


def list_events(token, **params):
    return req("GET", "/v1/events?" + urllib.parse.urlencode(params), token)


def test(fn):
    """Run one test function; an exception is a failure, not a crash."""
    try:
        fn()
    except Exception as e:
        check(fn.__name__ + " raised", False, "".join(traceback.format_exception(e))[-1500:])
    return fn


# ---------------------------------------------------------------------------


@test
def health():
    r = req("GET", "/healthz")
    check("GET /healthz is 200", r.status == 200 and r.json() == {"status": "ok"}, r)
    r = req("GET", "/readyz")
    check("GET /readyz is 200 with the database up", r.status == 200 and r.json() == {"status": "ready"}, r)
    status, rest = raw_head("/healthz")
    check("HEAD /healthz is 200 without a body", status.startswith("HTTP/1.1 200") and rest == b"", (status, rest))


@test
def request_ids():
    r = req("GET", "/healthz", headers={"X-Request-Id": "test-req-42"})
    check("X-Request-Id is echoed", r.headers.get("x-request-id") == "test-req-42", r.headers)
    r = req("GET", "/healthz")
    rid = r.headers.get("x-request-id", "")
    check("X-Request-Id is generated when absent", re.fullmatch(r"[0-9a-f]{24}", rid) is not None, rid)
    r = req("GET", "/healthz", headers={"X-Request-Id": "bad id\"with junk"})
    rid2 = r.headers.get("x-request-id", "")
    check("an unusable X-Request-Id is replaced, not echoed",
          re.fullmatch(r"[0-9a-f]{24}", rid2) is not None, rid2)
    r = req("GET", "/nowhere", headers={"X-Request-Id": "test-req-43"})
    check("problems carry the request id", r.json().get("request_id") == "test-req-43", r)
    log = os.path.join(os.path.dirname(os.environ["GW_TOKENS"]), "gateway.log")
    time.sleep(0.1)
    text = open(log).read()
    check("the access log line is tagged with the request id",
          re.search(r"req=test-req-42 msg=request method=GET path=/healthz .*status=200", text) is not None)


@test
def append_and_get():
    alice = TOKENS["alice"]
    r = post_events(alice, {"tenant": "acme", "action": "LOGIN", "category": "login",
                            "actor_name": "Alice Owner", "source_ip": "198.51.100.7",
                            "request_id": "r-1", "resource_type": "SESSION"})
    ok = check("POST /v1/events one event is 201", r.status == 201, r)
    if not ok:
        return
    body = r.json()
    loc = r.headers.get("location", "")
    check("201 has Location /v1/events/{id}", loc == "/v1/events/%d" % body["ids"][0], (loc, body))
    check("the answer lists the id, not replayed", body["replayed"] is False and len(body["ids"]) == 1, body)
    g = req("GET", loc, alice)
    ev = g.json() if g.status == 200 else {}
    check("GET /v1/events/{id} returns the event",
          g.status == 200 and ev.get("id") == body["ids"][0] and ev.get("action") == "LOGIN"
          and ev.get("actor_name") == "Alice Owner" and ev.get("source_ip") == "198.51.100.7", g)
    check("the event's access is the token id, set by custos",
          ev.get("access", "").startswith("tok_"), ev)
    r = post_events(alice, [{"tenant": "acme", "action": "DEPLOY", "resource_type": "SCHEME"},
                            {"tenant": "acme", "action": "UPDATE", "resource_type": "CAMERA_SETTINGS"},
                            {"tenant": "acme", "action": "DELETE", "resource_type": "TRIGGER"}])
    ids = r.json().get("ids", []) if r.status == 201 else []
    check("POST a batch of 3 is 201 with 3 ascending ids",
          r.status == 201 and len(ids) == 3 and ids == sorted(ids), r)
    check("GET /v1/events/{id} of a missing id is 404",
          is_problem(req("GET", "/v1/events/999999999", alice), 404))
    check("GET /v1/events/{id} of a non-number is 404",
          is_problem(req("GET", "/v1/events/abc", alice), 404))
    check("another customer's event is 404, not 403 (no oracle)",
          is_problem(req("GET", loc, TOKENS["dana"]), 404))


@test
def append_errors():
    alice = TOKENS["alice"]
    marker = "atomic-%d" % time.time_ns()
    r = post_events(alice, [{"tenant": "acme", "action": "A", "resource_id": marker},
                            {"tenant": "acme", "action": "B", "resource_id": marker, "outcome": "maybe"}])
    check("a batch with one bad event is 400 (22023)", is_problem(r, 400, "22023"), r)
    r = list_events(alice, resource=marker)
    check("... and appends nothing (atomic)", r.status == 200 and r.json()["events"] == [], r)
    check("missing tenant is 422 (23502)",
          is_problem(post_events(alice, {"action": "X"}), 422, "23502"))
    check("a number where a string belongs is 400 (42804)",
          is_problem(post_events(alice, {"tenant": "acme", "action": 5}), 400, "42804"))
    check("a text field over 1024 bytes is 400 (22001)",
          is_problem(post_events(alice, {"tenant": "acme", "action": "X", "resource_name": "n" * 2000}), 400, "22001"))
    check("an event over custos.max_event_bytes is 413 (54000)",
          is_problem(post_events(alice, {"tenant": "acme", "action": "X",
                                         "metadata": {"k%d" % i: "v" * 900 for i in range(80)}}), 413, "54000"))
    check("an event for a tenant outside the caller's is 403",
          is_problem(post_events(alice, {"tenant": "desk", "action": "X"}), 403, "42501"))
    check("an actor other than the caller without audit.write_as is 403",
          is_problem(post_events(alice, {"tenant": "acme", "action": "X", "actor": "someone-else"}), 403, "42501"))
    big = [{"tenant": "acme", "action": "X"}] * 1001
    check("a batch over the maximum is 413", is_problem(post_events(alice, big), 413))
    check("an empty batch is 400", is_problem(post_events(alice, []), 400, "22023"))


@test
def malformed_input():
    alice = TOKENS["alice"]
    ct = {"Content-Type": "application/json"}
    check("malformed JSON is 400", is_problem(req("POST", "/v1/events", alice, b'{"tenant": ', ct), 400))
    check("trailing garbage is 400", is_problem(req("POST", "/v1/events", alice, b'{"tenant":"acme","action":"x"} x', ct), 400))
    check("invalid UTF-8 is 400",
          is_problem(req("POST", "/v1/events", alice, b'{"tenant":"acme","action":"\xff\xfe"}', ct), 400))
    check("an overlong UTF-8 encoding is 400",
          is_problem(req("POST", "/v1/events", alice, b'{"tenant":"acme","action":"\xc0\xaf"}', ct), 400))
    check("duplicate keys are 400",
          is_problem(req("POST", "/v1/events", alice, b'{"tenant":"acme","action":"a","action":"b"}', ct), 400))
    nested = '{"tenant":"acme","action":"x","metadata":' + "[" * 100 + "]" * 100 + "}"
    check("JSON nested 100 deep is 400", is_problem(req("POST", "/v1/events", alice, nested, ct), 400))
    t0 = time.time()
    r = req("POST", "/v1/events", alice, b"[" * 500000, ct)
    check("500000 open brackets are a quick 400", is_problem(r, 400) and time.time() - t0 < 5, r)
    check("a bare string is 400", is_problem(req("POST", "/v1/events", alice, b'"x"', ct), 400))
    check("\\u0000 in a string is 400",
          is_problem(req("POST", "/v1/events", alice, b'{"tenant":"acme","action":"a\\u0000b"}', ct), 400))
    check("an empty body is 400", is_problem(req("POST", "/v1/events", alice, b"", ct), 400))
    check("a body that is not application/json is 415",
          is_problem(req("POST", "/v1/events", alice, b"tenant=acme", {"Content-Type": "application/x-www-form-urlencoded"}), 415))
    check("a body on GET is 400", is_problem(req("GET", "/v1/access-info", alice, b"{}", ct), 400))


@test
def body_limits():
    alice = TOKENS["alice"]
    # Content-Length over the limit: answered before the body is sent
    s = socket.create_connection((HOST, PORT), timeout=10)
    s.sendall(("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % (alice, 2 * 1024 * 1024)).encode())
    head = s.recv(65536).decode("latin-1")
    s.close()
    check("a body over 1 MiB (Content-Length) is 413 before it is sent",
          head.startswith("HTTP/1.1 413") and "application/problem+json" in head, head[:200])

    # chunked, no Content-Length: refused once the bytes pass the limit
    def chunks():
        yield b'{"tenant":"acme","action":"'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}'
    c = http.client.HTTPConnection(HOST, PORT, timeout=30)
    try:
        c.request("POST", "/v1/events", body=chunks(), encode_chunked=True,
                  headers={"Authorization": "Bearer " + alice, "Content-Type": "application/json",
                           "Transfer-Encoding": "chunked"})
        r = c.getresponse()
        status = r.status
        r.read()
    except (ConnectionError, http.client.HTTPException) as e:
        status = "closed: %r" % e
    finally:
        c.close()
    check("a chunked body over 1 MiB is 413", status == 413, status)
    r = req("GET", "/v1/events?action=" + "a" * 9000, alice)
    check("a request target over --max-url is 414", is_problem(r, 414), r)


@test
def routing():
    r = req("GET", "/v2/nothing")
    check("an unknown path is 404 problem+json", is_problem(r, 404), r)
    r = req("GET", "/v1/events/")
    check("a trailing slash is 404", is_problem(r, 404), r)
    r = req("DELETE", "/v1/events", TOKENS["alice"])
    allow = r.headers.get("allow", "")
    check("a wrong method is 405 with Allow", is_problem(r, 405) and set(allow.split(", ")) == {"GET", "POST"},
          (r, allow))
    r = req("POST", "/v1/tenants/acme/privacy-mode", TOKENS["alice"], {"enabled": True})
    check("405 Allow for a path with a parameter", r.status == 405 and r.headers.get("allow") == "PUT", r)


@test
def authentication():
    r = req("GET", "/v1/events")
    check("no token is 401 with WWW-Authenticate", is_problem(r, 401) and "Bearer" in r.headers.get("www-authenticate", ""), r)
    r = req("GET", "/v1/events", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    check("a Basic credential is 401", is_problem(r, 401), r)
    bodies = set()
    for name, tok in (("a forged", "cst_" + "0" * 64), ("a revoked", TOKENS["revoked"]),
                      ("an expired", TOKENS["expired"])):
        r = req("GET", "/v1/events", tok)
        check(name + " token is 401 (28000)", is_problem(r, 401, "28000"), r)
        p = r.json() if r.status == 401 else {}
        bodies.add((p.get("detail"), p.get("hint")))
    check("forged, revoked and expired tokens get the same answer (no oracle)", len(bodies) == 1, bodies)


@test
def forbidden():
    r = req("PUT", "/v1/tenants/acme/privacy-mode", TOKENS["rita"], {"enabled": False})
    check("a reseller admin cannot switch a customer's privacy mode (403)", is_problem(r, 403, "42501"), r)
    r = req("POST", "/v1/tokens", TOKENS["walter"], {"principal": TOKENS["alice_id"]})
    check("a member cannot issue a token for the owner (403)", is_problem(r, 403, "42501"), r)
    r = req("GET", "/v1/verify", TOKENS["app"])
    check("an app token cannot audit the chain (403)", is_problem(r, 403, "42501"), r)
    r = req("GET", "/v1/digest?tenant=acme", TOKENS["dana"])
    check("another customer's digest is 403", is_problem(r, 403, "42501"), r)


@test
def privacy_mode():
    rita = TOKENS["rita"]
    # Switching privacy mode on needs a token the owner issued herself; every
    # token of the tenant issued from outside stops working.
    r = req("PUT", "/v1/tenants/clinic/privacy-mode", TOKENS["olga"], {"enabled": True})
    check("privacy mode cannot be switched on with a token someone else issued (403)",
          is_problem(r, 403, "42501"), r)
    r = req("POST", "/v1/tokens", TOKENS["olga"], {"kind": "personal", "valid_for": "1 hour", "label": "mine"})
    olga = r.json().get("token") if r.status == 201 else None
    check("the owner issues herself a token", olga is not None, r)
    r = req("PUT", "/v1/tenants/clinic/privacy-mode", olga, {"enabled": True})
    check("the owner switches privacy mode on (200)",
          r.status == 200 and r.json() == {"tenant": "clinic", "privacy_mode": True}, r)
    r = req("GET", "/v1/access-info", TOKENS["olga"])
    check("... which revokes the tenant's tokens issued from outside", is_problem(r, 401, "28000"), r)
    r = req("POST", "/v1/tokens", rita, {"principal": TOKENS["olga_id"]})
    check("a reseller cannot mint a token for the owner of a tenant in privacy mode", is_problem(r, 403), r)
    marker = "pm-%d" % time.time_ns()
    r = post_events(olga, {"tenant": "clinic", "action": "VIEW", "resource_id": marker,
                           "actor_name": "Olga Owner", "source_ip": "203.0.113.9",
                           "subject": "patient-17", "description": "looked at camera 3"})
    check("the owner appends an event with personal fields", r.status == 201, r)
    mine = list_events(olga, resource=marker).json()["events"]
    check("the owner sees the personal fields",
          len(mine) == 1 and mine[0]["actor_name"] == "Olga Owner" and mine[0]["subject"] == "patient-17"
          and mine[0]["personal_data"] == "clear", mine)
    theirs = list_events(rita, resource=marker)
    ev = theirs.json()["events"] if theirs.status == 200 else []
    check("the reseller sees the event but no personal field (privacy mode)",
          len(ev) == 1 and ev[0]["actor_name"] is None and ev[0]["source_ip"] is None
          and ev[0]["subject"] is None and ev[0]["description"] is None
          and ev[0]["personal_data"] == "hidden" and ev[0]["action"] == "VIEW", theirs)
    r = list_events(rita, subject="patient-17", tenant="clinic")
    check("the reseller cannot find it by subject either", r.status == 200 and r.json()["events"] == [], r)
    r = req("GET", "/v1/events/export?format=csv&resource=" + marker, rita)
    rows = csv_rows(r.body) if r.status == 200 else []
    check("nor in an export", len(rows) == 2 and dict(zip(rows[0], rows[1]))["subject"] == ""
          and dict(zip(rows[0], rows[1]))["personal_data"] == "hidden", r)
    # the owner lets the reseller in for an hour, then takes it back
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    g = req("POST", "/v1/grants", olga, {"tenant": "clinic", "principal": TOKENS["rita_id"],
                                         "right": "data.read", "expires_at": until})
    gid = g.json().get("id") if g.status == 201 else None
    check("the owner grants data.read to the reseller (201 + Location)",
          g.status == 201 and g.headers.get("location") == "/v1/grants/%s" % gid, g)
    ev = list_events(rita, resource=marker).json()["events"]
    check("with data.read the reseller sees the personal fields",
          len(ev) == 1 and ev[0]["subject"] == "patient-17" and ev[0]["personal_data"] == "clear", ev)
    d = req("DELETE", "/v1/grants/%s" % gid, olga)
    check("DELETE /v1/grants/{id} is 204", d.status == 204 and d.body == b"", d)
    ev = list_events(rita, resource=marker).json()["events"]
    check("after the revocation the fields are hidden again",
          len(ev) == 1 and ev[0]["subject"] is None and ev[0]["personal_data"] == "hidden", ev)
    # the reseller's reads are themselves audit events of clinic
    rita_tok = req("GET", "/v1/access-info", rita).json()["token"]
    seal()
    n = int(psql("SELECT count(*) FROM custos.event_log WHERE tenant = 'clinic' AND action = 'READ' "
                 "AND access = '%s'" % rita_tok))
    check("the reseller's reads of the log are READ events in the customer's log", n >= 1, n)
    r = req("PUT", "/v1/tenants/clinic/privacy-mode", olga, {"enabled": False})
    check("the owner switches privacy mode off", r.status == 200 and r.json()["privacy_mode"] is False, r)
    check("privacy mode needs {\"enabled\": boolean} (400)",
          is_problem(req("PUT", "/v1/tenants/clinic/privacy-mode", olga, {"enabled": "yes"}), 400, "22023"))
    check("unknown fields are 400",
          is_problem(req("PUT", "/v1/tenants/clinic/privacy-mode", olga, {"enabled": True, "x": 1}), 400, "22023"))
    check("privacy mode of a missing tenant is 404",
          is_problem(req("PUT", "/v1/tenants/nope/privacy-mode", olga, {"enabled": True}), 404, "P0002"))


@test
def app_tokens():
    app, other, alice = TOKENS["app"], TOKENS["other_app"], TOKENS["alice"]
    marker = "app-%d" % time.time_ns()
    a = post_events(app, [{"tenant": "acme", "action": "SNAPSHOT", "resource_id": marker}] * 2)
    b = post_events(other, {"tenant": "acme", "action": "SNAPSHOT", "resource_id": marker})
    check("two apps append", a.status == 201 and b.status == 201, (a, b))
    seen = list_events(app, resource=marker).json()["events"]
    check("an app token sees only the events it appended",
          len(seen) == 2 and all(e["access"] == TOKENS["app_id"] for e in seen), seen)
    everything = list_events(app, limit=1000).json()["events"]
    check("... in the whole log too",
          len(everything) >= 2 and all(e["access"] == TOKENS["app_id"] for e in everything), len(everything))
    seen = list_events(other, resource=marker).json()["events"]
    check("the other app sees only its one", len(seen) == 1, seen)
    seen = list_events(alice, resource=marker).json()["events"]
    check("the owner sees all three", len(seen) == 3, seen)
    r = req("GET", "/v1/events/%d" % a.json()["ids"][0], other)
    check("another app's event is 404 to an app token", is_problem(r, 404), r)


@test
def filters_and_params():
    dana = TOKENS["dana"]
    marker = "flt-%d" % time.time_ns()
    r = post_events(dana, [
        {"tenant": "desk", "action": "BOOK", "category": "booking", "resource_type": "DESK",
         "resource_id": marker, "occurred_at": "2026-01-10T10:00:00Z", "subject": "emp-1",
         "outcome": "success", "target_level": "GROUP"},
        {"tenant": "desk", "action": "CANCEL", "category": "booking", "resource_type": "DESK",
         "resource_id": marker, "occurred_at": 1768125600, "subject": "emp-2",
         "outcome": "failure", "target_level": "ENDPOINT"},
    ])
    check("appended two events to filter", r.status == 201, r)

    def n(**p):
        res = list_events(dana, resource=marker, **p)
        return len(res.json()["events"]) if res.status == 200 else res

    check("filter action", n(action="BOOK") == 1)
    check("filter category", n(category="booking") == 2)
    check("filter resource_type", n(resource_type="DESK") == 2)
    check("filter outcome", n(outcome="failure") == 1)
    check("filter target_level", n(target_level="GROUP") == 1)
    check("filter subject (decrypted)", n(subject="emp-2") == 1)
    check("filter actor (decrypted)", n(actor=TOKENS["dana_id"]) == 2)
    check("filter from (RFC 3339) and to (epoch seconds)",
          n(**{"from": "2026-01-10T00:00:00Z", "to": "1768125600"}) == 1)
    check("filter from with an offset", n(**{"from": "2026-01-11T11:00:00+01:00"}) == 1)
    check("filter access", n(access=req("GET", "/v1/access-info", dana).json()["token"]) == 2)
    check("filter tenant", n(tenant="acme") == 0)
    for what, params, state in (
            ("an unknown filter", {"colour": "red"}, "22023"),
            ("a bad time", {"from": "yesterday"}, "22007"),
            ("a bad outcome", {"outcome": "maybe"}, "22023"),
            ("limit 0", {"limit": "0"}, "22023"),
            ("limit 1001", {"limit": "1001"}, "22023"),
            ("a non-numeric limit", {"limit": "ten"}, "22P02"),
            ("a bad order", {"order": "sideways"}, "22023"),
            ("a forged cursor", {"cursor": "Zm9vYmFy"}, "22023"),
            ("a garbage cursor", {"cursor": "!!!"}, "22023")):
        r = list_events(dana, **params)
        check(what + " is 400 (%s)" % state, is_problem(r, 400, state), r)
    r = req("GET", "/v1/events?action=a&action=b", dana)
    check("a repeated parameter is 400", is_problem(r, 400), r)
    r = req("GET", "/v1/events?limit=1&limit=1000", dana)
    check("a repeated paging parameter is 400", is_problem(r, 400), r)
    r = req("GET", "/v1/events?action=%FF%FE", dana)
    check("a parameter that is not UTF-8 is 400", is_problem(r, 400), r)
    r = req("GET", "/v1/events?action=a%00b", dana)
    check("a NUL byte in a parameter is 400", is_problem(r, 400), r)


def page_through(token, order, limit, **filters):
    """All ids of a listing, following next_cursor; checks the Link header."""
    ids, cursor, pages, links_ok = [], None, 0, True
    while pages < 500:
        params = dict(filters, order=order, limit=limit)
        if cursor:
            params["cursor"] = cursor
        r = list_events(token, **params)
        if r.status != 200:
            raise RuntimeError(repr(r))
        page = r.json()
        ids += [e["id"] for e in page["events"]]
        cursor = page["next_cursor"]
        link = r.headers.get("link")
        if cursor and (link is None or ("cursor=" + cursor) not in link or 'rel="next"' not in link):
            links_ok = False
        if not cursor and link:
            links_ok = False
        pages += 1
        if not cursor:
            return ids, pages, links_ok
    raise RuntimeError("no last page after 500 pages")


@test
def keyset_paging():
    pager, writer = TOKENS["pager"], TOKENS["writer"]
    kind = "PAGE-%d" % time.time_ns()
    r = post_events(pager, [{"tenant": "desk", "action": "P", "resource_type": kind, "resource_id": str(i)}
                            for i in range(60)])
    initial = r.json()["ids"] if r.status == 201 else []
    check("60 events to page through", len(initial) == 60, r)
    stop = threading.Event()
    appended = []

    def append_meanwhile():
        # bounded: an ascending listing must be able to catch up with the appends
        while not stop.is_set() and len(appended) < 40:
            a = post_events(writer, {"tenant": "desk", "action": "P", "resource_type": kind})
            if a.status == 201:
                appended.extend(a.json()["ids"])
            time.sleep(0.02)
    t = threading.Thread(target=append_meanwhile)
    t.start()
    try:
        time.sleep(0.1)
        desc, pages, links = page_through(pager, "desc", 7, resource_type=kind)
        asc, pages2, links2 = page_through(pager, "asc", 9, resource_type=kind)
    finally:
        stop.set()
        t.join()
    check("appends happened while paging", len(appended) > 0, len(appended))
    check("desc: no duplicate", len(desc) == len(set(desc)), desc)
    check("desc: strictly descending ids", all(a > b for a, b in zip(desc, desc[1:])), desc)
    check("desc: every event that existed before the listing, none missing",
          set(initial) <= set(desc), sorted(set(initial) - set(desc)))
    check("desc: %d pages of 7" % pages, pages >= 9, pages)
    check("asc: no duplicate, strictly ascending", all(a < b for a, b in zip(asc, asc[1:])), asc)
    check("asc: every event that existed before the listing", set(initial) <= set(asc),
          sorted(set(initial) - set(asc)))
    check("Link: <...cursor=...>; rel=\"next\" on every page but the last", links and links2)
    # following the Link header itself gives the same next page
    r = list_events(pager, resource_type=kind, limit=5, order="asc")
    link = r.headers.get("link", "")
    m = re.match(r"<([^>]+)>; rel=\"next\"", link)
    r2 = req("GET", m.group(1), pager) if m else None
    check("the Link target is the next page",
          r2 is not None and r2.status == 200
          and r2.json()["events"][0]["id"] > r.json()["events"][-1]["id"], (link, r2))
    c = r.json()["next_cursor"]
    r3 = list_events(pager, resource_type=kind, limit=5, order="desc", cursor=c)
    check("a cursor used with the other order is 400", is_problem(r3, 400, "22023"), r3)


@test
def export_formats():
    dana = TOKENS["dana"]
    kind = "CSV-%d" % time.time_ns()
    tricky = [
        {"action": "=HYPERLINK(\"http://x\",\"y\")", "resource_id": "+1", "resource_name": "@SUM(A1)",
         "target_name": "\tTAB", "description": "-2+3"},
        {"action": "PLAIN", "resource_id": "a,b", "resource_name": "say \"hi\"",
         "description": "line one\nline two\r\nthree", "target_name": "\rCR"},
    ]
    r = post_events(dana, [dict(t, tenant="desk", resource_type=kind) for t in tricky])
    check("events with formulas, quotes, commas and newlines", r.status == 201, r)
    r = req("GET", "/v1/events/export?" + urllib.parse.urlencode({"resource_type": kind}), dana,
            headers={"Accept": "text/csv"})
    ok = check("GET /v1/events/export with Accept: text/csv is 200 text/csv",
               r.status == 200 and r.headers.get("content-type", "").startswith("text/csv"), r)
    if not ok:
        return
    check("... chunked (streamed), not a Content-Length",
          r.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.headers, r.headers)
    rows = csv_rows(r.body)
    header = rows[0]
    check("CSV has a header row", header[:4] == ["id", "tenant", "occurred_at", "recorded_at"], header)
    recs = [dict(zip(header, row)) for row in rows[1:]]
    check("CSV has the two rows", len(recs) == 2, recs)
    if len(recs) == 2:
        a, b = recs
        check("= is neutralised", a["action"] == "'=HYPERLINK(\"http://x\",\"y\")", a["action"])
        check("+ is neutralised", a["resource_id"] == "'+1", a["resource_id"])
        check("@ is neutralised", a["resource_name"] == "'@SUM(A1)", a["resource_name"])
        check("tab is neutralised", a["target_name"] == "'\tTAB", a["target_name"])
        check("- is neutralised", a["description"] == "'-2+3", a["description"])
        check("CR is neutralised", b["target_name"] == "'\rCR", repr(b["target_name"]))
        check("commas survive RFC 4180 quoting", b["resource_id"] == "a,b", b["resource_id"])
        check("quotes survive RFC 4180 quoting", b["resource_name"] == 'say "hi"', b["resource_name"])
        check("line breaks survive RFC 4180 quoting", b["description"] == "line one\nline two\r\nthree",
              repr(b["description"]))
        check("plain cells are unchanged", b["action"] == "PLAIN", b["action"])
        check("times are RFC 3339 UTC", re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", a["occurred_at"]),
              a["occurred_at"])
    raw = r.body.decode()
    check("a quoted cell is quoted as RFC 4180 says", '"say ""hi"""' in raw, raw[:300])
    r = req("GET", "/v1/events/export?" + urllib.parse.urlencode({"resource_type": kind}), dana,
            headers={"Accept": "application/x-ndjson"})
    ok = check("NDJSON export is 200 application/x-ndjson",
               r.status == 200 and r.headers.get("content-type") == "application/x-ndjson", r)
    if ok:
        lines = r.body.decode().split("\n")
        check("NDJSON ends with a newline", lines[-1] == "", lines[-1:])
        objs = [json.loads(line) for line in lines[:-1]]
        check("NDJSON: one JSON object per line, as stored (no neutralising)",
              len(objs) == 2 and objs[0]["action"] == tricky[0]["action"]
              and objs[1]["description"] == tricky[1]["description"], objs)
    r = req("GET", "/v1/events/export?format=ndjson&resource_type=" + kind, dana)
    check("?format=ndjson works without Accept", r.status == 200 and r.body.count(b"\n") == 2, r)
    r = req("GET", "/v1/events/export?resource_type=" + kind, dana, headers={"Accept": "application/xml"})
    check("an export nobody can read is 406", is_problem(r, 406), r)
    r = req("GET", "/v1/events/export?colour=red", dana, headers={"Accept": "text/csv"})
    check("an export with a bad filter is 400 before any row", is_problem(r, 400, "22023"), r)
    r = req("GET", "/v1/events/export", "cst_" + "1" * 64, headers={"Accept": "text/csv"})
    check("an export with a bad token is 401", is_problem(r, 401, "28000"), r)


@test
def export_tickets():
    # the page's downloads: a single-use ticket URL instead of a bearer token
    writer = TOKENS["writer"]
    kind = "TICKET-%d" % time.time_ns()
    r = post_events(writer, [{"tenant": "desk", "action": "T%d" % i, "resource_type": kind,
                              "description": "=1+%d" % i} for i in range(3)])
    check("events for the ticket exports", r.status == 201, r)
    # sealed now, so that the background sealer cannot change block_no and
    # sealed between the two exports compared below
    seal()
    r = req("POST", "/v1/exports", writer, {"format": "csv", "filters": {"resource_type": kind}})
    t = r.json() if r.status == 201 else {}
    href = t.get("href", "")
    check("POST /v1/exports is 201 with a ticket URL, Location and expiry",
          r.status == 201 and re.fullmatch(r"/v1/exports/[0-9a-f]{64}", href) is not None
          and r.headers.get("location") == href and t.get("expires_in") == 60 and t.get("format") == "csv", r)
    d = req("GET", href)
    rows = csv_rows(d.body) if d.status == 200 else []
    check("GET on the ticket URL needs no token: the CSV export, as an attachment",
          d.status == 200 and d.headers.get("content-type", "").startswith("text/csv")
          and d.headers.get("content-disposition") == 'attachment; filename="custos-events.csv"'
          and d.headers.get("transfer-encoding") == "chunked" and len(rows) == 4
          and rows[0][:2] == ["id", "tenant"], d)
    direct = req("GET", "/v1/events/export?format=csv&resource_type=" + kind, writer)
    check("... the same bytes as GET /v1/events/export with the token", d.body == direct.body)
    check("... formulas neutralised as there", "'=1+0" in d.body.decode(), d.body[:200])
    check("a ticket works once (404 the second time)", is_problem(req("GET", href), 404), href)
    r = req("POST", "/v1/exports", writer, {"format": "csv", "filters": {"resource_type": kind}})
    h = req("HEAD", r.json()["href"]) if r.status == 201 else r
    check("HEAD on a ticket is 405 and leaves it usable",
          h.status == 405 and h.headers.get("allow") == "GET" and req("GET", r.json()["href"]).status == 200, h)
    r = req("POST", "/v1/exports", writer, {"format": "ndjson", "filters": {"resource_type": kind, "action": "T1"}})
    d = req("GET", r.json()["href"]) if r.status == 201 else r
    check("an NDJSON ticket streams the NDJSON export of its filters",
          d.status == 200 and d.headers.get("content-type") == "application/x-ndjson"
          and [json.loads(x)["action"] for x in d.body.decode().splitlines()] == ["T1"], d)
    # only from the address that asked: 127.0.0.2 is loopback too
    r = req("POST", "/v1/exports", writer, {"format": "csv", "filters": {"resource_type": kind}})
    other = None
    if r.status == 201:
        c = http.client.HTTPConnection(HOST, PORT, timeout=10, source_address=("127.0.0.2", 0))
        try:
            c.request("GET", r.json()["href"])
            x = c.getresponse()
            other = Resp(x.status, x.getheaders(), x.read())
        finally:
            c.close()
    check("a ticket is refused from another client address (404), and is gone after that",
          other is not None and is_problem(other, 404) and is_problem(req("GET", r.json()["href"]), 404), other)
    # (another token for the refusals: each ticket counts against the stricter rate limit)
    pager = TOKENS["pager"]
    check("a bad filter is refused when the ticket is asked for (400, 22023)",
          is_problem(req("POST", "/v1/exports", pager, {"format": "csv", "filters": {"colour": "red"}}), 400, "22023"))
    check("a bad format is 400", is_problem(req("POST", "/v1/exports", pager, {"format": "xml"}), 400))
    check("an unknown field is 400", is_problem(req("POST", "/v1/exports", pager, {"format": "csv", "x": 1}), 400))
    check("filters must be an object",
          is_problem(req("POST", "/v1/exports", pager, {"format": "csv", "filters": "tenant=desk"}), 400))
    check("no token is 401", is_problem(req("POST", "/v1/exports", None, {"format": "csv"}), 401))
    check("a bad token is 401",
          is_problem(req("POST", "/v1/exports", "cst_" + "2" * 64, {"format": "csv"}), 401, "28000"))
    check("an unknown ticket is 404", is_problem(req("GET", "/v1/exports/" + "0" * 64), 404))
    check("a malformed ticket is 404", is_problem(req("GET", "/v1/exports/nope"), 404))
    log = os.path.join(os.path.dirname(os.environ["GW_TOKENS"]), "gateway.log")
    check("tickets do not reach the gateway's log", href[12:] not in open(log).read())


@test
def page():
    r = req("GET", "/")
    csp = r.headers.get("content-security-policy", "")
    check("GET / is the audit-log page (text/html)",
          r.status == 200 and r.headers.get("content-type") == "text/html; charset=utf-8"
          and b'<script src="/app.js" defer></script>' in r.body, r.status)
    check("... with a strict CSP, no referrer, no framing",
          "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
          and "unsafe" not in csp and r.headers.get("referrer-policy") == "no-referrer"
          and r.headers.get("x-frame-options") == "DENY" and r.headers.get("x-content-type-options") == "nosniff",
          r.headers)
    for path, ctype in (("/app.js", "text/javascript; charset=utf-8"), ("/app.css", "text/css; charset=utf-8"),
                        ("/favicon.svg", "image/svg+xml")):
        x = req("GET", path)
        check("GET %s is %s" % (path, ctype), x.status == 200 and x.headers.get("content-type") == ctype
              and len(x.body) > 0 and "content-security-policy" in x.headers, x.status)
    status, rest = raw_head("/")
    check("HEAD / is 200 and nothing follows the headers", status.startswith("HTTP/1.1 200") and rest == b"",
          (status, rest[:80]))
    check("POST / is 405 with Allow: GET", is_problem(req("POST", "/", None, {}), 405)
          and req("POST", "/", None, {}).headers.get("allow") == "GET")
    check("other files are 404", is_problem(req("GET", "/index.html"), 404) and is_problem(req("GET", "/app.map"), 404))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@test
def export_constant_memory():
    rows_expected = int(TOKENS["bulk_rows"])
    before = rss_kib(GW_PID)
    peak = before
    c = http.client.HTTPConnection(HOST, PORT, timeout=120)
    t0 = time.time()
    c.request("GET", "/v1/events/export?tenant=bulk&action=BULK",
              headers={"Authorization": "Bearer " + TOKENS["bulk"], "Accept": "application/x-ndjson"})
    r = c.getresponse()
    n, nbytes, last = 0, 0, time.time()
    while True:
        chunk = r.read(1 << 16)
        if not chunk:
            break
        n += chunk.count(b"\n")
        nbytes += len(chunk)
        if time.time() - last > 0.05:
            peak = max(peak, rss_kib(GW_PID))
            last = time.time()
    c.close()
    dt = time.time() - t0
    peak = max(peak, rss_kib(GW_PID))
    check("export of %d rows: all of them arrive" % rows_expected, r.status == 200 and n == rows_expected,
          (r.status, n))
    print("# export: %d rows, %.1f MB in %.2fs (%.0f rows/s); gateway RSS %d KiB before, peak %d KiB"
          % (n, nbytes / 1e6, dt, n / dt if dt else 0, before, peak), flush=True)
    if os.environ.get("GW_BINARY", "").endswith("-asan"):
        print("# (AddressSanitizer keeps freed memory in quarantine: resident memory not checked)")
    else:
        check("the gateway's memory stays flat during the export (peak - before < 8 MiB)",
              peak - before < 8 * 1024, (before, peak))


@test
def export_cancel():
    # a raw socket with a small receive buffer: the export cannot hide in
    # the kernel's buffers while the client stalls
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.settimeout(30)
    sock.connect((HOST, PORT))
    sock.sendall(("GET /v1/events/export?tenant=bulk HTTP/1.1\r\nHost: x\r\nAccept: text/csv\r\n"
                  "Authorization: Bearer %s\r\n\r\n" % TOKENS["bulk"]).encode())
    first = b""
    while len(first) < 65536:
        chunk = sock.recv(65536 - len(first))
        if not chunk:
            break
        first += chunk
    check("a large export starts", first.startswith(b"HTTP/1.1 200") and len(first) == 65536, first[:80])
    active = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'custos_gateway' " \
             "AND state = 'active' AND query LIKE 'COPY%export_rows%'"
    running = 0
    for _ in range(40):
        running = int(psql(active))
        if running:
            break
        time.sleep(0.05)
    why = running
    if running != 1:
        # say what the gateway's sessions were doing, and how much the
        # kernel may buffer, so that a failure explains itself
        why = (running, psql("SELECT string_agg(state || '/' || coalesce(wait_event, '-') || ': ' || "
                             "left(query, 40), '; ') FROM pg_stat_activity WHERE usename = 'custos_gateway'"),
               open("/proc/sys/net/ipv4/tcp_wmem").read().strip())
    check("its COPY runs in the database while the client stalls", running == 1, why)
    # the client goes away
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    left = None
    for _ in range(100):
        left = int(psql(active))
        if left == 0:
            break
        time.sleep(0.05)
    check("after the client disconnects, the COPY is cancelled (pg_stat_activity)", left == 0, left)
    # the gateway drains what is still in flight (for at most 2 s) before
    # it rolls back or drops the connection: wait that long, not longer
    idle_in_tx = None
    for _ in range(60):
        idle_in_tx = int(psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'custos_gateway' "
                              "AND state LIKE 'idle in transaction%'"))
        if idle_in_tx == 0:
            break
        time.sleep(0.05)
    check("... and no gateway session is left in a transaction", idle_in_tx == 0, idle_in_tx)
    r = req("GET", "/readyz")
    check("the gateway serves on", r.status == 200, r)


@test
def idempotency():
    dana = TOKENS["dana"]
    key = "idem-%d" % time.time_ns()
    ev = {"tenant": "desk", "action": "PAY", "resource_id": key}
    a = post_events(dana, ev, {"Idempotency-Key": key})
    b = post_events(dana, ev, {"Idempotency-Key": key})
    check("an append with an Idempotency-Key is 201", a.status == 201 and a.json()["replayed"] is False, a)
    check("the retry returns the same ids, marked replayed",
          b.status == 201 and b.json()["ids"] == a.json()["ids"] and b.json()["replayed"] is True
          and b.headers.get("idempotent-replayed") == "true"
          and b.headers.get("location") == a.headers.get("location"), b)
    n = len(list_events(dana, resource=key).json()["events"])
    check("... and appends no duplicate", n == 1, n)
    c = post_events(dana, dict(ev, action="REFUND"), {"Idempotency-Key": key})
    check("the same key with another body is 422", is_problem(c, 422, "23505"), c)
    d = post_events(dana, ev, {"Idempotency-Key": "bad key with spaces"})
    check("an invalid key is 400", is_problem(d, 400, "22023"), d)
    # concurrent retries: one append
    key2 = key + "-c"
    results = []

    def go():
        results.append(post_events(dana, dict(ev, resource_id=key2), {"Idempotency-Key": key2}))
    ts = [threading.Thread(target=go) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ids = {tuple(r.json()["ids"]) for r in results if r.status == 201}
    check("4 concurrent requests with one key: all 201 with the same ids",
          len(ids) == 1 and all(r.status == 201 for r in results), results)
    n = len(list_events(dana, resource=key2).json()["events"])
    check("... and one event", n == 1, n)
    other = post_events(TOKENS["pager"], ev, {"Idempotency-Key": key})
    check("keys are per token: another token's same key appends",
          other.status == 201 and other.json()["replayed"] is False, other)


@test
def rate_limits():
    hammer = TOKENS["hammer"]
    statuses = []
    retry = None
    c = http.client.HTTPConnection(HOST, PORT, timeout=30)
    for _ in range(160):
        c.request("GET", "/v1/access-info", headers={"Authorization": "Bearer " + hammer})
        r = c.getresponse()
        r.read()
        statuses.append(r.status)
        if r.status == 429:
            retry = r.getheader("Retry-After")
    c.close()
    check("a token hammering the API gets 429", 429 in statuses and 200 in statuses,
          {s: statuses.count(s) for s in set(statuses)})
    check("429 carries Retry-After (seconds)", retry is not None and retry.isdigit() and int(retry) >= 1, retry)
    r = req("GET", "/v1/access-info", TOKENS["walter"])
    check("other tokens are not limited by it", r.status == 200, r)
    got = [req("GET", "/v1/digest", hammer).status for _ in range(12)]
    check("the expensive class (digest, verify, export) is stricter", 429 in got and got.count(200) <= 9, got)
    r = req("GET", "/v1/digest", hammer)
    check("a 429 is problem+json", is_problem(r, 429), r)


@test
def connection_limits():
    socks = []
    try:
        for _ in range(45):
            s = socket.create_connection((HOST, PORT), timeout=5)
            socks.append(s)
        time.sleep(0.2)
        r = req("GET", "/v1/access-info", TOKENS["walter"])
        check("beyond --max-connections a request gets 503, not a queue",
              is_problem(r, 503) and r.headers.get("retry-after") == "1", r)
    finally:
        for s in socks:
            s.close()
    time.sleep(0.3)
    r = req("GET", "/healthz")
    check("once connections close, requests are served again", r.status == 200, r)


@test
def slow_client():
    s = socket.create_connection((HOST, PORT), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")    # and never the end of the headers
    t0 = time.time()
    try:
        data = s.recv(4096)
    except socket.timeout:
        data = None
    dt = time.time() - t0
    s.close()
    check("a client that stops sending is cut off after --timeout (2s)", data is not None and 1.5 < dt < 6,
          (data, round(dt, 2)))
    # an idle keep-alive connection likewise
    c = http.client.HTTPConnection(HOST, PORT, timeout=10)
    c.request("GET", "/healthz")
    c.getresponse().read()
    time.sleep(3)
    try:
        c.request("GET", "/healthz")
        r = c.getresponse()
        closed = False
    except (ConnectionError, http.client.HTTPException):
        closed = True
    c.close()
    check("an idle keep-alive connection is closed after --timeout", closed)


def metric(text, name, **labels):
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" ([0-9.e+]+)"
    m = re.search("^" + pat + "$", text, re.M)
    return float(m.group(1)) if m else 0.0


@test
def metrics():
    before = req("GET", "/metrics").body.decode()
    post_events(TOKENS["walter"], {"tenant": "acme", "action": "METRIC"})
    req("GET", "/v1/events", "cst_" + "2" * 64)
    req("GET", "/nowhere")
    req("GET", "/favicon.svg")		# the last route of the table
    r = req("GET", "/metrics")
    after = r.body.decode()
    check("GET /metrics is Prometheus text", r.status == 200 and r.headers.get("content-type", "").startswith("text/plain")
          and "# TYPE custos_gateway_requests_total counter" in after, r)
    check("requests_total by route and status moves",
          metric(after, "custos_gateway_requests_total", route="events.append", status="201")
          == metric(before, "custos_gateway_requests_total", route="events.append", status="201") + 1)
    check("404s without a route are counted",
          metric(after, "custos_gateway_requests_total", route="none", status="404")
          > metric(before, "custos_gateway_requests_total", route="none", status="404"))
    check("database errors by class move (28: the bad token)",
          metric(after, "custos_gateway_db_errors_total", **{"class": "28"})
          > metric(before, "custos_gateway_db_errors_total", **{"class": "28"}))
    check("a latency histogram per route",
          metric(after, "custos_gateway_request_duration_seconds_count", route="events.append") >= 1
          and 'custos_gateway_request_duration_seconds_bucket{route="events.append",le="+Inf"}' in after)
    check("the table's last route has its own counter (no route falls outside the metrics)",
          metric(after, "custos_gateway_requests_total", route="page.icon", status="200")
          > metric(before, "custos_gateway_requests_total", route="page.icon", status="200"))
    check("pool usage", metric(after, "custos_gateway_pool_size") == 8
          and metric(after, "custos_gateway_pool_connected") >= 1)
    check("rate limiting is counted", metric(after, "custos_gateway_rate_limited_total") >= 1)


@test
def openapi():
    r = req("GET", "/v1/openapi.yaml")
    doc = open(os.environ["GW_OPENAPI"]).read()
    check("GET /v1/openapi.yaml serves docs/openapi.yaml",
          r.status == 200 and r.headers.get("content-type") == "application/yaml" and r.body.decode() == doc,
          r.status)
    routes = subprocess.run([os.environ["GW_BINARY"], "--routes"], capture_output=True, text=True).stdout
    in_router = {tuple(line.split(" ", 1)) for line in routes.splitlines() if line}
    in_doc, path = set(), None
    in_paths = False
    for line in doc.splitlines():
        if line.startswith("paths:"):
            in_paths = True
            continue
        if in_paths and re.match(r"^\S", line):
            in_paths = False
        if not in_paths:
            continue
        m = re.match(r"^  (/\S*):\s*$", line)
        if m:
            path = m.group(1)
            continue
        m = re.match(r"^    (get|put|post|delete|patch):\s*$", line)
        if m and path:
            in_doc.add((m.group(1).upper(), path))
    check("every route of router.c is in openapi.yaml", in_router <= in_doc, sorted(in_router - in_doc))
    check("every operation of openapi.yaml is a route of router.c", in_doc <= in_router, sorted(in_doc - in_router))
    check("the route table is not empty", len(in_router) >= 18, len(in_router))


@test
def access_info():
    r = req("GET", "/v1/access-info", TOKENS["walter"])
    a = r.json() if r.status == 200 else {}
    check("GET /v1/access-info: principal, tenant, token kind",
          a.get("principal") == TOKENS["walter_id"] and a.get("tenant") == "acme"
          and a.get("token_kind") == "personal" and a.get("token", "").startswith("tok_"), a)
    check("... and rights: walter's audit.read on acme",
          any(g["right"] == "audit.read" and g["tenant"] == "acme" and not g["implicit"] for g in a.get("rights", [])),
          a.get("rights"))
    a = req("GET", "/v1/access-info", TOKENS["app"]).json()
    check("an app token is reported as such", a.get("token_kind") == "app", a)


@test
def chain():
    alice = TOKENS["alice"]
    seal()
    r = req("GET", "/v1/verify", alice)
    v = r.json() if r.status == 200 else {}
    check("GET /v1/verify (own tenant) is ok", r.status == 200 and v.get("ok") is True and v.get("tenant") == "acme", r)
    r = req("GET", "/v1/digest?tenant=acme", alice)
    d = r.json() if r.status == 200 else {}
    check("GET /v1/digest gives the head", r.status == 200 and re.fullmatch(r"[0-9a-f]{64}", d.get("head", "")), r)
    r = req("GET", "/v1/verify?" + urllib.parse.urlencode({"tenant": "acme", "digest": json.dumps(d)}), alice)
    check("GET /v1/verify with a kept digest is ok", r.status == 200 and r.json().get("ok") is True, r)
    r = req("GET", "/v1/verify?" + urllib.parse.urlencode({"digest": "{not json"}), alice)
    check("a malformed digest is 400", is_problem(r, 400), r)
    r = req("GET", "/v1/verify?" + urllib.parse.urlencode({"digest": json.dumps(dict(d, head="0" * 64))}), alice)
    check("a rewritten digest fails verification (200, ok false)",
          r.status == 200 and r.json().get("ok") is False and r.json().get("failure") == "rewritten", r)
    check("GET /v1/verify?tenant=acme for the works council (audit.read)",
          req("GET", "/v1/verify?tenant=acme", TOKENS["walter"]).status == 200)
    check("GET /v1/verify?tenant=acme for the reseller admin",
          req("GET", "/v1/verify?tenant=acme", TOKENS["rita"]).status == 200)
    check("an unknown parameter is 400", is_problem(req("GET", "/v1/verify?tenants=acme", alice), 400))
    check("a repeated parameter is 400", is_problem(req("GET", "/v1/verify?tenant=acme&tenant=desk", alice), 400))


@test
def tokens_and_grants():
    alice = TOKENS["alice"]
    r = req("POST", "/v1/tokens", alice, {"kind": "app", "valid_for": "2 hours", "label": "camera 9"})
    t = r.json() if r.status == 201 else {}
    check("POST /v1/tokens is 201 with the secret once and Location",
          r.status == 201 and t.get("token", "").startswith("cst_") and t.get("kind") == "app"
          and r.headers.get("location") == "/v1/tokens/" + t.get("token_id", "?"), r)
    check("token answers are not cached", r.headers.get("cache-control") == "no-store", r.headers)
    if t:
        a = req("GET", "/v1/access-info", t["token"]).json()
        check("the new token works", a.get("token") == t["token_id"] and a.get("token_kind") == "app", a)
        d = req("DELETE", "/v1/tokens/" + t["token_id"], alice)
        check("DELETE /v1/tokens/{id} is 204", d.status == 204, d)
        check("the revoked token is 401 at once", is_problem(req("GET", "/v1/access-info", t["token"]), 401, "28000"))
    check("DELETE of a missing token is 404", is_problem(req("DELETE", "/v1/tokens/tok_nope", alice), 404, "P0002"))
    check("a bad valid_for is 400",
          is_problem(req("POST", "/v1/tokens", alice, {"valid_for": "forever"}), 400))
    check("a token for more than a year is 400",
          is_problem(req("POST", "/v1/tokens", alice, {"valid_for": "400 days"}), 400, "22023"))
    check("a token body must be an object",
          is_problem(req("POST", "/v1/tokens", alice, [1]), 400))
    r = req("POST", "/v1/grants", alice, {"tenant": "acme", "principal": TOKENS["walter_id"], "right": "audit.fly"})
    check("an unknown right is 400", is_problem(r, 400, "22023"), r)
    r = req("POST", "/v1/grants", alice, {"tenant": "acme"})
    check("a grant without principal and right is 422", is_problem(r, 422, "23502"), r)
    check("DELETE of a missing grant is 404", is_problem(req("DELETE", "/v1/grants/99999999", alice), 404, "P0002"))
    check("DELETE of a non-numeric grant id is 404", is_problem(req("DELETE", "/v1/grants/x", alice), 404))
    r = req("POST", "/v1/grants", alice, {"tenant": "acme", "principal": TOKENS["walter_id"],
                                          "right": "audit.export", "expires_at": 4102444800})
    check("POST /v1/grants with epoch expires_at is 201", r.status == 201, r)


# ---------------------------------------------------------------------------
# Reports (issue 7): GET /v1/subjects/{subject}/report, GET /v1/support/report.
# Their own tenant "hr" below the reseller, principals and tokens (fresh
# tokens: fresh rate-limit buckets), and planted secrets and personal values
# that no default support report may contain.
# ---------------------------------------------------------------------------

REPORT_SETUP = r"""
SELECT custos.create_tenant('hr', 'reseller', 'HR department') \gset x_
SELECT custos.create_principal('hr', 'Hanna Owner', 'user', 'owner') AS hanna \gset
SELECT custos.create_principal('hr', 'Hugo Admin', 'user', 'admin') AS hugo \gset
SELECT custos.create_principal('hr', 'Mona Member', 'user', 'member') AS mona \gset
SELECT token AS t_hanna FROM custos.issue_token(:'hanna', 'personal', '1 day', 'reports') \gset
SELECT token AS t_hanna2 FROM custos.issue_token(:'hanna', 'personal', '1 day', 'reports') \gset
SELECT token AS t_hugo FROM custos.issue_token(:'hugo', 'personal', '1 day', 'reports') \gset
SELECT token AS t_hugo2 FROM custos.issue_token(:'hugo', 'personal', '1 day', 'reports') \gset
SELECT token AS t_mona FROM custos.issue_token(:'mona', 'personal', '1 day', 'reports') \gset
SELECT token AS t_hugo_app FROM custos.issue_token(:'hugo', 'app', '1 day', 'reports') \gset
SELECT count(*) AS x_n FROM custos.log_batch($j$[
 {"tenant": "hr", "occurred_at": "2026-10-01T08:00:00Z", "category": "login", "action": "LOGIN",
  "actor": "anna@example.org", "actor_name": "Anna Planted", "source_ip": "203.0.113.99"},
 {"tenant": "hr", "occurred_at": "2026-10-01T09:00:00Z", "category": "access", "action": "VIEW",
  "actor": "boris-planted", "actor_name": "Boris Planted-Clerk", "subject": "anna@example.org",
  "resource_type": "USER", "resource_id": "personnel-file", "metadata": {"purpose": "payroll run"}},
 {"tenant": "hr", "occurred_at": "2026-10-01T10:00:00Z", "category": "user", "action": "UPDATE",
  "actor": "anna@example.org", "subject": "anna@example.org", "resource_type": "USER",
  "description": "=cmd|' /C calc'!A0 planted", "new_state": {"iban": "DE-planted-iban"},
  "outcome": "failure"}
]$j$) \gset
SELECT pg_catalog.json_build_object('hanna', :'t_hanna', 'hanna2', :'t_hanna2', 'hugo', :'t_hugo',
  'hugo2', :'t_hugo2', 'mona', :'t_mona', 'hugo_app', :'t_hugo_app', 'hugo_id', :'hugo');
"""


def report_tokens():
    out = subprocess.run(PSQL + ["-v", "ON_ERROR_STOP=1"], input=REPORT_SETUP, capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report_events(tenant):
    return int(psql("SELECT count(*) FROM custos.event_log WHERE tenant = '%s' AND action = 'EXPORT' "
                    "AND resource_type = 'REPORT'" % tenant))


@test
def reports():
    t = report_tokens()
    anna = urllib.parse.quote("anna@example.org", safe="")
    path = "/v1/subjects/%s/report" % anna

    # who may: the owner or an admin of the tenant (or above), personal token
    before = report_events("hr")
    r = req("GET", path + "?tenant=hr")
    check("subject report without a token is 401", is_problem(r, 401), r)
    r = req("GET", path + "?tenant=hr", t["mona"])
    check("subject report by a member is 403 (42501)", is_problem(r, 403, "42501"), r)
    r = req("GET", path + "?tenant=hr", t["hugo_app"])
    check("subject report with an app token is 403", is_problem(r, 403, "42501"), r)
    r = req("GET", path + "?tenant=hr", TOKENS["alice"])
    check("subject report by another tenant's owner is 403", is_problem(r, 403, "42501"), r)
    r = req("GET", path + "?tenant=nowhere", t["hugo"])
    check("subject report of an unknown tenant is 404", is_problem(r, 404), r)
    r = req("GET", path, t["hugo"])
    check("subject report without ?tenant is 400", is_problem(r, 400), r)
    r = req("GET", path + "?tenant=hr&format=xml", t["hugo"])
    check("subject report in an unknown format is 400", is_problem(r, 400), r)
    r = req("GET", path + "?tenant=hr&limit=5", t["hugo"])
    check("subject report with an unknown parameter is 400", is_problem(r, 400), r)
    r = req("GET", path + "?tenant=hr&include_accessors=yes", t["hugo"])
    check("include_accessors must be true or false", is_problem(r, 400), r)
    r = req("GET", path + "?tenant=hr&include_accessors=true", t["hugo"])
    check("naming the accessors without a reason is 400 (22023)", is_problem(r, 400, "22023"), r)
    r = req("POST", path + "?tenant=hr", t["hugo"], {})
    check("POST on the report is 405 with Allow: GET", r.status == 405 and "GET" in r.headers.get("allow", ""), r)
    check("no refused request left a report event", report_events("hr") == before, report_events("hr"))

    # JSON
    r = req("GET", path + "?tenant=hr", t["hugo"])
    check("subject report as JSON is 200 application/json",
          r.status == 200 and r.headers.get("content-type", "").startswith("application/json"), r)
    doc = r.json() if r.status == 200 else {}
    check("the report names its subject (URL-decoded), tenant and legal basis",
          doc.get("subject") == "anna@example.org" and doc.get("tenant") == "hr"
          and "Art. 15" in doc.get("legal_basis", ""), doc)
    check("every event by or about the subject, nothing else",
          doc.get("counts", {}).get("events") == 3 and doc["counts"].get("by_subject") == 2
          and doc["counts"].get("about_subject") == 2, doc.get("counts"))
    acc = doc.get("accesses", [])
    check("the access is listed with date and purpose, without the accessor",
          len(acc) == 1 and acc[0].get("purpose") == "payroll run" and acc[0].get("occurred_at")
          and "accessor" not in acc[0], acc)
    body = r.body.decode()
    check("no accessor's id or name anywhere in the default report",
          "boris-planted" not in body and "Boris Planted-Clerk" not in body, body[:300])
    check("the report is an audit event", report_events("hr") == before + 1, report_events("hr"))
    rid = doc.get("report_id")
    ev = psql("SELECT concat_ws('|', category, action, resource_type, resource_id, subject) "
              "FROM custos.events WHERE id = %d" % int(rid or 0))
    check("the event: privacy EXPORT REPORT subject-access, the subject only in its encrypted field",
          ev == "privacy|EXPORT|REPORT|subject-access|anna@example.org"
          and psql("SELECT position('anna' in concat_ws('|', resource_id, resource_name, target_name)) "
                   "FROM custos.event_log WHERE id = %d" % int(rid or 0)) == "0", ev)

    r = req("GET", path + "?tenant=hr&include_accessors=true&reason=" +
            urllib.parse.quote("the subject disputes an access"), t["hanna"])
    acc = r.json().get("accesses", []) if r.status == 200 else []
    check("with include_accessors and a reason the accessor is named",
          r.status == 200 and any(a.get("accessor") == "boris-planted" for a in acc), r)

    # CSV, streamed; the report event is committed before the rows
    before = report_events("hr")
    r = req("GET", path + "?tenant=hr&format=csv", t["hugo2"])
    check("subject report as CSV is 200 text/csv",
          r.status == 200 and r.headers.get("content-type", "").startswith("text/csv")
          and "attachment" in r.headers.get("content-disposition", ""), r)
    rows = csv_rows(r.body) if r.status == 200 else [[]]
    head = rows[0]
    check("the CSV has a header and a row per event (3, and the JSON report's event)",
          "withheld" in head and "about_subject" in head and len(rows) == 1 + 5, [len(rows), head[:6]])
    d = [row[head.index("description")] for row in rows[1:]] if "description" in head else head
    check("a formula in a cell is neutralised", "'=cmd|' /C calc'!A0 planted" in d, d)
    check("the CSV report is an audit event too", report_events("hr") == before + 1, report_events("hr"))
    r = req("GET", path + "?tenant=hr", t["hugo2"], headers={"Accept": "text/csv"})
    check("Accept: text/csv gives CSV", r.status == 200 and r.headers.get("content-type", "").startswith("text/csv"), r)
    r = req("GET", path + "?tenant=hr&format=csv", t["mona"])
    check("a refused CSV report is problem+json, not an empty CSV", is_problem(r, 403, "42501"), r)

    # support report
    planted = {
        "token secrets": [v for k, v in t.items() if k != "hugo_id"] + [v for k, v in TOKENS.items() if isinstance(v, str) and v.startswith("cst_")],
        "installation secret": [psql("SELECT encode(secret, 'hex') FROM custos.installation")],
        "data keys": psql("SELECT string_agg(encode(key, 'hex'), ' ') FROM custos.data_key WHERE key IS NOT NULL").split(),
        "scope refs": psql("SELECT string_agg(encode(scope_ref, 'hex'), ' ') FROM custos.data_key").split(),
        "token hashes": psql("SELECT string_agg(encode(secret_hash, 'hex'), ' ') FROM custos.token").split(),
        "personal values": ["anna@example.org", "Anna Planted", "203.0.113.99", "boris-planted",
                            "Boris Planted-Clerk", "DE-planted-iban", "calc'!A0 planted", "Hanna Owner",
                            "Mona Member"],
    }
    before = report_events("hr")
    r = req("GET", "/v1/support/report?tenant=hr", t["hugo"])
    check("support report of a tenant by its admin is 200 JSON",
          r.status == 200 and r.headers.get("content-type", "").startswith("application/json"), r)
    doc = r.json() if r.status == 200 else {}
    check("it has versions, settings, chains, jobs, counts and recent problems",
          all(k in doc for k in ("versions", "settings", "chains", "jobs", "counts", "recent_problems"))
          and doc.get("includes_personal_data") is False, sorted(doc))
    body = r.body.decode()
    leaks = {k: [v for v in vs if v and v in body] for k, vs in planted.items()}
    check("the default support report holds no planted secret or personal value",
          not any(leaks.values()) and sum(len(v) for v in planted.values()) > 20, leaks)
    check("the support report is an audit event", report_events("hr") == before + 1)
    h = req("HEAD", "/v1/support/report?tenant=hr", t["hugo"])
    check("HEAD on a report is 405 with Allow: GET and records no report",
          h.status == 405 and h.headers.get("content-type", "").startswith("application/problem+json")
          and h.headers.get("allow") == "GET" and report_events("hr") == before + 1, h)
    h = req("HEAD", "/v1/events", t["hugo"])
    check("HEAD on the API's GETs is 405 too (a read of the log is recorded)",
          h.status == 405 and h.headers.get("allow") == "GET", h)
    r = req("GET", "/v1/support/report", t["hugo2"])
    check("the installation's support report by a tenant admin is 403", is_problem(r, 403, "42501"), r)
    r = req("GET", "/v1/support/report?tenant=hr&personal_data=true&reason=ticket", t["hugo2"])
    check("personal data in a support report by an admin is 403", is_problem(r, 403, "42501"), r)
    r = req("GET", "/v1/support/report?tenant=hr&personal_data=true", t["hanna2"])
    check("personal data without a reason is 400", is_problem(r, 400, "22023"), r)
    r = req("GET", "/v1/support/report?tenant=hr&personal_data=1", t["hanna2"])
    check("personal_data must be true or false", is_problem(r, 400), r)
    r = req("GET", "/v1/support/report?tenant=hr&token=x", t["hanna2"])
    check("support report with an unknown parameter is 400", is_problem(r, 400), r)
    r = req("GET", "/v1/support/report?tenant=hr&personal_data=true&reason=" + urllib.parse.quote("ticket 4711"),
            t["hanna2"])
    doc = r.json() if r.status == 200 else {}
    body = r.body.decode()
    check("the owner's support report with personal data names the tenant's people",
          r.status == 200 and doc.get("includes_personal_data") is True and "Hanna Owner" in body, r)
    check("... and still no secret",
          not any(v in body for k in ("token secrets", "installation secret", "data keys", "token hashes")
                  for v in planted[k]))
    ev = psql("SELECT concat_ws('|', category, new_state ->> 'reason', new_state ->> 'include_personal_data') "
              "FROM custos.events WHERE id = %d" % int(doc.get("report_id") or 0))
    check("it is a privacy event naming why", ev == "privacy|ticket 4711|true", ev)


# ---------------------------------------------------------------------------
# Retention, legal holds and erasure (0.6): GET/PUT /v1/tenants/{tenant}/retention,
# GET/POST /v1/tenants/{tenant}/legal-holds, DELETE /v1/legal-holds/{id},
# POST /v1/tenants/{tenant}/erasures.  Their own tenant "archive" below the
# reseller, with an owner, an admin, a member with and one without
# audit.read, an app token, and a second reseller with its own customer;
# events by and about three data subjects to erase.  Fresh tokens: fresh
# rate-limit buckets.
# ---------------------------------------------------------------------------

RETENTION_SETUP = r"""
SELECT custos.create_tenant('archive', 'reseller', 'Archive GmbH') \gset x_
SELECT custos.create_tenant('reseller2', NULL, 'Another reseller') \gset x_
SELECT custos.create_tenant('shop', 'reseller2', 'Its customer') \gset x_
SELECT custos.create_principal('archive', 'Arno Owner', 'user', 'owner') AS arno \gset
SELECT custos.create_principal('archive', 'Ada Admin', 'user', 'admin') AS ada \gset
SELECT custos.create_principal('archive', 'Max Member', 'user', 'member') AS max \gset
SELECT custos.create_principal('archive', 'Rea Reader', 'user', 'member') AS rea \gset
SELECT custos.create_principal('archive', 'Sync App', 'app', 'member') AS syncapp \gset
SELECT custos.create_principal('reseller2', 'Rolf Reseller', 'user', 'admin') AS rolf \gset
SELECT custos.grant_right('archive', :'rea', 'audit.read') \gset x_
SELECT token AS t_arno FROM custos.issue_token(:'arno', 'personal', '1 day', 'retention') \gset
SELECT token AS t_ada FROM custos.issue_token(:'ada', 'personal', '1 day', 'retention') \gset
SELECT token AS t_max FROM custos.issue_token(:'max', 'personal', '1 day', 'retention') \gset
SELECT token AS t_rea FROM custos.issue_token(:'rea', 'personal', '1 day', 'retention') \gset
SELECT token AS t_sync FROM custos.issue_token(:'syncapp', 'app', '1 day', 'retention') \gset
SELECT token AS t_rolf FROM custos.issue_token(:'rolf', 'personal', '1 day', 'retention') \gset
SELECT count(*) AS x_n FROM custos.log_batch($j$[
 {"tenant": "archive", "action": "LOGIN", "category": "login", "actor": "eve@example.net", "actor_name": "Eve Erased"},
 {"tenant": "archive", "action": "VIEW", "category": "access", "actor": "clerk-1", "subject": "eve@example.net",
  "description": "opened Eve's file"},
 {"tenant": "archive", "action": "LOGIN", "category": "login", "actor": "held@example.net", "actor_name": "Hal Held"},
 {"tenant": "archive", "action": "LOGIN", "category": "login", "actor": "tom@example.net", "actor_name": "Tom Later"}
]$j$) \gset
SELECT pg_catalog.json_build_object('arno', :'t_arno', 'ada', :'t_ada', 'max', :'t_max', 'rea', :'t_rea',
  'sync', :'t_sync', 'rolf', :'t_rolf');
"""


RETENTION_TOKENS = {}


def retention_tokens():
    """The section's tokens; its setup runs once, for the first test that asks."""
    if not RETENTION_TOKENS:
        out = subprocess.run(PSQL + ["-v", "ON_ERROR_STOP=1"], input=RETENTION_SETUP, capture_output=True,
                             text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        RETENTION_TOKENS.update(json.loads(out.stdout.strip().splitlines()[-1]))
    return RETENTION_TOKENS


def audit_event(tenant, action, resource_type, token):
    """The newest event of tenant with action and resource type, appended with token (its id), as a dict."""
    tok = req("GET", "/v1/access-info", token).json()["token"]
    row = psql("SELECT coalesce(json_build_object('id', id, 'category', category, 'resource_id', resource_id, "
               "'new_state', new_state, 'previous_state', previous_state, 'subject', subject)::text, '') "
               "FROM custos.events WHERE tenant = '%s' AND action = '%s' AND resource_type = '%s' "
               "AND access = '%s' ORDER BY id DESC LIMIT 1" % (tenant, action, resource_type, tok))
    return json.loads(row) if row else None


@test
def retention_policy():
    t = retention_tokens()
    path = "/v1/tenants/archive/retention"
    r = req("GET", path, t["arno"])
    p = r.json() if r.status == 200 else {}
    check("GET retention of a tenant without a policy: the default, not explicit",
          r.status == 200 and p.get("tenant") == "archive" and p.get("retention_days") == 180
          and p.get("anonymize_days") is None and p.get("explicit") is False and p.get("on_hold") is False
          and p.get("min_days") == 1 and p.get("max_days") == 3650, r)
    r = req("PUT", path, t["arno"], {"retention_days": 365, "anonymize_days": 30})
    check("PUT retention by the owner is 200 with the policy",
          r.status == 200 and r.json() == {"tenant": "archive", "retention_days": 365, "anonymize_days": 30}, r)
    ev = audit_event("archive", "UPDATE", "RETENTION_POLICY", t["arno"])
    check("... recorded as a privacy UPDATE RETENTION_POLICY event with old and new periods",
          ev is not None and ev["category"] == "privacy" and ev["resource_id"] == "archive"
          and ev["new_state"] == {"retention_days": 365, "anonymize_days": 30}
          and ev["previous_state"].get("default") is True, ev)
    r = req("GET", path, t["rea"])
    p = r.json() if r.status == 200 else {}
    check("GET retention by a member with audit.read shows the new policy",
          r.status == 200 and p.get("retention_days") == 365 and p.get("anonymize_days") == 30
          and p.get("explicit") is True and p.get("updated_by"), r)
    r = req("PUT", path, TOKENS["rita"], {"retention_days": 400})
    check("the reseller's admin sets a customer's policy; absent anonymize_days is null",
          r.status == 200 and r.json().get("anonymize_days") is None and r.json().get("retention_days") == 400, r)

    # refused
    check("GET retention by a member without audit.read is 403",
          is_problem(req("GET", path, t["max"]), 403, "42501"))
    check("PUT retention by a member (with audit.read) is 403",
          is_problem(req("PUT", path, t["rea"], {"retention_days": 30}), 403, "42501"))
    check("PUT retention by another reseller's admin is 403",
          is_problem(req("PUT", path, t["rolf"], {"retention_days": 30}), 403, "42501"))
    check("GET retention by another reseller's admin is 403",
          is_problem(req("GET", path, t["rolf"]), 403, "42501"))
    check("GET retention of an unknown tenant is 404",
          is_problem(req("GET", "/v1/tenants/nowhere/retention", t["arno"]), 404, "P0002"))
    check("PUT retention of an unknown tenant is 404",
          is_problem(req("PUT", "/v1/tenants/nowhere/retention", t["arno"], {"retention_days": 30}), 404, "P0002"))
    for name, body in (("0 days", {"retention_days": 0}), ("4000 days (over the maximum)", {"retention_days": 4000}),
                       ("anonymisation after retention", {"retention_days": 30, "anonymize_days": 31}),
                       ("anonymisation after 0 days", {"retention_days": 30, "anonymize_days": 0}),
                       ("a fraction of a day", {"retention_days": 30.5}),
                       ("days as a string", {"retention_days": "30"}),
                       ("days beyond an integer", {"retention_days": 1e12}),
                       ("an unknown field", {"retention_days": 30, "keep": True})):
        check("PUT retention with %s is 400 (22023)" % name, is_problem(req("PUT", path, t["arno"], body), 400, "22023"))
    check("PUT retention without retention_days is 422",
          is_problem(req("PUT", path, t["arno"], {"anonymize_days": 3}), 422, "23502"))
    check("PUT retention with a body that is not an object is 400",
          is_problem(req("PUT", path, t["arno"], [365]), 400))
    check("PUT retention with malformed JSON is 400",
          is_problem(req("PUT", path, t["arno"], "{\"retention_days\": ", {"Content-Type": "application/json"}), 400))
    check("PUT retention without a body is 400", is_problem(req("PUT", path, t["arno"], b"",
                                                                {"Content-Type": "application/json"}), 400))
    check("GET retention with a query parameter is 400", is_problem(req("GET", path + "?all=1", t["arno"]), 400))
    check("GET retention without a token is 401", is_problem(req("GET", path), 401))
    r = req("POST", path, t["arno"], {"retention_days": 30})
    check("POST on retention is 405 with Allow: GET, PUT",
          is_problem(r, 405) and set(r.headers.get("allow", "").split(", ")) == {"GET", "PUT"}, r)
    r = req("GET", path, t["arno"])
    check("no refused PUT changed the policy", r.status == 200 and r.json().get("retention_days") == 400, r)


@test
def legal_holds_and_erasure():
    t = retention_tokens()
    holds = "/v1/tenants/archive/legal-holds"
    erase = "/v1/tenants/archive/erasures"

    r = req("GET", holds, t["arno"])
    check("GET legal holds of a tenant without any is an empty list",
          r.status == 200 and r.json() == {"tenant": "archive", "legal_holds": []}, r)

    # a subject hold: placed, listed, audited
    r = req("POST", holds, t["ada"], {"subject": "held@example.net", "reason": "case 2026-18"})
    h = r.json() if r.status == 201 else {}
    hid = h.get("hold_id")
    check("POST a subject hold by an admin is 201 with the hold and Location",
          r.status == 201 and isinstance(hid, int) and h.get("tenant") == "archive" and h.get("scope") == "subject"
          and h.get("reason") == "case 2026-18" and h.get("active") is True and h.get("placed_at")
          and r.headers.get("location") == "/v1/legal-holds/%s" % hid, r)
    check("the answer does not name the held subject", b"held@example.net" not in r.body, r)
    ev = audit_event("archive", "HOLD", "LEGAL_HOLD", t["ada"])
    check("... recorded as a HOLD LEGAL_HOLD event, the subject in its encrypted subject field",
          ev is not None and ev["resource_id"] == str(hid) and ev["subject"] == "held@example.net"
          and ev["new_state"].get("scope") == "subject", ev)
    r = req("GET", holds, t["rea"])
    lst = r.json().get("legal_holds", []) if r.status == 200 else []
    check("GET legal holds by a member with audit.read lists it",
          r.status == 200 and [x["hold_id"] for x in lst] == [hid] and lst[0]["active"] is True
          and lst[0]["scope"] == "subject", r)

    # erasure under the hold is refused; of someone else it works
    r = req("POST", erase, t["arno"], {"subject": "held@example.net", "reason": "request #1"})
    check("erasing a held subject is 409 (55000) with the Art. 17(3)(e) hint",
          is_problem(r, 409, "55000") and "17(3)(e)" in r.json().get("hint", ""), r)
    r = req("POST", erase, t["arno"], {"subject": "eve@example.net", "reason": "request #4711"})
    e = r.json() if r.status == 200 else {}
    check("POST an erasure by the owner is 200 with its result",
          r.status == 200 and e.get("tenant") == "archive" and e.get("keys_destroyed", 0) >= 2
          and e.get("keys_kept_for_holds") == 0 and re.fullmatch(r"[0-9a-f]{16}", e.get("subject_ref", "")), r)
    seal()
    states = psql("SELECT string_agg(action || ':' || personal_data, ',' ORDER BY id) FROM custos.events "
                  "WHERE tenant = 'archive' AND action IN ('LOGIN', 'VIEW')")
    check("the subject's events (by and about her) are erased, the others not",
          states == "LOGIN:erased,VIEW:erased,LOGIN:clear,LOGIN:clear", states)
    ev = audit_event("archive", "ERASE", "SUBJECT", t["arno"])
    check("... recorded as an ERASE SUBJECT event with the reason, naming nobody",
          ev is not None and ev["new_state"].get("reason") == "request #4711"
          and ev["new_state"].get("subject_ref") == e.get("subject_ref") and ev["subject"] is None, ev)

    # a tenant hold blocks every erasure
    r = req("POST", holds, t["arno"], {"reason": "audit by the regulator"})
    tid = r.json().get("hold_id") if r.status == 201 else None
    check("POST a tenant hold (no subject) is 201, scope tenant",
          r.status == 201 and r.json().get("scope") == "tenant", r)
    r = req("GET", "/v1/tenants/archive/retention", t["arno"])
    check("the tenant shows as on hold in its retention policy", r.status == 200 and r.json().get("on_hold") is True, r)
    r = req("POST", erase, t["arno"], {"subject": "tom@example.net", "reason": "request #2"})
    check("erasing anyone in a tenant on hold is 409 (55000)", is_problem(r, 409, "55000"), r)

    # lifting: with a body reason, with ?reason=, twice, unknown
    r = req("DELETE", "/v1/legal-holds/%s" % tid, t["arno"], {"reason": "regulator done"})
    l = r.json() if r.status == 200 else {}
    check("DELETE a hold with a JSON reason is 200 with the lifted hold",
          r.status == 200 and l.get("hold_id") == tid and l.get("active") is False and l.get("lifted_at")
          and l.get("lift_reason") == "regulator done", r)
    ev = audit_event("archive", "RELEASE", "LEGAL_HOLD", t["arno"])
    check("... recorded as a RELEASE LEGAL_HOLD event with the reason",
          ev is not None and ev["resource_id"] == str(tid) and ev["new_state"].get("reason") == "regulator done", ev)
    r = req("DELETE", "/v1/legal-holds/%s" % tid, t["arno"])
    check("lifting a hold twice is 409 (55000)", is_problem(r, 409, "55000"), r)
    check("lifting an unknown hold is 404 (P0002)",
          is_problem(req("DELETE", "/v1/legal-holds/99999999", t["arno"]), 404, "P0002"))
    check("lifting a non-numeric hold id is 404", is_problem(req("DELETE", "/v1/legal-holds/x1", t["arno"]), 404))
    check("a member cannot lift a hold (403)",
          is_problem(req("DELETE", "/v1/legal-holds/%s" % hid, t["rea"]), 403, "42501"))
    check("another reseller's admin cannot lift it (403)",
          is_problem(req("DELETE", "/v1/legal-holds/%s" % hid, t["rolf"]), 403, "42501"))
    check("a DELETE with an unknown query parameter is 400",
          is_problem(req("DELETE", "/v1/legal-holds/%s?why=x" % hid, t["arno"]), 400))
    check("a DELETE with an unknown body field is 400 (22023)",
          is_problem(req("DELETE", "/v1/legal-holds/%s" % hid, t["arno"], {"reason": "x", "force": True}), 400, "22023"))
    check("a DELETE with the reason in the body and the query is 400",
          is_problem(req("DELETE", "/v1/legal-holds/%s?reason=a" % hid, t["arno"], {"reason": "b"}), 400))
    r = req("DELETE", "/v1/legal-holds/%s?reason=%s" % (hid, urllib.parse.quote("case 2026-18 closed")), TOKENS["rita"])
    check("the reseller's admin lifts the subject hold with ?reason= (200)",
          r.status == 200 and r.json().get("lift_reason") == "case 2026-18 closed" and r.json().get("active") is False, r)
    r = req("POST", erase, t["arno"], {"subject": "held@example.net", "reason": "request #1, again"})
    check("once the hold is lifted the subject can be erased (200)",
          r.status == 200 and r.json().get("keys_destroyed", 0) >= 1, r)
    r = req("GET", holds, t["arno"])
    lst = r.json().get("legal_holds", []) if r.status == 200 else []
    check("GET legal holds lists lifted holds too, in id order",
          [x["hold_id"] for x in lst] == [hid, tid] and not any(x["active"] for x in lst), lst)

    # refused: who, and what
    check("a member cannot place a hold (403)",
          is_problem(req("POST", holds, t["rea"], {"reason": "x"}), 403, "42501"))
    check("an app token of a member cannot place a hold (403)",
          is_problem(req("POST", holds, t["sync"], {"reason": "x"}), 403, "42501"))
    check("another reseller's admin cannot place a hold (403)",
          is_problem(req("POST", holds, t["rolf"], {"reason": "x"}), 403, "42501"))
    check("a member without audit.read cannot list holds (403)", is_problem(req("GET", holds, t["max"]), 403, "42501"))
    check("another reseller's admin cannot list holds (403)", is_problem(req("GET", holds, t["rolf"]), 403, "42501"))
    check("a member cannot erase (403)",
          is_problem(req("POST", erase, t["rea"], {"subject": "tom@example.net", "reason": "x"}), 403, "42501"))
    check("another reseller's admin cannot erase (403)",
          is_problem(req("POST", erase, t["rolf"], {"subject": "tom@example.net", "reason": "x"}), 403, "42501"))
    check("holds of an unknown tenant are 404",
          is_problem(req("GET", "/v1/tenants/nowhere/legal-holds", t["arno"]), 404, "P0002"))
    check("a hold on an unknown tenant is 404",
          is_problem(req("POST", "/v1/tenants/nowhere/legal-holds", t["arno"], {"reason": "x"}), 404, "P0002"))
    check("erasure in an unknown tenant is 404",
          is_problem(req("POST", "/v1/tenants/nowhere/erasures", t["arno"], {"subject": "a", "reason": "x"}), 404, "P0002"))
    check("a hold without a reason is 422 (23502)", is_problem(req("POST", holds, t["arno"], {"subject": "s"}), 422, "23502"))
    check("a hold with an empty reason is 400 (22023)", is_problem(req("POST", holds, t["arno"], {"reason": " "}), 400, "22023"))
    check("a hold with an empty subject is 400 (22023)",
          is_problem(req("POST", holds, t["arno"], {"subject": "", "reason": "x"}), 400, "22023"))
    check("a hold with an unknown field is 400 (22023)",
          is_problem(req("POST", holds, t["arno"], {"reason": "x", "until": "2027-01-01"}), 400, "22023"))
    check("a hold with a non-string subject is 400 (22023)",
          is_problem(req("POST", holds, t["arno"], {"reason": "x", "subject": 42}), 400, "22023"))
    check("a hold reason over 1024 bytes is 400",
          is_problem(req("POST", holds, t["arno"], {"reason": "r" * 1025}), 400, "22023"))
    check("an erasure without a reason is 422 (23502)",
          is_problem(req("POST", erase, t["arno"], {"subject": "tom@example.net"}), 422, "23502"))
    check("an erasure without a subject is 422 (23502)",
          is_problem(req("POST", erase, t["arno"], {"reason": "x"}), 422, "23502"))
    check("an erasure of an empty subject is 400 (22023)",
          is_problem(req("POST", erase, t["arno"], {"subject": "", "reason": "x"}), 400, "22023"))
    check("an erasure with an unknown field is 400 (22023)",
          is_problem(req("POST", erase, t["arno"], {"subject": "tom@example.net", "reason": "x", "dry_run": True}),
                     400, "22023"))
    check("an erasure body that is not JSON is 415",
          is_problem(req("POST", erase, t["arno"], "subject=tom", {"Content-Type": "text/plain"}), 415))
    check("GET on erasures is 405", is_problem(req("GET", erase, t["arno"]), 405))
    check("tom was never erased by a refused request",
          psql("SELECT count(*) FROM custos.events WHERE tenant = 'archive' AND actor = 'tom@example.net' "
               "AND personal_data = 'clear'") == "1")
    n = psql("SELECT count(*) FROM custos.event_log WHERE tenant = 'archive' AND action IN ('HOLD', 'RELEASE', 'ERASE')")
    check("every successful action and none of the refused ones is an audit event (2 holds, 2 releases, 2 erasures)",
          n == "6", n)


@test
def database_restart():
    """The database goes away under load and comes back: 503 meanwhile, then recovery."""
    stop = threading.Event()
    seen = []
    lock = threading.Lock()

    def load():
        while not stop.is_set():
            try:
                r = req("GET", "/v1/access-info", TOKENS["writer"], timeout=10)
                with lock:
                    seen.append((time.time(), r.status))
            except Exception as e:
                with lock:
                    seen.append((time.time(), "exc %r" % e))
            time.sleep(0.03)
    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(0.5)
        subprocess.run(["bash", "-c", os.environ["GW_PG_STOP"]], check=True, capture_output=True, timeout=60)
        down_at = time.time()
        time.sleep(1.0)
        r = req("GET", "/readyz")
        check("/readyz is 503 while the database is down", is_problem(r, 503), r)
        subprocess.run(["bash", "-c", os.environ["GW_PG_START"]], check=True, capture_output=True, timeout=60)
        up_at = time.time()
        recovered = None
        for _ in range(100):
            time.sleep(0.1)
            with lock:
                after = [s for ts, s in seen if ts > up_at]
            if 200 in after:
                recovered = time.time() - up_at
                break
    finally:
        stop.set()
        t.join()
    during = [s for ts, s in seen if down_at + 0.2 < ts < up_at]
    check("requests while the database is down are 503", during and all(s == 503 for s in during),
          {str(s): during.count(s) for s in set(during)})
    check("no 500 and no hang at any time", all(s in (200, 503, 429) for ts, s in seen),
          {str(s) for ts, s in seen})
    check("after the restart the gateway recovers without a restart of its own", recovered is not None,
          recovered)
    if recovered is not None:
        print("# recovered %.2fs after the database came back" % recovered, flush=True)
    check("/readyz is 200 again", req("GET", "/readyz").status == 200)


print("http tests: %d passed, %d failed" % (passed, failed), flush=True)
sys.exit(1 if failed else 0)
