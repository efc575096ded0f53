package config

import (
	"fmt"
	"net/mail"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// SMTP configures the mail server that alerts go through (docs/operations.md). An empty Host
// sends no mail: alerts still open and resolve, and the status shows them.
type SMTP struct {
	// Host is the mail server's host name or IP address, without a port; "" sends no mail.
	Host string `yaml:"host"`
	// Port is the mail server's port: 25 or 587 for SMTPSecurityNone and SMTPSecurityStartTLS,
	// 465 for SMTPSecurityTLS, as the mail server's administrator says.
	Port int `yaml:"port"`
	// Security is SMTPSecurityNone, SMTPSecurityStartTLS or SMTPSecurityTLS.
	Security string `yaml:"security"`
	// User and Password, when set, authenticate to the mail server (SMTP AUTH). Both or
	// neither; not with SMTPSecurityNone, which would send the password in clear.
	User     string `yaml:"user"`
	Password Secret `yaml:"password"`
	// From is the sender address of the alerts, e.g. "storeedge@shop.example".
	From string `yaml:"from"`
	// Recipients are the addresses every alert goes to.
	Recipients []string `yaml:"recipients"`
	// Timeout bounds one conversation with the mail server, connection included.
	Timeout time.Duration `yaml:"timeout"`
}

// The values of SMTP.Security.
const (
	SMTPSecurityNone     = "none"     // plain SMTP, no encryption
	SMTPSecurityStartTLS = "starttls" // STARTTLS required: the mail is never sent in clear
	SMTPSecurityTLS      = "tls"      // implicit TLS from the first byte (port 465)
)

// Enabled reports whether mail is configured.
func (s SMTP) Enabled() bool { return s.Host != "" }

// Alerts configures the alert rules: each opens when its condition has held long enough and
// resolves when it no longer holds, with one mail each time (docs/operations.md).
type Alerts struct {
	// CheckInterval is how often the rules are evaluated.
	CheckInterval time.Duration `yaml:"check_interval"`
	// MaxMailsPerHour caps the mails sent in any hour; alerts beyond it wait and go together in
	// one digest mail.
	MaxMailsPerHour int `yaml:"max_mails_per_hour"`
	// WANDown: the cloud has been unreachable (or refusing the shop) for After.
	WANDown AlertAfter `yaml:"wan_down"`
	// UploadWaiting: an order has been waiting longer than After to upload to the cloud.
	UploadWaiting AlertAfter `yaml:"upload_waiting"`
	// UploadRefused: the cloud refused orders (or other events) for good; they wait for an
	// admin's retry.
	UploadRefused AlertSwitch `yaml:"upload_refused"`
	// DeadLettered: an order from Service Bus was dead-lettered.
	DeadLettered AlertSwitch `yaml:"dead_lettered"`
	// Quarantined: feed documents are quarantined (malformed, set aside).
	Quarantined AlertSwitch `yaml:"quarantined"`
	// DiskLow: data_dir's disk has less than FreeMB MiB free.
	DiskLow AlertDisk `yaml:"disk_low"`
	// DiskFailed: the disk failed a flush of the database, which then takes no order.
	DiskFailed AlertSwitch `yaml:"disk_failed"`
	// MediaQuotaFull: the media cache has reached its quota.
	MediaQuotaFull AlertSwitch `yaml:"media_quota_full"`
	// DevicesOffline: a paired device has not been heard from for After. Off by default: a
	// shop whose devices sleep at night would be told every morning.
	DevicesOffline AlertAfter `yaml:"devices_offline"`
	// BackupFailed: the last scheduled backup (backup.dir) failed.
	BackupFailed AlertSwitch `yaml:"backup_failed"`
	// BackOfficeFailing: the runs of the exchange with the ERP have been failing for After.
	BackOfficeFailing AlertAfter `yaml:"backoffice_failing"`
	// BackOfficeRefused: the ERP's webhook refused an order for good, or a stock file was
	// refused (moved to failed/).
	BackOfficeRefused AlertSwitch `yaml:"backoffice_refused"`
}

// AlertSwitch turns a rule on or off.
type AlertSwitch struct {
	Enabled bool `yaml:"enabled"`
}

// AlertAfter is a rule that opens once its condition has held for After.
type AlertAfter struct {
	Enabled bool          `yaml:"enabled"`
	After   time.Duration `yaml:"after"`
}

// AlertDisk is the rule on data_dir's free space.
type AlertDisk struct {
	Enabled bool `yaml:"enabled"`
	// FreeMB is the free space, in MiB, below which the disk counts as almost full.
	FreeMB int `yaml:"free_mb"`
}

// Defaults of the smtp and alerts sections.
const (
	DefaultSMTPPort            = 25
	DefaultSMTPSecurity        = SMTPSecurityStartTLS
	DefaultSMTPTimeout         = 30 * time.Second
	DefaultAlertCheckInterval  = 30 * time.Second
	DefaultAlertMailsPerHour   = 10
	DefaultAlertWANDownAfter   = 10 * time.Minute
	DefaultAlertUploadAfter    = 15 * time.Minute
	DefaultAlertDiskFreeMB     = 2048
	DefaultAlertDevicesOffline = 30 * time.Minute
	DefaultAlertBackOfficeFor  = 30 * time.Minute
)

func defaultSMTP() SMTP {
	return SMTP{Port: DefaultSMTPPort, Security: DefaultSMTPSecurity, Timeout: DefaultSMTPTimeout}
}

func defaultAlerts() Alerts {
	return Alerts{
		CheckInterval:     DefaultAlertCheckInterval,
		MaxMailsPerHour:   DefaultAlertMailsPerHour,
		WANDown:           AlertAfter{Enabled: true, After: DefaultAlertWANDownAfter},
		UploadWaiting:     AlertAfter{Enabled: true, After: DefaultAlertUploadAfter},
		UploadRefused:     AlertSwitch{Enabled: true},
		DeadLettered:      AlertSwitch{Enabled: true},
		Quarantined:       AlertSwitch{Enabled: true},
		DiskLow:           AlertDisk{Enabled: true, FreeMB: DefaultAlertDiskFreeMB},
		DiskFailed:        AlertSwitch{Enabled: true},
		MediaQuotaFull:    AlertSwitch{Enabled: true},
		DevicesOffline:    AlertAfter{Enabled: false, After: DefaultAlertDevicesOffline},
		BackupFailed:      AlertSwitch{Enabled: true},
		BackOfficeFailing: AlertAfter{Enabled: true, After: DefaultAlertBackOfficeFor},
		BackOfficeRefused: AlertSwitch{Enabled: true},
	}
}

const (
	maxSMTPHostLen    = 253 // a DNS name
	maxSMTPUserLen    = 256
	maxMailAddressLen = 254 // RFC 5321's path limit
	maxRecipients     = 50
)

func (v *validator) smtp(s SMTP) {
	v.smtpHost(s.Host)
	v.intRange("smtp.port", s.Port, 1, 65535)
	switch s.Security {
	case SMTPSecurityNone, SMTPSecurityStartTLS, SMTPSecurityTLS:
	default:
		v.add("smtp.security", quote(s.Security), `want "none", "starttls" or "tls" (implicit TLS, usually port 465)`)
	}
	v.smtpCredentials(s)
	if s.From != "" || s.Host != "" {
		v.mailAddress("smtp.from", s.From, "the sender address of the alerts, e.g. \"storeedge@shop.example\"")
	}
	switch {
	case s.Host != "" && len(s.Recipients) == 0:
		v.add("smtp.recipients", `""`, "empty; want the addresses the alerts go to, e.g. [it@shop.example]")
	case s.Host == "" && len(s.Recipients) > 0:
		v.add("smtp.host", `""`, "empty, so the alerts for smtp.recipients would never be sent; name the mail server")
	case len(s.Recipients) > maxRecipients:
		v.add("smtp.recipients", strconv.Itoa(len(s.Recipients))+" addresses", fmt.Sprintf("more than %d; use a mailing list", maxRecipients))
	}
	for _, r := range s.Recipients {
		v.mailAddress("smtp.recipients", r, "an address like it@shop.example")
	}
	v.durRange("smtp.timeout", s.Timeout, time.Second, 5*time.Minute)
}

func (v *validator) smtpHost(h string) {
	const key = "smtp.host"
	switch {
	case h == "":
	case strings.Contains(h, "://"):
		v.add(key, quote(h), `want a host name or IP address alone, e.g. "mail.example.com", without a scheme`)
	case len(h) > maxSMTPHostLen || strings.IndexFunc(h, notVisible) >= 0 || strings.ContainsAny(h, "/@[]"):
		v.add(key, quote(h), `want a host name or IP address, e.g. "mail.example.com"`)
	case strings.Contains(h, ":"):
		if _, err := netip.ParseAddr(h); err != nil {
			v.add(key, quote(h), "want the host alone; the port goes in smtp.port")
		}
	}
}

func (v *validator) smtpCredentials(s SMTP) {
	const key = "smtp.password"
	pw := s.Password.Reveal()
	switch {
	case !utf8.ValidString(s.User) || utf8.RuneCountInString(s.User) > maxSMTPUserLen || strings.IndexFunc(s.User, unicode.IsControl) >= 0:
		v.add("smtp.user", quote(s.User), fmt.Sprintf("want at most %d characters, without control characters", maxSMTPUserLen))
	case s.User != "" && pw == "":
		v.add(key, `""`, "missing; smtp.user is set: put the mail account's password here, or set "+EnvName(key))
	case s.User == "" && pw != "":
		v.add("smtp.user", `""`, "empty while smtp.password is set; name the mail account")
	case s.User != "" && s.Security == SMTPSecurityNone:
		v.add("smtp.security", quote(s.Security), "would send smtp.password in clear; use \"starttls\" or \"tls\", or leave smtp.user empty")
	}
	switch {
	case pw == "":
	case pw == Redaction:
		v.add(key, quote(Redaction), `is the placeholder shown by "storeedge config", not the password; put the real one`)
	case len(pw) > maxSecretLen:
		v.add(key, quote(Redaction), fmt.Sprintf("longer than %d bytes; is it the right value?", maxSecretLen))
	case strings.IndexFunc(pw, unicode.IsControl) >= 0:
		v.add(key, quote(Redaction), "contains line breaks or control characters (a copy-paste slip?)")
	}
}

// mailAddress checks one address as the mail library reads it: "it@shop.example" or
// "Shop IT <it@shop.example>".
func (v *validator) mailAddress(key, a, want string) {
	if a == "" {
		v.add(key, `""`, "empty; want "+want)
		return
	}
	if len(a) > maxMailAddressLen || strings.IndexFunc(a, unicode.IsControl) >= 0 {
		v.add(key, quote(a), "not a mail address; want "+want)
		return
	}
	if _, err := mail.ParseAddress(a); err != nil {
		v.add(key, quote(a), "not a mail address; want "+want)
	}
}

func (v *validator) alerts(a Alerts) {
	v.durRange("alerts.check_interval", a.CheckInterval, 5*time.Second, 10*time.Minute)
	v.intRange("alerts.max_mails_per_hour", a.MaxMailsPerHour, 1, 1000)
	v.durRange("alerts.wan_down.after", a.WANDown.After, time.Minute, 24*time.Hour)
	v.durRange("alerts.upload_waiting.after", a.UploadWaiting.After, time.Minute, 24*time.Hour)
	v.intRange("alerts.disk_low.free_mb", a.DiskLow.FreeMB, 1, 1<<20)
	v.durRange("alerts.devices_offline.after", a.DevicesOffline.After, 5*time.Minute, 7*24*time.Hour)
	v.durRange("alerts.backoffice_failing.after", a.BackOfficeFailing.After, time.Minute, 7*24*time.Hour)
}
