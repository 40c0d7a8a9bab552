package tlspolicy

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

type sourceKind int

const (
	srcSubject sourceKind = iota
	srcDN
	srcSANDNS
	srcSANEmail
	srcSANURI
	srcSANIP
	srcFingerprint
)

const maxSourceIndex = 1000

type identitySource struct {
	kind  sourceKind
	oid   asn1.ObjectIdentifier
	index int
}

var (
	oidCN    = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidEmail = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
)

// attrTypes maps the accepted short names (upper case) to OIDs.
var attrTypes = map[string]asn1.ObjectIdentifier{
	"CN":           oidCN,
	"SERIALNUMBER": {2, 5, 4, 5},
	"C":            {2, 5, 4, 6},
	"L":            {2, 5, 4, 7},
	"ST":           {2, 5, 4, 8},
	"STREET":       {2, 5, 4, 9},
	"O":            {2, 5, 4, 10},
	"OU":           {2, 5, 4, 11},
	"POSTALCODE":   {2, 5, 4, 17},
	"UID":          {0, 9, 2342, 19200300, 100, 1, 1},
	"DC":           {0, 9, 2342, 19200300, 100, 1, 25},
	"EMAILADDRESS": oidEmail,
}

// dnTypeNames are the attribute type names used in DN strings: OpenSSL's
// short names (what `openssl x509 -subject -nameopt RFC2253` and mosquitto
// print), which include all of RFC 4514 section 3. Other types are written
// as a dotted OID with a #hex DER value, as RFC 4514 requires.
var dnTypeNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.4":                    "SN", // surname
	"2.5.4.5":                    "serialNumber",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.9":                    "street",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.12":                   "title",
	"2.5.4.13":                   "description",
	"2.5.4.15":                   "businessCategory",
	"2.5.4.17":                   "postalCode",
	"2.5.4.41":                   "name",
	"2.5.4.42":                   "GN",
	"2.5.4.43":                   "initials",
	"2.5.4.44":                   "generationQualifier",
	"2.5.4.46":                   "dnQualifier",
	"2.5.4.65":                   "pseudonym",
	"2.5.4.97":                   "organizationIdentifier",
	"0.9.2342.19200300.100.1.1":  "UID",
	"0.9.2342.19200300.100.1.25": "DC",
	"1.2.840.113549.1.9.1":       "emailAddress",
}

func parseSource(s string) (identitySource, error) {
	bad := func(why string) (identitySource, error) {
		return identitySource{}, fmt.Errorf("tlspolicy: identity source %q: %s: %w", s, why, ErrIdentitySource)
	}
	lower := strings.ToLower(s)
	switch lower {
	case "cn":
		return identitySource{kind: srcSubject, oid: oidCN}, nil
	case "dn":
		return identitySource{kind: srcDN}, nil
	case "fingerprint":
		return identitySource{kind: srcFingerprint}, nil
	}
	prefix, rest, ok := strings.Cut(lower, ":")
	if !ok {
		return bad("want cn, dn, fingerprint, subject:<attr> or san:<dns|email|uri|ip>")
	}
	_, origRest, _ := strings.Cut(s, ":")
	name, idxStr, hasIdx := strings.Cut(rest, ":")
	origName, _, _ := strings.Cut(origRest, ":")
	idx := 0
	if hasIdx {
		n, err := strconv.Atoi(idxStr)
		if err != nil || n < 0 || n > maxSourceIndex || idxStr != strconv.Itoa(n) {
			return bad("index must be a number from 0 to 1000")
		}
		idx = n
	}
	switch prefix {
	case "subject":
		if name == "" {
			return bad("missing attribute")
		}
		if oid, ok := attrTypes[strings.ToUpper(origName)]; ok {
			return identitySource{kind: srcSubject, oid: oid, index: idx}, nil
		}
		oid, err := parseOID(name)
		if err != nil {
			return bad("attribute must be CN, O, OU, L, ST, C, STREET, POSTALCODE, SERIALNUMBER, UID, DC, emailAddress or a dotted OID")
		}
		return identitySource{kind: srcSubject, oid: oid, index: idx}, nil
	case "san":
		kinds := map[string]sourceKind{"dns": srcSANDNS, "email": srcSANEmail, "uri": srcSANURI, "ip": srcSANIP}
		k, ok := kinds[name]
		if !ok {
			return bad("SAN kind must be dns, email, uri or ip")
		}
		return identitySource{kind: k, index: idx}, nil
	}
	return bad("want cn, dn, fingerprint, subject:<attr> or san:<dns|email|uri|ip>")
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 32 {
		return nil, fmt.Errorf("bad OID")
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p != strconv.Itoa(n) {
			return nil, fmt.Errorf("bad OID")
		}
		oid[i] = n
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] > 39) {
		return nil, fmt.Errorf("bad OID")
	}
	return oid, nil
}

