package integration

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// MQTT over WebSocket (subprotocol "mqtt", binary frames).

func connectWS(t *testing.T, b *testBroker, cp *paho.Connect) *v5Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	wc, resp, err := websocket.Dial(ctx, b.WSURL, &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatalf("websocket dial %s: %v", b.WSURL, err)
	}
	if resp.Body != nil {
		resp.Body.Close()
	}
	if wc.Subprotocol() != "mqtt" {
		t.Fatalf("negotiated subprotocol %q, want \"mqtt\"", wc.Subprotocol())
	}
	nc := websocket.NetConn(context.Background(), wc, websocket.MessageBinary)
	t.Cleanup(func() { nc.Close() })
	return connectV5With(t, b, cp, v5Opts{conn: nc})
}

func TestWebSocket(t *testing.T) {
	t.Parallel()
	b := startBroker(t)

	for _, qos := range []byte{0, 1, 2} {
		t.Run(fmt.Sprintf("tcp_to_ws_qos%d", qos), func(t *testing.T) {
			t.Parallel()
			topic := uniqueTopic("ws")
			ws := connectWS(t, b, &paho.Connect{ClientID: uniqueID("ws"), CleanStart: true})
			ws.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 2})
			tcp := connectV5(t, b, &paho.Connect{ClientID: uniqueID("tcp"), CleanStart: true})
			tcp.pub(topic, qos, false, "over the web")
			if m := ws.recvPayload(topic, "over the web"); m.QoS != qos {
				t.Errorf("QoS %d, want %d", m.QoS, qos)
			}
		})
		t.Run(fmt.Sprintf("ws_to_tcp_qos%d", qos), func(t *testing.T) {
			t.Parallel()
			topic := uniqueTopic("ws")
			tcp := connectV5(t, b, &paho.Connect{ClientID: uniqueID("tcp"), CleanStart: true})
			tcp.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 2})
			ws := connectWS(t, b, &paho.Connect{ClientID: uniqueID("ws"), CleanStart: true})
			ws.pub(topic, qos, false, "from the web")
			if m := tcp.recvPayload(topic, "from the web"); m.QoS != qos {
				t.Errorf("QoS %d, want %d", m.QoS, qos)
			}
		})
	}

	t.Run("large_payload_and_retained", func(t *testing.T) {
		t.Parallel()
		topic := uniqueTopic("wsbig")
		big := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB, many frames' worth
		tcp := connectV5(t, b, &paho.Connect{ClientID: uniqueID("tcp"), CleanStart: true})
		tcp.publish(&paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: big})
		ws := connectWS(t, b, &paho.Connect{ClientID: uniqueID("ws"), CleanStart: true})
		ws.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})
		m := ws.recv()
		if m.Topic != topic || !bytes.Equal(m.Payload, big) || !m.Retain {
			t.Fatalf("got %d bytes on %q retain=%v, want %d bytes retained", len(m.Payload), m.Topic, m.Retain, len(big))
		}
		ws.publish(&paho.Publish{Topic: topic, QoS: 2, Payload: big[:40000]})
		tcp.subscribe(paho.SubscribeOptions{Topic: topic + "/echo", QoS: 1})
		ws.pub(topic+"/echo", 1, false, "done")
		tcp.recvPayload(topic+"/echo", "done")
	})

	t.Run("v311_paho_mqtt_golang", func(t *testing.T) {
		t.Parallel()
		topic := uniqueTopic("ws3")
		tcp := connectV5(t, b, &paho.Connect{ClientID: uniqueID("tcp"), CleanStart: true})
		tcp.subscribe(paho.SubscribeOptions{Topic: topic, QoS: 1})

		opts := mqtt3.NewClientOptions().AddBroker(b.WSURL).SetClientID(uniqueID("ws3")).
			SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(waitTimeout)
		c := mqtt3.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatalf("3.1.1 over WebSocket: connect: %v", tok.Error())
		}
		defer c.Disconnect(100)
		if tok := c.Publish(topic, 1, false, "v311 via ws"); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatalf("3.1.1 over WebSocket: publish: %v", tok.Error())
		}
		tcp.recvPayload(topic, "v311 via ws")
	})

	t.Run("does_not_select_unknown_subprotocol", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		wc, _, err := websocket.Dial(ctx, b.WSURL, &websocket.DialOptions{Subprotocols: []string{"chat"}})
		if err != nil {
			return // refused at the handshake: fine
		}
		defer wc.CloseNow()
		if wc.Subprotocol() == "chat" {
			t.Fatal("broker agreed to an unknown WebSocket subprotocol")
		}
	})
}
