package testenv

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SBPeerOptions configure StartServiceBusPeer. The zero value gives one queue
// "orders" with Service Bus's defaults.
type SBPeerOptions struct {
	// Queues the peer serves (their dead-letter queues come with them).
	// Default: "orders". Names are case-insensitive, as on Service Bus.
	Queues []string
	// LockDuration is how long a peek-lock delivery stays locked before the
	// message is delivered again with its delivery count up by one.
	// Default 30s; millisecond resolution.
	LockDuration time.Duration
	// MaxDeliveryCount is the number of deliveries after which an abandoned
	// or expired message is dead-lettered (MaxDeliveryCountExceeded).
	// Default 10.
	MaxDeliveryCount int
	// TLSCert and TLSKey are PEM files. When set, the WebSocket listener
	// serves wss:// and an extra AMQPS listener (AMQPSAddr) is opened.
	TLSCert, TLSKey string
	// Verbose makes the peer log every delivery and management call; the
	// log is shown when the test fails.
	Verbose bool
}

// SBPeer is a running tools/sbpeer: an AMQP 1.0 peer that behaves like an
// Azure Service Bus namespace for a few queues, driven by the real
// azservicebus SDK in tests. Its control API (tools/sbpeer/README.md) is
// wrapped by the methods below, which fail the test on error and so must be
// called from the test's goroutine.
type SBPeer struct {
	amqpPort, wsPort, amqpsPort int
	tls                         bool
	control                     string // base URL of the control API
	client                      *http.Client
	log                         *Buffer
}

// SBMessage is a message to enqueue through the control API. The body is
// delivered as one AMQP data section, as the SDK's senders produce.
type SBMessage struct {
	MessageID   string
	Body        []byte
	ContentType string
	// ApplicationProperties values may be string, bool, integers (delivered
	// as int64) and floats (float64).
	ApplicationProperties map[string]any
	CorrelationID         string
	Subject               string
}

// SBQueueStats are the peer's counters for one queue.
type SBQueueStats struct {
	Active          int `json:"active"`    // available for delivery
	Locked          int `json:"locked"`    // delivered, lock held
	Deferred        int `json:"deferred"`  // deferred by the receiver
	Scheduled       int `json:"scheduled"` // scheduled, not enqueued yet
	DeadLettered    int `json:"deadLettered"`
	Completed       int `json:"completed"`
	Deliveries      int `json:"deliveries"` // transfers to receivers, redeliveries included
	Abandoned       int `json:"abandoned"`
	Released        int `json:"released"`
	LockExpirations int `json:"lockExpirations"`
	LockRenewals    int `json:"lockRenewals"`
	// ManagementSettlements counts settlements by lock token on the
	// $management link (update-disposition), which the SDK uses when the
	// receive link a message came on is gone.
	ManagementSettlements int `json:"managementSettlements"`
	Receivers             int `json:"receivers"` // receive links attached now
}

// SBDeadLetter is a message in a queue's dead-letter queue.
type SBDeadLetter struct {
	MessageID             string         `json:"messageId"`
	SequenceNumber        int64          `json:"sequenceNumber"`
	Body                  []byte         `json:"bodyBase64"`
	DeliveryCount         int            `json:"deliveryCount"` // failed attempts (AMQP header; the SDK reports one more)
	Reason                string         `json:"deadLetterReason"`
	Description           string         `json:"deadLetterErrorDescription"`
	ApplicationProperties map[string]any `json:"applicationProperties"`
}

// SBQueued is a message waiting in a queue (sent by a client, say), as the
// peer holds it.
type SBQueued struct {
	MessageID             string         `json:"messageId"`
	CorrelationID         string         `json:"correlationId"`
	Subject               string         `json:"subject"`
	ContentType           string         `json:"contentType"`
	SequenceNumber        int64          `json:"sequenceNumber"`
	Body                  []byte         `json:"bodyBase64"`
	ApplicationProperties map[string]any `json:"applicationProperties"`
}

// sbpeerStartTimeout bounds the peer's start (node loads in well under a second).
const sbpeerStartTimeout = 15 * time.Second