// ValidateIdentitySource reports whether s is a valid identity source (see
// Identity for the list). Call it when loading configuration.
func ValidateIdentitySource(s string) error {
	_, err := parseSource(s)
	return err
}

// Identity returns the identity that source selects from a (verified)
// client certificate. Sources:
//
//	cn                  first CommonName of the subject (same as subject:CN)
//	dn                  the whole subject DN as an RFC 4514 string, e.g.
//	                    "CN=sensor-17,OU=plant-a,O=Acme\, Inc.,C=DE"
//	subject:<attr>      first value of a subject attribute; <attr> is CN, O,
//	                    OU, L, ST, C, STREET, POSTALCODE, SERIALNUMBER, UID,
//	                    DC, emailAddress (any case) or a dotted OID such as
//	                    0.9.2342.19200300.100.1.1 (UID)
//	san:dns, san:email, san:uri, san:ip
//	                    first subject alternative name of that kind
//	fingerprint         lower-case hex SHA-256 of the certificate's DER
//
// subject:<attr> and san:<kind> take an optional zero-based index:
// "san:dns:1" is the second DNS name, "subject:OU:0" the same as
// "subject:OU". Attribute order is the certificate's encoding order (most
// significant first: C before O before OU before CN, as usually issued).
// Keywords are case-insensitive.
//
// In the DN, RDNs are written last-to-first as RFC 4514 requires (the
// members of a multi-valued RDN too, as OpenSSL does), with OpenSSL's
// attribute names (CN, O, OU, C, L, ST, DC, UID, serialNumber,
// emailAddress, title, ...; unnamed types as a dotted OID with a #HEX DER
// value); special characters are escaped and control characters written as
// \XX. The result equals `openssl x509 -noout -subject -nameopt RFC2253`
// (and mosquitto's use_subject_as_username) for ASCII values; non-ASCII
// characters stay UTF-8 where OpenSSL writes \XX escapes.
//
// Errors wrap ErrIdentitySource (bad source), ErrIdentityMissing (the
// certificate has no such value) or ErrIdentityInvalid (the value is not a
// clean UTF-8 string without control characters).
func Identity(cert *x509.Certificate, source string) (string, error) {
	src, err := parseSource(source)
	if err != nil {
		return "", err
	}
	if cert == nil {
		return "", fmt.Errorf("tlspolicy: identity %s: no certificate: %w", source, ErrIdentityMissing)
	}
	missing := func() (string, error) {
		return "", fmt.Errorf("tlspolicy: identity %s: certificate %q has none: %w", source, safeSubject(cert), ErrIdentityMissing)
	}
	var v string
	switch src.kind {
	case srcFingerprint:
		sum := sha256.Sum256(cert.Raw)
		return hex.EncodeToString(sum[:]), nil
	case srcDN:
		dn, err := formatDN(cert.RawSubject)
		if err != nil {
			return "", fmt.Errorf("tlspolicy: identity dn: %v: %w", err, ErrIdentityInvalid)
		}
		if dn == "" {
			return missing()
		}
		return dn, nil
	case srcSubject:
		rdns, err := parseRDNs(cert.RawSubject)
		if err != nil {
			return "", fmt.Errorf("tlspolicy: identity %s: subject: %v: %w", source, err, ErrIdentityInvalid)
		}
		n := 0
		found := false
		for _, rdn := range rdns {
			for _, atv := range rdn {
				if !atv.Type.Equal(src.oid) {
					continue
				}
				if n == src.index {
					s, ok := decodeDirectoryString(atv.Value)
					if !ok {
						return "", fmt.Errorf("tlspolicy: identity %s: value is not a string: %w", source, ErrIdentityInvalid)
					}
					v, found = s, true
				}
				n++
			}
		}
		if !found {
			return missing()
		}
	case srcSANDNS:
		if src.index >= len(cert.DNSNames) {
			return missing()
		}
		v = cert.DNSNames[src.index]
	case srcSANEmail:
		if src.index >= len(cert.EmailAddresses) {
			return missing()
		}
		v = cert.EmailAddresses[src.index]
	case srcSANURI:
		if src.index >= len(cert.URIs) {
			return missing()
		}
		v = cert.URIs[src.index].String()
	case srcSANIP:
		if src.index >= len(cert.IPAddresses) {
			return missing()
		}
		v = cert.IPAddresses[src.index].String()
	}
	if v == "" {
		return missing()
	}
	if !cleanIdentity(v) {
		return "", fmt.Errorf("tlspolicy: identity %s: value contains invalid UTF-8 or control characters: %w", source, ErrIdentityInvalid)
	}
	return v, nil
}

