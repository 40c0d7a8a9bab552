// Package loadgen owns moat's MQTT load generator, the engine behind
// `moat bench`: it opens many client connections to any MQTT broker over
// tcp, tls, tls-psk, ws or wss, and measures connection rates (TCP + TLS
// handshake + CONNECT/CONNACK, optionally with session resumption, or held
// open to measure the broker's memory per idle connection), publish and
// delivery throughput and end-to-end latency (a timestamp in each payload,
// recorded in a log-bucket histogram).
//
// The client side is built to cost the broker's CPU, not its own: one
// reader goroutine per connection, writes coalesced in a bufio.Writer that
// is flushed when the connection would otherwise wait, PUBLISH packets
// encoded once per publisher and patched in place (timestamp, packet
// identifier), decode values reused, and no allocation per message in
// steady state. The MQTT codec is moat/internal/packet and TLS-PSK is
// moat/internal/tlspsk; there is no third-party MQTT client. For transport
// tls the generator can also use tlspsk's certificate mode, a lean TLS 1.3
// client (Config.TLSClient), because crypto/tls's client costs about as
// much CPU per handshake as the broker's side does.
//
// Every run is bounded in count and time (see MaxDuration), and by default
// targets loopback only.
package loadgen
