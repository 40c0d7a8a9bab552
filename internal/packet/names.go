package packet

import "strconv"

var typeNames = [16]string{
	CONNECT:     "CONNECT",
	CONNACK:     "CONNACK",
	PUBLISH:     "PUBLISH",
	PUBACK:      "PUBACK",
	PUBREC:      "PUBREC",
	PUBREL:      "PUBREL",
	PUBCOMP:     "PUBCOMP",
	SUBSCRIBE:   "SUBSCRIBE",
	SUBACK:      "SUBACK",
	UNSUBSCRIBE: "UNSUBSCRIBE",
	UNSUBACK:    "UNSUBACK",
	PINGREQ:     "PINGREQ",
	PINGRESP:    "PINGRESP",
	DISCONNECT:  "DISCONNECT",
	AUTH:        "AUTH",
}

// String returns the packet type's name as the specification spells it
// ("PUBLISH"), or "Type(n)" for a reserved or out-of-range value.
func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// reasonNames holds the MQTT 5.0 names (section 2.4). Code 0x00 is
// Success, Normal disconnection and Granted QoS 0 at once; it prints as
// "Success".
var reasonNames = [256]string{
	Success:                             "Success",
	GrantedQoS1:                         "Granted QoS 1",
	GrantedQoS2:                         "Granted QoS 2",
	DisconnectWithWill:                  "Disconnect with Will Message",
	NoMatchingSubscribers:               "No matching subscribers",
	NoSubscriptionExisted:               "No subscription existed",
	ContinueAuthentication:              "Continue authentication",
	ReAuthenticate:                      "Re-authenticate",
	UnspecifiedError:                    "Unspecified error",
	MalformedPacket:                     "Malformed Packet",
	ProtocolError:                       "Protocol Error",
	ImplementationSpecificError:         "Implementation specific error",
	UnsupportedProtocolVersion:          "Unsupported Protocol Version",
	ClientIdentifierNotValid:            "Client Identifier not valid",
	BadUserNameOrPassword:               "Bad User Name or Password",
	NotAuthorized:                       "Not authorized",
	ServerUnavailable:                   "Server unavailable",
	ServerBusy:                          "Server busy",
	Banned:                              "Banned",
	ServerShuttingDown:                  "Server shutting down",
	BadAuthenticationMethod:             "Bad authentication method",
	KeepAliveTimeout:                    "Keep Alive timeout",
	SessionTakenOver:                    "Session taken over",
	TopicFilterInvalid:                  "Topic Filter invalid",
	TopicNameInvalid:                    "Topic Name invalid",
	PacketIdentifierInUse:               "Packet Identifier in use",
	PacketIdentifierNotFound:            "Packet Identifier not found",
	ReceiveMaximumExceeded:              "Receive Maximum exceeded",
	TopicAliasInvalid:                   "Topic Alias invalid",
	PacketTooLarge:                      "Packet too large",
	MessageRateTooHigh:                  "Message rate too high",
	QuotaExceeded:                       "Quota exceeded",
	AdministrativeAction:                "Administrative action",
	PayloadFormatInvalid:                "Payload format invalid",
	RetainNotSupported:                  "Retain not supported",
	QoSNotSupported:                     "QoS not supported",
	UseAnotherServer:                    "Use another server",
	ServerMoved:                         "Server moved",
	SharedSubscriptionsNotSupported:     "Shared Subscriptions not supported",
	ConnectionRateExceeded:              "Connection rate exceeded",
	MaximumConnectTime:                  "Maximum connect time",
	SubscriptionIdentifiersNotSupported: "Subscription Identifiers not supported",
	WildcardSubscriptionsNotSupported:   "Wildcard Subscriptions not supported",
}

// String returns the reason code's name from the MQTT 5.0 specification
// ("Malformed Packet"), or "ReasonCode(0xNN)" for an undefined value.
func (c ReasonCode) String() string {
	if s := reasonNames[c]; s != "" {
		return s
	}
	const hex = "0123456789ABCDEF"
	return "ReasonCode(0x" + string([]byte{hex[c>>4], hex[c&15]}) + ")"
}
