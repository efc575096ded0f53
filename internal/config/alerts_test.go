package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

const secretSMTP = "smtp-S3CRET-pass word"

// mailConfig is a valid configuration that mails alerts through an authenticated server.
func mailConfig() Config {
	c := valid()
	c.SMTP.Host = "mail.example.com"
	c.SMTP.Port = 587
	c.SMTP.User = "storeedge@shop.example"
	c.SMTP.Password = secretSMTP
	c.SMTP.From = "Shop server <storeedge@shop.example>"
	c.SMTP.Recipients = []string{"it@shop.example", "support@vendor.example"}
	return c
}

func TestSMTPValidateAccepts(t *testing.T) {
	for name, mod := range map[string]func(c *Config){
		"authenticated, STARTTLS":      func(c *Config) {},
		"implicit TLS":                 func(c *Config) { c.SMTP.Security, c.SMTP.Port = SMTPSecurityTLS, 465 },
		"relay without login":          func(c *Config) { c.SMTP.Security, c.SMTP.User, c.SMTP.Password = SMTPSecurityNone, "", "" },
		"IPv4 host":                    func(c *Config) { c.SMTP.Host = "192.168.1.5" },
		"user of 256 accented letters": func(c *Config) { c.SMTP.User = strings.Repeat("é", 256) },
		"IPv6 host":                    func(c *Config) { c.SMTP.Host = "fd00::5" },
		"no mail, no recipients":       func(c *Config) { c.SMTP = defaultSMTP() },
		"devices offline opted in":     func(c *Config) { c.Alerts.DevicesOffline.Enabled = true },
		"every rule off": func(c *Config) {
			c.Alerts.WANDown.Enabled, c.Alerts.UploadWaiting.Enabled, c.Alerts.DeadLettered.Enabled = false, false, false
			c.Alerts.Quarantined.Enabled, c.Alerts.DiskLow.Enabled, c.Alerts.MediaQuotaFull.Enabled = false, false, false
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := mailConfig()
			mod(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("rejected: %v", err)
			}
		})
	}
}