// CertIdentityFields returns a fields function for ExpandClientIDTemplate
// that reads identities from cert.
func CertIdentityFields(cert *x509.Certificate) func(source string) (string, error) {
	return func(source string) (string, error) { return Identity(cert, source) }
}

// DefaultClientIDTemplate is the template used for client-id binding when
// none is configured: the identity itself.
func DefaultClientIDTemplate(identitySource string) string { return "{" + identitySource + "}" }

// ExpandClientIDTemplate replaces every {source} placeholder in tmpl with
// fields(source), where source is an identity source ("{cn}",
// "{subject:OU}-{san:dns}", "dev-{fingerprint}"). "{{" and "}}" stand for
// literal braces. An empty template, an unclosed or empty placeholder, an
// invalid source or an empty result is an error wrapping ErrTemplate (or the
// error of fields).
func ExpandClientIDTemplate(tmpl string, fields func(source string) (string, error)) (string, error) {
	if tmpl == "" {
		return "", fmt.Errorf("tlspolicy: empty client id template: %w", ErrTemplate)
	}
	var b strings.Builder
	for i := 0; i < len(tmpl); {
		switch c := tmpl[i]; c {
		case '{':
			if i+1 < len(tmpl) && tmpl[i+1] == '{' {
				b.WriteByte('{')
				i += 2
				continue
			}
			end := strings.IndexByte(tmpl[i+1:], '}')
			if end < 0 {
				return "", fmt.Errorf("tlspolicy: client id template %q: unclosed '{': %w", tmpl, ErrTemplate)
			}
			src := tmpl[i+1 : i+1+end]
			if src == "" {
				return "", fmt.Errorf("tlspolicy: client id template %q: empty placeholder: %w", tmpl, ErrTemplate)
			}
			if err := ValidateIdentitySource(src); err != nil {
				return "", fmt.Errorf("tlspolicy: client id template %q: %w: %w", tmpl, err, ErrTemplate)
			}
			v, err := fields(src)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i += end + 2
		case '}':
			if i+1 < len(tmpl) && tmpl[i+1] == '}' {
				b.WriteByte('}')
				i += 2
				continue
			}
			return "", fmt.Errorf("tlspolicy: client id template %q: unmatched '}': %w", tmpl, ErrTemplate)
		default:
			b.WriteByte(c)
			i++
		}
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("tlspolicy: client id template %q expands to nothing: %w", tmpl, ErrTemplate)
	}
	return b.String(), nil
}

