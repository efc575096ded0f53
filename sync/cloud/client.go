// Package cloud is the HTTP client of the cloud sync API (docs/cloud-api.md). It knows the routes,
// the store-key authentication and how the cloud's answers map to errors that tell a retry loop
// what to do; the feed, outbox and heartbeat workers build on it.
package cloud

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/internal/clip"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// Client calls the cloud API. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	storeKey string
	http     *http.Client
	agent    string
	timeout  time.Duration // see SetRequestTimeout; 0 = none
}

// SetRequestTimeout bounds each request (cloud.request_timeout): a whole request and its answer,
// except a feed stream, where it bounds the wait for the answer and every pause in the stream, so
// a first sync that takes longer but keeps moving is never cut. Call it before using the client.
func (c *Client) SetRequestTimeout(d time.Duration) { c.timeout = d }

// requestContext applies the request timeout to a request that is read whole.
func (c *Client) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}

// New returns a client for the API at baseURL. hc must route through the one WAN dialer.
func New(baseURL, storeKey string, hc *http.Client, userAgent string) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("cloud: base URL %q must be http(s)://host[:port]", baseURL)
	}
	// Redirects are not followed: net/http keeps the store key on a redirect to another port or
	// scheme of the same host, or to a subdomain. A 3xx is an answer the contract does not give,
	// retried as such (cloud-api.md).
	noRedirect := *hc
	noRedirect.CheckRedirect = wan.NoRedirect
	return &Client{base: u, storeKey: storeKey, http: &noRedirect, agent: userAgent}, nil
}

// Host is the host:port the client talks to, for status and diagnostics.
func (c *Client) Host() string { return c.base.Host }

// maxDetailBytes bounds an Error's detail, cut on a character boundary: the problem document or
// body of an answer, from the cloud or a proxy, goes into logs and the status.
const maxDetailBytes = 500

// Error is an answer of the cloud other than success.
type Error struct {
	Op         string
	Status     int
	RetryAfter time.Duration // from Retry-After, 0 when absent
	Detail     string        // the problem document's detail or title, or the start of the body
}

// RetryWait is the wait the answer asked for (its Retry-After), for a caller that does not
// import this package (media's reading of the container URL).
func (e *Error) RetryWait() time.Duration { return e.RetryAfter }

func (e *Error) Error() string {
	s := fmt.Sprintf("cloud: %s: %d %s", e.Op, e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Retryable reports whether the same request may succeed later. Only an answer that refuses
// the request's content is final (cloud-api.md): 400, 409, 413 and 422. Every other answer is
// tried again: a 5xx, 408 and 429; a 403, 404 or 405, which a wrong cloud.url, a gateway or a
// firewall in the way gives whatever the request holds; and an answer the contract does not
// give (a 202, a redirect), which says nothing about the request.
func (e *Error) Retryable() bool {
	switch e.Status {
	case http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return false
	}
	return true
}

// RetryAfter is the wait err asks for: the Retry-After of a *Error (429, 503), else 0.
func RetryAfter(err error) time.Duration {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.RetryAfter
	}
	return 0
}

// ErrUnauthorized means the store key was refused; retrying will not help until the
// configuration changes.
var ErrUnauthorized = errors.New("cloud: store key refused (401): check cloud.store_key")

// ErrCursorExpired means the feed no longer knows the cursor; sync must start again from a
// snapshot.
var ErrCursorExpired = errors.New("cloud: feed cursor expired (410)")

func (c *Client) newRequest(ctx context.Context, method, path string, query url.Values, body []byte) (*http.Request, error) {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = query.Encode()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.storeKey)
	req.Header.Set("User-Agent", c.agent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// do sends req and returns the response when its status is want; otherwise it reads the error.
func (c *Client) do(req *http.Request, op string, want int) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cloud: %s: %w", op, err)
	}
	if resp.StatusCode == want {
		return resp, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, ErrUnauthorized
	}
	e := &Error{Op: op, Status: resp.StatusCode}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		// Only these two ask for a wait (cloud-api.md): a gateway's 502 or 403 with a Retry-After
		// of an hour does not hold every collection's sync that long.
		e.RetryAfter = backoff.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	// The start of the answer, and room for a store key cut at its end, so that the key is
	// replaced whole before the detail is cut.
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096+int64(len(c.storeKey))))
	var p struct{ Title, Detail string }
	if json.Unmarshal(b, &p) == nil && (p.Detail != "" || p.Title != "") {
		e.Detail = p.Detail
		if e.Detail == "" {
			e.Detail = p.Title
		}
	} else {
		e.Detail = strings.TrimSpace(string(b))
	}
	// A proxy or gateway may echo the request, its Authorization header included, in its error
	// page: the detail goes to logs, the status and a refused order's history.
	if c.storeKey != "" {
		e.Detail = strings.ReplaceAll(e.Detail, c.storeKey, "xxxxx")
	}
	e.Detail = clip.String(e.Detail, maxDetailBytes)
	return nil, e
}

