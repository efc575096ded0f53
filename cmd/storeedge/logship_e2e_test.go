package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/storeedge/storeedge/ops/logship"
	"github.com/storeedge/storeedge/ops/logship/logshiptest"
	"github.com/storeedge/storeedge/tools/testenv"
)

const e2eLogsKey = "e2e-logs-key-0123456789"

// logShipSets turns log shipping on, to in, through proxy.
func logShipSets(in *logshiptest.Intake, proxy string, extra ...string) []string {
	return append([]string{
		"logs.ship.enabled=true", "logs.ship.url=" + in.URL, "logs.ship.api_key=" + e2eLogsKey,
		"logs.ship.batch_interval=1s", "wan.proxy=" + proxy, "wan.extra_ca_file=" + in.CAFile,
	}, extra...)
}

func hasMessage(prefix string) func([]logshiptest.Record) bool {
	return func(recs []logshiptest.Record) bool {
		for _, r := range recs {
			if strings.HasPrefix(r.Message, prefix) {
				return true
			}
		}
		return false
	}
}

// TestLogShippingThroughProxy runs the daemon with log shipping on: its records reach the
// intake through the HTTP CONNECT proxy.
func TestLogShippingThroughProxy(t *testing.T) {
	cloud := startCloud(t, "-products", "20")
	in := logshiptest.Start(t, e2eLogsKey)
	proxy := "http://" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{})
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url, sets: logShipSets(in, proxy)})
	recs := in.Wait(t, "the daemon's start", time.Minute, hasMessage("storeedge: serving"))
	// The records of the start are shipped from the first: the shop's mode is the trace of a
	// shop going to production (README.md).
	if !hasMessage("shop mode: ")(recs) {
		t.Errorf("the shop's mode, logged as the database opens, was not shipped")
	}
	for _, r := range recs {
		if r.ServerID == "" || r.Version == "" || r.Seq == 0 {
			t.Fatalf("record without its origin: %+v", r)
		}
	}
	var st logStatus
	waitFor(t, s, "shipping in status", time.Minute, func() bool {
		s.get(t, "/api/v1/status", &st)
		return st.LogShipping != nil && st.LogShipping.Shipped > 0
	})
	if ls := st.LogShipping; ls.State != "ok" || !strings.Contains(ls.Route, "via") || ls.LastSuccess == nil {
		t.Errorf("logs_shipping in status: %+v", ls)
	}
	s.stop(t)

	off := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url})
	off.get(t, "/api/v1/status", &st)
	if st.LogShipping != nil {
		t.Errorf("shipping off, status shows %+v", st.LogShipping)
	}
	off.stop(t)
}

type logStatus struct {
	LogShipping *logship.Status `json:"logs_shipping"`
}

// A shop's customers, as devices and the web shop send them with orders.
var (
	lanCustomer = `{"name":"Zoë Martin-Lefèvre","phone":"+33 6 12 34 56 78","email":"zoe.martin@example.com"}`
	webCustomer = `{"name":"Jean-Baptiste Dupontel","phone":"+33 7 98 76 54 32","email":"jb.dupontel@example.org"}`
	lanNote     = "Ring twice, flat 4B"
	webNote     = "Leave it with the neighbour"
)

// erpEchoing is a back office whose webhook refuses every order and, as some do, echoes the
// order's customer in its answer.
func erpEchoing(t *testing.T) *httptest.Server {
	erp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var o struct {
			Customer json.RawMessage `json:"customer"`
		}
		json.NewDecoder(r.Body).Decode(&o)
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprintf(w, `{"error":"customer not in the ERP","customer":%s}`, o.Customer)
	}))
	t.Cleanup(erp.Close)
	return erp
}

