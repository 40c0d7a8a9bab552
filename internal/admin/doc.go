// Package admin owns moat's management API: an HTTPS-only JSON API over the
// device registry and the broker's connected clients, with an audit log.
//
// Transport: always TLS (the caller's *tls.Config; a plain-HTTP request to
// the port is answered 400 by net/http and never reaches a handler), on a
// loopback address unless the caller allows remote access (Listen).
//
// Authentication, on every request, before routing:
//   - a bearer token (Authorization: Bearer <token>) whose SHA-256 is one of
//     the configured token hashes (compared in constant time, all of them
//     every time); a wrong token is 401 even if a certificate is also sent;
//   - else a client certificate that crypto/tls verified against the
//     configured client CAs and whose CN or SHA-256 fingerprint is on the
//     allowlist; a verified certificate not on the list is 403;
//   - else 401.
//
// Non-safe cross-origin browser requests are refused
// (http.CrossOriginProtection), since browsers send client certificates on
// their own.
//
// Every request is written to the audit log as one JSON line (time, who,
// action, target, result, status, remote address). The audit log and error
// messages never contain secrets; responses that carry a secret (a new PSK,
// a rotated password, a derived key) are marked Cache-Control: no-store.
//
// The API is described by the OpenAPI 3.1 document at GET /v1/openapi.json.
package admin
