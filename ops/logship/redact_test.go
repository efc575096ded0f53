package logship

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Secret values as a configuration holds them.
var testSecrets = []string{
	"sk_live_St0reKey", // cloud.store_key
	"Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2Iua2V5+/=", // servicebus.connection_string
	"c2Iua2V5+/=",           // its SharedAccessKey
	"whsec_H00kSecret",      // backoffice.webhook.secret
	"adm-T0ken-0123456789",  // admin.token
	"enr-S3cret-0123456789", // devices.enrollment_secret
	"pr0xy-pass",            // the wan.proxy password
	testKey,                 // logs.ship.api_key
}

func TestTextRedactsConfiguredSecrets(t *testing.T) {
	r := NewRedactor(append(testSecrets, "abc")) // too short to look for
	for _, s := range testSecrets {
		for _, form := range []string{s, url.QueryEscape(s), url.PathEscape(s)} {
			in := "before " + form + " after, and again:" + form
			got := r.Text(in)
			if strings.Contains(got, form) || strings.Contains(got, s) {
				t.Errorf("Text(%q) = %q: the secret stays", in, got)
			}
			if !strings.HasPrefix(got, "before ") || !strings.Contains(got, " after") {
				t.Errorf("Text(%q) = %q: more than the secret went", in, got)
			}
		}
	}
	if got := r.Text("abc and abcd"); got != "abc and abcd" {
		t.Errorf("a 3-character secret was looked for: %q", got)
	}
}

