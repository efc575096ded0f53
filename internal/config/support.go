package config

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// This file holds the support.* section: the remote support channel (docs/remote-support.md),
// off unless the shop turns it on.

// Support configures the remote support channel.
type Support struct {
	ServiceBus SupportServiceBus `yaml:"servicebus"`
}

// SupportServiceBus configures answering the vendor's support requests, which arrive signed on
// a queue of the vendor's support namespace of Azure Service Bus; answers go to a reply queue.
type SupportServiceBus struct {
	// Enabled turns the channel on. Off by default: nothing is read nor answered.
	Enabled bool `yaml:"enabled"`
	// ConnectionString is the support namespace's, of a policy that may listen on Queue and
	// send to ReplyQueue; the form of ServiceBus.ConnectionString. Required when Enabled.
	ConnectionString Secret `yaml:"connection_string"`
	// Queue is where the vendor's support sends this server's requests. Required when Enabled.
	Queue string `yaml:"queue"`
	// ReplyQueue is where this server answers them. Required when Enabled.
	ReplyQueue string `yaml:"reply_queue"`
	// PublicKey is the vendor's Ed25519 public key that every request's signature must verify
	// with (ParseSupportKey). Not a secret: it cannot sign. Required when Enabled.
	PublicKey string `yaml:"public_key"`
	// Transport is as ServiceBus.Transport.
	Transport string `yaml:"transport"`
	// Allow says which kinds of request are answered; the others are dead-lettered.
	Allow SupportAllow `yaml:"allow"`
}

// SupportAllow holds, for each kind of support request, whether the shop allows it.
type SupportAllow struct {
	Ping        bool `yaml:"ping"`
	Diagnostics bool `yaml:"diagnostics"`
	Resync      bool `yaml:"resync"`
	RetryOutbox bool `yaml:"retry_outbox"`
}

// ParseSupportKey reads support.servicebus.public_key: an Ed25519 public key in base64, either
// the key's 32 bytes or the DER of its SubjectPublicKeyInfo, which is the text between the
// "BEGIN PUBLIC KEY" and "END PUBLIC KEY" lines that `openssl pkey -pubout` prints.
func ParseSupportKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimRight(s, "=")
	der, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64")
	}
	if len(der) == ed25519.PublicKeySize {
		return ed25519.PublicKey(der), nil
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("neither the 32 bytes of an Ed25519 key nor a public key's DER (%d bytes)", len(der))
	}
	k, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", pub)
	}
	return k, nil
}

// rfc8032TestKey is the public key of RFC 8032's first Ed25519 test vector, in hexadecimal: the
// worked example of docs/remote-support.md signs with it, and its private key is published.
const rfc8032TestKey = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"

// maxSupportKeyLen bounds support.servicebus.public_key; an Ed25519 key's DER is 60 characters.
const maxSupportKeyLen = 256

func (v *validator) support(s SupportServiceBus, shop Shop) {
	const p = "support.servicebus."
	v.connectionString(p+"connection_string", p+"enabled", s.ConnectionString, s.Enabled,
		"the vendor gives the connection string of the support namespace")
	queues := map[string]string{p + "queue": s.Queue, p + "reply_queue": s.ReplyQueue}
	for _, key := range []string{p + "queue", p + "reply_queue"} {
		switch q := queues[key]; {
		case q == "" && s.Enabled:
			v.add(key, `""`, "missing; required when "+p+"enabled is true: the vendor names the support queues of the shop")
		case q != "" && (len(q) > maxQueueLen || !isQueueName(q)):
			v.add(key, quote(q), fmt.Sprintf("want 1 to %d letters, digits, '.', '_', '/' or '-'", maxQueueLen))
		}
	}
	if s.Queue != "" && strings.EqualFold(s.Queue, s.ReplyQueue) {
		v.add(p+"reply_queue", quote(s.ReplyQueue), "same queue as "+p+"queue; answers need a queue of their own")
	}
	switch k := s.PublicKey; {
	case k == "" && s.Enabled:
		v.add(p+"public_key", `""`, "missing; required when "+p+"enabled is true: the vendor's Ed25519 public key, which every request must be signed with")
	case len(k) > maxSupportKeyLen:
		v.add(p+"public_key", quote(truncate(k, 40)), fmt.Sprintf("longer than %d characters; want an Ed25519 public key in base64", maxSupportKeyLen))
	case k != "":
		pub, err := ParseSupportKey(k)
		switch {
		case err != nil:
			v.add(p+"public_key", quote(k), err.Error()+`; want an Ed25519 public key in base64: its 32 bytes, or the line between "BEGIN PUBLIC KEY" and "END PUBLIC KEY" of openssl pkey -pubout`)
		case hex.EncodeToString(pub) == rfc8032TestKey:
			v.add(p+"public_key", quote(k), "the test key of RFC 8032 used in remote-support.md's worked example, whose private key is published: anyone could sign requests; want the vendor's key")
		}
	}
	v.transport(p+"transport", s.Transport)
	if s.Enabled && shop.ID == "" {
		v.add("shop.id", `""`, "missing; required when "+p+"enabled is true: each support request names the shop it is meant for")
	}
}