// ValidateClientIDTemplate checks a template's syntax and sources without a
// certificate.
func ValidateClientIDTemplate(tmpl string) error {
	_, err := ExpandClientIDTemplate(tmpl, func(string) (string, error) { return "x", nil })
	return err
}

// Raw subject parsing: encoding/asn1 treats slice types whose name ends in
// "SET" as SET OF.
type rawATV struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

type rawRDNSET []rawATV

type rawRDNSequence []rawRDNSET

func parseRDNs(der []byte) (rawRDNSequence, error) {
	var seq rawRDNSequence
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("trailing data after name")
	}
	return seq, nil
}

// decodeDirectoryString decodes the string types found in certificate
// names into UTF-8.
func decodeDirectoryString(v asn1.RawValue) (string, bool) {
	if v.Class != asn1.ClassUniversal || v.IsCompound {
		return "", false
	}
	b := v.Bytes
	switch v.Tag {
	case asn1.TagUTF8String:
		return string(b), utf8.Valid(b)
	case asn1.TagPrintableString, asn1.TagIA5String, asn1.TagNumericString, 26: // 26: VisibleString
		for _, c := range b {
			if c >= utf8.RuneSelf {
				return "", false
			}
		}
		return string(b), true
	case asn1.TagT61String: // in practice ISO 8859-1
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return string(r), true
	case asn1.TagBMPString:
		if len(b)%2 != 0 {
			return "", false
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = binary.BigEndian.Uint16(b[2*i:])
		}
		s := string(utf16.Decode(u))
		return s, !strings.ContainsRune(s, utf8.RuneError)
	case 28: // UniversalString, UCS-4
		if len(b)%4 != 0 {
			return "", false
		}
		r := make([]rune, len(b)/4)
		for i := range r {
			c := binary.BigEndian.Uint32(b[4*i:])
			if c > utf8.MaxRune || !utf8.ValidRune(rune(c)) {
				return "", false
			}
			r[i] = rune(c)
		}
		return string(r), true
	}
	return "", false
}

// formatDN renders a DER Name as an RFC 4514 string: RDNs (and the members
// of multi-valued RDNs, joined with "+") in reverse order, special
// characters escaped.
func formatDN(der []byte) (string, error) {
	rdns, err := parseRDNs(der)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i := len(rdns) - 1; i >= 0; i-- {
		if i != len(rdns)-1 {
			b.WriteByte(',')
		}
		rdn := rdns[i]
		for j := len(rdn) - 1; j >= 0; j-- {
			atv := rdn[j]
			if j != len(rdn)-1 {
				b.WriteByte('+')
			}
			name, known := dnTypeNames[atv.Type.String()]
			s, isString := decodeDirectoryString(atv.Value)
			if !known || !isString {
				b.WriteString(atv.Type.String())
				b.WriteString("=#")
				b.WriteString(strings.ToUpper(hex.EncodeToString(atv.Value.FullBytes)))
				continue
			}
			b.WriteString(name)
			b.WriteByte('=')
			escapeDNValue(&b, s)
		}
	}
	return b.String(), nil
}

func escapeDNValue(b *strings.Builder, s string) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"' || r == '+' || r == ',' || r == ';' || r == '<' || r == '>' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case (r == ' ' || r == '#') && i == 0:
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == ' ' && i+size == len(s):
			b.WriteString("\\ ")
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			for _, c := range []byte(s[i : i+size]) {
				fmt.Fprintf(b, "\\%02X", c)
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
}

// cleanIdentity: valid UTF-8 without control characters.
func cleanIdentity(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// safeSubject is a subject for error messages.
func safeSubject(c *x509.Certificate) string {
	if dn, err := formatDN(c.RawSubject); err == nil {
		return dn
	}
	return c.Subject.String()
}
