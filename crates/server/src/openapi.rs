//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`. A test checks that it
//! lists every route the router serves, and that requests valid by its schemas are not
//! refused as malformed: every bound the broker enforces on input (lengths, character
//! sets, integer ranges, the policy's bundles and their flows' duration limits and
//! required fields) is stated here.

use firedoor_core::breakglass::{MAX_REASON_CHARS, MAX_RECORD_BODY_CHARS};
use firedoor_core::lifecycle::MAX_TEXT;
use firedoor_core::policy::Policy;
use serde_json::{json, Value};

/// Text without control characters (tab and newline allowed), as the broker takes
/// justifications, tickets, comments and reasons.
const NO_CONTROL: &str = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$";
/// A one-line label: no control characters at all.
const NO_CONTROL_AT_ALL: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";
/// Policy names: bundles, secrets.
const NAME: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";

/// Optional free text of at most `max` characters.
fn text(max: usize) -> Value {
    json!({ "type": ["string", "null"], "maxLength": max, "pattern": NO_CONTROL })
}

/// Free text that must say something (not only spaces).
fn required_text(max: usize) -> Value {
    json!({ "type": "string", "maxLength": max, "allOf": [{ "pattern": NO_CONTROL }, { "pattern": "\\S" }] })
}

fn int_range(min: i64, max: i64) -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": min, "maximum": max })
}

/// `CreateRequest`: one alternative per access flow, so that a body valid by the
/// schema names a bundle of that flow, a duration within its maximum and the fields it
/// requires.
fn create_request(policy: &Policy) -> Value {
    let mut alternatives: Vec<Value> = policy
        .flows
        .values()
        .filter(|f| !f.bundles.is_empty())
        .map(|f| {
            let mut required = vec!["bundle"];
            let justification = if f.justification_required {
                required.push("justification");
                required_text(MAX_TEXT)
            } else {
                text(MAX_TEXT)
            };
            let ticket = if f.ticket_required {
                required.push("ticket");
                required_text(MAX_TEXT)
            } else {
                text(MAX_TEXT)
            };
            json!({
                "type": "object",
                "title": format!("flow {}", f.name),
                "additionalProperties": false,
                "required": required,
                "properties": {
                    "bundle": { "enum": f.bundles },
                    "duration_secs": { "type": ["integer", "null"], "format": "int64", "minimum": 1, "maximum": f.max_duration_secs,
                        "description": format!("default {} s", f.default_duration_secs) },
                    "justification": justification,
                    "ticket": ticket,
                    "incident": { "type": ["string", "null"], "maxLength": 64,
                        "description": "an open incident (inc_…) this is for: its responders may request the bundles it opens" },
                    "on_behalf_of": { "type": ["string", "null"], "maxLength": 64,
                        "description": "request for this user instead of yourself: the flow's on_behalf must name you, and they must be allowed the bundle; the grant is theirs" },
                }
            })
        })
        .collect();
    if alternatives.is_empty() {
        alternatives.push(json!({ "not": {} }));
    }
    json!({ "description": "A bundle of the policy; the bundle's access flow sets the duration limit and the required fields.",
            "anyOf": alternatives })
}

fn err_resp() -> Value {
    json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn ok(schema: Value) -> Value {
    json!({ "description": "ok", "content": { "application/json": { "schema": schema } } })
}

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn arr(name: &str) -> Value {
    json!({ "type": "array", "items": r(name) })
}

fn id_param(what: &str) -> Value {
    json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 200 }, "description": format!("{what} id") }])
}

fn name_param() -> Value {
    json!([{ "name": "name", "in": "path", "required": true, "schema": { "type": "string", "pattern": NAME }, "description": "the secret's name in the policy" }])
}

fn op(summary: &str, params: Value, body: Option<&str>, resp: Value) -> Value {
    let mut o = json!({
        "summary": summary,
        "parameters": params,
        "responses": { "200": ok(resp), "4XX": err_resp() },
    });
    if let Some(b) = body {
        o["requestBody"] =
            json!({ "required": false, "content": { "application/json": { "schema": r(b) } } });
    }
    o
}

