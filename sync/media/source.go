package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/storeedge/storeedge/internal/clip"
	"github.com/storeedge/storeedge/internal/wan"
)

// Source reads blobs. Container is the real one; tests may give another.
type Source interface {
	// Download reads blob name from offset to its end and returns the body and the blob's whole
	// size. Its errors are *BlobError.
	Download(ctx context.Context, name string, offset int64) (body io.ReadCloser, total int64, err error)
	// Refresh gets a new SAS from wherever the container URL comes from, after the store refused
	// the one in use. It returns ErrNoRefresh when the URL is fixed by configuration.
	Refresh(ctx context.Context) error
}

var _ Source = (*Container)(nil)

// ErrNoRefresh is Refresh's answer for a container configured by the shop itself.
var ErrNoRefresh = errors.New("media: the container is configured locally; its SAS or key cannot be renewed automatically")

// ErrNotConfigured means no container is known yet: the cloud's remote configuration names none.
var ErrNotConfigured = errors.New("media: no container: the cloud's remote configuration names no media container, and media.container_url is empty")

// UnusableError is what Locator.Remote returns when the cloud's answer names a container URL that
// must not be used (it breaks the rules of media.container_url): like no container at all, it is
// a matter of configuration, not of reaching Blob storage.
type UnusableError struct{ Err error }

func (e *UnusableError) Error() string { return e.Err.Error() }

func (e *UnusableError) Unwrap() error { return e.Err }

// notConfigured tells an error that leaves the shop with no usable container.
func notConfigured(err error) bool {
	var u *UnusableError
	return errors.Is(err, ErrNotConfigured) || errors.As(err, &u)
}

// Kinds of BlobError.
const (
	KindAuth        = "unauthorized" // the SAS or key was refused (403), or expired
	KindNotFound    = "not_found"    // no such blob or container (404)
	KindRange       = "bad_range"    // the resume offset is past the blob's end (416)
	KindUnreachable = "unreachable"  // network, proxy, TLS, 5xx: Blob storage cannot be reached
)

// BlobError is a failed Blob storage request. Its text never holds the SAS.
type BlobError struct {
	Kind   string
	Status int // HTTP status, 0 when no answer came
	Err    error
}

// Error says what went wrong without the SAS: Err may quote the request's URL (a timeout, an
// answer read cut short), and the text goes to the log, the status and devices' 503s.
func (e *BlobError) Error() string {
	if e.Status != 0 {
		return redactSAS(fmt.Sprintf("blob storage answered %d: %v", e.Status, e.Err))
	}
	return redactSAS(fmt.Sprintf("blob storage: %v", e.Err))
}

func (e *BlobError) Unwrap() error { return e.Err }

// Locator says where the shop's container is. Exactly one way is used: URL, else
// ConnectionString with Container, else Remote.
type Locator struct {
	URL              string // a container URL with a SAS token
	ConnectionString string
	Container        string
	// Remote returns the container URL the cloud's remote configuration names ("" when none), or
	// an *UnusableError when the one it names must not be used.
	Remote func(ctx context.Context) (string, error)
}

// Container is the shop's Blob container, reached with the azblob SDK over an HTTP client that
// goes through the one WAN dialer. When the URL comes from the cloud, it is read again when the
// SAS expires (shortly before, when the SAS says when) or is refused.
type Container struct {
	loc Locator
	hc  policy.Transporter
	now func() time.Time
	// answerTimeout bounds the wait for Blob storage's answer to a download (its headers); 0:
	// none. See SetAnswerTimeout.
	answerTimeout time.Duration

	mu      sync.Mutex // protects the fields below
	client  *container.Client
	url     string    // the container URL in use (a secret: it carries the SAS)
	expires time.Time // the SAS's se=, zero when unknown
	tried   time.Time // when Remote was last asked
	failed  error     // why the last reading of Remote gave no client, while there is none
	// holdUntil is when the cloud may be asked again after an early reading it answered with
	// Retry-After, while the SAS in hand still serves.
	holdUntil time.Time
}

// NewContainer returns a Container whose requests go through hc. Nothing is contacted yet.
func NewContainer(loc Locator, hc *http.Client) *Container {
	// Blob storage does not redirect; a redirect is followed nowhere, so that a container named
	// by the cloud cannot send the shop's requests (and their SAS) to another host, a LAN address
	// or plain HTTP. The 3xx answer is a failed read.
	noRedirect := *hc
	noRedirect.CheckRedirect = wan.NoRedirect
	return &Container{loc: loc, hc: &noRedirect, now: time.Now}
}

// minRefresh is the least time between two readings of the remote configuration.
const minRefresh = 2 * time.Second

// refreshAhead is how long before its SAS expires a container URL is read again.
const refreshAhead = 30 * time.Second

func (c *Container) options() *container.ClientOptions {
	return &container.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: c.hc,
		// Retries are the fetcher's: it knows whether the WAN or the blob is at fault.
		Retry:     policy.RetryOptions{MaxRetries: -1},
		Telemetry: policy.TelemetryOptions{Disabled: true},
	}}
}

