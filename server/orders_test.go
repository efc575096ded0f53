package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

func (f *fixture) order(t testing.TB, device, key, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/orders", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(headerIdempotencyKey, key)
	}
	if device == "" { // no credential at all
		rec := httptest.NewRecorder()
		f.raw.ServeHTTP(rec, req)
		return rec
	}
	req.Header.Set("Authorization", "Bearer "+f.device(t, device).Token)
	return f.do(t, req)
}

func decodeOrder(t testing.TB, rec *httptest.ResponseRecorder, status int) orderAnswer {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	var a orderAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestCreateOrderPricesFromCatalogAndIsIdempotent(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.TestMode = true })
	body := `{"lines":[{"product_id":"P0002","quantity":3},{"product_id":"P0010","quantity":1}],"note":"no onions","customer":{"name":"Ana"}}`
	rec := f.order(t, "pos-1", "key-1", body)
	a := decodeOrder(t, rec, http.StatusCreated)
	o := a.Order
	if o.Total != 3*200+1000 || o.Currency != "EUR" || o.Lines[1].Name != "Green tea" || o.Status != orders.StatusNew || !o.Test || o.DeviceID != f.device(t, "pos-1").DeviceID {
		t.Fatalf("order %+v", o)
	}
	if rec.Header().Get("Location") != "/api/v1/orders/"+o.ID {
		t.Fatalf("Location %q", rec.Header().Get("Location"))
	}
	if len(a.Ledger) != 2 || a.Ledger[0].Stage != orders.StageReceived || a.Ledger[1].Stage != orders.StageStored {
		t.Fatalf("ledger %+v", a.Ledger)
	}
	// A retry, even with other white space, gets the same order.
	again := f.order(t, "pos-1", "key-1", strings.ReplaceAll(body, ",", ", "))
	if b := decodeOrder(t, again, http.StatusOK); b.Order.ID != o.ID || again.Header().Get(headerReplayed) != "true" {
		t.Fatalf("retry made %s, first was %s", b.Order.ID, o.ID)
	}
	// A product of the order leaves the catalog: a retry still gets the order made the first
	// time, not a refusal to price it again.
	applyPage(t, f.db, cloudapi.Products, productsAge, deleteChange(cloudapi.Products, "P0010", 2))
	wantProblem(t, f.order(t, "pos-1", "key-new", body), http.StatusUnprocessableEntity, "unknown-product")
	again = f.order(t, "pos-1", "key-1", body)
	if b := decodeOrder(t, again, http.StatusOK); b.Order.ID != o.ID || b.Order.Total != o.Total || again.Header().Get(headerReplayed) != "true" {
		t.Fatalf("retry after the catalog changed: %s", again.Body)
	}
	wantProblem(t, f.order(t, "pos-1", "key-1", `{"lines":[{"product_id":"P0002","quantity":4}]}`), http.StatusConflict, "idempotency-conflict")
	if other := decodeOrder(t, f.order(t, "pos-2", "key-1", `{"lines":[{"product_id":"P0002","quantity":3}]}`), http.StatusCreated); other.Order.ID == o.ID || other.Order.Number != 2 {
		t.Fatalf("another device's key made %+v", other.Order)
	}
	list := decodeOK[struct {
		Items []orders.Order `json:"items"`
		Next  string         `json:"next"`
	}](t, f.get(t, "/api/v1/orders?limit=1"))
	if len(list.Items) != 1 || list.Items[0].Number != 2 || list.Next == "" {
		t.Fatalf("first page %+v", list)
	}
	second := decodeOK[struct {
		Items []orders.Order `json:"items"`
		Next  string         `json:"next"`
	}](t, f.get(t, "/api/v1/orders?limit=1&before="+list.Next))
	if len(second.Items) != 1 || second.Items[0].Number != 1 || second.Next != "" {
		t.Fatalf("second page %+v", second)
	}
	// Orders page backwards: after, the catalog lists' parameter, would give the first page
	// again for ever; a before that is no order id would give every order.
	wantProblem(t, f.get(t, "/api/v1/orders?limit=1&after="+list.Next), http.StatusBadRequest, "bad-parameter", "before")
	if again := decodeOK[struct {
		Items []orders.Order `json:"items"`
		Next  string         `json:"next"`
	}](t, f.get(t, "/api/v1/orders?limit=1&before=&after=")); again.Next != list.Next { // empty: the first page
		t.Fatalf("before and after empty: %+v, want the first page", again)
	}
	for _, before := range []string{"not-an-order-id", strings.Repeat("x", 5000), strings.ToUpper(list.Next)} {
		wantProblem(t, f.get(t, "/api/v1/orders?before="+before), http.StatusBadRequest, "bad-parameter", "before")
	}
	st, _ := f.db.OrderStats(t.Context())
	if st.OutboxPending != 2 {
		t.Fatalf("outbox pending %d, want 2", st.OutboxPending)
	}
}

