package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeedge/storeedge/discovery"
	"github.com/storeedge/storeedge/ops/logship"
	"github.com/storeedge/storeedge/ops/support"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/media"
	"github.com/storeedge/storeedge/sync/servicebus"
)

// metricsTimeout bounds one scrape: the database reads of the status sources among them.
const metricsTimeout = 10 * time.Second

// wanOK is WANStatus.State when the last pass of the feed reached the cloud (feed.StateOK);
// wanDisabled when the sync with the cloud is off (cloud.sync: false).
const (
	wanOK       = "ok"
	wanDisabled = "disabled"
)

// statusCollector reads, at each scrape, what the status page reports of the components: the
// values are the components' own (nothing is kept twice), and a component the daemon does not
// run has no series. Only cheap reads are made: in-memory state and indexed counts, never a
// count of a whole catalog table.
type statusCollector struct{ s *Server }

func gaugeDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descBuildInfo = gaugeDesc("storeedge_build_info", "Always 1; the version running is its label.", "version")
	descWANUp     = gaugeDesc("storeedge_wan_up", "1 when the last feed pass reached the cloud, 0 when it failed or none finished yet.")
	descDataAge   = gaugeDesc("storeedge_sync_data_age_seconds", "Time since the collection last caught up with the cloud; absent when it never did.", "collection")
	descSyncRows  = gaugeDesc("storeedge_sync_rows", "Live items of the collection held by the shop.", "collection")
	descSyncLag   = gaugeDesc("storeedge_sync_lag_changes", "The cloud's estimate of the changes of the collection still to fetch.", "collection")
	descSyncQuar  = gaugeDesc("storeedge_sync_quarantined_lines", "Feed lines of the collection set aside as malformed.", "collection")
	descSyncError = gaugeDesc("storeedge_sync_failing", "1 when the collection's last request failed and no page was applied since.", "collection")

	descOutboxDepth    = gaugeDesc("storeedge_outbox_depth", "Outbox entries (order changes, imported stock levels) waiting to be uploaded to the cloud.")
	descOutboxRejected = gaugeDesc("storeedge_outbox_rejected", "Outbox entries the cloud refused for good, and those of their orders held back behind them, waiting for an admin.")
	descOutboxOldest   = gaugeDesc("storeedge_outbox_oldest_age_seconds", "Age of the oldest outbox entry waiting for upload; 0 when none waits.")

	descSBConnected = gaugeDesc("storeedge_servicebus_connected", "1 while the Service Bus order link is connected.")
	descSBReceived  = counterDesc("storeedge_servicebus_received_total", "Messages delivered by Service Bus since start, each delivery counted (a redelivery too).")
	descSBStored    = counterDesc("storeedge_servicebus_stored_total", "Orders from Service Bus stored as new since start.")
	descSBDup       = counterDesc("storeedge_servicebus_duplicates_total", "Service Bus messages already stored (redeliveries) since start.")
	descSBDead      = counterDesc("storeedge_servicebus_dead_lettered_total", "Service Bus messages dead-lettered as unusable since start.")
	descSBAbandoned = counterDesc("storeedge_servicebus_abandoned_total", "Service Bus messages given back for redelivery after a local failure since start.")
	descSBReconn    = counterDesc("storeedge_servicebus_reconnects_total", "Reconnections of the Service Bus order link since start.")

	descDevices      = gaugeDesc("storeedge_devices", "Paired devices, by whether they are online (their push connection up, or a heartbeat in the last 90 s) or offline.", "state")
	descPushQueue    = gaugeDesc("storeedge_push_queue_depth", "Commands waiting to be pushed to, or acknowledged by, their devices.")
	descPushAnswers  = counterDesc("storeedge_push_acks_total", "Pushed commands the devices acknowledged (result=\"ack\") or refused (result=\"nack\") since start.", "result")
	descPushStuck    = counterDesc("storeedge_push_stuck_commands_total", "Commands found held back behind a connected device and written again since start; 0 unless something is wrong.")
	descDiscAnswers  = counterDesc("storeedge_discovery_answers_total", "UDP discovery datagrams sent since start: answers to probes (kind=\"answer\") and announcements (kind=\"announcement\").", "kind")
	descDiscReceived = counterDesc("storeedge_discovery_received_total", "UDP discovery datagrams received since start.")
	descDiscHellos   = counterDesc("storeedge_discovery_hellos_total", "Device hellos received over UDP discovery since start.")
	descDiscDrops    = counterDesc("storeedge_discovery_drops_total", "UDP discovery datagrams dropped unanswered since start, by reason.", "reason")
	descDiscMDNS     = gaugeDesc("storeedge_discovery_mdns_registered", "1 while the mDNS service is registered on at least one interface.")

	descMediaBytes    = gaugeDesc("storeedge_media_cache_bytes", "Bytes of verified media in the cache.")
	descMediaFiles    = gaugeDesc("storeedge_media_cache_files", "Verified media files in the cache.")
	descMediaQuota    = gaugeDesc("storeedge_media_cache_quota_bytes", "The media cache's quota (media.cache_max_bytes).")
	descMediaPending  = gaugeDesc("storeedge_media_pending_bytes", "Bytes of media still to fetch.")
	descMediaProblems = gaugeDesc("storeedge_media_problem_items", "Media items that cannot be cached now, by reason.", "reason")
	descMediaHits     = counterDesc("storeedge_media_hits_total", "Media requests answered from the cache since start.")
	descMediaMisses   = counterDesc("storeedge_media_misses_total", "Media requests that had to fetch the item from Blob storage first, or tried to, since start.")
	descMediaFetched  = counterDesc("storeedge_media_fetched_bytes_total", "Bytes downloaded from Blob storage since start, all attempts.")
	descMediaRate     = gaugeDesc("storeedge_media_fetch_rate_bytes_per_second", "Current download rate from Blob storage.")
	descMediaBlobUp   = gaugeDesc("storeedge_media_blob_up", "1 when the last contact with Blob storage worked, or none was needed since the start.")

	descLogsUp       = gaugeDesc("storeedge_logship_up", "1 when the log intake answered the last batch and took the key (logs.ship.enabled).")
	descLogsShipped  = counterDesc("storeedge_logship_shipped_records_total", "Log records the intake accepted since start.")
	descLogsBuffered = gaugeDesc("storeedge_logship_buffered_records", "Log records on disk waiting to be sent.")
	descLogsBuffer   = gaugeDesc("storeedge_logship_buffer_bytes", "Bytes of the log shipping buffer on disk.")
	descLogsDropped  = counterDesc("storeedge_logship_dropped_records_total", "Log records dropped since start (the disk buffer or the queue to it full, the disk failing a write, or damaged on disk).")
	descLogsRejected = counterDesc("storeedge_logship_rejected_records_total", "Log records the intake refused for good since start.")

	descSupportConnected = gaugeDesc("storeedge_support_connected", "1 while the remote support channel's link is connected (support.servicebus.enabled).")
	descSupportAnswered  = counterDesc("storeedge_support_answered_total", "Support requests answered since start.")
	descSupportRefused   = counterDesc("storeedge_support_refused_total", "Support requests refused (forged, expired, not allowed…) and dead-lettered since start.")

	descAlertsOpen   = gaugeDesc("storeedge_alerts_open", "Open alerts, by rule (absent: not open).", "rule")
	descAlertsQueued = gaugeDesc("storeedge_alerts_queued_mails", "Alert e-mails waiting to be sent.")
)

