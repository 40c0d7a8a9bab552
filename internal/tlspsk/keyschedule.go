package tlspsk

import (
	"crypto"
	"crypto/hkdf"
	"crypto/hmac"
	"hash"
)

// ---- TLS 1.2 (RFC 5246 §5, RFC 7627) ----

// prf12 is the TLS 1.2 PRF: P_hash(secret, label || seed).
func prf12(h crypto.Hash, secret []byte, label string, seed []byte, n int) []byte {
	out := make([]byte, n)
	ls := make([]byte, 0, len(label)+len(seed))
	ls = append(append(ls, label...), seed...)
	mac := hmac.New(h.New, secret)
	mac.Write(ls)
	a := mac.Sum(nil) // A(1)
	for off := 0; off < n; {
		mac.Reset()
		mac.Write(a)
		mac.Write(ls)
		off += copy(out[off:], mac.Sum(nil))
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
	return out
}

// pskPremaster builds the RFC 4279 §2 / RFC 5489 §2 premaster secret:
// uint16 len(other) || other || uint16 len(psk) || psk, where other is N
// zero bytes for plain PSK and the ECDH shared secret for ECDHE_PSK.
func pskPremaster(other []byte, zeros int, psk []byte) []byte {
	n := len(other)
	if other == nil {
		n = zeros
	}
	out := make([]byte, 0, 4+n+len(psk))
	out = append(out, byte(n>>8), byte(n))
	if other == nil {
		out = append(out, make([]byte, n)...)
	} else {
		out = append(out, other...)
	}
	out = append(out, byte(len(psk)>>8), byte(len(psk)))
	return append(out, psk...)
}

const masterSecretLen = 48

func masterSecret12(h crypto.Hash, premaster, clientRandom, serverRandom []byte) []byte {
	seed := append(append([]byte{}, clientRandom...), serverRandom...)
	return prf12(h, premaster, "master secret", seed, masterSecretLen)
}

func extendedMasterSecret12(h crypto.Hash, premaster, sessionHash []byte) []byte {
	return prf12(h, premaster, "extended master secret", sessionHash, masterSecretLen)
}

// keys12 expands the key block (no MAC keys: AEAD suites only).
func keys12(s *cipherSuite, master, clientRandom, serverRandom []byte) (cKey, sKey, cIV, sIV []byte) {
	seed := append(append([]byte{}, serverRandom...), clientRandom...)
	kb := prf12(s.hash, master, "key expansion", seed, 2*s.keyLen+2*s.ivLen)
	cKey, kb = kb[:s.keyLen], kb[s.keyLen:]
	sKey, kb = kb[:s.keyLen], kb[s.keyLen:]
	cIV, kb = kb[:s.ivLen], kb[s.ivLen:]
	sIV = kb[:s.ivLen]
	return
}

const finishedLen12 = 12

func finished12(h crypto.Hash, master []byte, label string, transcriptHash []byte) []byte {
	return prf12(h, master, label, transcriptHash, finishedLen12)
}

// ---- TLS 1.3 (RFC 8446 §7.1) ----

func hkdfExtract(h crypto.Hash, secret, salt []byte) []byte {
	if secret == nil {
		secret = make([]byte, h.Size())
	}
	if salt == nil {
		salt = make([]byte, h.Size())
	}
	out, err := hkdf.Extract(h.New, secret, salt)
	if err != nil {
		panic("tlspsk: hkdf extract: " + err.Error())
	}
	return out
}

// expandLabel is HKDF-Expand-Label(secret, label, context, n).
func expandLabel(h crypto.Hash, secret []byte, label string, context []byte, n int) []byte {
	info := make([]byte, 0, 4+6+len(label)+len(context))
	info = append(info, byte(n>>8), byte(n), byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, byte(len(context)))
	info = append(info, context...)
	out, err := hkdf.Expand(h.New, secret, string(info), n)
	if err != nil {
		panic("tlspsk: hkdf expand: " + err.Error())
	}
	return out
}

// deriveSecret is Derive-Secret(secret, label, messages) given the
// transcript hash of messages.
func deriveSecret(h crypto.Hash, secret []byte, label string, transcriptHash []byte) []byte {
	if transcriptHash == nil {
		e := h.New()
		transcriptHash = e.Sum(nil)
	}
	return expandLabel(h, secret, label, transcriptHash, h.Size())
}

func earlySecret(h crypto.Hash, psk []byte) []byte { return hkdfExtract(h, psk, nil) }

// extBinderKey is the binder key of an external PSK.
func extBinderKey(h crypto.Hash, early []byte) []byte {
	return deriveSecret(h, early, "ext binder", nil)
}

// resBinderKey is the binder key of a resumption PSK (a session ticket).
func resBinderKey(h crypto.Hash, early []byte) []byte {
	return deriveSecret(h, early, "res binder", nil)
}

func handshakeSecret(h crypto.Hash, early, shared []byte) []byte {
	return hkdfExtract(h, shared, deriveSecret(h, early, "derived", nil))
}

func masterSecret13(h crypto.Hash, hs []byte) []byte {
	return hkdfExtract(h, nil, deriveSecret(h, hs, "derived", nil))
}

// finishedMAC computes a Finished verify_data (or a PSK binder) from a base
// key and a transcript hash.
func finishedMAC(h crypto.Hash, baseKey, transcriptHash []byte) []byte {
	key := expandLabel(h, baseKey, "finished", nil, h.Size())
	m := hmac.New(h.New, key)
	m.Write(transcriptHash)
	return m.Sum(nil)
}

// resumptionPSK is the PSK of a session ticket: HKDF-Expand-Label(
// resumption_master_secret, "resumption", ticket_nonce, Hash.length)
// (RFC 8446 §4.6.1).
func resumptionPSK(h crypto.Hash, resumptionSecret, nonce []byte) []byte {
	return expandLabel(h, resumptionSecret, "resumption", nonce, h.Size())
}

func trafficKey(s *cipherSuite, secret []byte) (key, iv []byte) {
	return expandLabel(s.hash, secret, "key", nil, s.keyLen), expandLabel(s.hash, secret, "iv", nil, 12)
}

func nextTrafficSecret(h crypto.Hash, secret []byte) []byte {
	return expandLabel(h, secret, "traffic upd", nil, h.Size())
}

// ---- transcript ----

// transcript hashes handshake messages. Until the hash is known (the
// client before ServerHello) messages are buffered.
type transcript struct {
	buf []byte
	h   hash.Hash
}

func (t *transcript) Write(p []byte) {
	if t.h == nil {
		t.buf = append(t.buf, p...)
		return
	}
	t.h.Write(p)
}

func (t *transcript) setHash(h crypto.Hash) {
	t.h = h.New()
	t.h.Write(t.buf)
	t.buf = nil
}

func (t *transcript) Sum() []byte { return t.h.Sum(nil) }

// hashOf hashes the buffered messages with h without fixing the hash.
func (t *transcript) hashOf(h crypto.Hash, extra []byte) []byte {
	e := h.New()
	e.Write(t.buf)
	e.Write(extra)
	return e.Sum(nil)
}
