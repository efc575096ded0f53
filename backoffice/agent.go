package backoffice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
)

// Log attribute keys.
const (
	logKeyTarget  = "target"
	logKeyFile    = "file"
	logKeyOrders  = "orders"
	logKeyOrder   = "order_id"
	logKeyNumber  = "number"
	logKeyStatus  = "http_status"
	logKeyAnswer  = "answer"
	logKeyError   = "error"
	logKeyRows    = "rows"
	logKeyNextRun = "next_run"
	logKeyWebhook = "webhook"
)

// Options configure an Agent.
type Options struct {
	DB *storage.DB
	// Config is the backoffice section of the configuration, validated.
	Config config.BackOffice
	// Shop gives the mode: in test mode (Shop.IsTest, the default) only the test orders are
	// exported, and only to Config.Export.TestDir; otherwise only the other orders, to
	// Config.Export.Dir and Config.Webhook.URL.
	Shop config.Shop
	// HTTPClient posts to the webhook. It should connect directly (the ERP is on the shop's or
	// the company's network), not through the WAN proxy; its own Timeout may stay 0, as each
	// POST is bounded by Config.Webhook.Timeout. Redirects are not followed whatever its
	// CheckRedirect says. Default: a direct client.
	HTTPClient *http.Client
	// UserAgent is sent with each POST; default "storeedge".
	UserAgent string
	Logger    *slog.Logger
	// BatchSize is the most orders in one file; default 1000, at most 10000.
	BatchSize int
	// WebhookAttempts is how many times one run POSTs an order that meets retryable failures
	// before it stops and leaves the order and the ones after it to the next run; default 5.
	WebhookAttempts int
	// MinBackoff and MaxBackoff bound the wait between two POSTs of an order; defaults 1s and
	// 30s. A Retry-After longer than MaxBackoff ends the run, and the webhook is left alone
	// until that time has passed.
	MinBackoff, MaxBackoff time.Duration
	// ImportSettle is how long a stock file must have been left unchanged before it is read;
	// default 2s, negative for no wait (the file is still checked not to change while read).
	ImportSettle time.Duration
}

// Agent exports orders to the back office and imports its stock files, on a schedule.
type Agent struct {
	o      Options
	log    *slog.Logger
	client *http.Client
	now    func() time.Time

	// Tests replace these: the schedule Run follows (nil: parse Config.Schedule), and a hook
	// called after each durable step of an export, whose error stops the run there as a crash
	// would.
	sched schedule
	hook  func(step string) error

	runSem           chan struct{}        // one slot: serialises runs (lockRun); its holder owns the fields below
	webhookNotBefore time.Time            // the ERP asked to wait (Retry-After) until then
	unsettled        map[string]time.Time // stock files left for later, since when (importStock)

	mu         sync.Mutex // protects the fields below
	status     Status
	lastLogged string // the last run error logged, so that a repeated one is not

	refused atomic.Int64 // refusals for good since the start (Refusals)
	// otherPending: a file a stop interrupted in the other mode's folder waited at the end of
	// the last run (or at Run's start), so the exchange is Configured until it is finished.
	otherPending atomic.Bool
}

// Refusals counts what was refused for good since the server started: orders the ERP's webhook
// refused and stock files moved to failed/. It only grows, whatever an admin retries meanwhile.
func (a *Agent) Refusals() int64 { return a.refused.Load() }

// schedule is the part of a cron schedule that Run needs.
type schedule interface {
	Next(time.Time) time.Time
}