// counterDesc describes a counter; the names end in _total.
func counterDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var statusDescs = []*prometheus.Desc{
	descBuildInfo, descWANUp, descDataAge, descSyncRows, descSyncLag, descSyncQuar, descSyncError,
	descOutboxDepth, descOutboxRejected, descOutboxOldest,
	descSBConnected, descSBReceived, descSBStored, descSBDup, descSBDead, descSBAbandoned, descSBReconn,
	descDevices, descPushQueue, descPushAnswers, descPushStuck,
	descDiscAnswers, descDiscReceived, descDiscHellos, descDiscDrops, descDiscMDNS,
	descMediaBytes, descMediaFiles, descMediaQuota, descMediaPending, descMediaProblems, descMediaHits, descMediaMisses, descMediaFetched, descMediaRate, descMediaBlobUp,
	descLogsUp, descLogsShipped, descLogsBuffered, descLogsBuffer, descLogsDropped, descLogsRejected,
	descSupportConnected, descSupportAnswered, descSupportRefused,
	descAlertsOpen, descAlertsQueued,
}

func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range statusDescs {
		ch <- d
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), metricsTimeout)
	defer cancel()
	s := c.s
	emit := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	fail := func(d *prometheus.Desc, err error) { ch <- prometheus.NewInvalidMetric(d, err) }
	emit(descBuildInfo, prometheus.GaugeValue, 1, s.o.Version)
	c.collectSync(ctx, emit)
	if pending, rejected, oldest, err := s.o.DB.OutboxBacklog(ctx); err != nil {
		fail(descOutboxDepth, err)
	} else {
		age := 0.0
		if oldest != nil {
			age = max(s.now().Sub(*oldest).Seconds(), 0)
		}
		emit(descOutboxDepth, prometheus.GaugeValue, float64(pending))
		emit(descOutboxRejected, prometheus.GaugeValue, float64(rejected))
		emit(descOutboxOldest, prometheus.GaugeValue, age)
	}
	c.collectServiceBus(emit)
	if err := c.collectDevices(ctx, emit); err != nil {
		fail(descPushQueue, err)
	}
	c.collectDiscovery(emit)
	if err := c.collectMedia(ctx, emit); err != nil {
		fail(descMediaBytes, err)
	}
	if err := c.collectAlerts(ctx, emit); err != nil {
		fail(descAlertsOpen, err)
	}
	c.collectRemote(emit)
}