// A customer sent with none of its fields is none (openapi.yaml): a retry that leaves it out, or
// sends its fields empty, is the same order, not an idempotency conflict.
func TestRetryWithoutAnEmptyCustomerIsTheSameOrder(t *testing.T) {
	f := newFixture(t)
	first := decodeOrder(t, f.order(t, "pos-1", "key-e", `{"lines":[{"product_id":"P0002","quantity":1}],"customer":{}}`), http.StatusCreated)
	for _, retry := range []string{`{"lines":[{"product_id":"P0002","quantity":1}]}`, `{"lines":[{"product_id":"P0002","quantity":1}],"customer":{"name":""}}`} {
		if b := decodeOrder(t, f.order(t, "pos-1", "key-e", retry), http.StatusOK); b.Order.ID != first.Order.ID {
			t.Fatalf("retry %s made %s, first was %s", retry, b.Order.ID, first.Order.ID)
		}
	}
	// A key stored by the version before, which hashed the {} as sent: its retry is that order.
	body := `{"lines":[{"product_id":"P0002","quantity":1}],"customer":{}}`
	sent, _ := json.Marshal(createOrderRequest{Lines: []orders.Wanted{{ProductID: "P0002", Quantity: 1}}, Customer: &orders.Customer{}})
	old, _, err := f.db.CreateOrder(t.Context(), storage.NewOrder{Order: orders.Order{Source: orders.SourceLAN, DeviceID: f.device(t, "pos-1").DeviceID,
		Status: orders.StatusNew, Currency: "EUR", Lines: []orders.Line{orders.NewLine("P0002", "Item 2", 1, 200)}, Total: 200},
		IdempotencyKey: "key-old", RequestHash: requestHash(sent)})
	if err != nil {
		t.Fatal(err)
	}
	if b := decodeOrder(t, f.order(t, "pos-1", "key-old", body), http.StatusOK); b.Order.ID != old.ID {
		t.Fatalf("retry of an order stored before made %s, want %s", b.Order.ID, old.ID)
	}
}

// An order without its Idempotency-Key, or whose JSON is not UTF-8, is refused with a problem that
// says exactly that; nothing is stored.
func TestOrderRefusalsNameTheCause(t *testing.T) {
	f := newFixture(t)
	missing := wantProblem(t, f.order(t, "pos", "", `{"lines":[{"product_id":"P0002","quantity":1}]}`), http.StatusBadRequest, "bad-parameter",
		"the Idempotency-Key header is required")
	if strings.Contains(strings.ToLower(missing.Title), "query") {
		t.Errorf("a missing header is titled %q", missing.Title)
	}
	// "Caf\xe9" as a Latin-1 till would send it: byte 0xe9 at offset 58.
	latin1 := "{\"lines\":[{\"product_id\":\"P0002\",\"quantity\":1}],\"note\":\"Caf\xe9\"}"
	wantProblem(t, f.order(t, "pos", "k-latin1", latin1), http.StatusBadRequest, "malformed-body",
		"not valid UTF-8: byte 0xe9 at offset 58")
	// A truncated sequence at the very end, and a UTF-16 surrogate encoded as UTF-8.
	wantProblem(t, f.order(t, "pos", "k-cut", `{"lines":[],"note":"`+"\xe2\x82"), http.StatusBadRequest, "malformed-body", "byte 0xe2 at offset 20")
	wantProblem(t, f.order(t, "pos", "k-surrogate", `{"note":"`+"\xed\xa0\x80"+`"}`), http.StatusBadRequest, "malformed-body", "byte 0xed at offset 9")
	if list, _ := f.db.ListOrders(t.Context(), storage.OrderFilter{Limit: 10}); len(list) != 0 {
		t.Fatalf("%d orders stored from refused requests", len(list))
	}
	// Valid UTF-8 beyond ASCII is kept as sent.
	o := decodeOrder(t, f.order(t, "pos", "k-utf8", `{"lines":[{"product_id":"P0002","quantity":1}],"note":"Café ☕"}`), http.StatusCreated)
	if o.Order.Note != "Café ☕" {
		t.Fatalf("note %q", o.Order.Note)
	}
}

