package backoffice

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
)

// TestTestMode sends test orders only to the test folder, marked TEST, and nothing to the
// production folder or the webhook; once in production, the other orders go to the folder and
// the webhook, and the test orders still never do.
func TestTestMode(t *testing.T) {
	ctx := context.Background()
	for _, format := range []string{config.ExportJSON, config.ExportCSV, config.ExportXML} {
		t.Run(format, func(t *testing.T) {
			db := openDB(t, "")
			e, srv := newERP(t, "")
			bo := config.BackOffice{
				Export:  config.BackOfficeExport{Dir: t.TempDir(), TestDir: t.TempDir(), Format: format},
				Webhook: config.BackOfficeWebhook{URL: srv.URL},
			}
			// An order taken in production earlier, then the shop is back in test mode.
			real1 := createOrder(t, db, false)
			tests := createOrders(t, db, 4, true)
			testAgent := agentFor(db, true, bo)
			if err := testAgent.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
			got, _ := readOrderFiles(t, bo.Export.TestDir)
			if len(got) != len(tests) {
				t.Fatalf("test folder has %d orders, want %d", len(got), len(tests))
			}
			for i, o := range got {
				if o.ID != tests[i].ID || !o.Test || !strings.HasPrefix(o.Note, TestNote) {
					t.Errorf("test order %d exported as %+v", tests[i].Number, o)
				}
				if want := TestNote + " " + tests[i].Note; tests[i].Note != "" && o.Note != want {
					t.Errorf("note %q, want %q", o.Note, want)
				}
			}
			if entries, _ := os.ReadDir(bo.Export.Dir); len(entries) != 0 {
				t.Fatalf("test mode wrote to the production folder: %v", entries)
			}
			if e.count() != 0 {
				t.Fatal("test mode posted to the webhook")
			}
			st := testAgent.Status()
			if st.Mode != config.ModeTest || len(st.Targets) != 1 || st.Targets[0].Name != storage.ExportTestFiles || st.Targets[0].Exported != 4 {
				t.Fatalf("test mode status %+v", st)
			}

			// Production.
			tests = append(tests, createOrder(t, db, true)) // e.g. a Service Bus order flagged test
			real2 := createOrders(t, db, 2, false)
			prod := agentFor(db, false, bo)
			if err := prod.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
			got, _ = readOrderFiles(t, bo.Export.Dir)
			posted := e.got()
			want := []string{real1.ID, real2[0].ID, real2[1].ID}
			for _, set := range [][]Order{got, posted} {
				if len(set) != len(want) {
					t.Fatalf("production got %d orders, want %d", len(set), len(want))
				}
				for i, o := range set {
					if o.ID != want[i] || o.Test || strings.HasPrefix(o.Note, TestNote) {
						t.Errorf("production order %d: %+v", i, o)
					}
				}
			}
			if again, _ := readOrderFiles(t, bo.Export.TestDir); len(again) != 4 {
				t.Fatalf("production wrote %d orders to the test folder", len(again))
			}
			for _, o := range tests {
				if n := countStage(t, db, o.ID, orders.StageExported); o.Number <= tests[3].Number && n != 1 || o.Number > tests[3].Number && n != 0 {
					t.Errorf("test order %d: %d exported entries", o.Number, n)
				}
			}
		})
	}
}

// TestTestModeWithoutTestFolder exports nothing at all.
func TestTestModeWithoutTestFolder(t *testing.T) {
	db := openDB(t, "")
	e, srv := newERP(t, "")
	dir := t.TempDir()
	createOrders(t, db, 2, true)
	createOrders(t, db, 1, false)
	a := agentFor(db, true, config.BackOffice{Export: config.BackOfficeExport{Dir: dir}, Webhook: config.BackOfficeWebhook{URL: srv.URL}})
	if err := a.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 || e.count() != 0 {
		t.Fatalf("exported in test mode: %v, %d posts", entries, e.count())
	}
	if st := a.Status(); len(st.Targets) != 0 {
		t.Fatalf("targets in test mode without a test folder: %+v", st.Targets)
	}
}

// TestZeroModeIsTest: a Shop left empty is test mode.
func TestZeroModeIsTest(t *testing.T) {
	db := openDB(t, "")
	dir := t.TempDir()
	createOrders(t, db, 1, false)
	a := New(Options{DB: db, Config: config.BackOffice{Export: config.BackOfficeExport{Dir: dir}}})
	if err := a.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("an agent without a mode exported to the production folder: %v", entries)
	}
}