// Each bad value gets one problem that names its key and says what to do.
func TestSMTPValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"host with scheme", func(c *Config) { c.SMTP.Host = "smtp://mail.example.com" },
			`smtp.host: "smtp://mail.example.com": want a host name or IP address alone, e.g. "mail.example.com", without a scheme`},
		{"host with port", func(c *Config) { c.SMTP.Host = "mail.example.com:587" },
			`smtp.host: "mail.example.com:587": want the host alone; the port goes in smtp.port`},
		{"host with space", func(c *Config) { c.SMTP.Host = "mail example" },
			`smtp.host: "mail example": want a host name or IP address, e.g. "mail.example.com"`},
		{"port 0", func(c *Config) { c.SMTP.Port = 0 },
			`smtp.port: 0: must be between 1 and 65535`},
		{"unknown security", func(c *Config) { c.SMTP.Security = "ssl" },
			`smtp.security: "ssl": want "none", "starttls" or "tls" (implicit TLS, usually port 465)`},
		{"password in clear", func(c *Config) { c.SMTP.Security = SMTPSecurityNone },
			`smtp.security: "none": would send smtp.password in clear; use "starttls" or "tls", or leave smtp.user empty`},
		{"user without password", func(c *Config) { c.SMTP.Password = "" },
			`smtp.password: "": missing; smtp.user is set: put the mail account's password here, or set STOREEDGE_SMTP_PASSWORD`},
		{"password without user", func(c *Config) { c.SMTP.User = "" },
			`smtp.user: "": empty while smtp.password is set; name the mail account`},
		{"password placeholder", func(c *Config) { c.SMTP.Password = Redaction },
			`smtp.password: "xxxxx": is the placeholder shown by "storeedge config", not the password; put the real one`},
		{"password with a line break", func(c *Config) { c.SMTP.Password = "pass\n" },
			`smtp.password: "xxxxx": contains line breaks or control characters (a copy-paste slip?)`},
		{"no sender", func(c *Config) { c.SMTP.From = "" },
			`smtp.from: "": empty; want the sender address of the alerts, e.g. "storeedge@shop.example"`},
		{"bad sender", func(c *Config) { c.SMTP.From = "storeedge" },
			`smtp.from: "storeedge": not a mail address; want the sender address of the alerts`},
		{"no recipients", func(c *Config) { c.SMTP.Recipients = nil },
			`smtp.recipients: "": empty; want the addresses the alerts go to, e.g. [it@shop.example]`},
		{"bad recipient", func(c *Config) { c.SMTP.Recipients = []string{"it@shop.example", "it at shop"} },
			`smtp.recipients: "it at shop": not a mail address; want an address like it@shop.example`},
		{"recipients without a server", func(c *Config) { c.SMTP.Host, c.SMTP.User, c.SMTP.Password = "", "", "" },
			`smtp.host: "": empty, so the alerts for smtp.recipients would never be sent; name the mail server`},
		{"timeout too long", func(c *Config) { c.SMTP.Timeout = time.Hour },
			`smtp.timeout: "1h": must be between "1s" and "5m"`},
		{"check interval too short", func(c *Config) { c.Alerts.CheckInterval = time.Second },
			`alerts.check_interval: "1s": must be between "5s" and "10m"`},
		{"no mails at all", func(c *Config) { c.Alerts.MaxMailsPerHour = 0 },
			`alerts.max_mails_per_hour: 0: must be between 1 and 1000`},
		{"WAN threshold too short", func(c *Config) { c.Alerts.WANDown.After = 10 * time.Second },
			`alerts.wan_down.after: "10s": must be between "1m" and "24h"`},
		{"upload threshold too long", func(c *Config) { c.Alerts.UploadWaiting.After = 48 * time.Hour },
			`alerts.upload_waiting.after: "48h": must be between "1m" and "24h"`},
		{"disk threshold 0", func(c *Config) { c.Alerts.DiskLow.FreeMB = 0 },
			`alerts.disk_low.free_mb: 0: must be between 1 and 1048576`},
		{"devices threshold too short", func(c *Config) { c.Alerts.DevicesOffline.After = time.Minute },
			`alerts.devices_offline.after: "1m": must be between "5m" and "168h"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mailConfig()
			tc.mod(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("accepted; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got\n%s\nwant a line with\n%s", err, tc.want)
			}
			if n := len(strings.Split(err.Error(), "\n")); n != 1 {
				t.Errorf("one bad value gave %d problems:\n%s", n, err)
			}
			assertNoSecret(t, "Validate", err.Error())
			if strings.Contains(err.Error(), "pass word") {
				t.Errorf("Validate shows the SMTP password: %s", err)
			}
		})
	}
}

// The SMTP password is hidden wherever the configuration is shown: the configuration view,
// JSON, fmt and the log.
func TestSMTPPasswordHidden(t *testing.T) {
	c := mailConfig()
	var b bytes.Buffer
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "smtp", c.SMTP, "password", c.SMTP.Password)
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for what, out := range map[string]string{
		"Redacted": c.Redacted(), "JSON": string(j), "fmt": fmt.Sprintf("%+v %#v", c.SMTP, c), "slog": b.String(),
	} {
		if strings.Contains(out, secretSMTP) {
			t.Errorf("%s shows the SMTP password:\n%s", what, out)
		}
	}
	if !strings.Contains(c.Redacted(), `password: "xxxxx"`) {
		t.Errorf("Redacted does not show that the password is set:\n%s", c.Redacted())
	}
	// Fed back, the view is refused rather than run with the placeholder as the password.
	back := c
	back.SMTP.Password = Redaction
	if err := back.Validate(); err == nil || !strings.Contains(err.Error(), "smtp.password") {
		t.Errorf("the placeholder as password: %v", err)
	}
}

// Recipients come as a list in the file and comma-separated from the environment.
func TestSMTPRecipientsFromEnvironment(t *testing.T) {
	c := Default()
	if err := c.Set("smtp.recipients", "it@shop.example, support@vendor.example"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.SMTP.Recipients, "|"); got != "it@shop.example|support@vendor.example" {
		t.Errorf("recipients = %q", got)
	}
}