// current returns the client to use, building it on first use and when the SAS is about to
// expire.
func (c *Container) current(ctx context.Context) (*container.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	// The cloud's Retry-After holds early readings back, never a reading once the SAS expired.
	expired := !c.expires.IsZero() && !now.Before(c.expires) && c.loc.Remote != nil
	held := now.Before(c.holdUntil) && !expired
	stale := !c.expires.IsZero() && now.After(c.expires.Add(-refreshAhead)) && now.Sub(c.tried) >= minRefresh && !held
	if c.client != nil && !expired && !(stale && c.loc.Remote != nil) {
		return c.client, nil
	}
	if (c.client == nil || expired) && c.failed != nil && now.Sub(c.tried) < minRefresh {
		// The cloud was asked a moment ago and gave no container: every request of a busy shop
		// would ask again.
		return nil, c.failed
	}
	if err := c.buildLocked(ctx); err != nil {
		if c.client != nil && now.Before(c.expires) {
			// An early reading failed (the cloud busy a moment, or giving nothing usable): the
			// SAS in hand is good until it expires, and a later request asks again, not before
			// the Retry-After the cloud gave.
			c.holdUntil = now.Add(cloudRetryAfter(err))
			return c.client, nil
		}
		if ctx.Err() == nil {
			c.failed = err // not the caller's own end: another caller would get the same
		}
		return nil, err
	}
	if c.loc.Remote != nil && !c.expires.IsZero() && !now.Before(c.expires) {
		// The cloud gave a SAS that has expired already (a stale configuration, or this
		// machine's clock ahead): refused like one Blob storage refuses, and asked again no
		// sooner than minRefresh.
		c.failed = errSASExpired
		return nil, c.failed
	}
	c.failed = nil
	return c.client, nil
}

// cloudRetryAfter is the Retry-After of the cloud's answer in err (reading the container URL was
// refused for a while: 429, 503), at most an hour (cloud-api.md); 0 when err carries none. The
// cloud's error says it through RetryWait, so that this package need not import the client.
func cloudRetryAfter(err error) time.Duration {
	var asked interface{ RetryWait() time.Duration }
	if !errors.As(err, &asked) {
		return 0
	}
	return min(asked.RetryWait(), time.Hour)
}

// errSASExpired is why no client is given when the cloud's container URL carries a SAS whose
// expiry has passed.
var errSASExpired = &BlobError{Kind: KindAuth, Err: errors.New("the container URL the cloud gave carries a SAS that has expired (se=); a new one is asked for")}

// buildLocked makes the client from the locator.
func (c *Container) buildLocked(ctx context.Context) error {
	var err error
	switch {
	case c.loc.URL != "":
		return c.useURLLocked(c.loc.URL)
	case c.loc.ConnectionString != "":
		c.client, err = container.NewClientFromConnectionString(c.loc.ConnectionString, c.loc.Container, c.options())
		if err != nil {
			return &BlobError{Kind: KindAuth, Err: errors.New("media.connection_string cannot be used: " + redactSAS(err.Error()))}
		}
		return nil
	case c.loc.Remote == nil:
		return ErrNotConfigured
	}
	c.tried = c.now()
	u, err := c.loc.Remote(ctx)
	if notConfigured(err) {
		return err
	}
	if err != nil {
		return &BlobError{Kind: KindUnreachable, Err: fmt.Errorf("read the container URL from the cloud: %w", err)}
	}
	if u == "" {
		return ErrNotConfigured
	}
	return c.useURLLocked(u)
}

func (c *Container) useURLLocked(raw string) error {
	cl, err := container.NewClientWithNoCredential(raw, c.options())
	if err != nil {
		return &BlobError{Kind: KindAuth, Err: errors.New("the container URL cannot be used: " + redactSAS(err.Error()))}
	}
	c.client, c.url, c.expires = cl, raw, sasExpiry(raw)
	return nil
}

// Refresh reads the container URL from the cloud again.
func (c *Container) Refresh(ctx context.Context) error {
	if c.loc.Remote == nil || c.loc.URL != "" || c.loc.ConnectionString != "" {
		return ErrNoRefresh
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if wait := minRefresh - c.now().Sub(c.tried); wait > 0 {
		c.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			c.mu.Lock()
			return ctx.Err()
		case <-t.C:
		}
		c.mu.Lock()
	}
	return c.buildLocked(ctx)
}

// SetAnswerTimeout bounds the wait for Blob storage's answer to a download (media.stall_timeout):
// a connection taken and left silent (a proxy whose far side hangs, a half-dead path) is cut as
// a stall, Blob storage not reachable, where the fetcher's stall clock, which starts with the
// answer, would never run. Reading the container URL from the cloud before it is not bounded
// by it (cloud.request_timeout is). Call it before the container is used.
func (c *Container) SetAnswerTimeout(d time.Duration) { c.answerTimeout = d }

