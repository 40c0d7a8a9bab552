package packet

import (
	"encoding/binary"
	"math/bits"
)

// Presence bits of the property identifiers.
const (
	bPayloadFormat        = uint64(1) << PropPayloadFormat
	bMessageExpiry        = uint64(1) << PropMessageExpiry
	bContentType          = uint64(1) << PropContentType
	bResponseTopic        = uint64(1) << PropResponseTopic
	bCorrelationData      = uint64(1) << PropCorrelationData
	bSubscriptionID       = uint64(1) << PropSubscriptionID
	bSessionExpiry        = uint64(1) << PropSessionExpiry
	bAssignedClientID     = uint64(1) << PropAssignedClientID
	bServerKeepAlive      = uint64(1) << PropServerKeepAlive
	bAuthMethod           = uint64(1) << PropAuthMethod
	bAuthData             = uint64(1) << PropAuthData
	bRequestProblemInfo   = uint64(1) << PropRequestProblemInfo
	bWillDelay            = uint64(1) << PropWillDelay
	bRequestResponseInfo  = uint64(1) << PropRequestResponseInfo
	bResponseInfo         = uint64(1) << PropResponseInfo
	bServerReference      = uint64(1) << PropServerReference
	bReasonString         = uint64(1) << PropReasonString
	bReceiveMaximum       = uint64(1) << PropReceiveMaximum
	bTopicAliasMaximum    = uint64(1) << PropTopicAliasMaximum
	bTopicAlias           = uint64(1) << PropTopicAlias
	bMaximumQoS           = uint64(1) << PropMaximumQoS
	bRetainAvailable      = uint64(1) << PropRetainAvailable
	bUserProperty         = uint64(1) << PropUserProperty
	bMaximumPacketSize    = uint64(1) << PropMaximumPacketSize
	bWildcardSubAvailable = uint64(1) << PropWildcardSubAvailable
	bSubIDAvailable       = uint64(1) << PropSubIDAvailable
	bSharedSubAvailable   = uint64(1) << PropSharedSubAvailable

	knownProps = bPayloadFormat | bMessageExpiry | bContentType | bResponseTopic |
		bCorrelationData | bSubscriptionID | bSessionExpiry | bAssignedClientID |
		bServerKeepAlive | bAuthMethod | bAuthData | bRequestProblemInfo |
		bWillDelay | bRequestResponseInfo | bResponseInfo | bServerReference |
		bReasonString | bReceiveMaximum | bTopicAliasMaximum | bTopicAlias |
		bMaximumQoS | bRetainAvailable | bUserProperty | bMaximumPacketSize |
		bWildcardSubAvailable | bSubIDAvailable | bSharedSubAvailable

	// Properties whose value must be 0 or 1.
	booleanProps = bPayloadFormat | bRequestProblemInfo | bRequestResponseInfo |
		bMaximumQoS | bRetainAvailable | bWildcardSubAvailable | bSubIDAvailable |
		bSharedSubAvailable
)

// propSpec is the set of properties a packet type may carry (MQTT 5.0
// section 2.2.2.2) and which of them may appear more than once.
type propSpec struct {
	name    string
	allowed uint64
	multi   uint64
}

