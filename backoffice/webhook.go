package backoffice

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
)

// Webhook request headers.
const (
	HeaderIdempotencyKey = "Idempotency-Key"     // "order:<order id>": the same for every attempt
	HeaderSignature      = "Storeedge-Signature" // "sha256=<hex HMAC-SHA256 of the body>", with a secret
)

// IdempotencyKey is the Idempotency-Key of an order's POST.
func IdempotencyKey(orderID string) string { return "order:" + orderID }

// Sign returns the Storeedge-Signature value of a body: "sha256=" and the hex HMAC-SHA256 of the
// body keyed with the secret. A receiver computes the same over the bytes it received and
// compares in constant time (hmac.Equal).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// webhookClient returns the client the agent posts with: the given one (or a direct one), never
// following redirects, as a redirected POST would become a GET or go where nobody configured.
func webhookClient(c *http.Client) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil // the ERP is on the shop's or company's network, not behind the WAN proxy
		out.Transport = tr
	}
	out.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &out
}

// webhookHost is the host of the webhook URL, for the status page.
func webhookHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

// exportWebhook POSTs the orders waiting for the webhook, oldest first, one at a time. An order
// the ERP refuses for good is set aside (StageExportFailed) and the next one goes; one that
// keeps failing in a retryable way ends the run, and it and those after it wait for the next.
func (a *Agent) exportWebhook(ctx context.Context) error {
	if now := a.now(); now.Before(a.webhookNotBefore) {
		return fmt.Errorf("backoffice: webhook: waiting until %s as the ERP asked (Retry-After)", a.webhookNotBefore.Format(time.RFC3339))
	}
	t := storage.ExportTarget{Name: storage.ExportWebhook}
	for {
		orders, err := a.o.DB.PendingExports(ctx, t, 100)
		if err != nil {
			return fmt.Errorf("backoffice: webhook: %w", err)
		}
		if len(orders) == 0 {
			return nil
		}
		for _, o := range orders {
			if err := a.postOrder(ctx, o); err != nil {
				return err
			}
		}
	}
}

// answer is what the webhook did with one POST.
type answer struct {
	status     int           // 0: no answer (err says why)
	text       string        // the start of the body, on one line
	retryAfter time.Duration // from Retry-After
	err        error
}

func (r answer) retryable() bool {
	return r.status == 0 || r.status == http.StatusRequestTimeout || r.status == http.StatusTooManyRequests || r.status >= 500
}

func (r answer) String() string {
	if r.status == 0 {
		return r.err.Error()
	}
	s := fmt.Sprintf("HTTP %d", r.status)
	if r.text != "" {
		s += ": " + r.text
	}
	return s
}

