package alerts

import (
	"fmt"
	"strings"
	"time"

	"github.com/storeedge/storeedge/storage"
)

// Message is one mail, as a Mailer sends it to every recipient.
type Message struct {
	ID      string // the Message-ID, without angle brackets
	Date    time.Time
	Subject string
	Body    string // plain text
}

// Identity names the shop and the server in every mail, so that someone who looks after many
// shops knows which one speaks.
type Identity struct {
	ShopName string
	ShopID   string // "" when not configured
	ServerID string
}

func (id Identity) subject(s string) string { return "[storeedge] " + id.ShopName + ": " + s }

// footer ends every mail: who sends it and where to read more.
func (id Identity) footer(rule string) string {
	var b strings.Builder
	b.WriteString("\n-- \n")
	fmt.Fprintf(&b, "Shop: %s", id.ShopName)
	if id.ShopID != "" {
		fmt.Fprintf(&b, " (id %s)", id.ShopID)
	}
	fmt.Fprintf(&b, "\nServer: %s\n", id.ServerID)
	if rule != "" {
		fmt.Fprintf(&b, "Every alert is explained in the storeedge documentation, docs/operations.md, under %q.\n", rule)
	}
	b.WriteString("The server's status: GET /api/v1/status on its admin port, with the admin token.\n")
	return b.String()
}

// notice is the queued mail of an alert that opened or resolved; st is the alert as it was
// open.
func (id Identity) notice(r rule, st storage.AlertState, event string, now time.Time) *storage.AlertMail {
	var b strings.Builder
	var subject string
	switch event {
	case storage.AlertOpened:
		subject = "ALERT " + r.title
		fmt.Fprintf(&b, "ALERT: %s\n\n%s.\n\n", r.title, sentence(st.Summary))
		fmt.Fprintf(&b, "Since: %s\n", when(st.PendingSince))
		b.WriteString(st.Detail)
		fmt.Fprintf(&b, "\nWhat to do: %s\n", r.advice)
	default:
		subject = "RESOLVED " + r.title
		fmt.Fprintf(&b, "RESOLVED: %s\n\nThe alert opened %s has resolved, after %s. It said:\n%s.\n",
			r.title, when(st.OpenedAt), durText(now.Sub(st.OpenedAt)), sentence(st.Summary))
		if r.resolved != "" {
			fmt.Fprintf(&b, "\n%s\n", r.resolved)
		}
	}
	b.WriteString(id.footer(r.name))
	return &storage.AlertMail{Rule: r.name, Event: event, At: now, Subject: id.subject(subject), Body: b.String()}
}

// single is the mail that carries one queued notice.
func (id Identity) single(m storage.AlertMail, now time.Time) Message {
	return Message{ID: id.messageID("alert", m.ID, m.At), Date: now, Subject: m.Subject, Body: m.Body}
}

// digest is the mail that carries several queued notices, when the hourly limit does not let
// them go one by one.
func (id Identity) digest(ms []storage.AlertMail, now time.Time) Message {
	var b strings.Builder
	fmt.Fprintf(&b, "More alerts opened or resolved than alerts.max_mails_per_hour lets go one by one, so these %d come together, oldest first.\n", len(ms))
	for _, m := range ms {
		fmt.Fprintf(&b, "\n=== %s (%s)\n\n%s", m.Subject, when(m.At), m.Body)
	}
	return Message{
		ID:      id.messageID("alerts", ms[0].ID, ms[0].At) + "-" + fmt.Sprint(ms[len(ms)-1].ID),
		Date:    now,
		Subject: id.subject(fmt.Sprintf("%d alert notices", len(ms))),
		Body:    b.String(),
	}
}

// TestMessage is what "storeedge alert test" sends.
func (id Identity) TestMessage(now time.Time, via string) Message {
	body := "This is a test message from storeedge: alerts by e-mail work.\n\n" +
		fmt.Sprintf("Sent %s through %s.\n", when(now), via) + id.footer("")
	return Message{ID: id.messageID("test", now.UnixNano(), now), Date: now, Subject: id.subject("test message"), Body: body}
}

// messageID makes a Message-ID unique to this server: the same notice keeps the same id when
// it is sent again after a crash, so a mail client can tell. The notice's time is in it with its
// number: a restored database, or a new data_dir under the same server_id, numbers its notices
// from where it stands again, and a mail client would take a new alert for one already read.
func (id Identity) messageID(kind string, n int64, at time.Time) string {
	return fmt.Sprintf("%s-%d.%d.%s@storeedge", kind, n, at.UnixMilli(), id.ServerID)
}

// when writes a time for a person: local time with its offset.
func when(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 -0700") }

// durText writes a duration as a person would: "25m", "2h5m", "40s".
func durText(d time.Duration) string {
	if d >= time.Minute {
		d = d.Round(time.Minute)
	} else {
		d = d.Round(time.Second)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// sentence gives a summary a capital letter.
func sentence(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
