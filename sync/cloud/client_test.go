package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/storeedge/storeedge/internal/cloudapi"
	"github.com/storeedge/storeedge/internal/cloudsim"
)

func TestUploadConfigAndErrors(t *testing.T) {
	sim := cloudsim.New(cloudsim.Options{Products: 5, StoreKey: "k", StoreID: "shop-9"})
	ts := httptest.NewServer(sim.Handler())
	defer ts.Close()
	c, err := New(ts.URL+"/", "k", ts.Client(), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ev := []cloudapi.Event{
		{Key: "order:1:created", Type: "order.created", At: "2026-11-23T10:00:00Z", Data: json.RawMessage(`{"id":"1"}`)},
		{Key: "order:2:created", Type: "order.created", At: "2026-11-23T10:00:00Z", Data: json.RawMessage(`[1]`)},
	}
	res, err := c.Upload(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Accepted) != 1 || res.Accepted[0] != "order:1:created" || len(res.Rejected) != 1 || res.Rejected[0].Reason == "" {
		t.Fatalf("first upload: %+v", res)
	}
	res, err = c.Upload(ctx, ev[:1])
	if err != nil || len(res.Duplicate) != 1 {
		t.Fatalf("retried upload: %+v %v", res, err)
	}
	cfg, err := c.Config(ctx)
	if err != nil || cfg.StoreID != "shop-9" || cfg.ServiceBus.Queue == "" {
		t.Fatalf("config: %+v %v", cfg, err)
	}

	if err := sim.SetFaults(cloudsim.Faults{UploadErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Upload(ctx, ev[:1])
	var ce *Error
	if !errors.As(err, &ce) || !ce.Retryable() || ce.Status != 503 {
		t.Fatalf("failing upload: %v", err)
	}
	bad, _ := New(ts.URL, "wrong", ts.Client(), "test")
	if _, err := bad.Config(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := New("ftp://cloud", "k", ts.Client(), "test"); err == nil {
		t.Fatal("ftp base URL accepted")
	}
}
