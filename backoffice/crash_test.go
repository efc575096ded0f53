package backoffice

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
)

const crashChildEnv = "BACKOFFICE_CRASH_CHILD"

// crashChild is the body of the process TestKill9 kills: it takes orders and exports them in
// small files and to the webhook, as fast as it can, until it is killed.
func crashChild() int {
	ctx := context.Background()
	db, err := storage.Open(ctx, os.Getenv("BO_DB"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	a := New(Options{DB: db, Shop: config.Shop{Mode: config.ModeProduction}, BatchSize: 3, ImportSettle: -1,
		Config: config.BackOffice{
			Export:  config.BackOfficeExport{Dir: os.Getenv("BO_DIR"), Format: config.ExportCSV},
			Webhook: config.BackOfficeWebhook{URL: os.Getenv("BO_HOOK"), Timeout: 5 * time.Second},
		}})
	for i := 0; ; i++ {
		o := orders.Order{Source: orders.SourceLAN, DeviceID: "pos-1", Status: orders.StatusNew, Currency: "EUR",
			Lines: []orders.Line{{ProductID: "P1", Name: "Tea", Quantity: 1, UnitPrice: 100, LineTotal: 100}}, Total: 100}
		if _, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: o, IdempotencyKey: fmt.Sprintf("%d-%d", os.Getpid(), i), RequestHash: "h"}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("order", i) // TestKill9 kills after a random number of these
		if i%2 == 1 {
			if err := a.RunOnce(ctx); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
}

// TestKill9 kills (SIGKILL on Unix) a process that exports orders, at random instants, ten times,
// then runs once more: each order is in the drop folder exactly once, nothing half written is
// left, and the webhook received every order, a repeat only ever with the same Idempotency-Key.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir, dbPath := t.TempDir(), filepath.Join(t.TempDir(), "shop.db")
	var mu sync.Mutex
	posts := map[string]int{} // idempotency key → POSTs
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		posts[r.Header.Get(HeaderIdempotencyKey)]++
		mu.Unlock()
	}))
	defer hook.Close()
	for i := 0; i < 10; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"=1", "BO_DB="+dbPath, "BO_DIR="+dir, "BO_HOOK="+hook.URL)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill it after a random number of orders, while it goes on with the next ones and
		// their export.
		lines := bufio.NewScanner(out)
		for range 1 + rand.IntN(40) {
			if !lines.Scan() {
				t.Fatalf("the child stopped before it was killed: %v", lines.Err())
			}
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil && cmd.ProcessState.Success() {
			t.Fatal(err)
		} else if cmd.ProcessState.Exited() {
			t.Fatalf("the child exited by itself: %v", cmd.ProcessState)
		}
	}
	db := openDB(t, dbPath)
	a := New(Options{DB: db, Shop: config.Shop{Mode: config.ModeProduction}, BatchSize: 3, ImportSettle: -1,
		Config: config.BackOffice{
			Export:  config.BackOfficeExport{Dir: dir, Format: config.ExportCSV},
			Webhook: config.BackOfficeWebhook{URL: hook.URL},
		}})
	if err := a.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	all, err := db.ListOrders(context.Background(), storage.OrderFilter{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 10 {
		t.Fatalf("%d orders after ten runs that each made at least one", len(all))
	}
	got, files := readOrderFiles(t, dir)
	seen := idsOnce(t, got)
	repeats := 0
	mu.Lock()
	defer mu.Unlock()
	for _, o := range all {
		if !seen[o.ID] {
			t.Errorf("order %d is in no file", o.Number)
		}
		if n := countStage(t, db, o.ID, orders.StageExported); n != 2 {
			t.Errorf("order %d: %d exported ledger entries, want 2 (file and webhook)", o.Number, n)
		}
		switch n := posts[IdempotencyKey(o.ID)]; {
		case n == 0:
			t.Errorf("order %d never reached the webhook", o.Number)
		case n > 1:
			repeats++
		}
	}
	if len(got) != len(all) || len(posts) != len(all) {
		t.Errorf("%d orders, %d in files, %d keys posted", len(all), len(got), len(posts))
	}
	t.Logf("%d orders in %d files; %d POSTs repeated after a kill, each with its key", len(all), len(files), repeats)
}
