package config

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
)

const supportSB = "c3VwcG9ydC5rZXk-S3CRET-support="

// supportKey is an Ed25519 public key (of the seed 32 × 0x07) in both accepted forms.
func supportKey(t *testing.T) (raw, spki string) {
	t.Helper()
	pub := ed25519.NewKeyFromSeed(make32(7)).Public().(ed25519.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(pub), base64.StdEncoding.EncodeToString(der)
}

func make32(b byte) []byte {
	s := make([]byte, 32)
	for i := range s {
		s[i] = b
	}
	return s
}

func supportOn(t *testing.T) Config {
	c := valid()
	_, spki := supportKey(t)
	c.Shop.ID = "lyon-01"
	c.Support.ServiceBus = SupportServiceBus{
		Enabled:          true,
		ConnectionString: Secret("Endpoint=sb://vendor-support.servicebus.windows.net/;SharedAccessKeyName=shop;SharedAccessKey=" + supportSB),
		Queue:            "support-lyon-01",
		ReplyQueue:       "support-replies",
		PublicKey:        spki,
		Transport:        TransportWebSockets,
		Allow:            SupportAllow{Ping: true},
	}
	return c
}

func TestSupportOffByDefault(t *testing.T) {
	c := valid()
	if s := c.Support.ServiceBus; s.Enabled || !s.Allow.Ping || !s.Allow.Diagnostics || s.Allow.Resync || s.Allow.RetryOutbox {
		t.Fatalf("defaults %+v: want off, allowing ping and diagnostics only", s)
	}
	c = supportOn(t)
	if err := c.Validate(); err != nil {
		t.Fatalf("channel on: %v", err)
	}
	raw, _ := supportKey(t)
	c.Support.ServiceBus.PublicKey = raw
	if err := c.Validate(); err != nil {
		t.Fatalf("the key as its 32 bytes: %v", err)
	}
}

func TestSupportRejects(t *testing.T) {
	raw, _ := supportKey(t)
	rsaDER := "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAL0=" // not a complete key: refused either way
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"on without anything", func(c *Config) {
			c.Support.ServiceBus = SupportServiceBus{Enabled: true, Transport: TransportWebSockets}
		},
			`support.servicebus.connection_string: "": missing; required when support.servicebus.enabled is true: the vendor gives the connection string of the support namespace ("Endpoint=sb://…"), or set STOREEDGE_SUPPORT_SERVICEBUS_CONNECTION_STRING` + "\n" +
				`support.servicebus.queue: "": missing; required when support.servicebus.enabled is true: the vendor names the support queues of the shop` + "\n" +
				`support.servicebus.reply_queue: "": missing; required when support.servicebus.enabled is true: the vendor names the support queues of the shop` + "\n" +
				`support.servicebus.public_key: "": missing; required when support.servicebus.enabled is true: the vendor's Ed25519 public key, which every request must be signed with`},
		{"no shop id", func(c *Config) { c.Shop.ID = "" },
			`shop.id: "": missing; required when support.servicebus.enabled is true: each support request names the shop it is meant for`},
		{"a key that is not base64", func(c *Config) { c.Support.ServiceBus.PublicKey = "not a key!" },
			`support.servicebus.public_key: "not a key!": not base64; want an Ed25519 public key in base64: its 32 bytes, or the line between "BEGIN PUBLIC KEY" and "END PUBLIC KEY" of openssl pkey -pubout`},
		{"a key cut short", func(c *Config) { c.Support.ServiceBus.PublicKey = raw[:40] },
			`support.servicebus.public_key: "` + raw[:40] + `": neither the 32 bytes of an Ed25519 key nor a public key's DER (30 bytes); want`},
		{"not an Ed25519 key", func(c *Config) { c.Support.ServiceBus.PublicKey = rsaDER },
			`support.servicebus.public_key: "` + rsaDER + `": neither the 32 bytes`},
		{"the worked example's key", func(c *Config) {
			c.Support.ServiceBus.PublicKey = "MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
		}, `support.servicebus.public_key: "MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=": the test key of RFC 8032`},
		{"one queue for both", func(c *Config) { c.Support.ServiceBus.ReplyQueue = "Support-Lyon-01" },
			`support.servicebus.reply_queue: "Support-Lyon-01": same queue as support.servicebus.queue; answers need a queue of their own`},
		{"a queue name with a space", func(c *Config) { c.Support.ServiceBus.Queue = "support lyon" },
			`support.servicebus.queue: "support lyon": want 1 to 260 letters, digits, '.', '_', '/' or '-'`},
		{"connection string without key", func(c *Config) {
			c.Support.ServiceBus.ConnectionString = "Endpoint=sb://vendor-support.servicebus.windows.net/;SharedAccessKeyName=shop"
		}, `support.servicebus.connection_string: "xxxxx": lacks SharedAccessKey (or SharedAccessSignature); want`},
		{"bad transport", func(c *Config) { c.Support.ServiceBus.Transport = "http" },
			`support.servicebus.transport: "http": want "websockets" (port 443, through wan.proxy) or "amqp"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := supportOn(t)
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "S3CRET") {
				t.Errorf("the error shows the connection string: %v", err)
			}
		})
	}
}

// The support namespace's key is a secret like the orders namespace's: log shipping and the
// support channel's answers look for it.
func TestSupportSecretValues(t *testing.T) {
	c := supportOn(t)
	got := c.SecretValues()
	if !slices.Contains(got, supportSB) || !slices.Contains(got, c.Support.ServiceBus.ConnectionString.Reveal()) {
		t.Fatalf("SecretValues does not hold the support connection string and its key")
	}
	if slices.Contains(got, c.Support.ServiceBus.PublicKey) {
		t.Fatal("the public key counts as a secret: it would be hidden for nothing")
	}
	if strings.Contains(c.Redacted(), "S3CRET") {
		t.Fatal("the configuration view shows the support connection string")
	}
}
