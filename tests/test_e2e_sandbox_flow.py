"""End to end over real HTTP on loopback: what the public CDS Hooks sandbox
(or an EHR) does, replayed against the production server (gunicorn).

A small FHIR R4 server runs in a thread (http.server) and serves fixture
patients' searches, one of them paged, only to callers with the right bearer
token; it records every request. The service runs in a subprocess with
authentication required, a trusted test issuer with a fresh ES384 key, the
FHIR server allowlisted, and a temporary SQLite database. Every call below
goes over a socket with `requests`: no Flask test client.

See /work/shared/cds-hooks/SANDBOX.md for what the sandbox sends: partial
prefetch (failed keys left out), draftOrders Bundles without `type`, a first
Rx View call whose draft names no medication, feedback without
overrideReason, a fresh JWT with aud = the exact URL on every call.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service import fixtures as fx

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 10  # seconds, every HTTP call and wait

ISSUER = "https://ehr.e2e.test"
KID = "e2e-key-1"
FHIR_TOKEN = "fhir-access-token-e2e"
SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"
USER = "Practitioner/COREPRACTITIONER1"  # the sandbox's user, which the FHIR server does not hold

PV_FIXTURE = "tx-bp-postmenopausal-osteoporosis"
RENAL_FIXTURE = "c-safe-renal-alendronate-egfr-34"
LOINC = "http://loinc.org"
PAGE_SIZE = 4  # the PV fixture's Observation search then needs a second page

PV = "osteoporosis-patient-view"
OS = "osteoporosis-order-select"


# --------------------------------------------------------------------------
# The local FHIR R4 server


def _codes_of(resource: dict) -> set[str]:
    return {f"{c.get('system')}|{c.get('code')}" for c in (resource.get("code") or {}).get("coding") or ()}


def _subject_id(resource: dict) -> str | None:
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference") or ""
    return ref.split("/", 1)[1] if ref.startswith("Patient/") else None


class FhirServer:
    """Patient reads and patient/code searches over fixture resources, with
    HAPI-style paging (`_getpages`), a bearer token check and a request log."""

    SEARCHABLE = ("Observation", "Condition", "MedicationRequest", "MedicationAdministration",
                  "MedicationStatement", "Procedure", "ServiceRequest", "Encounter")

    def __init__(self, resources: list[dict], token: str):
        self.resources = resources
        self.token = token
        self.log: list[dict] = []  # {"path", "query", "authorization", "status", "ids" returned}
        self.pages: dict[str, list[dict]] = {}
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(TIMEOUT)

    def requests_for(self, resource_type: str) -> list[dict]:
        with self.lock:
            return [r for r in self.log if r["path"] == f"/fhir/{resource_type}"]

    def _search(self, rtype: str, params: dict[str, list[str]]) -> list[dict]:
        hits = [r for r in self.resources if r.get("resourceType") == rtype]
        if "patient" in params:
            hits = [r for r in hits if _subject_id(r) == params["patient"][0]]
        if "code" in params:
            wanted = set(",".join(params["code"]).split(","))
            hits = [r for r in hits if _codes_of(r) & wanted]
        if "type" in params:  # Encounter.type, a list of CodeableConcepts
            wanted = set(",".join(params["type"]).split(","))
            hits = [r for r in hits if set().union(*(_codes_of({"code": c}) for c in r.get("type") or [])) & wanted]
        return hits

    def _page(self, matches: list[dict], offset: int, page_id: str) -> dict:
        chunk = matches[offset:offset + PAGE_SIZE]
        bundle = {
            "resourceType": "Bundle", "type": "searchset", "total": len(matches),
            "entry": [{"fullUrl": f"{self.base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in chunk],
        }
        if offset + PAGE_SIZE < len(matches):
            bundle["link"] = [{"relation": "next",
                               "url": f"{self.base}?_getpages={page_id}&_getpagesoffset={offset + PAGE_SIZE}"}]
        return bundle

    def _answer(self, path: str, params: dict[str, list[str]]) -> tuple[int, dict]:
        parts = path.split("/")[2:]  # after "/fhir"
        if not parts or parts == [""]:
            page_id = (params.get("_getpages") or [""])[0]
            with self.lock:
                matches = self.pages.get(page_id)
            if matches is None:
                return 410, _outcome("paging state not found")
            return 200, self._page(matches, int(params["_getpagesoffset"][0]), page_id)
        if len(parts) == 2:
            found = [r for r in self.resources if r.get("resourceType") == parts[0] and r.get("id") == parts[1]]
            return (200, found[0]) if found else (404, _outcome("not found"))
        if len(parts) == 1 and parts[0] in self.SEARCHABLE:
            matches = self._search(parts[0], params)
            page_id = uuid.uuid4().hex
            with self.lock:
                self.pages[page_id] = matches
            return 200, self._page(matches, 0, page_id)
        return 400, _outcome("unsupported")

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                params = parse_qs(url.query)
                auth = self.headers.get("Authorization")
                if auth != f"Bearer {server.token}":
                    status, body = 401, _outcome("a valid bearer token is required")
                elif not url.path.startswith("/fhir"):
                    status, body = 404, _outcome("not found")
                else:
                    status, body = server._answer(url.path, params)
                returned = [e["resource"]["id"] for e in body.get("entry", [])]
                with server.lock:
                    server.log.append({"path": url.path, "query": params, "authorization": auth,
                                       "status": status, "ids": returned})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output quiet
                pass

        return Handler


def _outcome(text: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing",
                                                           "diagnostics": text}]}


# --------------------------------------------------------------------------
# The CDS client's identity


class Client:
    """Signs a fresh ES384 JWT per call, as the sandbox does."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP384R1())
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        public.update(kid=KID, use="sig", alg="ES384")
        self.public_jwk = public

    def token(self, aud: str, jti: str | None = None) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 300, "jti": jti or str(uuid.uuid4())}
        return jwt.encode(claims, self.key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"service exited early:\n{log_path.read_text()}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"service not ready within {TIMEOUT}s:\n{log_path.read_text()}")


def _draft_orders(*drafts: dict) -> dict:
    # The sandbox's draftOrders Bundle has no `type`.
    return {"resourceType": "Bundle", "entry": [{"resource": d} for d in drafts]}


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample, 0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        label_text = line[len(name) + 1:line.index("}")]
        found = dict(part.split("=", 1) for part in label_text.split(",") if part)
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --------------------------------------------------------------------------
# The flow


def test_sandbox_flow_against_the_production_server(tmp_path):
    today = dt.date.today()
    pv_bundle = fx.load_patient(PV_FIXTURE, today=today)
    renal_bundle = fx.load_patient(RENAL_FIXTURE, today=today)
    pv_patient = fx.prefetch_from_bundle(pv_bundle)["patient"]
    renal_patient = fx.prefetch_from_bundle(renal_bundle)["patient"]
    renal_draft = fx.drafts_from_bundle(renal_bundle)[0]
    # The FHIR server holds both patients' records, never their draft orders.
    served = [e["resource"] for b in (pv_bundle, renal_bundle) for e in b["entry"]
              if e["resource"] not in fx.drafts_from_bundle(b)]

    client = Client()
    trust = tmp_path / "issuers.json"
    trust.write_text(json.dumps({ISSUER: {"jwks": {"keys": [client.public_jwk]}, "algorithms": ["ES384"]}}))
    db_url = f"sqlite:///{tmp_path}/e2e.db"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "service.log"

    with FhirServer(served, FHIR_TOKEN) as fhir:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "PROMETHEUS_"))},
            "PYTHONPATH": str(ROOT),
            "CDS_DATABASE_URL": db_url,
            "CDS_AUTH_REQUIRED": "true",
            "CDS_PATIENT_HASH_SECRET": "test-patient-hash-secret-0123456789abcdef",
            # The steps use the fixture's drug card and its calcium card on one chart
            # open: routine cards compete on value alone here (turn-taking has its own tests).
            "CDS_ROUTINE_CARD_BUDGET": "2",
            "CDS_TRUSTED_ISSUERS": str(trust),
            "CDS_PUBLIC_BASE_URL": base,
            "CDS_ALLOWED_FHIR_SERVERS": fhir.base,
            "CDS_ALLOW_LOOPBACK_HTTP": "true",
            "CDS_WORKERS": "1",
            "CDS_THREADS": "4",
            "CDS_GRACEFUL_TIMEOUT_SECONDS": "5",
            "CDS_FHIR_RETRIES": "0",
            "CDS_FHIR_TIMEOUT_SECONDS": "3",
            "CDS_FHIR_TOTAL_TIMEOUT_SECONDS": "6",
        }
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cds_service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _wait_ready(proc, f"{base}/healthz", log_path)
            http = requests.Session()

            def call(method: str, path: str, *, token: str | None = None, **kw) -> requests.Response:
                url = base + path
                headers = {"Authorization": f"Bearer {token or client.token(url)}", **kw.pop("headers", {})}
                return http.request(method, url, headers=headers, timeout=TIMEOUT, **kw)

            # 1. CORS preflight for discovery, as the browser sends it for the sandbox.
            pre = http.options(f"{base}/cds-services", timeout=TIMEOUT, headers={
                "Origin": SANDBOX_ORIGIN, "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization"})
            assert pre.status_code == 200
            assert pre.headers["Access-Control-Allow-Origin"] in ("*", SANDBOX_ORIGIN)
            assert "authorization" in pre.headers["Access-Control-Allow-Headers"].lower()
            assert "GET" in pre.headers["Access-Control-Allow-Methods"]
            # ... and for a hook call (authorization + content-type).
            pre = http.options(f"{base}/cds-services/{PV}", timeout=TIMEOUT, headers={
                "Origin": SANDBOX_ORIGIN, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type"})
            assert pre.status_code == 200
            allowed = pre.headers["Access-Control-Allow-Headers"].lower()
            assert "authorization" in allowed and "content-type" in allowed
            assert "POST" in pre.headers["Access-Control-Allow-Methods"]

            # ... and for feedback.
            pre = http.options(f"{base}/cds-services/{PV}/feedback", timeout=TIMEOUT, headers={
                "Origin": SANDBOX_ORIGIN, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type"})
            assert pre.status_code == 200 and pre.headers["Access-Control-Allow-Origin"] in ("*", SANDBOX_ORIGIN)

            # 2. Discovery with a fresh JWT, aud = the exact URL.
            disc = call("GET", "/cds-services", headers={"Origin": SANDBOX_ORIGIN})
            assert disc.status_code == 200, disc.text
            assert disc.headers.get("Access-Control-Allow-Origin") in ("*", SANDBOX_ORIGIN)
            services = {s["id"]: s for s in disc.json()["services"]}
            assert services.keys() == {PV, OS, "osteoporosis-order-sign"}
            assert services[PV]["hook"] == "patient-view" and services[OS]["hook"] == "order-select"

            # 3. patient-view with only the patient prefetched: the service
            # fetches the rest from fhirServer with the EHR's token.
            pv_body = {
                "hookInstance": str(uuid.uuid4()), "hook": "patient-view",
                "fhirServer": fhir.base,
                "fhirAuthorization": {"access_token": FHIR_TOKEN, "token_type": "Bearer",
                                      "expires_in": 300, "scope": "user/*.read",
                                      "subject": "cds-service"},
                "context": {"userId": USER, "patientId": pv_patient["id"]},
                "prefetch": {"patient": pv_patient},
            }
            pv_token = client.token(f"{base}/cds-services/{PV}")
            resp = call("POST", f"/cds-services/{PV}", token=pv_token, json=pv_body)
            assert resp.status_code == 200, resp.text
            pv_cards = resp.json()["cards"]
            ids = {c["source"]["topic"]["code"]: c for c in pv_cards}
            must, must_not = fx.expectations(pv_bundle, "patient-view")
            assert {"C-TX-BP", "C-SUPP-CAVD"} <= must  # the cards the steps below use
            assert must <= ids.keys(), (must, sorted(ids))
            assert not (must_not & ids.keys())
            for card_id, indicator in fx.expected_indicators(pv_bundle, "patient-view").items():
                assert ids[card_id]["indicator"] == indicator

            with fhir.lock:
                log = list(fhir.log)
            # Every request carried the token; nothing was refused; the
            # Patient that was sent was not fetched again.
            assert log and all(r["authorization"] == f"Bearer {FHIR_TOKEN}" for r in log)
            assert all(r["status"] == 200 for r in log), log
            assert not any(r["path"].startswith("/fhir/Patient") for r in log)
            searched = {r["path"] for r in log}
            assert searched >= {f"/fhir/{t}" for t in FhirServer.SEARCHABLE}
            assert all(r["query"].get("patient") == [pv_patient["id"]] for r in log if r["path"] != "/fhir")
            # The paged Observation search was followed to its second page.
            follow_ups = [r for r in log if r["path"] == "/fhir"]
            assert len(follow_ups) == 1 and follow_ups[0]["query"]["_getpagesoffset"] == [str(PAGE_SIZE)]
            # ... and what only the second page held reached the rules: the
            # vitamin D result is among the facts on the treatment card.
            page_two = [r for r in served if r["id"] in follow_ups[0]["ids"]]
            vit_d = next(r for r in page_two if f"{LOINC}|62292-8" in _codes_of(r))
            assert f"vitamin D {vit_d['valueQuantity']['value']} ng/mL" in ids["C-TX-BP"]["detail"]

            # Several chart views at once (browser tabs, a busy EHR): the worker's
            # threads share one SQLite file and one HTTP session.
            def one_view(_):
                body = {**pv_body, "hookInstance": str(uuid.uuid4())}
                url = f"{base}/cds-services/{PV}"
                with requests.post(url, json=body, timeout=TIMEOUT,
                                   headers={"Authorization": f"Bearer {client.token(url)}"}) as r:
                    return r.status_code, sorted(c["source"]["topic"]["code"] for c in r.json().get("cards", []))

            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(one_view, range(8)))
            assert results == [(200, sorted(ids))] * 8, results

            # Without the EHR's token the FHIR server answers 401: each missing
            # key is tried once (never retried) and the 412 names each of them.
            fhir_calls_before = len(fhir.log)
            no_token = {**pv_body, "hookInstance": str(uuid.uuid4())}
            del no_token["fhirAuthorization"]
            resp = call("POST", f"/cds-services/{PV}", json=no_token)
            assert resp.status_code == 412, resp.text
            assert "observations" in resp.json()["details"]["missing"]
            failed = resp.json()["details"]["failed"]
            refused_keys = len(failed)
            assert all("refused the access token (401)" in reason for reason in failed.values())
            with fhir.lock:
                refused = fhir.log[fhir_calls_before:]
            assert [r["status"] for r in refused] == [401] * len(failed)
            assert all(r["authorization"] is None for r in refused)

            # 4. Rx View opens: order-select with a draft that names no
            # medication yet, draftOrders without `type`, partial prefetch.
            fhir_calls_before = len(fhir.log)
            # The sandbox's Rx View draft, before a drug is picked.
            bare = {"resourceType": "MedicationRequest", "id": "request-123", "status": "draft",
                    "intent": "order", "category": [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                        "code": "community"}]}],
                    "subject": {"reference": f"Patient/{renal_patient['id']}"},
                    "authoredOn": today.isoformat(),
                    "dosageInstruction": [{"text": "once weekly", "timing": {"repeat": {
                        "frequency": 1, "period": 1, "periodUnit": "wk"}},
                        "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}],
                    "dispenseRequest": {"numberOfRepeatsAllowed": 1, "quantity": {"value": 4},
                                        "expectedSupplyDuration": {"value": 30, "unit": "days",
                                                                   "system": "http://unitsofmeasure.org",
                                                                   "code": "d"}}}
            # ... and once alendronate is picked (the fixture's coded drug).
            picked = {**bare, "medicationCodeableConcept": renal_draft["medicationCodeableConcept"]}
            os_body = {
                "hookInstance": str(uuid.uuid4()), "hook": "order-select",
                "fhirServer": fhir.base,
                "fhirAuthorization": pv_body["fhirAuthorization"],
                "context": {"userId": USER, "patientId": renal_patient["id"],
                            "selections": ["MedicationRequest/request-123"],
                            "draftOrders": _draft_orders(bare)},
                "prefetch": {"patient": renal_patient},
            }
            resp = call("POST", f"/cds-services/{OS}", json=os_body)
            assert resp.status_code == 200, resp.text
            assert all(c["source"]["topic"]["code"] != "C-SAFE-RENAL" for c in resp.json()["cards"])
            assert len(fhir.log) > fhir_calls_before  # fetched the renal patient's data

            # 5. The clinician picks alendronate: the same call with a coded draft.
            os_body["hookInstance"] = str(uuid.uuid4())
            os_body["context"]["draftOrders"] = _draft_orders(picked)
            resp = call("POST", f"/cds-services/{OS}", json=os_body)
            assert resp.status_code == 200, resp.text
            os_cards = {c["source"]["topic"]["code"]: c for c in resp.json()["cards"]}
            assert "C-SAFE-RENAL" in os_cards, sorted(os_cards)
            renal = os_cards["C-SAFE-RENAL"]
            assert renal["indicator"] == fx.expected_indicators(renal_bundle, "order-select")["C-SAFE-RENAL"]
            swap = next(s for s in renal["suggestions"] if s.get("isRecommended"))
            kinds = [a["type"] for a in swap["actions"]]
            assert kinds[0] == "delete" and "create" in kinds
            assert swap["actions"][0]["resourceId"] == "MedicationRequest/request-123"
            created = next(a["resource"] for a in swap["actions"] if a["type"] == "create")
            assert created["resourceType"] == "MedicationRequest"
            assert created["subject"]["reference"] == f"Patient/{renal_patient['id']}"
            assert created["medicationCodeableConcept"]["coding"][0]["code"]

            # 6. Feedback: accepted (card + suggestion uuid), dismissed with no
            # overrideReason, then both sent again.
            now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            accepted = {"feedback": [{"card": renal["uuid"], "outcome": "accepted",
                                      "acceptedSuggestions": [{"id": swap["uuid"]}],
                                      "outcomeTimestamp": now}]}
            dismissed_card = ids["C-SUPP-CAVD"]
            dismissed = {"feedback": [{"card": dismissed_card["uuid"], "outcome": "overridden",
                                       "outcomeTimestamp": now}]}
            # Dismissed from the sandbox's menu: reason {code, system}, no display, no comment.
            reason_card = ids["C-TX-BP"]
            offered = reason_card["overrideReasons"][0]
            with_reason = {"feedback": [{"card": reason_card["uuid"], "outcome": "overridden",
                                         "overrideReason": {"reason": {"code": offered["code"],
                                                                       "system": offered["system"]}},
                                         "outcomeTimestamp": now}]}
            sent = ((OS, accepted), (PV, dismissed), (PV, with_reason))
            for service, body in sent:
                resp = call("POST", f"/cds-services/{service}/feedback", json=body)
                assert resp.status_code == 200, resp.text
                assert resp.json() == {"stored": 1, "duplicates": 0, "unknownCards": 0}
            for service, body in sent:
                resp = call("POST", f"/cds-services/{service}/feedback", json=body)
                assert resp.status_code == 200, resp.text
                assert resp.json() == {"stored": 0, "duplicates": 1, "unknownCards": 0}

            # 7. Refused tokens: a replayed jti and an aud for another URL.
            pv_body["hookInstance"] = str(uuid.uuid4())
            resp = call("POST", f"/cds-services/{PV}", token=pv_token, json=pv_body,
                        headers={"Origin": SANDBOX_ORIGIN})
            assert resp.status_code == 401
            assert resp.json()["details"]["reason"] == "replayed_jti"
            assert "invalid_token" in resp.headers["WWW-Authenticate"]
            # A browser shows the sandbox user this 401 only if it carries CORS headers.
            assert resp.headers.get("Access-Control-Allow-Origin") in ("*", SANDBOX_ORIGIN)
            resp = call("POST", f"/cds-services/{PV}", token=client.token(f"{base}/cds-services"), json=pv_body)
            assert resp.status_code == 401
            assert resp.json()["details"]["reason"] == "wrong_audience"

            # 8. Metrics count the cards, feedback and refusals.
            text = http.get(f"{base}/metrics", timeout=TIMEOUT).text
            assert _metric(text, "cds_cards_issued_total", card_id="C-SAFE-RENAL", indicator=renal["indicator"]) == 1
            for card_id in must:
                assert _metric(text, "cds_cards_issued_total", card_id=card_id) >= 1
            # Resubmissions are not counted twice.
            assert _metric(text, "cds_feedback_total", card_id="C-SAFE-RENAL", outcome="accepted") == 1
            dismissed_id = dismissed_card["source"]["topic"]["code"]
            assert _metric(text, "cds_feedback_total", card_id=dismissed_id, outcome="overridden") == 1
            # Counted per key that failed.
            assert _metric(text, "cds_fhir_fetch_errors_total", kind="unauthorized") == refused_keys
            assert _metric(text, "cds_auth_failures_total", reason="replayed_jti") == 1
            assert _metric(text, "cds_auth_failures_total", reason="wrong_audience") == 1

            # 9. The outcome report, from the same database.
            report_env = {**env, "CDS_AUTO_MIGRATE": "false"}
            out = subprocess.run([sys.executable, "-m", "cds_service.cli", "report", "--json"], cwd=tmp_path,
                                 env=report_env, capture_output=True, text=True, timeout=TIMEOUT)
            assert out.returncode == 0, out.stderr
            rows = {r["cardId"]: r for r in json.loads(out.stdout)["cards"]}
            assert rows["C-SAFE-RENAL"]["issued"] == 1
            assert (rows["C-SAFE-RENAL"]["accepted"], rows["C-SAFE-RENAL"]["overridden"]) == (1, 0)
            assert (rows[dismissed_id]["accepted"], rows[dismissed_id]["overridden"]) == (0, 1)
            assert rows[dismissed_id]["topOverrideReasons"] == [
                {"system": "", "code": "(no reason given)", "count": 1}]
            assert rows["C-TX-BP"]["topOverrideReasons"] == [
                {"system": offered["system"], "code": offered["code"], "count": 1}]
            assert must <= rows.keys()
            out = subprocess.run([sys.executable, "-m", "cds_service.cli", "report"], cwd=tmp_path,
                                 env=report_env, capture_output=True, text=True, timeout=TIMEOUT)
            assert out.returncode == 0, out.stderr
            lines = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:-1]}
            for card_id in ("C-SAFE-RENAL", dismissed_id):
                # issued, acceptance and override rates, as the JSON says (the
                # dismissed card may also have been issued on order-select).
                row = rows[card_id]
                assert lines[card_id][1:4] == [str(row["issued"])] + [
                    f"{row[k] * 100:.0f}%" for k in ("acceptanceRate", "overrideRate")]
            assert lines["C-SAFE-RENAL"][2] == "100%"

            # 10. SIGTERM: gunicorn stops its worker and exits cleanly.
            http.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(TIMEOUT) == 0, log_path.read_text()
            output = log_path.read_text()
            assert "Traceback" not in output, output
            # Neither the EHR's FHIR token nor a client JWT reaches the logs.
            assert FHIR_TOKEN not in output and pv_token.split(".")[2] not in output
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(TIMEOUT)