// TestShippedLogHoldsNoSecret drives the daemon, shipping at level debug through a proxy with a
// password, through pairing (by code, by enrollment secret, a wrong code), orders with customer
// data from a device and from Service Bus (one invalid), a back office that echoes customers in
// its refusals, and errors that name the cloud's address; then it greps everything the intake
// received for every configured secret, the credentials handed out, and every customer field.
func TestShippedLogHoldsNoSecret(t *testing.T) {
	const (
		proxyPass  = "Pr0xy-Passw0rd-42"
		hookSecret = "whsec_W3bh00k-S3cret"
		sbKey      = "c2Itc2hhcmVkLWFjY2Vzcy1rZXk="
	)
	peer := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{})
	sbConn := strings.Replace(peer.ConnectionString(), "SharedAccessKey=v", "SharedAccessKey="+sbKey, 1)
	cloud := startCloud(t, "-products", "20")
	in := logshiptest.Start(t, e2eLogsKey)
	proxy := "http://shop:" + proxyPass + "@" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{BasicAuthUser: "shop", BasicAuthPass: proxyPass})
	erp := erpEchoing(t)
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url, sets: logShipSets(in, proxy,
		"logs.ship.level=debug", "log.level=debug", "shop.mode=production",
		"servicebus.enabled=true", "servicebus.connection_string="+sbConn, "servicebus.queue=orders", "servicebus.transport=amqp",
		"backoffice.webhook.url="+erp.URL, "backoffice.webhook.secret="+hookSecret, "backoffice.schedule=@every 1s")})
	waitFor(t, s, "first sync", time.Minute, func() bool { return s.caughtUp(t) })

	handedOut := pairEveryWay(t, s)
	orderWithCustomers(t, s, peer)
	in.Wait(t, "the ERP's refusals", time.Minute, func(recs []logshiptest.Record) bool { return count(recs, "backoffice: the ERP refused an order") >= 6 })
	// The cloud goes away while an order waits to be uploaded: errors name its address.
	cloud.stop()
	if _, _, _, err := s.postOrder("e2e", "after-cloud", "P0000001", 1); err != nil {
		t.Fatal(err)
	}
	in.Wait(t, "an upload error naming the cloud", time.Minute, func(recs []logshiptest.Record) bool {
		return slices.ContainsFunc(recs, func(r logshiptest.Record) bool {
			return strings.HasPrefix(r.Message, "outbox: upload failed") && strings.Contains(fmt.Sprint(r.Attrs["error"]), "127.0.0.1")
		})
	})
	var st logStatus
	waitFor(t, s, "the buffer sent", time.Minute, func() bool {
		s.get(t, "/api/v1/status", &st)
		return st.LogShipping.Buffered == 0
	})
	s.stop(t)

	raw := string(in.Raw())
	for _, want := range []string{"devices: paired", "pairing refused", "servicebus: order stored", "dead-lettered", "request", "/api/v1/orders"} {
		if !strings.Contains(raw, want) {
			t.Errorf("the intake never got %q: the test drove less than it says", want)
		}
	}
	secrets := map[string]string{
		"cloud.store_key": "e2e-key", "admin.token": e2eAdminToken, "devices.enrollment_secret": e2eEnrollment,
		"logs.ship.api_key": e2eLogsKey, "wan.proxy password": proxyPass, "backoffice.webhook.secret": hookSecret,
		"servicebus.connection_string": sbConn, "its SharedAccessKey": sbKey,
	}
	maps.Copy(secrets, handedOut)
	maps.Copy(secrets, customerFields())
	assertAbsent(t, raw, secrets)
}

// pairEveryWay pairs a device with a code an admin makes, one with the enrollment secret, and
// tries a wrong code; it returns the credentials that handed out, by what they are.
func pairEveryWay(t *testing.T, s *shop) map[string]string {
	t.Helper()
	var code struct {
		Code string `json:"code"`
	}
	resp, err := http.DefaultClient.Do(s.request(t, http.MethodPost, "/api/v1/admin/pairing-codes", nil))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&code)
	resp.Body.Close()
	pair := func(body string) (token string) {
		resp, err := http.Post(s.base+"/api/v1/devices/pair", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var creds struct {
			Token string `json:"token"`
		}
		json.NewDecoder(resp.Body).Decode(&creds)
		return creds.Token
	}
	tillToken := pair(fmt.Sprintf(`{"code":%q,"kind":"pos","name":"till-2"}`, code.Code))
	pair(`{"code":"0000-0000","kind":"pos","name":"rogue"}`)
	if code.Code == "" || tillToken == "" {
		t.Fatalf("pairing by code: code %q, token %q", code.Code, tillToken)
	}
	deviceToken, err := s.deviceToken("e2e")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"the pairing code": code.Code, "a device token": tillToken, "another device token": deviceToken}
}