// args are the peer's command-line options for o.
func (o SBPeerOptions) args() []string {
	var args []string
	queues := o.Queues
	if len(queues) == 0 {
		queues = []string{"orders"}
	}
	for _, q := range queues {
		args = append(args, "--queue", q)
	}
	if o.LockDuration > 0 {
		ms := o.LockDuration.Milliseconds()
		if ms < 1 {
			ms = 1
		}
		args = append(args, "--lock-duration-ms", strconv.FormatInt(ms, 10))
	}
	if o.MaxDeliveryCount > 0 {
		args = append(args, "--max-delivery-count", strconv.Itoa(o.MaxDeliveryCount))
	}
	if o.TLSCert != "" {
		args = append(args, "--tls-cert", o.TLSCert, "--tls-key", o.TLSKey)
	}
	if o.Verbose {
		args = append(args, "--verbose")
	}
	return args
}

// StartServiceBusPeer starts node tools/sbpeer/peer.js on free ports of
// 127.0.0.1 and stops it when the test ends. It needs node (Require) and the
// peer's npm packages (scripts/install-test-deps.sh): without them the test
// is skipped, or failed under CI=true.
func StartServiceBusPeer(t testing.TB, o SBPeerOptions) *SBPeer {
	t.Helper()
	node, dir := NodeTool(t, "sbpeer", "rhea", "ws")
	if (o.TLSCert == "") != (o.TLSKey == "") {
		t.Fatalf("testenv: sbpeer: TLSCert and TLSKey go together")
	}

	args := append([]string{filepath.Join(dir, "peer.js"), "--exit-with-stdin"}, o.args()...)

	logBuf := &Buffer{}
	first := &firstLine{ch: make(chan string, 1), rest: logBuf}
	// The peer's stdin is a pipe this process holds open: should the test
	// binary die before its cleanup (killed, or its output cut off), the
	// pipe closes and the peer exits instead of lingering in its own
	// process group.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatalf("testenv: sbpeer: %v", err)
	}
	cmd := exec.Command(node, args...)
	cmd.Dir = dir
	cmd.Stdin = stdinR
	cmd.Stdout = first
	cmd.Stderr = logBuf
	cmd.WaitDelay = 2 * time.Second
	setProcessGroup(cmd)
	err = cmd.Start()
	stdinR.Close()
	if err != nil {
		stdinW.Close()
		t.Fatalf("testenv: sbpeer: start %s: %v", node, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Any failure of the test shows the peer's log, so the errors below
	// leave it out.
	t.Cleanup(func() {
		stopProcess(cmd, exited)
		stdinW.Close()
		if t.Failed() {
			t.Logf("testenv: sbpeer log:\n%s", logBuf.String())
		}
	})

	var line string
	timer := time.NewTimer(sbpeerStartTimeout)
	defer timer.Stop()
	select {
	case line = <-first.ch:
	case err := <-exited:
		exited <- err // for the cleanup's stopProcess
		t.Fatalf("testenv: sbpeer exited before listening: %v", err)
	case <-timer.C:
		t.Fatalf("testenv: sbpeer did not report its ports within %v", sbpeerStartTimeout)
	}
	var ports struct {
		AMQP, WS, AMQPS, Control int
		TLS                      bool
	}
	if err := json.Unmarshal([]byte(line), &ports); err != nil || ports.AMQP == 0 || ports.WS == 0 || ports.Control == 0 {
		t.Fatalf("testenv: sbpeer: bad ports line %q (%v)", line, err)
	}
	return &SBPeer{
		amqpPort:  ports.AMQP,
		wsPort:    ports.WS,
		amqpsPort: ports.AMQPS,
		tls:       ports.TLS,
		control:   fmt.Sprintf("http://127.0.0.1:%d", ports.Control),
		// No keep-alive: an idle pooled connection would outlive the test
		// as goroutines (goleak).
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		log:    logBuf,
	}
}

// repoRoot walks up from the working directory (a package's directory under
// go test) to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// firstLine hands the first line written to it to ch and everything else to
// rest.
type firstLine struct {
	mu   sync.Mutex // protects the fields below
	buf  []byte
	done bool
	ch   chan string
	rest io.Writer
}

func (f *firstLine) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return f.rest.Write(p)
	}
	f.buf = append(f.buf, p...)
	if i := bytes.IndexByte(f.buf, '\n'); i >= 0 {
		f.done = true
		f.ch <- string(f.buf[:i])
		if rest := f.buf[i+1:]; len(rest) > 0 {
			f.rest.Write(rest)
		}
		f.buf = nil
	}
	return len(p), nil
}

