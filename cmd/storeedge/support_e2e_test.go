package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/ops/support"
	"github.com/storeedge/storeedge/tools/testenv"
)

// The support channel as a shop runs it: storeedge reaches the vendor's support namespace over
// AMQP over TLS WebSockets through the shop's HTTP proxy, answers signed requests on the reply
// queue with nothing secret in them, refuses a forged one, and shows all of it in the status.
func TestSupportChannelEndToEnd(t *testing.T) {
	certFile, keyFile, caFile, _ := testenv.TestCertWithCAFile(t)
	proxyLog := filepath.Join(t.TempDir(), "tinyproxy.log")
	proxy := testenv.StartTinyproxy(t, testenv.TinyproxyOptions{LogFile: proxyLog})
	const reqQueue, replyQueue, sbKey = "support-lyon-01", "support-replies", "c3VwcG9ydC1lMmUtUzNDUkVULWtleQ=="
	peer := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{TLSCert: certFile, TLSKey: keyFile, Queues: []string{reqQueue, replyQueue}})
	cloud := startCloud(t, "-products", "50")
	vendor := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	der, err := x509.MarshalPKIXPublicKey(vendor.Public())
	if err != nil {
		t.Fatal(err)
	}
	conn := strings.Replace(peer.WebSocketConnectionString(), "SharedAccessKey=v", "SharedAccessKey="+sbKey, 1)
	// The service's own file, named by --config: the doctor report a support request asks for
	// checks it, not the default path.
	cfgFile := filepath.Join(t.TempDir(), "shop.yaml")
	if err := os.WriteFile(cfgFile, []byte("shop:\n  name: \"Lyon Part-Dieu\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url, config: cfgFile, sets: []string{
		"server_id=storeedge-e2e", "shop.id=lyon-01",
		"wan.proxy=http://" + proxy, "wan.extra_ca_file=" + caFile,
		"support.servicebus.enabled=true", "support.servicebus.connection_string=" + conn,
		"support.servicebus.queue=" + reqQueue, "support.servicebus.reply_queue=" + replyQueue,
		"support.servicebus.public_key=" + base64.StdEncoding.EncodeToString(der), "support.servicebus.allow.resync=true",
	}})
	supportState := func() supportSection {
		var st struct {
			Support *supportSection `json:"support"`
		}
		s.get(t, "/api/v1/status", &st)
		if st.Support == nil {
			t.Fatalf("status has no support section\n%s", s.log)
		}
		return *st.Support
	}
	waitFor(t, s, "the support link", time.Minute, func() bool { return supportState().State == support.LinkConnected })

	now := time.Now().UTC().Truncate(time.Second)
	sign := func(key ed25519.PrivateKey, kind, id, collection string) []byte {
		b, err := support.Sign(key, support.Request{Kind: kind, ID: id, Shop: "lyon-01", Server: "storeedge-e2e",
			IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute), Args: support.Args{Collection: collection}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	peer.Send(t, reqQueue, testenv.SBMessage{MessageID: "m-diag", Body: sign(vendor, support.KindDiagnostics, "req-diag", "")})
	peer.Send(t, reqQueue, testenv.SBMessage{MessageID: "m-resync", Body: sign(vendor, support.KindResync, "req-resync", "prices")})
	forger := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32))
	peer.Send(t, reqQueue, testenv.SBMessage{MessageID: "m-forged", Body: sign(forger, support.KindRetryOutbox, "req-forged", "")})
	peer.WaitStats(t, reqQueue, 2*time.Minute, func(st testenv.SBQueueStats) bool { return st.Completed == 2 && st.DeadLettered == 1 })

	answers := map[string]support.Answer{}
	var bodies []string
	for _, m := range peer.Messages(t, replyQueue) {
		var a support.Answer
		if err := json.Unmarshal(m.Body, &a); err != nil {
			t.Fatalf("answer %s: %v", m.MessageID, err)
		}
		answers[m.CorrelationID], bodies = a, append(bodies, string(m.Body))
		t.Logf("answer to %s: %d bytes", m.CorrelationID, len(m.Body))
	}
	diag, _ := json.Marshal(answers["req-diag"].Result)
	for _, want := range []string{`"server_id":"storeedge-e2e"`, `connection_string: \"xxxxx\"`, `support: request received`,
		`"check":"support link support-replies"`, `"check":"quick_check","ok":true`, `"check":"configuration file ` + cfgFile + `"`} {
		if !strings.Contains(string(diag), want) {
			t.Errorf("diagnostics lacks %s:\n%.3000s", want, diag)
		}
	}
	if a := answers["req-resync"]; !a.OK || !strings.Contains(s.log.String(), "feed: collection to be read again from a snapshot, as asked") {
		t.Errorf("resync answered %+v\n%s", a, s.log)
	}
	// Every secret the shop was given: none leaves in an answer.
	for _, secret := range []string{sbKey, conn, "e2e-key", e2eAdminToken, e2eEnrollment} {
		for _, b := range bodies {
			if strings.Contains(b, secret) {
				t.Errorf("an answer shows the secret %q", secret)
			}
		}
	}
	if dl := peer.DeadLetters(t, reqQueue); len(dl) != 1 || dl[0].MessageID != "m-forged" || dl[0].Reason != support.ReasonForged {
		t.Errorf("dead letters %+v", dl)
	}
	st := supportState()
	if st.Answered != 2 || st.Refused != 1 || len(st.Recent) != 3 || st.Recent[0].Result != support.ReasonForged {
		t.Errorf("support status %+v", st)
	}
	if c := peer.Connections(t); c.Accepted["wss"] == 0 || c.Accepted["tcp"] != 0 {
		t.Errorf("connections %+v: want WebSockets only", c)
	}
	if b, _ := os.ReadFile(proxyLog); !strings.Contains(string(b), "CONNECT 127.0.0.1:") {
		t.Error("the proxy saw no tunnel: the support link did not go through the WAN dialer")
	}
	s.stop(t)
}

type supportSection struct {
	State    string            `json:"state"`
	Answered int64             `json:"answered"`
	Refused  int64             `json:"refused"`
	Recent   []support.Handled `json:"recent"`
}