func TestTextRedactsPatterns(t *testing.T) {
	r := NewRedactor(nil)
	for _, tc := range []struct{ in, want string }{
		{"nothing to see: order 42 stored in 3ms", "nothing to see: order 42 stored in 3ms"},
		{`Get "https://shop:pa55@proxy.lan:3128/x": EOF`, `Get "https://xxxxx@proxy.lan:3128/x": EOF`},
		{`Get "https://acct.blob.core.windows.net/media/a.jpg?sv=2024-05-04&se=2026-12-01&sp=r&sig=AbC%2Bdef%3D": 403`,
			`Get "https://acct.blob.core.windows.net/media/a.jpg?sv=2024-05-04&se=2026-12-01&sp=r&sig=xxxxx": 403`},
		{"https://x.example/cb?code=1234&state=ok", "https://x.example/cb?code=xxxxx&state=ok"},
		// A parameter the rule names alone in a text, without a word that opened it before.
		{"https://b.s3.amazonaws.com/a?X-Amz-Credential=AKIAEXAMPLE%2F2024&X-Amz-Date=1", "https://b.s3.amazonaws.com/a?X-Amz-Credential=xxxxx&X-Amz-Date=1"},
		{"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=Zm9vYmFy=",
			"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=xxxxx"},
		{"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5a2V5==;EndpointSuffix=core.windows.net",
			"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=xxxxx;EndpointSuffix=core.windows.net"},
		{"token SharedAccessSignature sr=sb%3a%2f%2fns&sig=Zm9v&se=1700000000&skn=root expired",
			"token SharedAccessSignature xxxxx expired"},
		{"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", "Authorization: Bearer xxxxx"},
		// A token too short for the Bearer rule: the header's rule takes the value after the scheme.
		{"Authorization: Bearer abc12", "Authorization: Bearer xxxxx"},
		{"authorization=basic dTpw", "authorization=basic xxxxx"},
		{"sent header Bearer 0123456789abcdef", "sent header Bearer xxxxx"},
		{"password=hunter22 user=bob", "password=xxxxx user=bob"},
		{`api_key: "k-123" and store_key=sk1`, `api_key: xxxxx and store_key=xxxxx`},
		{`HTTP 422: {"error":"duplicate","order":{"id":"o1","customer":{"name":"Zoë Martin","phone":"+33 6 12 34 56 78","email":"zoe@example.com"},"total":450}}`,
			`HTTP 422: {"error":"duplicate","order":{"id":"o1","customer":"xxxxx","total":450}}`},
		{`{"detail":"{\"email\":\"zoe@example.com\",\"note\":\"call me\"}"}`, `{"detail":"{\"email\":\"xxxxx\",\"note\":\"xxxxx\"}"}`},
		{`HTTP 422: {"error":"unknown","customer":{"name":"Zoë Martin","phone":"+33 6 1…`, `HTTP 422: {"error":"unknown","customer":"xxxxx"`},
		{`<order><customer><name>Zoë</name></customer></order>`, `<order><customer>xxxxx</customer></order>`},
		{`order {ID:o1 Customer:&{Name:Zoë Martin Phone:+33 1 Email:z@e.io} Total:450}`, `order {ID:o1 Customer:xxxxx Total:450}`},
		{"mail zoe.martin+shop@example.co.uk now", "mail xxxxx now"},
		{"call +33 6 12 34 56 78 or 06.12.34.56.78", "call xxxxx or xxxxx"},
		{"pairing code 4821-0937 typed", "pairing code xxxxx typed"},
		{"at 2026-11-23T10:00:00Z took 1.5s, 1000 rows", "at 2026-11-23T10:00:00Z took 1.5s, 1000 rows"},
		// Names that end in a credential's name, a customer object holding another, one with
		// attributes in XML, a customer given as a string, and keys that name credentials.
		{"refresh_token=RT1 client_secret=CS2 x_api_key: K3", "refresh_token=xxxxx client_secret=xxxxx x_api_key: xxxxx"},
		{`{"order":{"customer":{"name":"Jean Dupont","address":{"city":"Lyon"}},"total":4}}`, `{"order":{"customer":"xxxxx","total":4}}`},
		{`<customer id="7"><name>Jean Dupont</name></customer>`, `<customer>xxxxx</customer>`},
		{`{"customer":"Jean Dupont","pwd":"hunter2x","cookie":"s=1","address":"12 rue X","refresh_token":"RT"}`,
			`{"customer":"xxxxx","pwd":"xxxxx","cookie":"xxxxx","address":"xxxxx","refresh_token":"xxxxx"}`},
		{"2 tokens=5 left", "2 tokens=5 left"},
		// A customer object at any depth of nesting, in each form, and two in a text.
		{`422 {"order":{"id":"A1","customer":{"name":"Jean Dupont","address":{"street":"1 rue X","geo":{"lat":45.7}}},"total":4}}`,
			`422 {"order":{"id":"A1","customer":"xxxxx","total":4}}`},
		{`{"detail":"{\"note\":\"Ring twice, he said \\\"hi\\\" Jean Dupont\",\"id\":\"A1\"}"}`, `{"detail":"{\"note\":\"xxxxx\",\"id\":\"A1\"}"}`},
		{`{"detail":"{\"password\":\"ab\\\\\",\"customerName\":\"Jean Dupont\",\"id\":\"A1\"}"}`, `{"detail":"{\"password\":\"xxxxx\",\"customerName\":\"xxxxx\",\"id\":\"A1\"}"}`},
		{`{"detail":"{\"note\":\"C:\\\\orders\\\\\",\"address\":\"1 rue Victor Hugo\"}"}`, `{"detail":"{\"note\":\"xxxxx\",\"address\":\"xxxxx\"}"}`},
		{`{"detail":"{\"customer\":{\"name\":\"Jean Dupont\",\"a\":{\"b\":{\"c\":1}}},\"id\":\"A1\"}"}`,
			`{"detail":"{\"customer\":\"xxxxx\",\"id\":\"A1\"}"}`},
		{`{'customer': {'name': 'Jean Dupont', 'a': {'b': {'c': 1}}}, 'total': 4}`, `{'customer': 'xxxxx', 'total': 4}`},
		{`order {ID:o1 Customer:&{Name:Jean Dupont Address:{Street:1 rue X Geo:{Lat:45.7}}} Total:450}`, `order {ID:o1 Customer:xxxxx Total:450}`},
		{`[{"customer":{"n":{"x":"Jean"}}},{"customer":{"n":{"x":"Zoe"}}}] 2 orders`, `[{"customer":"xxxxx"},{"customer":"xxxxx"}] 2 orders`},
		// Braces and quotes inside the customer's strings, in each form.
		{`{"customer":{"name":"Jean} {Dupont \"le}\" \\","city":"Lyon"},"total":4}`, `{"customer":"xxxxx","total":4}`},
		{`{'customer': {'name': "Jean} O'Brien", 'n': 'a\'}'}, 'total': 4}`, `{'customer': 'xxxxx', 'total': 4}`},
		{`{"detail":"{\"customer\":{\"name\":\"Jean} \\\"le}\\\" \\\\\",\"n\":\"x\\n}\"},\"id\":\"A1\"}"}`,
			`{"detail":"{\"customer\":\"xxxxx\",\"id\":\"A1\"}"}`},
		{`order {ID:o1 Customer:&{Name:Jean O'Brien} Total:450}`, `order {ID:o1 Customer:xxxxx`},
		{`order {ID:o1 Customer:&{Name:Jean D'Arc Address:{Street:1 rue de l'Eglise Zip:69000} City:Lyon} Total:450}`, `order {ID:o1 Customer:xxxxx Total:450}`},
		{`orders [{ID:o1 Customer:&{Name:Jean D'Arc} Total:1} {ID:o2 Customer:&{Address:{Street:1 rue de l'Eglise} Name:Marie Curie} Total:2}]`,
			`orders [{ID:o1 Customer:xxxxx Total:2}]`},
		{`{"a":{"customer":{"ref":"{"},"b":{"customer":{"name":"x}}}","street":"12 Baker Street"}}}}`, `{"a":{"customer":"xxxxx"}}}`},
		// A person's data as other systems name it: camelCase, first and last names, single
		// quotes, key=value text, a number, and the 00 international prefix.
		{`HTTP 400: {"customerName":"Jean Dupont","first_name":"Jean","lastName":"Dupont","mobile":"612345678","Phone": 612345678}`,
			`HTTP 400: {"customerName":"xxxxx","first_name":"xxxxx","lastName":"xxxxx","mobile":"xxxxx","Phone": "xxxxx"}`},
		{`{'customer': {'name': 'Jean Dupont', 'tel': '06 12'}, 'total': 4}`, `{'customer': 'xxxxx', 'total': 4}`},
		{`{'email': 'jean@x.fr', 'mobilePhone': '612345678'}`, `{'email': 'xxxxx', 'mobilePhone': 'xxxxx'}`},
		{`refused: customerName=Jean email="jean dupont" tel=612345678`, `refused: customerName=xxxxx email=xxxxx tel=xxxxx`},
		{"call 0033 6 12 34 56 78 now", "call xxxxx now"},
		{`GET /erp/orders?first_name=Jean&last_name=Dupont, order.last_name=Dupont, "tel=0612345678"`,
			`GET /erp/orders?first_name=xxxxx&last_name=xxxxx, order.last_name=xxxxx, "tel=xxxxx"`},
		// What is not a person's data stays.
		{`listen address: 0.0.0.0:80, product name=Green tea, 1000 rows`, `listen address: 0.0.0.0:80, product name=Green tea, 1000 rows`},
		{`product Headphones: Sony WH-1000XM5, Smartphones: Apple, iPhone: 15 Pro`, `product Headphones: Sony WH-1000XM5, Smartphones: Apple, iPhone: 15 Pro`},
		{`dial tcp pos-mobile:8443: connection refused`, `dial tcp pos-mobile:8443: connection refused`},
		{`gtin=0033612345678 ean 00123456789012`, `gtin=0033612345678 ean 00123456789012`},
	} {
		if got := r.Text(tc.in); got != tc.want {
			t.Errorf("Text(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestSensitiveKeys(t *testing.T) {
	for key, want := range map[string]bool{
		"token": true, "Authorization": true, "device_token": true, "webhook_secret": true, "customer.name": true,
		"order.customer.phone": true, "email": true, "note": true, "pairing_code": true, "x.api_key": true,
		"name": false, "order_id": false, "key": false, "error": false, "customers_online": false, "answer": false,
		"customerName": true, "first_name": true, "lastname": true, "mobile": true, "mobilePhone": true, "tel": true,
		"product_name": false, "hostname": false, "headphones": false, "smartphone": false, "phone_model": false,
		"mobile_app_version": false, "email_queue": false,
	} {
		if got := sensitiveKey(key); got != want {
			t.Errorf("sensitiveKey(%q) = %v, want %v", key, got, want)
		}
	}
}

type order struct {
	ID       string    `json:"id"`
	Note     string    `json:"note"`
	Customer *customer `json:"customer"`
	Lines    []string  `json:"lines"`
}

type customer struct {
	Name, Phone, Email string
}

// A record carrying secrets and a customer's data in every place a record can: none of it is
// in the line written to the disk buffer, and the rest is.
func TestEncodedRecordHoldsNoSecret(t *testing.T) {
	r := NewRedactor(testSecrets)
	var got []entry
	h := &teeHandler{local: slog.DiscardHandler, s: &Shipper{o: Options{Level: slog.LevelDebug}, queue: make(chan entry, 10)}}
	log := slog.New(h).With("store_key", "sk_live_St0reKey").WithGroup("req")
	log.Error("upload to https://u:pr0xy-pass@cloud.example/v1?token=T0K failed with whsec_H00kSecret",
		slog.String("device_token", "dev.abcdef0123"),
		slog.Any("error", errors.New("dial: adm-T0ken-0123456789 refused")),
		slog.Any("order", order{ID: "o-77", Note: "leave at desk", Customer: &customer{"Zoë Martin", "+33 6 12 34 56 78", "zoe@example.com"}, Lines: []string{"tea"}}),
		slog.Group("customer", slog.String("name", "Zoë Martin")),
		slog.String("conn", testSecrets[1]),
		slog.Duration("retry_in", 2*time.Second), slog.Int("attempt", 3))
	got = append(got, <-h.s.queue)
	line := string(encodeLine(nil, got[0], Meta{ServerID: "se-1", Version: "v1"}, r))
	for _, leak := range append(testSecrets, "T0K", "dev.abcdef0123", "Zoë", "Martin", "+33", "zoe@", "leave at desk") {
		if strings.Contains(line, leak) {
			t.Errorf("the record holds %q:\n%s", leak, line)
		}
	}
	var rec struct {
		Level   string         `json:"level"`
		Message string         `json:"message"`
		Attrs   map[string]any `json:"attrs"`
	}
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, line)
	}
	o, _ := rec.Attrs["req.order"].(map[string]any)
	if rec.Level != "ERROR" || rec.Attrs["req.retry_in"] != "2s" || rec.Attrs["req.attempt"] != float64(3) || o["id"] != "o-77" ||
		!strings.HasPrefix(rec.Message, "upload to https://xxxxx@cloud.example/v1?token=xxxxx failed") {
		t.Errorf("more than the secrets went:\n%s", line)
	}
}

type nilError struct{ why string }

func (e *nilError) Error() string { return e.why }

// A typed nil among a log call's values (a nil *url.URL, a nil *T error) panics in its String or
// Error; slog's own handlers survive it, and so does the copy for shipping, which runs on the
// logging goroutine: the line is shipped, the value said to have panicked.
func TestTypedNilValuesAreShipped(t *testing.T) {
	h := &teeHandler{local: slog.DiscardHandler, s: &Shipper{o: Options{Level: slog.LevelDebug}, queue: make(chan entry, 10)}}
	var err *nilError
	slog.New(h).Warn("upload failed", slog.Any("url", (*url.URL)(nil)), slog.Any("error", error(err)), slog.Int("attempt", 2))
	e := <-h.s.queue
	got := map[string]any{}
	for _, f := range e.attrs {
		got[f.key] = f.val
	}
	if s, _ := got["url"].(string); !strings.HasPrefix(s, "!PANIC") || got["attempt"] != int64(2) {
		t.Fatalf("attributes %v", got)
	}
	if s, _ := got["error"].(string); !strings.HasPrefix(s, "!PANIC") {
		t.Fatalf("attributes %v", got)
	}
}

// What the intake says back is cut to 200 characters for the status, after its secrets are
// hidden: a key it echoes across the cut leaves none of its characters, and neither does one
// that 200 characters of several bytes each would have cut at the end of a shorter read.
func TestIntakeAnswerCutAfterRedaction(t *testing.T) {
	c := &client{redact: NewRedactor([]string{testKey})}
	resp := &http.Response{Status: "400 Bad Request", StatusCode: http.StatusBadRequest}
	for pad := 170; pad <= 400; pad++ {
		filler := strings.Repeat("x", pad)
		if pad > 200 { // characters of 3 bytes: 200 of them are more than any short read
			filler = strings.Repeat("€", pad-200)
		}
		text := filler + " " + testKey + " was sent" + strings.Repeat(".", 10<<10)
		got := c.describe(resp, readAnswer(strings.NewReader(text), c.redact))
		_, said, ok := strings.Cut(got, "400 Bad Request: ")
		if !ok {
			t.Fatalf("pad %d: %s", pad, got)
		}
		for n := 4; n <= len(testKey); n++ {
			if strings.Contains(said, testKey[:n]) {
				t.Fatalf("pad %d: the answer shows %q of the key: %s", pad, testKey[:n], got)
			}
		}
	}
	// Blanks, then the key cut by the read; the key again and again, each hidden shorter than
	// it is, the last cut by the read.
	long := strings.Repeat("k", 300)
	lc := &client{redact: NewRedactor([]string{testKey, long})}
	for _, text := range []string{
		strings.Repeat(" ", answerTextLimit-10) + testKey,
		strings.Repeat(long+" ", 40),
	} {
		got := lc.describe(resp, readAnswer(strings.NewReader(text), lc.redact))
		_, said, _ := strings.Cut(got, "400 Bad Request: ")
		if strings.Contains(said, testKey[:4]) || strings.Contains(said, "kkkk") {
			t.Errorf("the answer shows part of a key: %s", got)
		}
	}
}
