package main

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
)

// The spec's examples (MQTT 3.1.1 §2.2.3, Table 2.4) plus the values either side of each byte boundary.
var remainingLengthCases = []struct {
	n       int
	encoded []byte
}{
	{0, []byte{0x00}},
	{127, []byte{0x7F}},
	{128, []byte{0x80, 0x01}},
	{16_383, []byte{0xFF, 0x7F}},
	{16_384, []byte{0x80, 0x80, 0x01}},
	{2_097_151, []byte{0xFF, 0xFF, 0x7F}},
	{2_097_152, []byte{0x80, 0x80, 0x80, 0x01}},
	{268_435_455, []byte{0xFF, 0xFF, 0xFF, 0x7F}},
}

func TestRemainingLength(t *testing.T) {
	for _, c := range remainingLengthCases {
		got := appendRemainingLength(nil, c.n)
		if !bytes.Equal(got, c.encoded) {
			t.Errorf("encode %d = % x, want % x", c.n, got, c.encoded)
		}
		n, err := readRemainingLength(bytes.NewReader(c.encoded))
		if err != nil || n != c.n {
			t.Errorf("decode % x = %d, %v; want %d", c.encoded, n, err, c.n)
		}
	}
}

func TestRemainingLengthMalformed(t *testing.T) {
	_, err := readRemainingLength(bytes.NewReader([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0x01}))
	if !errors.Is(err, errMalformed) {
		t.Errorf("five-byte varint: err = %v, want errMalformed", err)
	}
	if _, err := readRemainingLength(bytes.NewReader([]byte{0x80})); err == nil {
		t.Error("truncated varint: no error")
	}
}

func TestEncodeConnect(t *testing.T) {
	got := encodeConnect("c", "u", "pw", 60)
	want := []byte{
		0x10, 20, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		4,     // protocol level 3.1.1
		0xC2,  // username, password, clean session
		0, 60, // keep alive
		0, 1, 'c', // client id
		0, 1, 'u', // username
		0, 2, 'p', 'w', // password
	}
	if !bytes.Equal(got, want) {
		t.Errorf("CONNECT\n got % x\nwant % x", got, want)
	}
}

// A token longer than 127 bytes needs a two-byte remaining length; readPacket must frame it back.
func TestConnectLongTokenFrames(t *testing.T) {
	token := string(bytes.Repeat([]byte{'t'}, 300))
	first, body, err := readPacket(bufio.NewReader(bytes.NewReader(encodeConnect("id", "u", token, 60))))
	if err != nil || first != pktConnect {
		t.Fatalf("readPacket: %#x, %v", first, err)
	}
	if !bytes.HasSuffix(body, []byte(token)) || body[len(body)-302] != 0x01 || body[len(body)-301] != 0x2C {
		t.Errorf("password not framed as a 300-byte string at the end of the body")
	}
}

func TestEncodeSubscribe(t *testing.T) {
	got := encodeSubscribe(7, "a/b", 0)
	want := []byte{0x82, 8, 0, 7, 0, 3, 'a', '/', 'b', 0}
	if !bytes.Equal(got, want) {
		t.Errorf("SUBSCRIBE\n got % x\nwant % x", got, want)
	}
}

func TestPublishRoundTrip(t *testing.T) {
	payload := bytes.Repeat([]byte{0xAB}, 200)
	for _, qos := range []byte{0, 1} {
		r := bufio.NewReader(bytes.NewReader(encodePublish("bench/stall", qos, 0xBEEF, payload)))
		first, body, err := readPacket(r)
		if err != nil {
			t.Fatal(err)
		}
		topic, id, got, err := decodePublish(first, body)
		wantID := uint16(0xBEEF) * uint16(qos)
		if err != nil || first != pktPublish|qos<<1 || topic != "bench/stall" || id != wantID || !bytes.Equal(got, payload) {
			t.Errorf("QoS %d: decodePublish = %#x %q id %#x, %d bytes, %v", qos, first, topic, id, len(got), err)
		}
	}
}

func TestDecodePublishQoS1PacketID(t *testing.T) {
	body := []byte{0, 1, 't', 0x12, 0x34, 'p'}
	topic, id, payload, err := decodePublish(0x32, body)
	if err != nil || topic != "t" || id != 0x1234 || string(payload) != "p" {
		t.Errorf("QoS 1 PUBLISH = %q, %#x, %q, %v", topic, id, payload, err)
	}
}

func TestAppendPuback(t *testing.T) {
	if got, want := appendPuback([]byte{1}, 0x1234), []byte{1, 0x40, 2, 0x12, 0x34}; !bytes.Equal(got, want) {
		t.Errorf("PUBACK = % x, want % x", got, want)
	}
}

func TestDecodePublishMalformed(t *testing.T) {
	for _, body := range [][]byte{{}, {0}, {0, 5, 'a'}} {
		if _, _, _, err := decodePublish(0x30, body); !errors.Is(err, errMalformed) {
			t.Errorf("body % x: err = %v, want errMalformed", body, err)
		}
	}
	if _, _, _, err := decodePublish(0x20, []byte{0, 0}); !errors.Is(err, errMalformed) {
		t.Errorf("CONNACK as PUBLISH: err = %v", err)
	}
}

func TestReadPacketRefusesHuge(t *testing.T) {
	hdr := appendRemainingLength([]byte{pktPublish}, maxPacket+1)
	if _, _, err := readPacket(bufio.NewReader(bytes.NewReader(hdr))); !errors.Is(err, errMalformed) {
		t.Errorf("oversized packet: err = %v, want errMalformed", err)
	}
}

func TestConnackCode(t *testing.T) {
	if code, err := connackCode(pktConnack, []byte{0, 5}); err != nil || code != 5 {
		t.Errorf("CONNACK code 5 = %d, %v", code, err)
	}
	if _, err := connackCode(pktSuback, []byte{0, 0}); err == nil {
		t.Error("SUBACK accepted as CONNACK")
	}
}

func TestParseStatTicks(t *testing.T) {
	// The command name may hold spaces and ')': fields are counted from the last ')'.
	stat := "1234 (mosq (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 3 0 99 1000 10"
	got, err := parseStatTicks(stat)
	if err != nil || got != 287 {
		t.Errorf("parseStatTicks = %d, %v; want 287", got, err)
	}
	if _, err := parseStatTicks("1234 (x) S 1"); err == nil {
		t.Error("short stat line: no error")
	}
}