// errNoAnswer is a download cut because Blob storage did not answer within the answer timeout.
var errNoAnswer = errors.New("download stalled: no answer within media.stall_timeout")

// Download implements Source.
func (c *Container) Download(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, error) {
	cl, err := c.current(ctx)
	if err != nil {
		return nil, 0, err
	}
	o := &blob.DownloadStreamOptions{}
	if offset > 0 {
		o.Range = blob.HTTPRange{Offset: offset}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	given := false // a body given back ends the context when closed
	defer func() {
		if !given {
			cancel(nil)
		}
	}()
	var answered *time.Timer
	if c.answerTimeout > 0 {
		answered = time.AfterFunc(c.answerTimeout, func() { cancel(errNoAnswer) })
	}
	resp, err := cl.NewBlobClient(name).DownloadStream(ctx, o)
	if answered != nil {
		answered.Stop()
	}
	if err != nil {
		if errors.Is(context.Cause(ctx), errNoAnswer) {
			return nil, 0, &BlobError{Kind: KindUnreachable, Err: fmt.Errorf("%w (%s)", errNoAnswer, c.answerTimeout)}
		}
		return nil, 0, classify(err)
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	total := int64(-1)
	switch {
	case resp.ContentRange != nil && contentRangeStart(*resp.ContentRange) != offset:
		// Another part than the one asked for (a proxy or cache on the way that got the range
		// wrong): appended, it would be taken for a corrupted blob and quarantined.
		resp.Body.Close()
		return nil, 0, &BlobError{Kind: KindRange, Status: http.StatusPartialContent,
			Err: fmt.Errorf("asked from byte %d, the answer is %q", offset, clip.String(*resp.ContentRange, 64))}
	case resp.ContentRange != nil:
		total = contentRangeTotal(*resp.ContentRange)
	case resp.ContentLength != nil && offset == 0:
		total = *resp.ContentLength
	case resp.ContentLength != nil:
		// The whole blob to a ranged read (a proxy that drops Range): the download starts
		// again from the beginning, as after a 416.
		resp.Body.Close()
		return nil, 0, &BlobError{Kind: KindRange, Status: http.StatusOK, Err: errors.New("the whole blob came back to a ranged read")}
	}
	if total < 0 {
		resp.Body.Close()
		return nil, 0, &BlobError{Kind: KindUnreachable, Status: http.StatusOK, Err: errors.New("the answer gives no blob size")}
	}
	given = true
	return resp.Body, total, nil
}

// cancelOnClose is a download's body that ends its request's context when closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// contentRangeStart reads the first byte a of "bytes a-b/total" (the unit in any case, as
// RFC 9110 has range units), or -1.
func contentRangeStart(s string) int64 {
	unit, rest, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return -1
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(first), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// contentRangeTotal reads the total of "bytes a-b/total", or -1.
func contentRangeTotal(s string) int64 {
	_, total, ok := strings.Cut(s, "/")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(total), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// classify turns an SDK error into a *BlobError.
func classify(err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		e := &BlobError{Status: re.StatusCode, Err: errors.New(orDefault(re.ErrorCode, http.StatusText(re.StatusCode)))}
		switch {
		case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
			e.Kind = KindAuth
		case re.StatusCode == http.StatusNotFound:
			e.Kind = KindNotFound
		case re.StatusCode == http.StatusRequestedRangeNotSatisfiable:
			e.Kind = KindRange
		default:
			e.Kind = KindUnreachable
		}
		return e
	}
	// A timeout or a cancellation stays one for errors.Is; Error hides the URL it quotes.
	return &BlobError{Kind: KindUnreachable, Err: err}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// sasExpiry reads the se= (signed expiry) of a SAS URL, in any of the ISO 8601 forms Azure
// takes (a date, a time to the minute, or to the second); zero when absent or unreadable.
func sasExpiry(raw string) time.Time {
	u, err := url.Parse(raw)
	if err != nil {
		return time.Time{}
	}
	se := u.Query().Get("se")
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04Z07:00", time.DateOnly} {
		if t, err := time.Parse(layout, se); err == nil {
			return t
		}
	}
	return time.Time{}
}

// redactSAS hides the query of any URL in s (the SAS token), and the value of any signature,
// account key or SAS left: an SDK error may quote them.
func redactSAS(s string) string {
	s = redactAfter(s, "?", " \t\n\"'")
	for _, key := range []string{"sig=", "AccountKey=", "SharedAccessSignature="} {
		s = redactAfter(s, key, "&; \t\n\"'")
	}
	return s
}

// redactAfter replaces what follows each key, up to one of stops, with "xxxxx".
func redactAfter(s, key, stops string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, key)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+len(key)])
		b.WriteString("xxxxx")
		s = s[i+len(key):]
		if end := strings.IndexAny(s, stops); end >= 0 {
			s = s[end:]
		} else {
			s = ""
		}
	}
}