var (
	connectProps = propSpec{"CONNECT", bSessionExpiry | bAuthMethod | bAuthData |
		bRequestProblemInfo | bRequestResponseInfo | bReceiveMaximum |
		bTopicAliasMaximum | bUserProperty | bMaximumPacketSize, bUserProperty}
	willProps = propSpec{"will properties", bPayloadFormat | bMessageExpiry |
		bContentType | bResponseTopic | bCorrelationData | bWillDelay |
		bUserProperty, bUserProperty}
	connackProps = propSpec{"CONNACK", bSessionExpiry | bAssignedClientID |
		bServerKeepAlive | bAuthMethod | bAuthData | bResponseInfo |
		bServerReference | bReasonString | bReceiveMaximum | bTopicAliasMaximum |
		bMaximumQoS | bRetainAvailable | bUserProperty | bMaximumPacketSize |
		bWildcardSubAvailable | bSubIDAvailable | bSharedSubAvailable, bUserProperty}
	publishProps = propSpec{"PUBLISH", bPayloadFormat | bMessageExpiry |
		bContentType | bResponseTopic | bCorrelationData | bSubscriptionID |
		bTopicAlias | bUserProperty, bUserProperty | bSubscriptionID}
	pubackProps      = propSpec{"PUBACK", bReasonString | bUserProperty, bUserProperty}
	pubrecProps      = propSpec{"PUBREC", bReasonString | bUserProperty, bUserProperty}
	pubrelProps      = propSpec{"PUBREL", bReasonString | bUserProperty, bUserProperty}
	pubcompProps     = propSpec{"PUBCOMP", bReasonString | bUserProperty, bUserProperty}
	subscribeProps   = propSpec{"SUBSCRIBE", bSubscriptionID | bUserProperty, bUserProperty}
	subackProps      = propSpec{"SUBACK", bReasonString | bUserProperty, bUserProperty}
	unsubscribeProps = propSpec{"UNSUBSCRIBE", bUserProperty, bUserProperty}
	unsubackProps    = propSpec{"UNSUBACK", bReasonString | bUserProperty, bUserProperty}
	disconnectProps  = propSpec{"DISCONNECT", bSessionExpiry | bServerReference |
		bReasonString | bUserProperty, bUserProperty}
	authProps = propSpec{"AUTH", bAuthMethod | bAuthData | bReasonString | bUserProperty, bUserProperty}
)

func ackProps(t Type) *propSpec {
	switch t {
	case PUBACK:
		return &pubackProps
	case PUBREC:
		return &pubrecProps
	case PUBREL:
		return &pubrelProps
	}
	return &pubcompProps
}

// intern returns old when b holds the same bytes (no allocation: the
// compiler compares string(b) without converting), else a copy of b.
func intern(b []byte, old string) string {
	if string(b) == old {
		return old
	}
	return string(b)
}

// decodeProps reads a property length and the properties that follow into
// p, replacing its previous content. String values equal to the previous
// value of the same property (user properties: the same key or value at the
// same index) reuse the previous string instead of allocating; binary values
// alias d's buffer.
func (p *Properties) decode(d *dec, spec *propSpec) error {
	n, err := d.varint()
	if err != nil {
		return err
	}
	if n > len(d.b)-d.i {
		return errPropLength
	}
	end := d.i + n
	pd := dec{b: d.b[:end], i: d.i}
	d.i = end

	old := *p
	p.Reset()
	for pd.i < end {
		id, err := pd.varint()
		if err != nil {
			return err
		}
		if id > 63 || knownProps&(uint64(1)<<id) == 0 {
			return errUnknownProp
		}
		b := uint64(1) << id
		if spec.allowed&b == 0 {
			return protocolError("property 0x%02X not allowed in %s", id, spec.name)
		}
		if p.Present&b != 0 && spec.multi&b == 0 {
			return protocolError("property 0x%02X more than once in %s", id, spec.name)
		}
		p.Present |= b
		if booleanProps&b != 0 {
			v, err := pd.u8()
			if err != nil {
				return err
			}
			if v > 1 {
				return protocolError("property 0x%02X must be 0 or 1", id)
			}
			p.setBoolean(byte(id), v)
			continue
		}
		switch byte(id) {
		case PropMessageExpiry:
			p.MessageExpiry, err = pd.u32()
		case PropContentType:
			p.ContentType, err = pd.strIntern(old.ContentType)
		case PropResponseTopic:
			p.ResponseTopic, err = pd.strIntern(old.ResponseTopic)
			if err == nil && hasWildcard(p.ResponseTopic) {
				return protocolError("wildcard in Response Topic")
			}
		case PropCorrelationData:
			p.CorrelationData, err = pd.bin()
		case PropSubscriptionID:
			var v int
			if v, err = pd.varint(); err == nil && v == 0 {
				return protocolError("Subscription Identifier 0")
			}
			p.SubscriptionIDs = append(p.SubscriptionIDs, uint32(v))
		case PropSessionExpiry:
			p.SessionExpiry, err = pd.u32()
		case PropAssignedClientID:
			p.AssignedClientID, err = pd.strIntern(old.AssignedClientID)
		case PropServerKeepAlive:
			p.ServerKeepAlive, err = pd.u16()
		case PropAuthMethod:
			p.AuthMethod, err = pd.strIntern(old.AuthMethod)
		case PropAuthData:
			p.AuthData, err = pd.bin()
		case PropWillDelay:
			p.WillDelay, err = pd.u32()
		case PropResponseInfo:
			p.ResponseInfo, err = pd.strIntern(old.ResponseInfo)
		case PropServerReference:
			p.ServerReference, err = pd.strIntern(old.ServerReference)
		case PropReasonString:
			p.ReasonString, err = pd.strIntern(old.ReasonString)
		case PropReceiveMaximum:
			if p.ReceiveMaximum, err = pd.u16(); err == nil && p.ReceiveMaximum == 0 {
				return protocolError("Receive Maximum 0")
			}
		case PropTopicAliasMaximum:
			p.TopicAliasMaximum, err = pd.u16()
		case PropTopicAlias:
			if p.TopicAlias, err = pd.u16(); err == nil && p.TopicAlias == 0 {
				return &Error{Code: TopicAliasInvalid, Msg: "Topic Alias 0"}
			}
		case PropMaximumPacketSize:
			if p.MaximumPacketSize, err = pd.u32(); err == nil && p.MaximumPacketSize == 0 {
				return protocolError("Maximum Packet Size 0")
			}
		case PropUserProperty:
			var prev UserProperty
			if i := len(p.User); i < cap(p.User) {
				prev = p.User[:i+1][i]
			}
			var u UserProperty
			if u.Key, err = pd.strIntern(prev.Key); err == nil {
				u.Value, err = pd.strIntern(prev.Value)
			}
			p.User = append(p.User, u)
		}
		if err != nil {
			return err
		}
	}
	if p.Present&(bAuthData|bAuthMethod) == bAuthData {
		return protocolError("Authentication Data without Authentication Method")
	}
	return nil
}