// collectRemote reports the optional channels to the vendor: log shipping and remote support.
func (c statusCollector) collectRemote(emit emitFunc) {
	if c.s.o.LogShipping != nil {
		st := c.s.o.LogShipping()
		emit(descLogsUp, prometheus.GaugeValue, boolValue(st.State == logship.StateOK))
		emit(descLogsShipped, prometheus.CounterValue, float64(st.Shipped))
		emit(descLogsBuffered, prometheus.GaugeValue, float64(st.Buffered))
		emit(descLogsBuffer, prometheus.GaugeValue, float64(st.BufferBytes))
		emit(descLogsDropped, prometheus.CounterValue, float64(st.Dropped))
		emit(descLogsRejected, prometheus.CounterValue, float64(st.Rejected))
	}
	if c.s.o.Support != nil {
		st := c.s.o.Support()
		emit(descSupportConnected, prometheus.GaugeValue, boolValue(st.State == support.LinkConnected))
		emit(descSupportAnswered, prometheus.CounterValue, float64(st.Answered))
		emit(descSupportRefused, prometheus.CounterValue, float64(st.Refused))
	}
}

type emitFunc func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string)

// collectSync reports the WAN and each collection from the feed state kept in memory, and the
// rows from the counts the database keeps as pages are applied.
func (c statusCollector) collectSync(ctx context.Context, emit emitFunc) {
	s := c.s
	if s.o.WAN != nil {
		// With the sync off there is no WAN to be up or down: no series, as for every
		// component turned off.
		if st := s.o.WAN().State; st != wanDisabled {
			emit(descWANUp, prometheus.GaugeValue, boolValue(st == wanOK))
		}
	}
	now := s.now()
	for _, name := range cloudapi.Collections {
		st, _ := s.o.DB.FeedState(name)
		if !st.LastSuccess.IsZero() {
			emit(descDataAge, prometheus.GaugeValue, max(now.Sub(st.LastSuccess).Seconds(), 0), name)
		}
		if rows, err := s.o.DB.Count(ctx, name); err == nil {
			emit(descSyncRows, prometheus.GaugeValue, float64(rows), name)
		}
		emit(descSyncLag, prometheus.GaugeValue, float64(st.Remaining), name)
		emit(descSyncQuar, prometheus.GaugeValue, float64(st.Quarantined), name)
		emit(descSyncError, prometheus.GaugeValue, boolValue(!st.LastErrorAt.IsZero()), name)
	}
}

func (c statusCollector) collectServiceBus(emit emitFunc) {
	if c.s.o.ServiceBus == nil {
		return
	}
	st := c.s.o.ServiceBus()
	emit(descSBConnected, prometheus.GaugeValue, boolValue(st.State == servicebus.LinkConnected))
	emit(descSBReceived, prometheus.CounterValue, float64(st.Received))
	emit(descSBStored, prometheus.CounterValue, float64(st.Stored))
	emit(descSBDup, prometheus.CounterValue, float64(st.Duplicates))
	emit(descSBDead, prometheus.CounterValue, float64(st.DeadLettered))
	emit(descSBAbandoned, prometheus.CounterValue, float64(st.Abandoned))
	emit(descSBReconn, prometheus.CounterValue, float64(st.Reconnects))
}

