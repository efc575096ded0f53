package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/ops/alerts"
)

// alertsStub answers a fixed alerts status, as ops/alerts would with its mail server failing.
type alertsStub struct {
	st  alerts.Status
	err error
}

func (a alertsStub) Status(ctx context.Context) (alerts.Status, error) { return a.st, a.err }

// The status carries the alerts: what is open, what waits to be mailed and why the mail
// server cannot be used (a refused login, named as such); null when the daemon runs none.
func TestStatusShowsAlerts(t *testing.T) {
	at := testNow.Add(-12 * time.Minute).UTC()
	failedAt, next := testNow.Add(-time.Minute).UTC(), testNow.Add(time.Minute).UTC()
	want := alerts.Status{
		Mail: alerts.MailFailing,
		Open: []alerts.OpenAlert{{Rule: alerts.RuleWANDown, Title: "WAN down", Summary: "the cloud cannot be reached (unreachable)",
			Since: at, OpenedAt: at.Add(10 * time.Minute)}},
		QueuedMails: 1, OldestQueuedAt: &at,
		LastError:   "smtp: mail.example.com:587: the mail server refused the login: check smtp.user and smtp.password: 535 5.7.8 Authentication credentials invalid",
		LastErrorAt: &failedAt, NextAttemptAt: &next,
	}
	f := newFixtureDB(t, openDB(t), func(o *Options) { o.Alerts = alertsStub{st: want} })
	st := decodeOK[statusJSON](t, f.get(t, "/api/v1/status"))
	if st.Alerts == nil || st.Alerts.Mail != alerts.MailFailing || len(st.Alerts.Open) != 1 || st.Alerts.Open[0] != want.Open[0] ||
		st.Alerts.QueuedMails != 1 || !strings.Contains(st.Alerts.LastError, "refused the login") || st.Alerts.LastSentAt != nil {
		t.Errorf("alerts: %+v", st.Alerts)
	}

	none := newFixtureDB(t, openDB(t))
	if body := none.get(t, "/api/v1/status").Body.String(); !strings.Contains(body, `"alerts":null`) {
		t.Errorf("no alerts, yet: %s", body)
	}

	broken := newFixtureDB(t, openDB(t), func(o *Options) { o.Alerts = alertsStub{err: errors.New("database is locked")} })
	wantProblem(t, broken.get(t, "/api/v1/status"), http.StatusInternalServerError, "internal", "")
}