func TestOrderBadInput(t *testing.T) {
	f := newFixture(t)
	ok := `{"lines":[{"product_id":"P0002","quantity":1}]}`
	wantProblem(t, f.order(t, "", "k", ok), http.StatusUnauthorized, "unauthorized", "device credential")
	wantProblem(t, f.order(t, "pos", "", ok), http.StatusBadRequest, "bad-parameter", "Idempotency-Key")
	wantProblem(t, f.order(t, "pos", "bad key", ok), http.StatusBadRequest, "bad-parameter", "visible ASCII")
	wantProblem(t, f.order(t, "pos", strings.Repeat("k", 129), ok), http.StatusBadRequest, "bad-parameter", "at most 128")
	for _, tc := range []struct{ body, slug, detail string }{
		{`{"lines":[]}`, "invalid-body", "at least one line"},
		{`{"lines":[{"product_id":"P0002","quantity":0}]}`, "invalid-body", "quantity"},
		{`{"lines":[{"product_id":"P0002","quantity":10000}]}`, "invalid-body", "quantity"},
		{`{"lines":[{"product_id":"","quantity":1}]}`, "invalid-body", "product_id"},
		{`{"lines":[{"product_id":"P0002","quantity":1}],"note":"` + strings.Repeat("x", 501) + `"}`, "invalid-body", "note"},
		{`{"lines":[{"product_id":"P0002","quantity":1}],"note":"bell\u0007"}`, "invalid-body", "control"},
		{`{"lines":[{"product_id":"P0002","quantity":1}],"price":1}`, "malformed-body", "unknown field"},
		{`{"lines":[{"product_id":"P0002","quantity":"1"}]}`, "malformed-body", "wrong type"},
		{`{"lines":`, "malformed-body", ""},
		{`{"lines":[{"product_id":"NOPE","quantity":1}]}`, "unknown-product", "NOPE"},
	} {
		wantProblem(t, f.order(t, "pos", "k-"+tc.slug, tc.body), map[string]int{"invalid-body": 400, "malformed-body": 400, "unknown-product": 422}[tc.slug], tc.slug, tc.detail)
	}
	wantProblem(t, f.get(t, "/api/v1/orders?status=lost"), http.StatusBadRequest, "bad-parameter", "status")
	wantProblem(t, f.get(t, "/api/v1/orders/nope"), http.StatusNotFound, "not-found")
}