// Feed opens the change feed of a collection after cursor. With stream, the cloud sends pages
// until it is caught up. The caller reads the NDJSON body with cloudapi.NewDecoder and closes it.
func (c *Client) Feed(ctx context.Context, collection, cursor string, limit int, stream bool) (io.ReadCloser, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	q.Set("limit", strconv.Itoa(limit))
	if stream {
		q.Set("stream", "true")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	idle := &idleBody{cancel: cancel, timeout: c.timeout, closeIdle: c.http.CloseIdleConnections}
	idle.arm(collection)
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/feed/"+url.PathEscape(collection), q, nil)
	if err != nil {
		idle.Close()
		return nil, fmt.Errorf("cloud: feed %s: %w", collection, err)
	}
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.do(req, "feed "+collection, http.StatusOK)
	if err != nil {
		idle.Close()
		if cause := context.Cause(ctx); errors.Is(cause, errIdle) {
			err = fmt.Errorf("cloud: feed %s: %w", collection, cause)
		}
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusGone {
			return nil, ErrCursorExpired
		}
		return nil, err
	}
	if err := answerType(resp, "feed "+collection, "application/x-ndjson", func(mt string) bool { return mt == "application/x-ndjson" }); err != nil {
		resp.Body.Close()
		idle.Close()
		return nil, err
	}
	idle.body, idle.ctx = resp.Body, ctx
	idle.pause() // the answer came; from now on only the reads wait on the cloud
	return idle, nil
}

// errIdle is the cause of a feed stream cut because the cloud sent nothing for the timeout.
var errIdle = errors.New("no data from the cloud within cloud.request_timeout")

// ErrStalled says that a feed answer began, then stopped: nothing came for cloud.request_timeout.
// The cloud answered, so it is a broken answer of the cloud's (the state cloud_error), not a WAN
// that cannot be reached: the other collections are asked in the same pass.
var ErrStalled = errors.New("the answer stopped")

// idleBody is a feed response body whose request is cancelled when no data arrives for timeout:
// a stalled stream fails, a long one that keeps moving does not.
type idleBody struct {
	body    io.ReadCloser
	ctx     context.Context
	cancel  context.CancelCauseFunc
	timeout time.Duration
	timer   *time.Timer
	// stalled: the stream stopped (ErrStalled). Its connection may be dead (a WAN that dropped
	// mid-stream; HTTP/2 would send the next request on it and wait the timeout again): the
	// client's idle connections are closed with it, so that the next request dials.
	stalled   bool
	closeIdle func()
}

func (b *idleBody) arm(collection string) {
	if b.timeout > 0 {
		b.timer = time.AfterFunc(b.timeout, func() { b.cancel(fmt.Errorf("%w (%s, %s)", errIdle, collection, b.timeout)) })
	}
}

// pause stops the clock while the caller is not reading: the time it takes over the pages it
// has (applying them) is the shop's, not the cloud's.
func (b *idleBody) pause() {
	if b.timer != nil {
		b.timer.Stop()
	}
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.timer != nil {
		b.timer.Reset(b.timeout)
	}
	n, err := b.body.Read(p)
	b.pause()
	if err != nil && err != io.EOF {
		if cause := context.Cause(b.ctx); errors.Is(cause, errIdle) {
			err = fmt.Errorf("%w: %w", ErrStalled, cause)
			b.stalled = true
		}
	}
	return n, err
}

func (b *idleBody) Close() error {
	if b.timer != nil {
		b.timer.Stop()
	}
	b.cancel(context.Canceled)
	var err error
	if b.body != nil {
		err = b.body.Close()
	}
	if b.stalled && b.closeIdle != nil {
		b.closeIdle()
	}
	return err
}

// Upload sends a batch of events and returns what the cloud did with each.
func (c *Client) Upload(ctx context.Context, events []cloudapi.Event) (cloudapi.UploadResponse, error) {
	var out cloudapi.UploadResponse
	body, err := json.Marshal(cloudapi.UploadRequest{Events: events})
	if err != nil {
		return out, fmt.Errorf("cloud: upload: %w", err)
	}
	ctx, cancel := c.requestContext(ctx)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/events", nil, body)
	if err != nil {
		return out, fmt.Errorf("cloud: upload: %w", err)
	}
	resp, err := c.do(req, "upload", http.StatusOK)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	if err := answerType(resp, "upload", "JSON", func(mt string) bool { return strings.Contains(mt, "json") }); err != nil {
		return out, err // the WAN's failure: the batch is retried whole
	}
	if err := decodeAnswer(resp.Body, MaxUploadAnswer, &out); err != nil {
		if malformed(err) && ctx.Err() == nil {
			return out, fmt.Errorf("cloud: upload: %w (%v)", ErrMalformedAnswer, err) // out: what could be read of it
		}
		return out, fmt.Errorf("cloud: upload: read answer: %w", err)
	}
	return out, nil
}

// answerType refuses an answer whose Content-Type is not the one op wants (named want):
// typically a proxy's or captive portal's page answering in the cloud's place.
func answerType(resp *http.Response, op, want string, ok func(mediaType string) bool) error {
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); !ok(mt) {
		return &Error{Op: op, Status: resp.StatusCode, Detail: fmt.Sprintf("answered %q instead of %s: is a proxy or portal answering for the cloud?", mt, want)}
	}
	return nil
}