// postOrder POSTs one order until the ERP takes it, refuses it for good, or the attempts are
// spent.
func (a *Agent) postOrder(ctx context.Context, o orders.Order) error {
	body, err := marshalOrder(o)
	if err != nil {
		return fmt.Errorf("backoffice: webhook: order %d: %w", o.Number, err)
	}
	b := backoff.New(a.o.MinBackoff, a.o.MaxBackoff)
	for attempt := 1; ; attempt++ {
		r := a.post(ctx, o.ID, body)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case r.status >= 200 && r.status < 300:
			if err := a.step(stepPosted); err != nil {
				return err
			}
			if err := a.o.DB.RecordExport(ctx, storage.ExportWebhook, o.ID, r.String()); err != nil {
				return fmt.Errorf("backoffice: webhook: %w", err)
			}
			a.log.Debug("backoffice: order posted", slog.String(logKeyOrder, o.ID), slog.Int64(logKeyNumber, o.Number), slog.Int(logKeyStatus, r.status))
			return nil
		case r.status >= 300 && r.status < 400:
			return needsHuman{fmt.Errorf("backoffice: webhook: order %d: answered %s, a redirect, which is not followed: set backoffice.webhook.url to the final address", o.Number, r)}
		case r.status == http.StatusUnauthorized || r.status == http.StatusForbidden:
			// The webhook refuses the caller, whatever the order: every order would be refused so.
			return needsHuman{fmt.Errorf("backoffice: webhook: order %d: answered %s: the ERP refuses storeedge itself, not this order: check backoffice.webhook.secret against the ERP's; the orders wait for the next run", o.Number, r)}
		case r.status == http.StatusNotFound || r.status == http.StatusMethodNotAllowed || r.status == http.StatusGone:
			return needsHuman{fmt.Errorf("backoffice: webhook: order %d: answered %s: backoffice.webhook.url is not the address of a webhook that takes orders; the orders wait for the next run", o.Number, r)}
		case !r.retryable():
			if err := a.o.DB.FailExport(ctx, storage.ExportWebhook, o.ID, r.String()); err != nil {
				return fmt.Errorf("backoffice: webhook: %w", err)
			}
			a.refused.Add(1)
			a.log.Error("backoffice: the ERP refused an order; it is set aside until an admin retries it",
				slog.String(logKeyOrder, o.ID), slog.Int64(logKeyNumber, o.Number), slog.Int(logKeyStatus, r.status), slog.String(logKeyAnswer, r.text))
			return nil
		}
		if r.retryAfter > a.o.MaxBackoff {
			a.webhookNotBefore = a.now().Add(r.retryAfter)
			return fmt.Errorf("backoffice: webhook: order %d: %s; the ERP asked to wait %s", o.Number, r, r.retryAfter)
		}
		if attempt >= a.o.WebhookAttempts {
			return fmt.Errorf("backoffice: webhook: order %d: %d attempts failed, the last with %s", o.Number, attempt, r)
		}
		wait := b.Next(r.retryAfter)
		a.log.Debug("backoffice: webhook POST failed; retrying", slog.Int64(logKeyNumber, o.Number), slog.String(logKeyError, r.String()), slog.Duration("retry_in", wait))
		if err := backoff.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// post sends one POST, bounded by the webhook timeout.
func (a *Agent) post(ctx context.Context, orderID string, body []byte) answer {
	ctx, cancel := context.WithTimeout(ctx, a.o.Config.Webhook.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.o.Config.Webhook.URL, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", a.o.UserAgent)
	req.Header.Set(HeaderIdempotencyKey, IdempotencyKey(orderID))
	if secret := a.o.Config.Webhook.Secret.Reveal(); secret != "" {
		req.Header.Set(HeaderSignature, Sign(secret, body))
	}
	resp, err := a.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("no answer within %s", a.o.Config.Webhook.Timeout)
		}
		return answer{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 {
		// 101 Switching Protocols (100 and the other interim answers the client reads past): the
		// body is then the connection itself, which no timeout bounds; no answer to a POST.
		return answer{err: fmt.Errorf("answered %s, not an answer to the order", resp.Status)}
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection can be reused
	return answer{status: resp.StatusCode, text: oneLine(head, 200), retryAfter: backoff.ParseRetryAfter(resp.Header.Get("Retry-After"), a.now())}
}

// oneLine makes an answer body fit a log line and a ledger entry: control characters become
// spaces, runs of space one space, at most n runes.
func oneLine(b []byte, n int) string {
	var sb strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(string(b), "\uFFFD") {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = sb.Len() > 0
			continue
		}
		if n == 0 {
			sb.WriteString("…")
			break
		}
		if space {
			sb.WriteByte(' ')
			space = false
		}
		sb.WriteRune(r)
		n--
	}
	return sb.String()
}

// RetryWebhook offers an order the ERP refused for good to the webhook again, at the next run
// (an admin fixed the cause). It reports whether the order had been refused.
func (a *Agent) RetryWebhook(ctx context.Context, orderID string) (bool, error) {
	ok, err := a.o.DB.RetryExport(ctx, storage.ExportWebhook, orderID)
	if err != nil {
		return false, fmt.Errorf("backoffice: %w", err)
	}
	if ok {
		a.log.Info("backoffice: order offered to the webhook again", slog.String(logKeyOrder, orderID))
	}
	return ok, nil
}

// WebhookFailures returns up to limit orders the ERP refused for good, newest first, with its
// answers.
func (a *Agent) WebhookFailures(ctx context.Context, limit int) ([]storage.ExportFailure, error) {
	return a.o.DB.ExportFailures(ctx, storage.ExportWebhook, limit)
}
