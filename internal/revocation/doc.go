// Package revocation owns the revocation status of client certificate
// chains: CRLs read from files (reloaded when they change) and fetched from
// the certificates' CRL distribution points (cached, refreshed before their
// nextUpdate), and OCSP for the leaf (responder from the AIA extension or
// configured, responses cached until their nextUpdate). Every certificate of
// a verified chain except the root is checked against the CRLs; every CRL and
// OCSP response is verified against the issuer found in that chain.
//
// # Policy for missing or stale data
//
// When revocation data cannot be obtained (distribution point or responder
// unreachable, CRL past its nextUpdate, OCSP "unknown", a CRL whose signature
// does not verify) the Checker applies Options.Policy:
//
//   - "fail_open" (the default): the certificate is accepted and an alarm is
//     raised (Alarms, and a warning in the log) until the data is back.
//   - "fail_closed": the certificate is refused with an error wrapping
//     ErrUnavailable, and the same alarm is raised.
//
// fail_open is the default because revocation infrastructure is a single
// point of failure for a whole fleet: one unreachable responder or one CRL
// the CA forgot to re-sign would otherwise lock out every device at once,
// including the ones an operator needs to fix the problem, and devices that
// are locked out tend to reconnect in a storm. Revocations already known are
// always enforced under both policies (a stale CRL still revokes the serials
// it lists); only the absence of fresh data is tolerated, never silently:
// the alarm says which source is missing and since when. Deployments where a
// revoked certificate must never get in, even during an outage, choose
// fail_closed per listener.
//
// A Checker never locks clients out because a CRL passed its nextUpdate
// without raising an alarm that says so.
package revocation