// ErrMalformedAnswer is an upload answer of 200, as JSON, that is not the document of
// cloud-api.md (a field of another type, say). The platform may have stored the events; the
// answer returned with it holds what could be read.
var ErrMalformedAnswer = errors.New("the answer is not an upload answer")

// malformed tells an answer read whole that is not the document (not JSON, a field of another
// type) from one the connection cut short, which is the WAN's failure.
func malformed(err error) bool {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	return errors.As(err, &se) || errors.As(err, &te)
}

// Limits of the answers read whole (cloud-api.md).
const (
	MaxUploadAnswer = 8 << 20
	maxConfigAnswer = 1 << 20
)

// ErrAnswerTooLarge is an answer longer than its limit. For an upload the cloud may have stored
// the events: a smaller batch gets a smaller answer.
var ErrAnswerTooLarge = errors.New("answer larger than the limit")

// decodeAnswer decodes the JSON answer in r into v, failing with ErrAnswerTooLarge, rather than
// a cut-off document, when r holds more than limit bytes.
func decodeAnswer(r io.Reader, limit int64, v any) error {
	lr := &capReader{r: r, left: limit}
	err := json.NewDecoder(lr).Decode(v)
	if lr.over {
		return fmt.Errorf("%w of %d bytes", ErrAnswerTooLarge, limit)
	}
	return err
}

// capReader reads r up to left bytes and then fails, noting that r had more.
type capReader struct {
	r    io.Reader
	left int64
	over bool
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		var one [1]byte
		if n, err := io.ReadFull(c.r, one[:]); n == 0 {
			return 0, err // io.EOF at the end, or the connection's failure
		}
		c.over = true
		return 0, ErrAnswerTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// Config fetches the remote configuration.
func (c *Client) Config(ctx context.Context) (cloudapi.RemoteConfig, error) {
	var out cloudapi.RemoteConfig
	ctx, cancel := c.requestContext(ctx)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/config", nil, nil)
	if err != nil {
		return out, fmt.Errorf("cloud: config: %w", err)
	}
	resp, err := c.do(req, "config", http.StatusOK)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	if err := decodeAnswer(resp.Body, maxConfigAnswer, &out); err != nil {
		return out, fmt.Errorf("cloud: config: read answer: %w", err)
	}
	return out, nil
}

// RemoteQueue is the Service Bus queue the remote configuration names ("" when none), or why it
// cannot be used: it must keep the rule of servicebus.queue.
func RemoteQueue(rc cloudapi.RemoteConfig) (string, error) {
	if p := rc.ServiceBus.Problem; p != "" {
		return "", fmt.Errorf("cloud: the remote configuration cannot be used for the queue: %s", p)
	}
	q := rc.ServiceBus.Queue
	if q == "" {
		return "", nil
	}
	if p := config.QueueNameProblem(q); p != "" {
		return "", fmt.Errorf("cloud: the remote configuration's servicebus.queue %s cannot be used: %s", quoteClipped(q), p)
	}
	return q, nil
}

// RemoteContainerURL is the media container URL the remote configuration names ("" when none), or
// why it cannot be used: it must keep the rule of media.container_url (https, a container, a SAS
// token). The error never quotes the URL, whose SAS token is a secret.
func RemoteContainerURL(rc cloudapi.RemoteConfig) (string, error) {
	if p := rc.Media.Problem; p != "" {
		return "", fmt.Errorf("cloud: the remote configuration cannot be used for media: %s", p)
	}
	u := rc.Media.ContainerURL
	if u == "" {
		return "", nil
	}
	if p := config.ContainerURLProblem(u); p != "" {
		return "", fmt.Errorf("cloud: the remote configuration's media.container_url cannot be used: %s", p)
	}
	return u, nil
}

// quoteClipped quotes s for a message, cut to 64 bytes.
func quoteClipped(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "…"
	}
	return strconv.Quote(s)
}

// Heartbeat reports the server's state.
func (c *Client) Heartbeat(ctx context.Context, hb cloudapi.Heartbeat) error {
	body, err := json.Marshal(hb)
	if err != nil {
		return fmt.Errorf("cloud: heartbeat: %w", err)
	}
	ctx, cancel := c.requestContext(ctx)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/heartbeat", nil, body)
	if err != nil {
		return fmt.Errorf("cloud: heartbeat: %w", err)
	}
	resp, err := c.do(req, "heartbeat", http.StatusNoContent)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
