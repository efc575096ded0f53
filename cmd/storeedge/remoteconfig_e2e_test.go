package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/tools/testenv"
)

// A Service Bus queue and a media container URL from the cloud that break their rules are not
// used (cloud-api.md): the status says why, never quoting the URL's secret, the log says why,
// and the shop asks the cloud again with backoff.
func TestUnusableRemoteValues(t *testing.T) {
	const secret = "sig=do-not-show-this"
	// An http:// container URL would send its SAS across the WAN in clear; the store id makes the
	// queue "orders-lyon 01", which has a space.
	cloud := startCloud(t, "-products", "50", "-store-id", "lyon 01",
		"-media-container-url", "http://blob.example.com/media?sv=2024-01-01&sp=rl&"+secret)
	s, media := mediaShop(t, t.TempDir(), cloud,
		"servicebus.enabled=true", "servicebus.queue=",
		"servicebus.connection_string=Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey=a2V5")
	type st struct {
		ServiceBus struct {
			State     string `json:"state"`
			Queue     string `json:"queue"`
			LastError string `json:"last_error"`
		} `json:"servicebus"`
		Media struct {
			State     string `json:"state"`
			LastError string `json:"last_error"`
		} `json:"media"`
	}
	var got st
	read := func() st {
		var out st
		s.get(t, "/api/v1/status", &out)
		return out
	}
	waitFor(t, s, "both reasons in the status", time.Minute, func() bool {
		got = read()
		return strings.Contains(got.ServiceBus.LastError, "cannot be used") && strings.Contains(got.Media.LastError, "cannot be used")
	})
	if !strings.Contains(got.ServiceBus.LastError, `"orders-lyon 01"`) || got.ServiceBus.Queue != "" {
		t.Errorf("servicebus status %+v: want the refused queue named, and no queue in use", got.ServiceBus)
	}
	if !strings.Contains(got.Media.LastError, "https") || got.Media.State != "not_configured" {
		t.Errorf("media status %+v: want not_configured, naming the https rule", got.Media)
	}
	waitFor(t, s, "the shop's catalog", time.Minute, func() bool { return s.caughtUp(t) })
	r := curl(t, s, media+"/api/v1/media/M0000001")
	if ra, _ := strconv.Atoi(r.headers.Get("Retry-After")); r.status != 503 || ra < 1 || !strings.Contains(string(r.body), "no usable media container") {
		t.Errorf("an item with no usable container: %d, Retry-After %q, %s", r.status, r.headers.Get("Retry-After"), r.body)
	}
	for _, where := range []string{got.Media.LastError, got.ServiceBus.LastError, string(r.body)} {
		if strings.Contains(where, "blob.example.com") || strings.Contains(where, secret) {
			t.Errorf("the status or the 503 quotes the container URL: %q", where)
		}
	}
	// Both ask again. Only these two read the configuration, and each failed reading for the
	// queue logs a line, so the readings beyond those lines are the media's (less one reading
	// for the queue that may not have logged yet).
	queueTries := func() int { return strings.Count(s.log.String(), "cannot learn the queue name yet") }
	waitFor(t, s, "the queue and the media container to be asked for again", time.Minute, func() bool {
		q := queueTries()
		return q >= 2 && cloud.configRequests(t)-int64(q) >= 3
	})
	logs := s.log.String()
	if strings.Contains(logs, secret) || strings.Contains(logs, "blob.example.com") {
		t.Error("the log quotes the container URL")
	}
	if n := cloud.configRequests(t); n > 40 {
		t.Errorf("%d readings of the remote configuration: no backoff", n)
	}
	s.stop(t)
}

// With cloud.sync false the shop contacts no cloud (configuration.md), Service Bus included:
// with servicebus.queue empty it does not ask the cloud which queue to use, and the status and
// the log say that no orders are received and what to set.
func TestNoCloudAskedForTheQueueWithSyncOff(t *testing.T) {
	cloud := startCloud(t, "-products", "10")
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url, sets: []string{
		"cloud.sync=false", "servicebus.enabled=true", "servicebus.queue=",
		"servicebus.connection_string=Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey=a2V5"}})
	var got struct {
		ServiceBus struct {
			State     string `json:"state"`
			LastError string `json:"last_error"`
		} `json:"servicebus"`
	}
	s.get(t, "/api/v1/status", &got)
	if got.ServiceBus.State != "disconnected" || !strings.Contains(got.ServiceBus.LastError, "set servicebus.queue") {
		t.Errorf("servicebus status %+v: want disconnected, saying to set servicebus.queue", got.ServiceBus)
	}
	s.waitLog(t, "servicebus: no orders are received", time.Minute)
	if n := cloud.stats(t).Requests; n != 0 {
		t.Errorf("the cloud received %d requests from a shop with cloud.sync false", n)
	}
}

// The queue the cloud names is asked for again when the namespace says it does not exist (the
// vendor moved the shop to another queue), and the status says why meanwhile.
func TestMissingQueueFromTheCloudIsAskedAgain(t *testing.T) {
	peer := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{Queues: []string{"orders"}})
	cloud := startCloud(t, "-products", "10", "-store-id", "lyon-02") // names the queue "orders-lyon-02"
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url, sets: []string{
		"servicebus.enabled=true", "servicebus.queue=", "servicebus.transport=amqp",
		"servicebus.connection_string=" + peer.ConnectionString()}})
	asked := func() int { return strings.Count(s.log.String(), "queue from the cloud's remote configuration") }
	type sb struct {
		State     string `json:"state"`
		Queue     string `json:"queue"`
		LastError string `json:"last_error"`
	}
	var got struct {
		ServiceBus sb `json:"servicebus"`
	}
	waitFor(t, s, "the cloud asked for the queue again, and the status saying why", time.Minute, func() bool {
		s.get(t, "/api/v1/status", &got)
		return asked() >= 2 && strings.Contains(s.log.String(), "the queue the cloud named does not exist; asking the cloud again") &&
			got.ServiceBus.State != "connected" && got.ServiceBus.Queue == "orders-lyon-02" && strings.Contains(got.ServiceBus.LastError, "not-found")
	})
	// The cloud fails while it is asked: the status says so too, beside the not-found error
	// (cloud-api.md).
	cloud.post(t, "/_sim/faults", map[string]any{"error_rate": 1}, nil)
	waitFor(t, s, "the status to say the cloud cannot be asked", time.Minute, func() bool {
		s.get(t, "/api/v1/status", &got)
		return got.ServiceBus.State == "connecting" && strings.Contains(got.ServiceBus.LastError, "waiting for the queue name from the cloud's remote configuration") &&
			strings.Contains(got.ServiceBus.LastError, "not-found")
	})
	s.stop(t)
}