// New returns an Agent; it does nothing until Run or RunOnce.
func New(o Options) *Agent {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	o.BatchSize = min(o.BatchSize, 10000)
	if o.WebhookAttempts <= 0 {
		o.WebhookAttempts = 5
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.ImportSettle == 0 {
		o.ImportSettle = 2 * time.Second
	}
	if o.Config.Webhook.Timeout <= 0 {
		o.Config.Webhook.Timeout = config.DefaultBackOfficeWebhookTimeout
	}
	if o.Config.Export.Format == "" {
		o.Config.Export.Format = config.DefaultBackOfficeExportFormat
	}
	if o.UserAgent == "" {
		o.UserAgent = "storeedge"
	}
	a := &Agent{o: o, log: o.Logger, now: time.Now, runSem: make(chan struct{}, 1)}
	a.client = webhookClient(o.HTTPClient)
	a.status = Status{Mode: a.mode()}
	return a
}

func (a *Agent) mode() string {
	if a.o.Shop.IsTest() {
		return config.ModeTest
	}
	return config.ModeProduction
}

// fileTarget is a drop folder and the orders it takes.
type fileTarget struct {
	storage.ExportTarget
	dir string
}

// fileTargets returns the drop folders that take orders in the shop's mode.
func (a *Agent) fileTargets() []fileTarget {
	var out []fileTarget
	for _, t := range a.configuredFileTargets() {
		if t.Test == a.o.Shop.IsTest() {
			out = append(out, t)
		}
	}
	return out
}

// configuredFileTargets returns the drop folders configured, the other mode's included.
func (a *Agent) configuredFileTargets() []fileTarget {
	var out []fileTarget
	if a.o.Config.Export.Dir != "" {
		out = append(out, fileTarget{storage.ExportTarget{Name: storage.ExportFiles}, a.o.Config.Export.Dir})
	}
	if a.o.Config.Export.TestDir != "" {
		out = append(out, fileTarget{storage.ExportTarget{Name: storage.ExportTestFiles, Test: true}, a.o.Config.Export.TestDir})
	}
	return out
}

// webhookOn reports whether orders are POSTed: never in test mode.
func (a *Agent) webhookOn() bool { return !a.o.Shop.IsTest() && a.o.Config.Webhook.URL != "" }

func (a *Agent) importOn() bool { return a.o.Config.Import.Dir != "" }

// targets returns the export targets in use, for the statistics.
func (a *Agent) targets() []storage.ExportTarget {
	var out []storage.ExportTarget
	for _, t := range a.fileTargets() {
		out = append(out, t.ExportTarget)
	}
	if a.webhookOn() {
		out = append(out, storage.ExportTarget{Name: storage.ExportWebhook})
	}
	return out
}

// Run finishes the exports a previous run left half done, then exports and imports on the
// configured schedule until ctx ends. A failed run is logged (once while it keeps failing the
// same way) and tried again at the next scheduled time. With nothing configured in the shop's
// mode, and no file a stop interrupted in the other mode's folder, it returns nil at once.
func (a *Agent) Run(ctx context.Context) error {
	sched := a.sched
	if sched == nil {
		s, err := config.ParseSchedule(a.o.Config.Schedule)
		if err != nil {
			return fmt.Errorf("backoffice: schedule %q: %w", a.o.Config.Schedule, err)
		}
		sched = s
	}
	// A file interrupted before the shop's mode changed is finished all the same, and tried
	// again at the scheduled times until it is.
	a.noteOtherMode(ctx)
	if !a.Configured() {
		a.log.Info("backoffice: no order export or stock import configured", slog.String("mode", a.mode()))
		return nil
	}
	// A file a stop left half written is finished now rather than at the next scheduled time:
	// its orders were promised to the ERP already.
	if err := a.Recover(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.logRunError(err)
	}
	if a.otherModeDone() {
		return nil
	}
	for {
		now := a.now()
		next := sched.Next(now)
		a.mu.Lock()
		a.status.NextRun = next
		a.mu.Unlock()
		if next.IsZero() { // no time within the cron library's horizon
			<-ctx.Done()
			return ctx.Err()
		}
		t := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		err := a.RunOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.logRunError(err)
		if a.otherModeDone() {
			return nil
		}
	}
}

// otherModeDone reports, and logs, that Run ran for the other mode's interrupted file alone, now
// finished: nothing is configured in the shop's mode, and the schedule stops.
func (a *Agent) otherModeDone() bool {
	if a.Configured() {
		return false
	}
	a.mu.Lock()
	a.status.NextRun = time.Time{}
	a.mu.Unlock()
	a.log.Info("backoffice: the other mode's interrupted order file is finished; no order export or stock import configured", slog.String("mode", a.mode()))
	return true
}

// needsHuman marks a failure that the next run will meet again unless someone changes
// something (the configuration, the ERP), so that it is logged at ERROR rather than WARN.
type needsHuman struct{ error }

func (e needsHuman) Unwrap() error { return e.error }

// logRunError logs a failed run at WARN (the next run tries again), or at ERROR when it needs a
// human, once while the same error repeats.
func (a *Agent) logRunError(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil {
		a.lastLogged = ""
		return
	}
	if err.Error() == a.lastLogged {
		a.log.Debug("backoffice: run failed again", slog.Any(logKeyError, err))
		return
	}
	a.lastLogged = err.Error()
	level := slog.LevelWarn
	if _, ok := errors.AsType[needsHuman](err); ok {
		level = slog.LevelError
	}
	a.log.Log(context.Background(), level, "backoffice: run failed; what is left waits for the next run", slog.Any(logKeyError, err), slog.Time(logKeyNextRun, a.status.NextRun))
}

// Recover finishes the order files that a stop left unfinished, so that each of their orders is
// in the drop folder once, and removes the temporary files left behind. RunOnce does it too,
// first; both also finish the other mode's folder when a stop interrupted a file there (the
// shop's mode changed since): its orders were promised.
func (a *Agent) Recover(ctx context.Context) error {
	if err := a.lockRun(ctx); err != nil {
		return err
	}
	defer a.unlockRun()
	var errs []error
	for _, t := range a.fileTargets() {
		errs = append(errs, a.finish(ctx, t))
	}
	errs = append(errs, a.finishOtherMode(ctx)...)
	err := errors.Join(errs...)
	a.finishRun(ctx, err, false)
	return err
}

// finish finishes the files a stop interrupted in t's folder and removes the temporary files
// left there.
func (a *Agent) finish(ctx context.Context, t fileTarget) error {
	if err := a.finishBatches(ctx, t); err != nil {
		return err
	}
	if err := removeTemps(t); err != nil {
		return fmt.Errorf("backoffice: %s: %w", t.Name, err)
	}
	return nil
}

// otherModeTargets are the drop folders configured for the mode the shop is not in.
func (a *Agent) otherModeTargets() []fileTarget {
	return slices.DeleteFunc(a.configuredFileTargets(), func(t fileTarget) bool { return t.Test == a.o.Shop.IsTest() })
}

// finishOtherMode finishes the files a stop interrupted in the other mode's folder, and records
// whether one still waits (otherPending: its finish failed, or the database could not say).
// That folder is not used otherwise, and may not be there (a share not mounted in test mode):
// only such a file takes it.
func (a *Agent) finishOtherMode(ctx context.Context) []error {
	var errs []error
	for _, t := range a.otherModeTargets() {
		batches, err := a.o.DB.UnfinishedExportBatches(ctx, t.Name)
		if err != nil {
			err = fmt.Errorf("backoffice: %s: %w", t.Name, err)
		} else if len(batches) > 0 {
			err = a.finish(ctx, t)
		}
		errs = append(errs, err)
	}
	a.otherPending.Store(errors.Join(errs...) != nil)
	return errs
}

// noteOtherMode records whether a file a stop interrupted in the other mode's folder waits (or
// cannot be known not to: the database failing).
func (a *Agent) noteOtherMode(ctx context.Context) {
	pending := false
	for _, t := range a.otherModeTargets() {
		batches, err := a.o.DB.UnfinishedExportBatches(ctx, t.Name)
		if err != nil || len(batches) > 0 {
			pending = true
			break
		}
	}
	a.otherPending.Store(pending)
}

// ErrCutShort is the error of a run that ctx ended, while it waited for the run in progress or
// during its own: what is left goes at the next run, and the status keeps the last run's outcome.
var ErrCutShort = errors.New("backoffice: the run was cut short; what is left goes at the next run")

// lockRun waits for the run in progress to end, or for ctx to.
func (a *Agent) lockRun(ctx context.Context) error {
	select {
	case a.runSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w (a run in progress did not end: %w)", ErrCutShort, ctx.Err())
	}
}

func (a *Agent) unlockRun() { <-a.runSem }

// RunOnce runs one exchange now: it exports the orders waiting for each drop folder (finishing
// any file left half written first), imports the stock files waiting in the import folder, then
// POSTs the orders waiting for the webhook. It waits for a run in progress to end first. The
// error joins what failed; what failed waits for the next run. A run that ctx ends is not
// recorded in the status (ErrCutShort): its outcome is not known.
func (a *Agent) RunOnce(ctx context.Context) error {
	if err := a.lockRun(ctx); err != nil {
		return err
	}
	defer a.unlockRun()
	errs := a.finishOtherMode(ctx)
	for _, t := range a.fileTargets() {
		if err := a.exportFiles(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	if a.importOn() && ctx.Err() == nil {
		if err := a.importStock(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if a.webhookOn() && ctx.Err() == nil {
		if err := a.exportWebhook(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ErrCutShort, ctx.Err())
	}
	err := errors.Join(errs...)
	a.finishRun(ctx, err, true)
	return err
}

// Configured reports whether the exchange has anything to do: an export target or the stock
// import in the current mode, or a file a stop interrupted in the other mode's folder, still
// to be finished (as of the last run, or Run's start). Without, Run returns and no run ends.
func (a *Agent) Configured() bool {
	return len(a.targets()) > 0 || a.importOn() || a.otherPending.Load()
}

// Status is what the status page shows of the exchange with the back office.
type Status struct {
	Mode        string         `json:"mode"`                  // test | production
	LastRun     time.Time      `json:"last_run,omitzero"`     // when the last run ended
	LastSuccess time.Time      `json:"last_success,omitzero"` // when a run last ended without error
	LastError   string         `json:"last_error,omitempty"`  // of the last run
	NextRun     time.Time      `json:"next_run,omitzero"`
	Targets     []TargetStatus `json:"targets"` // the export targets in use in this mode
	Import      *ImportStatus  `json:"import,omitempty"`
}

// TargetStatus counts one export target's orders, as of the end of the last run.
type TargetStatus struct {
	Name        string `json:"name"`        // files | test_files | webhook
	Destination string `json:"destination"` // the folder, or the webhook's host
	Exported    int64  `json:"exported"`
	Failed      int64  `json:"failed"`     // refused for good by the webhook
	Pending     int64  `json:"pending"`    // waiting for a run
	Unfinished  int64  `json:"unfinished"` // files recorded but not yet in the folder
}

// ImportStatus counts the stock files, as of the end of the last run.
type ImportStatus struct {
	Dir        string               `json:"dir"`
	Done       int64                `json:"done"`
	Failed     int64                `json:"failed"`
	LastDone   *storage.StockImport `json:"last_done,omitempty"`
	LastFailed *storage.StockImport `json:"last_failed,omitempty"`
}

// Status returns the state of the exchange as of the last run.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.status
	s.Targets = append([]TargetStatus{}, s.Targets...) // [] before the first run, not null
	if s.Import != nil {
		imp := *s.Import
		s.Import = &imp
	}
	return s
}

// finishRun records the outcome of a run and refreshes the counts.
func (a *Agent) finishRun(ctx context.Context, runErr error, full bool) {
	end := a.now()
	var targets []TargetStatus
	var imp *ImportStatus
	statsErr := ctx.Err()
	if statsErr == nil {
		targets, imp, statsErr = a.counts(ctx)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if full {
		a.status.LastRun = end
		if runErr == nil {
			a.status.LastSuccess = end
		}
	}
	if runErr != nil {
		a.status.LastError = runErr.Error()
	} else if full {
		a.status.LastError = ""
	}
	if statsErr == nil {
		a.status.Targets, a.status.Import = targets, imp
	}
}

func (a *Agent) counts(ctx context.Context) ([]TargetStatus, *ImportStatus, error) {
	stats, err := a.o.DB.ExportStats(ctx, a.targets())
	if err != nil {
		return nil, nil, err
	}
	dest := map[string]string{storage.ExportWebhook: webhookHost(a.o.Config.Webhook.URL)}
	for _, t := range a.fileTargets() {
		dest[t.Name] = t.dir
	}
	targets := make([]TargetStatus, 0, len(stats))
	for _, s := range stats {
		targets = append(targets, TargetStatus{Name: s.Target, Destination: dest[s.Target], Exported: s.Exported, Failed: s.Failed,
			Pending: s.Pending, Unfinished: s.Batches})
	}
	if !a.importOn() {
		return targets, nil, nil
	}
	is, err := a.o.DB.StockImportStats(ctx)
	if err != nil {
		return nil, nil, err
	}
	return targets, &ImportStatus{Dir: a.o.Config.Import.Dir, Done: is.Done, Failed: is.Failed, LastDone: is.LastDone, LastFailed: is.LastFailed}, nil
}

// step is called after each durable step of an export; a test's hook may stop the run there.
func (a *Agent) step(name string) error {
	if a.hook == nil {
		return nil
	}
	return a.hook(name)
}
