package logship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/internal/wan"
)

// outcome is what the intake's answer to a batch means (docs/remote-support.md, "The intake").
type outcome int

const (
	accepted outcome = iota // 2xx: the records are the intake's
	rejected                // 400, 422 and other 4xx: these records will never be taken; dropped, counted
	tooLarge                // 413: send fewer records at once
	refused                 // 401, 403, 404, 405, 410, 3xx: the key or the address is wrong; kept, retried slowly
	retry                   // no answer, 408, 429, 5xx: kept, retried with backoff and Retry-After
)

// answer is the classified result of one POST.
type answer struct {
	outcome    outcome
	status     int           // 0: no answer
	retryAfter time.Duration // what a 429 or 503 asked for
	detail     string        // for the status's last_error
}

// classify reads the status of the intake's answer.
func classify(status int) outcome {
	switch {
	case status >= 200 && status < 300:
		return accepted
	case status == http.StatusRequestEntityTooLarge:
		return tooLarge
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		return retry
	case status >= 300 && status < 400, status == http.StatusUnauthorized, status == http.StatusForbidden,
		status == http.StatusNotFound, status == http.StatusMethodNotAllowed, status == http.StatusGone:
		return refused
	}
	return rejected
}

// client posts batches to the intake.
type client struct {
	http      *http.Client
	url       string
	key       string
	userAgent string
	timeout   time.Duration
	redact    *Redactor // for what the intake says back, which may echo anything
}

// Headers of a batch request.
const (
	headerBatch = "Idempotency-Key" // server_id:first-last: the same for a batch sent again
)

// post sends one gzip-compressed batch, first..last its sequence numbers.
func (c *client) post(ctx context.Context, body []byte, batchID string) answer {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return answer{outcome: refused, detail: "logs.ship.url: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("User-Agent", c.userAgent)
	if batchID != "" {
		req.Header.Set(headerBatch, batchID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{outcome: retry, detail: c.redact.Text(err.Error())}
	}
	defer resp.Body.Close()
	text := readAnswer(resp.Body, c.redact)
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection can be reused
	a := answer{outcome: classify(resp.StatusCode), status: resp.StatusCode}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		a.retryAfter = backoff.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	if a.outcome != accepted {
		a.detail = c.describe(resp, text)
	}
	return a
}

// describe says what the intake answered, in one line: status, and the start of its text.
func (c *client) describe(resp *http.Response, text []byte) string {
	d := "the intake answered " + resp.Status
	if s := strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, string(text))); s != "" {
		d += ": " + cut200(c.redact.Text(s)) // a secret across the cut is hidden whole first
	}
	switch classify(resp.StatusCode) {
	case refused:
		switch {
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			d += "; check logs.ship.api_key"
		default:
			d += "; check logs.ship.url"
		}
	}
	return d
}

// answerTextLimit is how much of the intake's answer is read for describe: the 200 characters
// it keeps (800 bytes at most) and beyond them a whole key (logs.ship.api_key, at most 1 KiB,
// or three times that percent-encoded).
const answerTextLimit = 4 << 10

// readAnswer reads the start of the intake's answer, for describe. A read cut by the limit may
// end in the first part of a secret, which the redaction, looking for whole ones, would leave:
// that part is dropped (blanks or copies of the key before it can bring it into the 200
// characters kept).
func readAnswer(body io.Reader, r *Redactor) []byte {
	text, _ := io.ReadAll(io.LimitReader(body, answerTextLimit))
	if len(text) == answerTextLimit {
		text = []byte(r.TrimPartial(string(text)))
	}
	return text
}

func cut200(s string) string {
	if r := []rune(s); len(r) > 200 {
		return string(r[:200]) + "…"
	}
	return s
}

// ErrRefused is behind Probe's error when the intake refuses the key or the address.
var ErrRefused = errors.New("the intake refused the request")

// Probe checks that the intake takes the key: it posts an empty batch, which the intake
// accepts without storing anything (docs/remote-support.md). doctor uses it.
func Probe(ctx context.Context, hc *http.Client, url, key, userAgent string) error {
	c := &client{http: noRedirects(hc), url: url, key: key, userAgent: userAgent, timeout: time.Minute, redact: NewRedactor([]string{key})}
	body, err := encodeBatch(nil)
	if err != nil {
		return err
	}
	a := c.post(ctx, body, "")
	switch a.outcome {
	case accepted:
		return nil
	case refused:
		return fmt.Errorf("%w: %s", ErrRefused, a.detail)
	}
	return errors.New(a.detail)
}

// noRedirects is hc, not following redirects: a batch is not posted anywhere but where
// logs.ship.url says, and a redirect is an address to correct.
func noRedirects(hc *http.Client) *http.Client {
	c := *hc
	c.CheckRedirect = wan.NoRedirect
	return &c
}