func (p *Properties) setBoolean(id, v byte) {
	switch id {
	case PropPayloadFormat:
		p.PayloadFormat = v
	case PropRequestProblemInfo:
		p.RequestProblemInfo = v
	case PropRequestResponseInfo:
		p.RequestResponseInfo = v
	case PropMaximumQoS:
		p.MaximumQoS = v
	case PropRetainAvailable:
		p.RetainAvailable = v
	case PropWildcardSubAvailable:
		p.WildcardSubAvailable = v
	case PropSubIDAvailable:
		p.SubIDAvailable = v
	case PropSharedSubAvailable:
		p.SharedSubAvailable = v
	}
}

func (p *Properties) boolean(id byte) byte {
	switch id {
	case PropPayloadFormat:
		return p.PayloadFormat
	case PropRequestProblemInfo:
		return p.RequestProblemInfo
	case PropRequestResponseInfo:
		return p.RequestResponseInfo
	case PropMaximumQoS:
		return p.MaximumQoS
	case PropRetainAvailable:
		return p.RetainAvailable
	case PropWildcardSubAvailable:
		return p.WildcardSubAvailable
	case PropSubIDAvailable:
		return p.SubIDAvailable
	case PropSharedSubAvailable:
		return p.SharedSubAvailable
	}
	return 0
}

// str returns the value of a string or binary property.
func (p *Properties) str(id byte) string {
	switch id {
	case PropContentType:
		return p.ContentType
	case PropResponseTopic:
		return p.ResponseTopic
	case PropAssignedClientID:
		return p.AssignedClientID
	case PropAuthMethod:
		return p.AuthMethod
	case PropResponseInfo:
		return p.ResponseInfo
	case PropServerReference:
		return p.ServerReference
	case PropReasonString:
		return p.ReasonString
	}
	return ""
}

func hasWildcard(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '+' || s[i] == '#' {
			return true
		}
	}
	return false
}

// present returns the properties to encode: the scalar, string and binary
// ones whose bit is set, plus User Property and Subscription Identifier
// when their slices are non-empty (their bits do not matter).
func (p *Properties) present() uint64 {
	m := p.Present &^ (bUserProperty | bSubscriptionID)
	if len(p.User) > 0 {
		m |= bUserProperty
	}
	if len(p.SubscriptionIDs) > 0 {
		m |= bSubscriptionID
	}
	return m
}