// orderWithCustomers makes three orders with a customer on a device, and sends three, and one
// invalid, from the web shop over Service Bus.
func orderWithCustomers(t *testing.T, s *shop, peer *testenv.SBPeer) {
	t.Helper()
	for i := range 3 {
		body := fmt.Sprintf(`{"lines":[{"product_id":"P0000001","quantity":1}],"note":%q,"customer":%s}`, lanNote, lanCustomer)
		req := s.request(t, http.MethodPost, "/api/v1/orders", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprint("lan-", i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("order with a customer: %s", resp.Status)
		}
	}
	for i := range 3 {
		body := fmt.Sprintf(`{"order_id":"web-%d","created_at":"2026-11-23T10:00:00Z","currency":"EUR","lines":[{"product_id":"P0000001","name":"Tea","quantity":1,"unit_price":250}],"total":250,"note":%q,"customer":%s}`, i, webNote, webCustomer)
		peer.Send(t, "orders", testenv.SBMessage{MessageID: fmt.Sprint("m-", i), Body: []byte(body), ContentType: "application/json"})
	}
	peer.Send(t, "orders", testenv.SBMessage{MessageID: "m-bad", Body: []byte(`{"order_id":"web-bad","customer":` + webCustomer + `,"shipping_email":"jb.dupontel@example.org"}`)})
	peer.WaitStats(t, "orders", time.Minute, func(st testenv.SBQueueStats) bool { return st.Completed == 3 && st.DeadLettered == 1 })
}

// customerFields are the customers' names, surnames, telephone numbers (as written and as
// digits), e-mail addresses and the orders' notes, by what they are.
func customerFields() map[string]string {
	out := map[string]string{"order note": lanNote, "web order note": webNote}
	for _, c := range []string{lanCustomer, webCustomer} {
		var f struct{ Name, Phone, Email string }
		json.Unmarshal([]byte(c), &f)
		last := f.Name[strings.LastIndexByte(f.Name, ' ')+1:]
		out["customer name "+f.Name], out["customer surname "+last] = f.Name, last
		out["customer phone "+f.Phone] = f.Phone
		out["customer phone digits "+f.Phone] = strings.ReplaceAll(f.Phone[3:], " ", "")
		out["customer e-mail "+f.Email] = f.Email
	}
	return out
}

// assertAbsent fails for each value of secrets found in raw: as written, percent-encoded, or
// escaped in a JSON string.
func assertAbsent(t *testing.T, raw string, secrets map[string]string) {
	t.Helper()
	for what, v := range secrets {
		for _, form := range []string{v, url.QueryEscape(v), strings.Trim(strconv.Quote(v), `"`)} {
			if i := strings.Index(raw, form); i >= 0 {
				t.Errorf("the intake received %s: …%s…", what, raw[max(0, i-120):min(len(raw), i+len(form)+40)])
				break
			}
		}
	}
}

// count is how many records have a message starting with prefix.
func count(recs []logshiptest.Record, prefix string) int {
	n := 0
	for _, r := range recs {
		if strings.HasPrefix(r.Message, prefix) {
			n++
		}
	}
	return n
}

// TestLogShippingSurvivesKillAndFullBuffer runs the daemon with its intake down and a 1 MiB
// buffer, makes it log more than that, kills it with SIGKILL, and starts it again with the
// intake up: the records on disk at the kill all arrive, with their numbers; only the oldest,
// as many as the status counted as dropped, are missing.
func TestLogShippingSurvivesKillAndFullBuffer(t *testing.T) {
	cloud := startCloud(t, "-products", "5")
	in := logshiptest.Start(t, e2eLogsKey)
	in.Down()
	proxy := "socks5://" + testenv.StartDante(t)
	opts := shopOptions{dataDir: t.TempDir(), cloud: cloud.url, sets: logShipSets(in, proxy, "logs.ship.level=debug", "logs.ship.buffer_mb=1")}
	s := startShop(t, opts)
	// Each request is a DEBUG access-log record of about 400 bytes.
	var g errgroup.Group
	for w := range 8 {
		g.Go(func() error {
			for range 800 {
				resp, err := http.Get(s.base + "/healthz?worker=" + strconv.Itoa(w))
				if err != nil {
					return err
				}
				resp.Body.Close()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	var st, prev logStatus
	waitFor(t, s, "the records written and counted", time.Minute, func() bool {
		prev = st
		s.get(t, "/api/v1/status", &st)
		return prev.LogShipping != nil && *st.LogShipping == *prev.LogShipping && st.LogShipping.Dropped > 0
	})
	before := *st.LogShipping
	if before.State != "retrying" || before.BufferBytes > 1<<20 || before.Shipped != 0 {
		t.Fatalf("status with the intake down: %+v", before)
	}
	s.kill()
	killed := time.Now()

	in.Up(t)
	s = startShop(t, opts)
	in.Wait(t, "the records of the killed run", 2*time.Minute, func(recs []logshiptest.Record) bool {
		n := 0
		for _, seq := range seqsBefore(recs, killed) {
			if seq > 0 {
				n++
			}
		}
		return n >= int(before.Buffered)
	})
	first := seqsBefore(in.Records(), killed)
	var notices float64
	for _, r := range in.Records() {
		if r.Time.Before(killed) && strings.HasPrefix(r.Message, "logship: records dropped") {
			notices += r.Attrs["dropped"].(float64)
		}
	}
	t.Logf("at the kill: %d records buffered (%d bytes), %d dropped; after the restart %d of them arrived", before.Buffered, before.BufferBytes, before.Dropped, len(first))
	// The status requests of the test are logged too: a few records may follow the snapshot.
	if uint64(len(first)) < before.Buffered || uint64(notices) != before.Dropped {
		t.Errorf("%d records of the killed run arrived, %d buffered at the kill; notices count %v dropped, status %d",
			len(first), before.Buffered, notices, before.Dropped)
	}
	// The oldest went, as many as counted; the rest arrived without a gap.
	last := uint64(0)
	for seq := range first {
		last = max(last, seq)
		if seq <= before.Dropped {
			t.Errorf("record %d of the killed run arrived; the %d oldest were counted as dropped", seq, before.Dropped)
		}
	}
	for seq := before.Dropped + 1; seq <= last; seq++ {
		if first[seq] == 0 {
			t.Fatalf("record %d of the killed run is missing (dropped: the %d oldest)", seq, before.Dropped)
		}
	}
	s.stop(t)
}

// seqsBefore is the set of sequence numbers of the records logged before t.
func seqsBefore(recs []logshiptest.Record, t time.Time) map[uint64]uint64 {
	out := map[uint64]uint64{}
	for _, r := range recs {
		if r.Time.Before(t) {
			out[r.Seq] = r.Seq
		}
	}
	return out
}