// collectDevices reports the devices and their push queues: the registry is in memory, the
// queue depths one indexed count of the open commands.
func (c statusCollector) collectDevices(ctx context.Context, emit emitFunc) error {
	m := c.s.o.Devices
	acked, refused := m.PushAnswers()
	emit(descPushAnswers, prometheus.CounterValue, float64(acked), "ack")
	emit(descPushAnswers, prometheus.CounterValue, float64(refused), "nack")
	sum, err := m.Summary(ctx)
	if err != nil {
		return err
	}
	emit(descDevices, prometheus.GaugeValue, float64(sum.Online), "online")
	emit(descDevices, prometheus.GaugeValue, float64(sum.Offline), "offline")
	emit(descPushQueue, prometheus.GaugeValue, float64(sum.Queued))
	emit(descPushStuck, prometheus.CounterValue, float64(sum.StuckCommands))
	return nil
}

func (c statusCollector) collectDiscovery(emit emitFunc) {
	if c.s.o.Discovery == nil {
		return
	}
	st := c.s.o.Discovery.Status()
	if u := st.UDP; u != nil {
		emit(descDiscReceived, prometheus.CounterValue, float64(u.Received))
		emit(descDiscHellos, prometheus.CounterValue, float64(u.Hellos))
		emit(descDiscAnswers, prometheus.CounterValue, float64(u.Answered), "answer")
		emit(descDiscAnswers, prometheus.CounterValue, float64(u.Announced), "announcement")
		for _, d := range []struct {
			reason string
			n      uint64
		}{
			{"rate_limited", u.RateLimited}, {"garbage", u.Garbage}, {"truncated", u.Truncated},
			{"undersized", u.Undersized}, {"oversized", u.Oversized}, {"bad_version", u.BadVersion},
			{"bad_source", u.BadSource}, {"wrong_interface", u.WrongInterface}, {"send_error", u.SendErrors},
		} {
			emit(descDiscDrops, prometheus.CounterValue, float64(d.n), d.reason)
		}
	}
	if m := st.MDNS; m != nil {
		emit(descDiscMDNS, prometheus.GaugeValue, boolValue(m.State == discovery.MDNSRegistered))
	}
}

func (c statusCollector) collectMedia(ctx context.Context, emit emitFunc) error {
	if c.s.o.Media == nil {
		return nil
	}
	hits, misses := c.s.o.Media.Hits()
	emit(descMediaHits, prometheus.CounterValue, float64(hits))
	emit(descMediaMisses, prometheus.CounterValue, float64(misses))
	st, err := c.s.o.Media.Status(ctx)
	if err != nil {
		return err
	}
	emit(descMediaBytes, prometheus.GaugeValue, float64(st.Bytes))
	emit(descMediaFiles, prometheus.GaugeValue, float64(st.Files))
	emit(descMediaQuota, prometheus.GaugeValue, float64(st.QuotaBytes))
	if st.State == media.StateDisabled {
		return nil // the cache serves what it holds; nothing is fetched, nothing is wrong
	}
	emit(descMediaPending, prometheus.GaugeValue, float64(st.PendingBytes))
	emit(descMediaProblems, prometheus.GaugeValue, float64(st.Failed), "failed")
	emit(descMediaProblems, prometheus.GaugeValue, float64(st.Quarantined), "quarantined")
	emit(descMediaProblems, prometheus.GaugeValue, float64(st.WaitingSpace), "no_space")
	emit(descMediaFetched, prometheus.CounterValue, float64(st.ReceivedBytes))
	emit(descMediaRate, prometheus.GaugeValue, float64(st.RateBytes))
	// Starting: nothing asked of Blob storage since the start (a complete cache, or a first
	// download still waiting), no failure either.
	emit(descMediaBlobUp, prometheus.GaugeValue, boolValue(st.State == media.StateOK || st.State == media.StateStarting))
	return nil
}

func (c statusCollector) collectAlerts(ctx context.Context, emit emitFunc) error {
	if c.s.o.Alerts == nil {
		return nil
	}
	st, err := c.s.o.Alerts.Status(ctx)
	if err != nil {
		return err
	}
	for _, a := range st.Open {
		emit(descAlertsOpen, prometheus.GaugeValue, 1, a.Rule)
	}
	emit(descAlertsQueued, prometheus.GaugeValue, float64(st.QueuedMails))
	return nil
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
