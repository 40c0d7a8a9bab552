package tlspsk

import (
	"crypto/cipher"
	"crypto/subtle"
	"errors"
)

// ccm is AES-CCM (RFC 3610, NIST SP 800-38C) as a cipher.AEAD, for the
// RFC 6655 suites. Nonce sizes 7..13 and even tag sizes 4..16 are supported;
// TLS uses a 12-byte nonce and a 16- or 8-byte tag.
type ccm struct {
	b         cipher.Block
	nonceSize int
	tagSize   int
}

var errCCMOpen = errors.New("tlspsk: ccm: message authentication failed")

func newCCM(b cipher.Block, nonceSize, tagSize int) *ccm {
	if b.BlockSize() != 16 || nonceSize < 7 || nonceSize > 13 || tagSize < 4 || tagSize > 16 || tagSize%2 != 0 {
		panic("tlspsk: ccm: bad parameters")
	}
	return &ccm{b: b, nonceSize: nonceSize, tagSize: tagSize}
}

func (c *ccm) NonceSize() int { return c.nonceSize }
func (c *ccm) Overhead() int  { return c.tagSize }

// maxLen is the largest message the length field (15-nonceSize bytes) holds.
func (c *ccm) maxLen() uint64 {
	l := 15 - c.nonceSize
	if l >= 8 {
		return 1<<63 - 1
	}
	return 1<<(8*uint(l)) - 1
}

// mac computes the unencrypted CBC-MAC tag T of (nonce, aad, plaintext).
func (c *ccm) mac(nonce, plaintext, aad []byte) [16]byte {
	l := 15 - c.nonceSize
	var x [16]byte
	x[0] = byte((c.tagSize-2)/2)<<3 | byte(l-1)
	if len(aad) > 0 {
		x[0] |= 0x40
	}
	copy(x[1:], nonce)
	n := uint64(len(plaintext))
	for i := 15; i > c.nonceSize; i-- {
		x[i] = byte(n)
		n >>= 8
	}
	c.b.Encrypt(x[:], x[:])
	if len(aad) > 0 {
		var hdr []byte
		if len(aad) < 0xff00 {
			hdr = []byte{byte(len(aad) >> 8), byte(len(aad))}
		} else {
			a := uint32(len(aad))
			hdr = []byte{0xff, 0xfe, byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}
		}
		// The header and aad form one zero-padded stream of blocks.
		pos := 0
		feed := func(p []byte) {
			for _, v := range p {
				x[pos] ^= v
				pos++
				if pos == 16 {
					c.b.Encrypt(x[:], x[:])
					pos = 0
				}
			}
		}
		feed(hdr)
		feed(aad)
		if pos != 0 {
			c.b.Encrypt(x[:], x[:])
		}
	}
	for len(plaintext) > 0 {
		k := min(16, len(plaintext))
		subtle.XORBytes(x[:k], x[:k], plaintext[:k])
		c.b.Encrypt(x[:], x[:])
		plaintext = plaintext[k:]
	}
	return x
}

// ctr returns a CTR stream starting at counter block A_i.
func (c *ccm) ctrBlock(nonce []byte, i byte) [16]byte {
	var a [16]byte
	a[0] = byte(15 - c.nonceSize - 1)
	copy(a[1:], nonce)
	a[15] = i
	return a
}

func (c *ccm) tag(nonce, plaintext, aad []byte) [16]byte {
	t := c.mac(nonce, plaintext, aad)
	a0 := c.ctrBlock(nonce, 0)
	var s0 [16]byte
	c.b.Encrypt(s0[:], a0[:])
	subtle.XORBytes(t[:], t[:], s0[:])
	return t
}

func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	tail = head[len(in):]
	return
}

func (c *ccm) Seal(dst, nonce, plaintext, aad []byte) []byte {
	if len(nonce) != c.nonceSize || uint64(len(plaintext)) > c.maxLen() {
		panic("tlspsk: ccm: bad nonce or message length")
	}
	t := c.tag(nonce, plaintext, aad)
	ret, out := sliceForAppend(dst, len(plaintext)+c.tagSize)
	a1 := c.ctrBlock(nonce, 1)
	cipher.NewCTR(c.b, a1[:]).XORKeyStream(out[:len(plaintext)], plaintext)
	copy(out[len(plaintext):], t[:c.tagSize])
	return ret
}

func (c *ccm) Open(dst, nonce, ciphertext, aad []byte) ([]byte, error) {
	if len(nonce) != c.nonceSize || len(ciphertext) < c.tagSize ||
		uint64(len(ciphertext)-c.tagSize) > c.maxLen() {
		return nil, errCCMOpen
	}
	n := len(ciphertext) - c.tagSize
	received := ciphertext[n:]
	ret, out := sliceForAppend(dst, n)
	a1 := c.ctrBlock(nonce, 1)
	cipher.NewCTR(c.b, a1[:]).XORKeyStream(out, ciphertext[:n])
	t := c.tag(nonce, out, aad)
	if subtle.ConstantTimeCompare(t[:c.tagSize], received) != 1 {
		clear(out)
		return nil, errCCMOpen
	}
	return ret, nil
}