pub fn document(policy: &Policy) -> String {
    let ts = json!({ "type": "string", "format": "date-time" });
    let s = |t: &str| json!({ "type": t });
    let opt = |t: &str| json!({ "type": [t, "null"] });
    let doc = json!({
        "openapi": "3.1.0",
        "info": { "title": "Firedoor broker API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Request, approve and revoke time-boxed access; offline break glass (devices, sealed envelopes, unlock chains, secrets). Authenticate with `Authorization: Bearer <token>`." },
        "servers": [{ "url": "/api/v1" }],
        "security": [{ "bearer": [] }],
        "paths": {
            "/health": { "get": { "summary": "Liveness and the broker's clock", "security": [], "responses": { "200": ok(r("Health")) } } },
            "/openapi.json": { "get": { "summary": "This document", "security": [], "responses": { "200": { "description": "OpenAPI document" } } } },
            "/me": { "get": op("The signed-in user, with the on-call schedules they are on call for now", json!([]), None, r("Me")) },
            "/incidents": { "get": op("Open incidents, then recent resolved ones; responder says whether I may request what each opens", json!([]), None,
                json!({ "type": "object", "properties": { "incidents": { "type": "array", "items": r("Incident") } } })) },
            "/hooks/alertmanager/{source}": { "post": {
                "summary": "Alertmanager webhook receiver (payload version 4) for an incident source of the policy; Authorization: Bearer <secret> or Basic",
                "security": [],
                "parameters": [{ "name": "source", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 64 } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object" } } } },
                "responses": { "200": ok(r("Received")), "4XX": err_resp() } } },
            "/hooks/opsgenie/{source}": { "post": {
                "summary": "Opsgenie webhook integration for an incident source of the policy; the secret in X-Firedoor-Token (a custom header) or Authorization: Bearer; Create opens, Close resolves",
                "security": [],
                "parameters": [{ "name": "source", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 64 } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object" } } } },
                "responses": { "200": ok(r("Received")), "4XX": err_resp() } } },
            "/hooks/pagerduty/{source}": { "post": {
                "summary": "PagerDuty v3 webhook for an incident source of the policy; X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the body>; each event id once, within an hour of the broker's clock",
                "security": [],
                "parameters": [{ "name": "source", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 64 } },
                               { "name": "X-PagerDuty-Signature", "in": "header", "required": true, "schema": { "type": "string" } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object" } } } },
                "responses": { "200": ok(r("Received")), "4XX": err_resp() } } },
            "/notifications/deliveries": { "get": {
                "summary": "Outbound notifications to chat and webhooks, newest first, with their errors; state=dead lists the dead letters (admins)",
                "parameters": [{ "name": "state", "in": "query", "schema": { "enum": ["pending", "delivered", "dead"] } },
                               { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }],
                "responses": { "200": ok(json!({ "type": "array", "items": { "type": "object" } })), "4XX": err_resp() } } },
            "/notifications/deliveries/{id}/retry": { "post": {
                "summary": "Send a dead notification again, attempts counted afresh (admins, audited)",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 64 } }],
                "responses": { "200": ok(json!({ "type": "object" })), "4XX": err_resp() } } },
            "/oncall": { "get": op("Every on-call schedule of the policy: who is on call now, until when, and the overrides running or to come", json!([]), None,
                json!({ "type": "object", "properties": { "schedules": { "type": "array", "items": r("Schedule") } } })) },
            "/oncall/{schedule}/overrides": { "post": {
                "summary": "Someone covers a schedule for a while (admins)",
                "parameters": [{ "name": "schedule", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 64 } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": r("NewOverride") } } },
                "responses": { "201": ok(r("Override")), "4XX": err_resp() } } },
            "/oncall/{schedule}/overrides/{id}": { "delete": {
                "summary": "Take an override back (admins)",
                "parameters": [{ "name": "schedule", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 64 } },
                               { "name": "id", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 64 } }],
                "responses": { "200": ok(r("Override")), "4XX": err_resp() } } },
            "/bundles": { "get": op("Bundles I may request, with their flow's terms", json!([]), None, arr("Bundle")) },
            "/requests": {
                "get": op("List requests", json!([
                    { "name": "scope", "in": "query", "schema": { "enum": ["mine", "awaiting_me", "all"] } },
                    { "name": "state", "in": "query", "schema": { "enum": ["pending", "approved", "active", "expired", "revoked", "denied", "cancelled", "timed_out", "failed"] } },
                    { "name": "limit", "in": "query", "schema": int_range(1, 1000) }]), None, arr("Request")),
                "post": {
                    "summary": "Request a bundle. With Idempotency-Key, a replay returns the first result (200).",
                    "parameters": [{ "name": "Idempotency-Key", "in": "header", "schema": { "type": "string", "pattern": "^[\\x21-\\x7E]{1,200}$" } }],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": r("CreateRequest") } } },
                    "responses": { "201": ok(r("Request")), "200": ok(r("Request")), "4XX": err_resp() }
                }
            },
            "/requests/{id}": { "get": op("One request", id_param("request"), None, r("Request")) },
            "/requests/{id}/approve": { "post": op("Approve (m-of-n; never your own)", id_param("request"), Some("ApproveBody"), r("Request")) },
            "/requests/{id}/deny": { "post": op("Deny with an optional reason", id_param("request"), Some("DenyBody"), r("Request")) },
            "/requests/{id}/cancel": { "post": op("Cancel my pending request", id_param("request"), None, r("Request")) },
            "/grants": { "get": op("List grants", json!([
                    { "name": "scope", "in": "query", "schema": { "enum": ["mine", "all"] } },
                    { "name": "state", "in": "query", "schema": { "enum": ["live"] } },
                    { "name": "limit", "in": "query", "schema": int_range(1, 1000) }]), None, arr("Grant")) },
            "/grants/{id}": { "get": op("One grant", id_param("grant"), None, r("Grant")) },
            "/grants/{id}/credentials": { "get": op("Credentials of my active grant (audited)", id_param("grant"), None, r("Credentials")) },
            "/grants/{id}/revoke": { "post": op("Revoke an active grant", id_param("grant"), None, r("Grant")) },
            "/grants/{id}/extend": { "post": op("Extend an active grant", id_param("grant"), Some("ExtendBody"), r("ExtendResult")) },
            "/grants/{id}/ssh-certificate": { "post": {
                "summary": "Certify the ed25519 key the holder's device made for an active SSH grant: one OpenSSH certificate per SSH integration of the bundle, valid until the grant's expiry (holder only, audited)",
                "parameters": id_param("grant"),
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false, "required": ["public_key"],
                    "properties": { "public_key": { "type": "string", "maxLength": 1000, "description": "one OpenSSH public key line: ssh-ed25519 AAAA…" } } } } } },
                "responses": { "200": ok(json!({ "type": "object", "properties": { "certificates": { "type": "array", "items": { "type": "object" } } } })), "4XX": err_resp() } } },
            "/ssh/krl": { "get": {
                "summary": "The OpenSSH key revocation list hosts load with RevokedKeys: certificates still valid whose grant is no longer active (no sign-in)",
                "responses": { "200": { "description": "KRL (PROTOCOL.krl)", "content": { "application/octet-stream": {} } } } } },
            "/ssh/{integration}/ca": { "get": {
                "summary": "The CA public keys hosts of an SSH integration trust (TrustedUserCAKeys), one OpenSSH line each (no sign-in)",
                "parameters": [{ "name": "integration", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 64 } }],
                "responses": { "200": { "description": "OpenSSH public key lines", "content": { "text/plain": {} } }, "4XX": err_resp() } } },
            "/audit": { "get": op("Audit records (admins)", json!([
                    { "name": "after", "in": "query", "schema": int_range(0, i64::MAX) },
                    { "name": "limit", "in": "query", "schema": int_range(1, 5000) }]), None, arr("AuditRecord")) },
            "/audit/sinks": { "get": op("The audit stream's sinks (SIEM): cursor, lag, last error (admins)", json!([]), None,
                json!({ "type": "object", "properties": { "sinks": arr("AuditSink") } })) },
            "/audit/head": { "get": op("The signed audit head (any signed-in user)", json!([]), None, r("SignedHead")) },
            "/audit/heads/{seq}": { "get": op("The signed audit head at an earlier record (the last record of a commit; every head served is one)", json!([
                    { "name": "seq", "in": "path", "required": true, "schema": int_range(1, i64::MAX) }]), None, r("SignedHead")) },
            "/broker": { "get": op("The broker's envelope signing key (pin it at sign-in)", json!([]), None, r("BrokerIdentity")) },
            "/devices": {
                "get": op("My enrolled devices", json!([]), None, json!({ "type": "object", "properties": { "devices": arr("Device") } })),
                "post": {
                    "summary": "Enrol this device (age recipient, ed25519 key); envelopes are sealed to it at once",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": r("RegisterDevice") } } },
                    "responses": { "201": ok(r("Device")), "4XX": err_resp() }
                }
            },
            "/devices/{id}": { "delete": {
                "summary": "Revoke a device (its owner or an admin); its envelopes are deleted",
                "parameters": id_param("device"),
                "responses": { "204": { "description": "revoked" }, "4XX": err_resp() } } },
            "/devices/{id}/envelopes": { "get": op("Sealed break-glass secrets for my device (refreshed when old or near expiry)", id_param("device"), None, r("EnvelopeList")) },
            "/devices/{id}/unlocks": { "post": {
                "summary": "Upload my device's signed unlock chain (at most 1000 records, oldest first). Records already acknowledged are acknowledged again; a gap, an edit or a bad signature is refused with 422 chain_rejected and raised to the admins.",
                "parameters": id_param("device"),
                "requestBody": { "required": true, "content": { "application/json": { "schema": r("UploadUnlocks") } } },
                "responses": { "200": ok(r("UnlocksAck")), "4XX": err_resp() } } },
            "/secrets": { "get": op("Break-glass secrets (admins: all; others: those they may unlock). Never values.", json!([]), None, json!({ "type": "object", "properties": { "secrets": arr("Secret") } })) },
            "/secrets/{name}": { "put": {
                "summary": "Store a new value (admins); version + 1, sealed to every eligible device",
                "parameters": name_param(),
                "requestBody": { "required": true, "content": { "application/json": { "schema": r("PutSecret") } } },
                "responses": { "200": ok(r("Secret")), "4XX": err_resp() } } },
            "/secrets/{name}/rotate": { "post": {
                "summary": "Rotate now through the policy's connector (admins)",
                "parameters": name_param(),
                "responses": { "200": ok(r("Secret")), "4XX": err_resp() } } },
            "/secrets/{name}/unlock": { "post": {
                "summary": "Online break glass: the current value, loudly alerted and rotated after the policy's rotate_after_online",
                "parameters": name_param(),
                "requestBody": { "required": true, "content": { "application/json": { "schema": r("OnlineUnlock") } } },
                "responses": { "200": ok(r("UnlockedSecret")), "4XX": err_resp() } } },
            // issue 14: drills
            "/drills": {
                "get": op("The latest drills and who passed (admins)", json!([]), None, json!({ "type": "object", "properties": { "drills": arr("Drill") } })),
                "post": {
                    "summary": "Start a drill of a secret, or of every secret with a value (\"all\") (admins). 409 while one is open or without a value",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["secret"], "properties": { "secret": s("string") } } } } },
                    "responses": { "201": ok(json!({ "type": "object", "properties": { "drills": arr("Drill") } })), "4XX": err_resp() } } },
            "/drills/{id}/answers": { "post": {
                "summary": "A device's proof: hex HMAC-SHA256 keyed by the secret over the drill id, nonce, secret, version and device id, signed by the device key. 422 drill_proof_rejected for a wrong or replayed proof (recorded); a passed device is told so again",
                "parameters": id_param("drill"),
                "requestBody": { "required": true, "content": { "application/json": { "schema": r("DrillAnswer") } } },
                "responses": { "200": ok(r("DrillPassed")), "4XX": err_resp() } } },
            "/devices/{id}/drills": { "get": op("Drills waiting on my device (with their nonces)", id_param("device"), None, r("PendingDrills")) },
            "/readiness": { "get": op("Per secret: who is eligible, fresh envelopes, last drill, on-call gaps, ready of required (admins and each secret's alert audience)", json!([]), None, r("Readiness")) },
            "/unlocks": { "get": {
                "summary": "Break-glass uses I may see (mine; the secret's alert audience and admins: all of theirs), open (unclassified) ones first, with the planned rotation; ?open=true: only open ones",
                "parameters": [{ "name": "open", "in": "query", "schema": { "type": "boolean" } }],
                "responses": { "200": ok(json!({ "type": "object", "properties": { "uses": arr("Use") } })), "4XX": err_resp() } } },
            "/unlocks/{id}/classify": { "post": {
                "summary": "Classify a break-glass use: drill, incident (with its id: a broker incident inc_… or the provider's id) or other (with a note). The person who unlocked may classify an open use; admins and the secret's alert audience may also change a classification (audited)",
                "parameters": id_param("use"),
                "requestBody": { "required": true, "content": { "application/json": { "schema": r("ClassifyUse") } } },
                "responses": { "200": ok(r("Use")), "4XX": err_resp() } } },
            // issue 14: report
            "/reports/{kind}/{id}": { "get": {
                "summary": "The timeline of an incident (its id or its source's id), a grant, or a break-glass unlock (the seq of its audit record), each line with its audit record and hash (admins)",
                "parameters": [
                    { "name": "kind", "in": "path", "required": true, "schema": { "type": "string", "enum": ["incident", "grant", "unlock"] } },
                    { "name": "id", "in": "path", "required": true, "schema": { "type": "string", "minLength": 1, "maxLength": 200 } },
                    { "name": "format", "in": "query", "schema": { "type": "string", "enum": ["json", "md", "html"], "default": "json" } }],
                "responses": { "200": { "description": "the report: JSON (firedoor-report/1), Markdown, or a self-contained HTML page", "content": {
                    "application/json": { "schema": { "type": "object" } }, "text/markdown": {}, "text/html": {} } }, "4XX": err_resp() } } },
            "/reports/verify": { "post": {
                "summary": "Check a JSON report against the audit log: every cited record with its hash, the chain, each line's words, nothing left out (admins)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "description": "a report as GET /reports/{kind}/{id}?format=json returns it" } } } },
                "responses": { "200": ok(json!({ "type": "object", "properties": {
                    "valid": { "type": "boolean" }, "problem": { "type": "string" }, "lines": { "type": "integer" },
                    "log_records": { "type": "integer" }, "head_seq": { "type": "integer" } } })), "4XX": err_resp() } } },
            "/events": { "get": {
                "summary": "Live events for me as server-sent events; resume with Last-Event-ID",
                "parameters": [{ "name": "Last-Event-ID", "in": "header", "schema": int_range(0, i64::MAX) }],
                "responses": { "200": { "description": "text/event-stream of Event. The stream ends within 1 s once its token is revoked or expires or its user is disabled; at most 8 per user (the 9th: 429 too_many_streams)", "content": { "text/event-stream": { "schema": r("Event") } } }, "4XX": err_resp() } } },
            "/auth/sso/start": { "post": {
                "summary": "Single sign-on, step 1 (unauthenticated): the IdP's authorization and token endpoints, the client id and scope, and a single-use nonce (10 minutes). The app then runs the authorization code flow with PKCE (S256) in the system browser with this loopback redirect. 404 sso_not_configured without [sso]; 502 idp_unavailable when the IdP cannot be read",
                "security": [],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["redirect_uri"], "additionalProperties": false,
                    "properties": { "redirect_uri": { "type": "string", "maxLength": 300, "description": "http://127.0.0.1:PORT/PATH or http://[::1]:PORT/PATH (RFC 8252)" } } } } } },
                "responses": { "200": ok(r("SsoStart")), "4XX": err_resp(), "502": err_resp() } } },
            "/auth/sso/session": { "post": {
                "summary": "Single sign-on, step 2 (unauthenticated): trade the IdP's ID token (its nonce from step 1, used once) for a session: an access token (a bearer token good for the policy's access_ttl), a one-time refresh token and the session's end (session_max). The user is made from the token's claims, or their groups replaced. 401 invalid_id_token for a token that does not verify; 403 for a disabled user",
                "security": [],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["id_token", "session_key"], "additionalProperties": false,
                    "properties": { "id_token": { "type": "string", "maxLength": 16384 }, "session_key": { "type": "string", "description": "an ed25519 public key made for this session (32 bytes, base64); it signs every refresh" } } } } } },
                "responses": { "200": ok(r("SsoTokens")), "4XX": err_resp() } } },
            "/auth/sso/refresh": { "post": {
                "summary": "New tokens for an SSO session (unauthenticated; never asks the IdP). proof: the session key's ed25519 signature (base64) over \"firedoor-refresh\\n\" + sha256hex(refresh_token) + \"\\n\" + at. The refresh token is good once: one used again ends the session. 401 session_expired after session_max or once revoked",
                "security": [],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["refresh_token", "at", "proof"], "additionalProperties": false,
                    "properties": { "refresh_token": { "type": "string", "maxLength": 200 }, "at": { "type": "string", "format": "date-time", "description": "within 5 minutes of the broker's clock" },
                        "proof": { "type": "string" } } } } } },
                "responses": { "200": ok(r("SsoTokens")), "4XX": err_resp() } } },
            "/me/token": { "delete": {
                "summary": "Revoke the token this request is made with (sign-out); an SSO access token ends its whole session",
                "parameters": [],
                "responses": { "204": { "description": "revoked" }, "4XX": err_resp() } } },
            "/users/{name}/disable": { "post": {
                "summary": "Disable a user (admins): every token and device revoked, live grants revoked, pending requests cancelled, secrets their devices held rotated",
                "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 64 } }],
                "responses": { "200": ok(r("Disabled")), "4XX": err_resp() } } },
            "/users/{name}/groups": { "put": {
                "summary": "Replace a user's groups (admins); secrets they may no longer unlock are withdrawn from their devices and rotated",
                "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 64 } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["groups"], "additionalProperties": false,
                    "properties": { "groups": { "type": "array", "maxItems": 100, "items": { "type": "string", "pattern": "^[a-z0-9_-]{1,64}$" } } } } } } },
                "responses": { "200": ok(json!({ "type": "object", "properties": { "user": s("string"), "groups": { "type": "array", "items": s("string") } } })), "4XX": err_resp() } } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["code", "message"], "properties": { "code": s("string"), "message": s("string") } },
                // issue 14: drills
                "Drill": { "type": "object", "properties": { "id": s("string"), "secret": s("string"), "version": s("integer"), "trigger": s("string"),
                    "started_by": s("string"), "started_at": s("string"), "deadline": s("string"), "state": s("string"),
                    "devices": { "type": "array", "items": { "type": "object", "properties": { "device_id": s("string"), "device_name": s("string"),
                        "user": s("string"), "passed_at": s("string"), "failures": s("integer"), "last_failure_at": s("string") } } } } },
                "DrillAnswer": { "type": "object", "required": ["device_id", "version", "proof", "signature"], "properties": { "device_id": s("string"),
                    "version": s("integer"), "proof": s("string"), "signature": s("string") } },
                "DrillPassed": { "type": "object", "properties": { "drill_id": s("string"), "secret": s("string"), "version": s("integer"),
                    "device_id": s("string"), "passed_at": s("string") } },
                "PendingDrills": { "type": "object", "properties": { "drills": { "type": "array", "items": { "type": "object", "properties": {
                    "id": s("string"), "secret": s("string"), "title": s("string"), "version": s("integer"), "nonce": s("string"), "deadline": s("string") } } } } },
                "Readiness": { "type": "object", "properties": { "at": s("string"), "secrets": { "type": "array", "items": { "type": "object", "properties": {
                    "name": s("string"), "title": s("string"), "version": s("integer"), "ready": s("integer"), "required": s("integer"), "below": s("boolean"),
                    "holders": { "type": "array", "items": { "type": "object" } }, "on_call_without_envelope": { "type": "array", "items": { "type": "object" } },
                    "last_drill": { "type": "object" }, "next_drill_at": s("string") } } } } },
                "Disabled": { "type": "object", "properties": { "user": s("string"), "tokens_revoked": s("integer"), "devices_revoked": s("integer"),
                    "grants_revoked": s("integer"), "requests_cancelled": s("integer"), "rotating": { "type": "array", "items": s("string") } } },
                "SsoStart": { "type": "object", "properties": { "issuer": s("string"), "authorization_endpoint": s("string"), "token_endpoint": s("string"),
                    "client_id": s("string"), "scope": s("string"), "nonce": s("string") } },
                "SsoTokens": { "type": "object", "properties": { "access_token": s("string"), "access_expires_at": ts.clone(), "refresh_token": s("string"),
                    "session_expires_at": ts.clone(), "user": s("string"), "groups": { "type": "array", "items": s("string") }, "admin": s("boolean") } },
                "Health": { "type": "object", "properties": { "status": s("string"), "version": s("string"), "time": ts } },
                "Me": { "type": "object", "properties": { "name": s("string"), "groups": { "type": "array", "items": s("string") }, "admin": s("boolean"), "time": ts,
                    "oncall": { "type": "array", "items": { "type": "object", "properties": { "schedule": s("string"), "title": s("string"),
                        "until": { "type": ["string", "null"], "format": "date-time", "description": "when that changes; null: not within 90 days (synced schedules: not within what was fetched)" },
                        "as_of": { "type": ["string", "null"], "format": "date-time", "description": "synced schedules: when the provider was last read" },
                        "stale": { "type": "boolean", "description": "synced schedules: the provider could not be read lately; this is the last known state" } } } } } },
                "Incident": { "type": "object", "properties": { "id": s("string"), "source": s("string"), "external_id": s("string"), "rule": s("string"),
                    "title": s("string"), "url": opt("string"), "state": { "enum": ["open", "resolved"] }, "opened_at": ts.clone(),
                    "resolved_at": { "type": ["string", "null"], "format": "date-time" }, "bundles": { "type": "array", "items": s("string") }, "responder": s("boolean") } },
                "Received": { "type": "object", "properties": { "opened": { "type": "array", "items": s("string") },
                    "resolved": { "type": "array", "items": s("string") }, "unchanged": s("integer") } },
                "Schedule": { "type": "object", "properties": { "name": s("string"), "title": s("string"), "time_zone": s("string"),
                    "on_call": { "type": ["object", "null"], "properties": { "user": s("string"), "until": { "type": ["string", "null"], "format": "date-time" }, "by_override": s("boolean") } },
                    "also_on_call": { "type": "array", "description": "others on call at the same time (synced schedules)", "items": { "type": "object", "properties": { "user": s("string"), "until": { "type": ["string", "null"], "format": "date-time" }, "by_override": s("boolean") } } },
                    "overrides": { "type": "array", "items": r("Override") },
                    "as_of": { "type": ["string", "null"], "format": "date-time", "description": "synced schedules: when the provider was last read" },
                    "stale": { "type": "boolean", "description": "synced schedules: the last refresh failed (or none for a while); who is on call is the last known state" },
                    "sync": { "type": "object", "description": "synced schedules only", "properties": { "provider": { "enum": ["pagerduty", "opsgenie"] },
                        "last_attempt": { "type": ["string", "null"], "format": "date-time" }, "last_error": opt("string"),
                        "unmapped": { "type": "array", "description": "provider users the policy maps to nobody", "items": s("string") } } } } },
                "Override": { "type": "object", "properties": { "id": s("string"), "schedule": s("string"), "user": s("string"), "starts_at": ts.clone(), "ends_at": ts.clone(),
                    "reason": opt("string"), "created_by": s("string"), "removed_at": { "type": ["string", "null"], "format": "date-time" } } },
                "NewOverride": { "type": "object", "required": ["user", "ends_at"], "additionalProperties": false, "properties": {
                    "user": { "type": "string", "pattern": "^[a-z0-9_-]{1,64}$" },
                    "starts_at": { "type": ["string", "null"], "format": "date-time", "description": "default: now" },
                    "ends_at": { "type": "string", "format": "date-time", "description": "after starts_at and now; at most 90 days after starts_at" },
                    "reason": text(MAX_TEXT) } },
                "Terms": { "type": "object", "properties": {
                    "flow": s("string"), "approvals": s("integer"), "default_duration_secs": s("integer"), "max_duration_secs": s("integer"),
                    "justification_required": s("boolean"), "ticket_required": s("boolean"), "pending_ttl_secs": s("integer"), "break_glass": s("boolean"),
                    "alerts": { "type": "object", "description": "Break-glass flows only: who is alerted when it is taken.", "properties": {
                        "users": { "type": "array", "items": s("string") }, "groups": { "type": "array", "items": s("string") },
                        "oncall": { "type": "array", "items": s("string") }, "admins": s("boolean") } } } },
                "Bundle": { "type": "object", "properties": {
                    "name": s("string"), "title": s("string"), "description": s("string"), "tags": { "type": "array", "items": s("string") },
                    "resources": { "type": "array", "items": { "type": "object", "properties": { "integration": s("string"), "resource": s("string"), "permission": s("string") } } },
                    "terms": r("Terms") } },
                "CreateRequest": create_request(policy),
                "ApproveBody": { "type": "object", "additionalProperties": false, "properties": { "comment": text(MAX_TEXT) } },
                "DenyBody": { "type": "object", "additionalProperties": false, "properties": { "reason": text(MAX_TEXT) } },
                "ExtendBody": { "type": "object", "additionalProperties": false, "properties": {
                    "duration_secs": { "type": ["integer", "null"], "format": "int64", "minimum": 1, "description": "extra seconds; the grant's total stays within its flow's max_duration" },
                    "justification": text(MAX_TEXT) } },
                "Request": { "type": "object", "properties": {
                    "id": s("string"), "kind": { "enum": ["access", "extension"] }, "bundle": s("string"), "bundle_title": s("string"),
                    "requester": s("string"),
                    "state": { "enum": ["pending", "approved", "active", "expired", "revoked", "denied", "cancelled", "timed_out", "failed"] },
                    "duration_secs": s("integer"), "justification": opt("string"), "ticket": opt("string"), "created_at": ts, "pending_until": ts,
                    "approvals_needed": s("integer"),
                    "decisions": { "type": "array", "items": { "type": "object", "properties": { "by": s("string"), "at": ts, "decision": { "enum": ["approve", "deny"] }, "comment": opt("string") } } },
                    "grant_id": opt("string"), "error": opt("string"),
                    "approvers": { "type": "object", "description": "who may decide it at the stage it reached (the requester left out)", "properties": {
                        "users": { "type": "array", "items": s("string") }, "groups": { "type": "array", "items": s("string") },
                        "oncall": { "type": "array", "items": s("string") } } } } },
                "Grant": { "type": "object", "properties": {
                    "id": s("string"), "request_id": s("string"), "bundle": s("string"), "bundle_title": s("string"), "holder": s("string"),
                    "state": { "enum": ["provisioning", "active", "revoking", "revoke_failed", "revoked", "expired", "failed"] },
                    "activated_at": { "type": ["string", "null"], "format": "date-time" }, "expires_at": ts,
                    "ended_at": { "type": ["string", "null"], "format": "date-time" }, "end_reason": opt("string"), "ended_by": opt("string"),
                    "last_error": opt("string"), "attempts": s("integer"), "next_attempt_at": { "type": ["string", "null"], "format": "date-time" } } },
                "ExtendResult": { "type": "object", "properties": { "grant": r("Grant"), "request": { "oneOf": [r("Request"), { "type": "null" }] } } },
                "Credentials": { "type": "object", "properties": {
                    "grant_id": s("string"), "expires_at": ts,
                    "items": { "type": "array", "items": { "type": "object", "properties": {
                        "integration": s("string"), "kind": s("string"), "resource": s("string"), "username": s("string"), "secret": s("string"),
                        "host": opt("string"), "port": opt("integer"), "note": opt("string") } } } } },
                "AuditRecord": { "type": "object", "properties": {
                    "seq": s("integer"), "at": s("string"), "actor": s("string"), "action": s("string"), "subject": s("string"),
                    "details": s("string"), "prev_hash": s("string"), "hash": s("string"),
                    "signature": { "type": ["string", "null"], "description": "base64 ed25519 signature by the broker key over \"firedoor audit head v1\\n{seq}\\n{hash}\"" } } },
                "AuditSink": { "type": "object", "properties": {
                    "name": s("string"), "kind": { "enum": ["syslog", "webhook"] }, "destination": s("string"),
                    "delivered_seq": s("integer"), "head_seq": s("integer"), "lag": s("integer"),
                    "delivered_at": { "type": ["string", "null"], "format": "date-time" }, "failures": s("integer"),
                    "last_error": opt("string"), "last_error_at": { "type": ["string", "null"], "format": "date-time" },
                    "next_attempt_at": { "type": ["string", "null"], "format": "date-time" } } },
                "SignedHead": { "type": "object", "description": "The audit log's head signed by the broker key (GET /broker's signing_key)", "properties": {
                    "seq": s("integer"), "hash": s("string"), "signature": s("string"), "at": s("string") } },
                "BrokerIdentity": { "type": "object", "properties": { "signing_key": s("string"), "fingerprint": s("string") } },
                "RegisterDevice": { "type": "object", "required": ["name", "recipient", "signing_key"], "properties": {
                    "name": { "type": "string", "minLength": 1, "maxLength": 100, "allOf": [{ "pattern": NO_CONTROL_AT_ALL }, { "pattern": "\\S" }] },
                    "recipient": { "type": "string", "pattern": "^age1[02-9ac-hj-np-z]{58}$", "description": "age X25519 recipient, age1… (bech32, checksummed: a string of this shape with a wrong checksum is refused)" },
                    "signing_key": { "type": "string", "pattern": "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$", "description": "base64 ed25519 public key (32 bytes that must be a point on the curve)" } } },
                "ChainHead": { "type": "object", "properties": { "seq": s("integer"), "hash": s("string") } },
                "Device": { "type": "object", "properties": {
                    "id": s("string"), "user": s("string"), "name": s("string"), "recipient": s("string"),
                    "signing_key": s("string"), "fingerprint": s("string"), "created_at": ts, "head": r("ChainHead") } },
                "Envelope": { "type": "object", "description": "meta_json is signed by the broker (ed25519, base64 signature); ciphertext is an ASCII-armoured age file",
                    "properties": { "meta_json": s("string"), "signature": s("string"), "ciphertext": s("string") } },
                "EnvelopeList": { "type": "object", "properties": { "envelopes": { "type": "array", "items": { "type": "object", "properties": {
                    "name": s("string"), "title": s("string"), "description": s("string"), "envelope": r("Envelope") } } } } },
                "SignedRecord": { "type": "object", "required": ["body", "hash", "signature"], "properties": {
                    "body": { "type": "string", "maxLength": MAX_RECORD_BODY_CHARS, "description": format!("the record's JSON, at most {MAX_RECORD_BODY_CHARS} bytes; its reason at most {MAX_REASON_CHARS} characters") },
                    "hash": { "type": "string", "pattern": "^[0-9a-f]{64}$" }, "signature": { "type": "string", "maxLength": 100 } } },
                "UploadUnlocks": { "type": "object", "required": ["records"], "description": "at most 2 MiB in all", "properties": { "records": { "type": "array", "maxItems": 1000, "items": r("SignedRecord") } } },
                "UnlocksAck": { "type": "object", "properties": { "head": r("ChainHead"), "accepted": s("integer"), "rotating": { "type": "array", "items": s("string") } } },
                "PutSecret": { "type": "object", "required": ["value"], "properties": { "value": { "type": "string", "minLength": 1, "maxLength": 16384, "description": "at most 65536 bytes of UTF-8" } } },
                "Secret": { "type": "object", "properties": {
                    "name": s("string"), "title": s("string"), "description": s("string"), "version": s("integer"),
                    "updated_at": { "type": ["string", "null"], "format": "date-time" }, "validity_secs": s("integer"),
                    "rotated_by": opt("string"), "rotation_due_at": { "type": ["string", "null"], "format": "date-time" },
                    "last_rotation_error": opt("string"), "sealed_devices": s("integer") } },
                "OnlineUnlock": { "type": "object", "required": ["reason"], "properties": { "reason": required_text(MAX_REASON_CHARS), "device_id": { "type": ["string", "null"], "maxLength": 200 }, "incident": { "type": ["string", "null"], "minLength": 1, "maxLength": 100, "pattern": "^[A-Za-z0-9._:#/-]+$" } } },
                "ClassifyUse": { "type": "object", "required": ["kind"], "additionalProperties": false, "properties": {
                    "kind": { "type": "string", "enum": ["drill", "incident", "other"] },
                    "incident": { "type": ["string", "null"], "minLength": 1, "maxLength": 100, "pattern": "^[A-Za-z0-9._:#/-]+$", "description": "required with kind incident, refused otherwise" },
                    "note": { "type": ["string", "null"], "maxLength": 1000, "pattern": NO_CONTROL, "description": "required with kind other" } } },
                "Use": { "type": "object", "properties": {
                    "id": s("string"), "secret": s("string"), "version": s("integer"), "user": s("string"), "mode": s("string"),
                    "device_id": opt("string"), "reason": s("string"), "unlocked_at": ts, "recorded_at": ts, "open": s("boolean"),
                    "kind": opt("string"), "incident": opt("string"), "incident_id": opt("string"), "incident_state": opt("string"),
                    "note": opt("string"), "classified_by": opt("string"), "classified_at": { "type": ["string", "null"], "format": "date-time" },
                    "rotation": s("string"), "rotates_at": { "type": ["string", "null"], "format": "date-time" },
                    "rotated": s("boolean"), "rotation_waits": s("boolean"), "may_classify": s("boolean") } },
                "UnlockedSecret": { "type": "object", "properties": {
                    "name": s("string"), "version": s("integer"), "value": s("string"),
                    "rotates_at": { "type": ["string", "null"], "format": "date-time" } } },
                "Event": { "type": "object", "properties": {
                    "id": s("integer"), "kind": s("string"), "at": ts, "request_id": opt("string"), "grant_id": opt("string"),
                    "bundle": opt("string"), "actor": opt("string"), "message": s("string") } }
            }
        }
    });
    doc.to_string()
}