// size returns the encoded length of the properties, without the
// property-length prefix, and checks that they fit spec and the wire.
func (p *Properties) size(spec *propSpec) (int, error) {
	m := p.present()
	if bad := m &^ spec.allowed; bad != 0 {
		return 0, invalid("property 0x%02X not allowed in %s", bits.TrailingZeros64(bad), spec.name)
	}
	n := 0
	for r := m; r != 0; r &= r - 1 {
		id := byte(bits.TrailingZeros64(r))
		b := uint64(1) << id
		if booleanProps&b != 0 {
			if p.boolean(id) > 1 {
				return 0, invalid("property 0x%02X must be 0 or 1", id)
			}
			n += 2
			continue
		}
		switch id {
		case PropServerKeepAlive, PropTopicAliasMaximum:
			n += 3
		case PropReceiveMaximum, PropTopicAlias:
			if (id == PropReceiveMaximum && p.ReceiveMaximum == 0) || (id == PropTopicAlias && p.TopicAlias == 0) {
				return 0, invalid("property 0x%02X is 0", id)
			}
			n += 3
		case PropMessageExpiry, PropSessionExpiry, PropWillDelay:
			n += 5
		case PropMaximumPacketSize:
			if p.MaximumPacketSize == 0 {
				return 0, invalid("Maximum Packet Size 0")
			}
			n += 5
		case PropCorrelationData, PropAuthData:
			v := p.CorrelationData
			if id == PropAuthData {
				v = p.AuthData
			}
			if len(v) > maxString {
				return 0, ErrTooLong
			}
			n += 3 + len(v)
		case PropSubscriptionID:
			if len(p.SubscriptionIDs) > 1 && spec.multi&b == 0 {
				return 0, invalid("more than one Subscription Identifier in %s", spec.name)
			}
			for _, v := range p.SubscriptionIDs {
				if v == 0 || v > MaxVarInt {
					return 0, invalid("Subscription Identifier out of range")
				}
				n += 1 + VarIntSize(int(v))
			}
		case PropUserProperty:
			for _, u := range p.User {
				if len(u.Key) > maxString || len(u.Value) > maxString {
					return 0, ErrTooLong
				}
				n += 5 + len(u.Key) + len(u.Value)
			}
		default: // UTF-8 strings
			s := p.str(id)
			if len(s) > maxString {
				return 0, ErrTooLong
			}
			n += 3 + len(s)
		}
		if n > MaxVarInt {
			return 0, ErrTooLarge
		}
	}
	return n, nil
}

// append appends the property length n (from size) and the properties.
func (p *Properties) append(dst []byte, n int) []byte {
	dst = AppendVarInt(dst, n)
	for r := p.present(); r != 0; r &= r - 1 {
		id := byte(bits.TrailingZeros64(r))
		if booleanProps&(uint64(1)<<id) != 0 {
			dst = append(dst, id, p.boolean(id))
			continue
		}
		switch id {
		case PropServerKeepAlive:
			dst = binary.BigEndian.AppendUint16(append(dst, id), p.ServerKeepAlive)
		case PropTopicAliasMaximum:
			dst = binary.BigEndian.AppendUint16(append(dst, id), p.TopicAliasMaximum)
		case PropReceiveMaximum:
			dst = binary.BigEndian.AppendUint16(append(dst, id), p.ReceiveMaximum)
		case PropTopicAlias:
			dst = binary.BigEndian.AppendUint16(append(dst, id), p.TopicAlias)
		case PropMessageExpiry:
			dst = binary.BigEndian.AppendUint32(append(dst, id), p.MessageExpiry)
		case PropSessionExpiry:
			dst = binary.BigEndian.AppendUint32(append(dst, id), p.SessionExpiry)
		case PropWillDelay:
			dst = binary.BigEndian.AppendUint32(append(dst, id), p.WillDelay)
		case PropMaximumPacketSize:
			dst = binary.BigEndian.AppendUint32(append(dst, id), p.MaximumPacketSize)
		case PropCorrelationData:
			dst = appendString(append(dst, id), p.CorrelationData)
		case PropAuthData:
			dst = appendString(append(dst, id), p.AuthData)
		case PropSubscriptionID:
			for _, v := range p.SubscriptionIDs {
				dst = AppendVarInt(append(dst, id), int(v))
			}
		case PropUserProperty:
			for _, u := range p.User {
				dst = appendString(appendString(append(dst, id), u.Key), u.Value)
			}
		default:
			dst = appendString(append(dst, id), p.str(id))
		}
	}
	return dst
}

// appendString appends a two-byte length and s; len(s) was checked.
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, byte(len(s)>>8), byte(len(s)))
	return append(dst, s...)
}