// ConnectionString is for azservicebus.NewClientFromConnectionString: plain
// AMQP (no TLS) to the peer's TCP port, in the form the SDK accepts for its
// development emulator. The key is not checked.
func (p *SBPeer) ConnectionString() string {
	return fmt.Sprintf("Endpoint=sb://127.0.0.1:%d;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true", p.amqpPort)
}

// WebSocketConnectionString names the WebSocket listener as the namespace,
// so that the URL the SDK hands ClientOptions.NewWebSocketConn
// ("wss://127.0.0.1:PORT/$servicebus/websocket") is the peer's when it
// serves TLS. Without TLS the dialer must use ws:// instead (WebSocketURL).
func (p *SBPeer) WebSocketConnectionString() string {
	return fmt.Sprintf("Endpoint=sb://127.0.0.1:%d;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true", p.wsPort)
}

// WebSocketURL is the peer's WebSocket endpoint: ws:// or, with TLS, wss://
// 127.0.0.1:PORT/$servicebus/websocket (subprotocol "amqp", binary messages).
func (p *SBPeer) WebSocketURL() string {
	scheme := "ws"
	if p.tls {
		scheme = "wss"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d/$servicebus/websocket", scheme, p.wsPort)
}

// AMQPAddr is the plain AMQP listener, "127.0.0.1:PORT".
func (p *SBPeer) AMQPAddr() string { return fmt.Sprintf("127.0.0.1:%d", p.amqpPort) }

// AMQPSAddr is the AMQP-over-TLS listener, "" unless TLSCert was given. Use
// it with a namespace connection string plus ClientOptions.CustomEndpoint
// and TLSConfig trusting the test CA.
func (p *SBPeer) AMQPSAddr() string {
	if p.amqpsPort == 0 {
		return ""
	}
	return fmt.Sprintf("127.0.0.1:%d", p.amqpsPort)
}

// Log returns what the peer has logged so far.
func (p *SBPeer) Log() string { return p.log.String() }

// Send enqueues msg on queue and returns its sequence number.
func (p *SBPeer) Send(t testing.TB, queue string, msg SBMessage) int64 {
	t.Helper()
	req := map[string]any{"bodyBase64": base64.StdEncoding.EncodeToString(msg.Body)}
	if msg.MessageID != "" {
		req["messageId"] = msg.MessageID
	}
	if msg.ContentType != "" {
		req["contentType"] = msg.ContentType
	}
	if msg.CorrelationID != "" {
		req["correlationId"] = msg.CorrelationID
	}
	if msg.Subject != "" {
		req["subject"] = msg.Subject
	}
	if len(msg.ApplicationProperties) > 0 {
		req["applicationProperties"] = msg.ApplicationProperties
	}
	var resp struct {
		SequenceNumber int64 `json:"sequenceNumber"`
	}
	p.call(t, http.MethodPost, "/queues/"+url.PathEscape(queue)+"/messages", req, &resp)
	return resp.SequenceNumber
}

// Stats returns queue's counters.
func (p *SBPeer) Stats(t testing.TB, queue string) SBQueueStats {
	t.Helper()
	var s SBQueueStats
	p.call(t, http.MethodGet, "/queues/"+url.PathEscape(queue), nil, &s)
	return s
}

// WaitStats polls queue's counters until cond holds, and returns them; the
// test fails if that takes longer than timeout.
func (p *SBPeer) WaitStats(t testing.TB, queue string, timeout time.Duration, cond func(SBQueueStats) bool) SBQueueStats {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := p.Stats(t, queue)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: sbpeer: queue %s: condition not met within %v; last stats %+v", queue, timeout, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// DeadLetters returns the messages in queue's dead-letter queue, by
// sequence number.
func (p *SBPeer) DeadLetters(t testing.TB, queue string) []SBDeadLetter {
	t.Helper()
	var out []SBDeadLetter
	p.call(t, http.MethodGet, "/queues/"+url.PathEscape(queue)+"/deadletter", nil, &out)
	return out
}

// Messages returns the messages in queue (not completed nor dead-lettered),
// by sequence number: what clients sent there and nobody took yet.
func (p *SBPeer) Messages(t testing.TB, queue string) []SBQueued {
	t.Helper()
	var out []SBQueued
	p.call(t, http.MethodGet, "/queues/"+url.PathEscape(queue)+"/messages", nil, &out)
	return out
}

// Completed returns the message ids completed on queue, in order.
func (p *SBPeer) Completed(t testing.TB, queue string) []string {
	t.Helper()
	var out []string
	p.call(t, http.MethodGet, "/queues/"+url.PathEscape(queue)+"/completed", nil, &out)
	return out
}

// DropConnections cuts every client connection at once, without an AMQP
// close (TCP closed, WebSockets terminated), as when the namespace goes away
// or the network drops; it returns how many there were. Locks survive, as on
// Service Bus, until they expire.
func (p *SBPeer) DropConnections(t testing.TB) int {
	t.Helper()
	var out struct {
		Dropped int `json:"dropped"`
	}
	p.call(t, http.MethodPost, "/faults", map[string]any{"drop": true}, &out)
	return out.Dropped
}

// DetachReceivers detaches every receive link with amqp:link:detach-forced
// while connections stay up, as Service Bus does on entity updates and idle
// links, and returns how many there were. Messages received on them keep
// their locks.
func (p *SBPeer) DetachReceivers(t testing.TB) int {
	t.Helper()
	var out struct {
		Detached int `json:"detached"`
	}
	p.call(t, http.MethodPost, "/faults", map[string]any{"detachReceivers": true}, &out)
	return out.Detached
}

// Refuse makes the peer close every new connection at once (on) or accept
// them again (off). Open connections are left alone; combine with
// DropConnections to take the namespace away.
func (p *SBPeer) Refuse(t testing.TB, on bool) {
	t.Helper()
	p.call(t, http.MethodPost, "/faults", map[string]any{"refuse": on}, nil)
}

// SBConnections counts the peer's client connections.
type SBConnections struct {
	Open int `json:"open"`
	// Accepted counts connections accepted since start, by listener: "tcp",
	// "ws", "wss", "amqps".
	Accepted map[string]int `json:"accepted"`
}

// Connections returns the connection counters, e.g. to check which
// listener a client came through.
func (p *SBPeer) Connections(t testing.TB) SBConnections {
	t.Helper()
	var c SBConnections
	p.call(t, http.MethodGet, "/connections", nil, &c)
	return c
}

// SBFaults are the peer's fault counters.
type SBFaults struct {
	Refusing bool `json:"refusing"`
	Refused  int  `json:"refused"` // connections closed at once because of Refuse
	Dropped  int  `json:"dropped"` // connections cut by DropConnections
}

// Faults returns the fault counters, e.g. to wait until a client has tried
// to reconnect while connections are refused.
func (p *SBPeer) Faults(t testing.TB) SBFaults {
	t.Helper()
	var f SBFaults
	p.call(t, http.MethodGet, "/faults", nil, &f)
	return f
}

func (p *SBPeer) call(t testing.TB, method, path string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatalf("testenv: sbpeer: %s %s: %v", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, p.control+path, body)
	if err != nil {
		t.Fatalf("testenv: sbpeer: %s %s: %v", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("testenv: sbpeer: %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatalf("testenv: sbpeer: %s %s: read: %v", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		t.Fatalf("testenv: sbpeer: %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("testenv: sbpeer: %s %s: decode %q: %v", method, path, data, err)
		}
	}
}