func TestOrderStatusMovesForwardOnly(t *testing.T) {
	f := newFixture(t)
	o := decodeOrder(t, f.order(t, "pos", "k", `{"lines":[{"product_id":"P0002","quantity":1}]}`), http.StatusCreated).Order
	set := func(status string) *httptest.ResponseRecorder {
		return f.post(t, "/api/v1/orders/"+o.ID+"/status", "application/json", `{"status":"`+status+`"}`)
	}
	if a := decodeOrder(t, set("ready"), http.StatusOK); a.Order.Status != "ready" || a.Order.Version != 2 {
		t.Fatalf("after ready: %+v", a.Order)
	}
	if a := decodeOrder(t, set("ready"), http.StatusOK); a.Order.Version != 2 {
		t.Fatalf("repeating a status changed the order: %+v", a.Order)
	}
	wantProblem(t, set("new"), http.StatusConflict, "invalid-transition", "ready", "new")
	wantProblem(t, set("lost"), http.StatusBadRequest, "invalid-body", "lost")
	decodeOrder(t, set("completed"), http.StatusOK)
	wantProblem(t, set("cancelled"), http.StatusConflict, "invalid-transition")
	wantProblem(t, f.post(t, "/api/v1/orders/nope/status", "application/json", `{"status":"ready"}`), http.StatusNotFound, "not-found")
	a := decodeOrder(t, f.get(t, "/api/v1/orders/"+o.ID), http.StatusOK)
	var stages []string
	for _, e := range a.Ledger {
		stages = append(stages, e.Stage+":"+e.Detail)
	}
	if got := strings.Join(stages, ","); got != "received:from lan,stored:,status:new → ready,status:ready → completed" {
		t.Fatalf("ledger %s", got)
	}
}

// A status note is added to the order's note as a line of its own, once (a retry does not
// repeat it, and a note that is only part of a line is no repeat); the whole note is bounded;
// the note of a completed or cancelled order no longer changes, while asking again for its
// status with its note stays a no-op.
func TestOrderStatusNotes(t *testing.T) {
	f := newFixture(t)
	o := decodeOrder(t, f.order(t, "pos", "k", `{"lines":[{"product_id":"P0002","quantity":1}],"note":"table 4"}`), http.StatusCreated).Order
	set := func(status, note string) *httptest.ResponseRecorder {
		return f.post(t, "/api/v1/orders/"+o.ID+"/status", "application/json", `{"status":"`+status+`","note":"`+note+`"}`)
	}
	if a := decodeOrder(t, set("accepted", "4"), http.StatusOK); a.Order.Note != "table 4\n4" {
		t.Fatalf("a note that is part of a line was dropped: %q", a.Order.Note)
	}
	if a := decodeOrder(t, set("accepted", "4"), http.StatusOK); a.Order.Note != "table 4\n4" || a.Order.Version != 2 {
		t.Fatalf("a retried note: %q, version %d; want it once, version 2", a.Order.Note, a.Order.Version)
	}
	long := strings.Repeat("x", orders.MaxNoteRunes)
	for i := range 3 { // 8 + 3 × 501 characters: within 2,000
		decodeOrder(t, set("accepted", fmt.Sprint(i)+long[1:]), http.StatusOK)
	}
	wantProblem(t, set("accepted", "3"+long[1:]), http.StatusBadRequest, "invalid-body", "at most 2000")
	// Trimmed before it is checked, as the route says: a line end a till adds is no fault; a
	// tab inside is refused.
	if a := decodeOrder(t, set("accepted", `Table 9\r\n`), http.StatusOK); !strings.HasSuffix(a.Order.Note, "\nTable 9") {
		t.Fatalf("a note with a line end: %q", a.Order.Note)
	}
	wantProblem(t, set("accepted", "Table\\t9"), http.StatusBadRequest, "invalid-body", "control characters")
	decodeOrder(t, set("cancelled", " left at door "), http.StatusOK)
	if a := decodeOrder(t, set("cancelled", " left at door "), http.StatusOK); !strings.HasSuffix(a.Order.Note, "\nleft at door") {
		t.Fatalf("a retried cancellation, its note with spaces around: %q", a.Order.Note)
	}
	wantProblem(t, set("cancelled", "edited after"), http.StatusConflict, "invalid-transition", "its note can no longer change")

	// The note an order was created with is kept as the device sent it; a status note that is
	// one of its lines but for the spaces around is already there, and nothing is rewritten.
	o = decodeOrder(t, f.order(t, "pos", "k2", `{"lines":[{"product_id":"P0002","quantity":1}],"note":" table 4 \nno onions "}`), http.StatusCreated).Order
	if a := decodeOrder(t, set("accepted", "table 4"), http.StatusOK); a.Order.Note != " table 4 \nno onions " || a.Order.Version != 2 {
		t.Fatalf("a status note already a line of the order's note: %q, version %d", a.Order.Note, a.Order.Version)
	}
	if a := decodeOrder(t, set("ready", "no onions"), http.StatusOK); a.Order.Note != " table 4 \nno onions " {
		t.Fatalf("a status note already the last line of the order's note: %q", a.Order.Note)
	}
	if a := decodeOrder(t, set("ready", "paid"), http.StatusOK); a.Order.Note != " table 4 \nno onions \npaid" {
		t.Fatalf("a new line: %q", a.Order.Note)
	}
}

// A body that does not arrive whole (the device stalled past lan.read_timeout, or the
// connection was cut) is refused as such, not as malformed JSON, and the refusal does not quote
// the connection's addresses.
func TestBodyThatDoesNotArriveWhole(t *testing.T) {
	f := newFixture(t)
	req := httptest.NewRequest(http.MethodPost, "/api/v1/orders", iotest.ErrReader(errors.New("read tcp 192.0.2.10:80->192.0.2.20:51234: i/o timeout")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "k")
	rec := f.do(t, req)
	wantProblem(t, rec, http.StatusBadRequest, "malformed-request", "did not arrive whole")
	if strings.Contains(rec.Body.String(), "192.0.2") {
		t.Errorf("the refusal quotes the connection: %s", rec.Body)
	}
}

func TestOutboxAdmin(t *testing.T) {
	f := newFixture(t)
	decodeOrder(t, f.order(t, "pos", "k", `{"lines":[{"product_id":"P0002","quantity":1}]}`), http.StatusCreated)
	p, _ := f.db.PendingOutbox(t.Context(), 1)
	if err := f.db.CompleteOutbox(t.Context(), storage.OutboxResult{Rejected: map[string]string{p[0].Key: "store closed"}}); err != nil {
		t.Fatal(err)
	}
	list := decodeOK[struct {
		Items []storage.OutboxEntry `json:"items"`
	}](t, f.get(t, "/api/v1/admin/outbox/rejected"))
	if len(list.Items) != 1 || list.Items[0].LastError != "store closed" {
		t.Fatalf("rejected %+v", list)
	}
	decodeOK[map[string]any](t, f.post(t, "/api/v1/admin/outbox/1/retry", "", ""))
	wantProblem(t, f.post(t, "/api/v1/admin/outbox/1/retry", "", ""), http.StatusNotFound, "not-found")
	wantProblem(t, f.post(t, "/api/v1/admin/outbox/x/retry", "", ""), http.StatusBadRequest, "bad-parameter")
	if st, _ := f.db.OrderStats(t.Context()); st.OutboxPending != 1 || st.OutboxRejected != 0 {
		t.Fatalf("after retry %+v", st)
	}
}

// An order's events reach the cloud in the order they happened: once its creation is refused,
// its later changes are held back beside it, unsent, and a retry of the creation puts them back
// in the queue behind it (cloud-api.md). Retrying a later one first is refused, naming the
// earlier one.
func TestOutboxHoldsAnOrdersLaterEvents(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	o := decodeOrder(t, f.order(t, "pos", "k", `{"lines":[{"product_id":"P0002","quantity":1}]}`), http.StatusCreated).Order
	setStatus := func(status string) {
		t.Helper()
		decodeOrder(t, f.post(t, "/api/v1/orders/"+o.ID+"/status", "application/json", `{"status":"`+status+`"}`), http.StatusOK)
	}
	setStatus("preparing")
	p, _ := f.db.PendingOutbox(ctx, 10)
	if len(p) != 2 || p[0].Type != "order.created" || p[1].Type != "order.updated" {
		t.Fatalf("outbox %+v", p)
	}
	created, updated := p[0], p[1]
	// The cloud refuses the creation alone: the change queued after it must not go.
	if err := f.db.CompleteOutbox(ctx, storage.OutboxResult{Rejected: map[string]string{created.Key: "unknown product P0002"}}); err != nil {
		t.Fatal(err)
	}
	setStatus("ready") // a change made while the creation is refused is held back too
	if p, _ := f.db.PendingOutbox(ctx, 10); len(p) != 0 {
		t.Fatalf("sent after a refused creation: %+v", p)
	}
	list := decodeOK[struct {
		Items []storage.OutboxEntry `json:"items"`
	}](t, f.get(t, "/api/v1/admin/outbox/rejected"))
	if len(list.Items) != 3 || list.Items[2].LastError != "unknown product P0002" ||
		!strings.Contains(list.Items[0].LastError, fmt.Sprintf("held back, not sent: outbox entry %d", created.Seq)) {
		t.Fatalf("rejected %+v", list.Items)
	}

	wantProblem(t, f.post(t, fmt.Sprintf("/api/v1/admin/outbox/%d/retry", updated.Seq), "", ""), http.StatusConflict, "earlier-refused")
	retried := decodeOK[struct {
		Seq      int64  `json:"seq"`
		State    string `json:"state"`
		Requeued int64  `json:"requeued"`
	}](t, f.post(t, fmt.Sprintf("/api/v1/admin/outbox/%d/retry", created.Seq), "", ""))
	if retried.Requeued != 3 || retried.Seq != created.Seq || retried.State != "pending" {
		t.Fatalf("requeued %d, want the creation and its two changes", retried.Requeued)
	}
	p, _ = f.db.PendingOutbox(ctx, 10)
	if len(p) != 3 || p[0].Key != created.Key || p[1].Key != updated.Key || p[2].Type != "order.updated" || p[0].Attempts != 0 || p[0].LastError != "" {
		t.Fatalf("queued again %+v, want the creation first, as new", p)
	}
	stages := map[string]int{}
	for _, e := range decodeOrder(t, f.get(t, "/api/v1/orders/"+o.ID), http.StatusOK).Ledger {
		stages[e.Stage]++
	}
	if stages[orders.StageUploadRejected] != 1 || stages[orders.StageUploadHeld] != 2 || stages[orders.StageUploadRetry] != 3 {
		t.Fatalf("ledger stages %v", stages)
	}

	// Refused again, every entry set aside goes back with one call.
	if err := f.db.CompleteOutbox(ctx, storage.OutboxResult{Rejected: map[string]string{created.Key: "unknown product P0002"}}); err != nil {
		t.Fatal(err)
	}
	all := decodeOK[struct {
		Requeued int64 `json:"requeued"`
	}](t, f.post(t, "/api/v1/admin/outbox/retry", "", ""))
	if p, _ := f.db.PendingOutbox(ctx, 10); all.Requeued != 3 || len(p) != 3 || p[0].Key != created.Key {
		t.Fatalf("retry all: %d requeued, queue %+v", all.Requeued, p)
	}
}

// "customer": {} says nothing of a customer: the order has none, as the back office's export
// then says (null, not a customer with empty fields).
func TestOrderWithAnEmptyCustomerHasNone(t *testing.T) {
	f := newFixture(t)
	rec := f.order(t, "pos-1", "key-empty-customer", `{"lines":[{"product_id":"P0002","quantity":1}],"customer":{}}`)
	if a := decodeOrder(t, rec, http.StatusCreated); a.Order.Customer != nil || strings.Contains(rec.Body.String(), `"customer"`) {
		t.Fatalf("an order sent with an empty customer: %s", rec.Body)
	}
	rec = f.order(t, "pos-1", "key-customer", `{"lines":[{"product_id":"P0002","quantity":1}],"customer":{"phone":"+33 6 12 34 56 78"}}`)
	if a := decodeOrder(t, rec, http.StatusCreated); a.Order.Customer == nil || a.Order.Customer.Phone != "+33 6 12 34 56 78" {
		t.Fatalf("an order with a customer's phone: %s", rec.Body)
	}
}
