package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Config is the whole configuration of one storeedge server. The field order is the order of
// the keys in the example file and in Keys; the yaml tags are the key names.
type Config struct {
	// File is the configuration file Load read ("" for none): what the server was started with,
	// for the doctor report a support request asks for. Not a key.
	File string `yaml:"-" json:"-"`
	// ServerID is the stable id of this server, announced to devices. Empty in the file means
	// "derive it from the host name"; Load fills it in, so a loaded Config always has one.
	ServerID string `yaml:"server_id"`
	Shop     Shop   `yaml:"shop"`
	// DataDir holds the database (see DatabasePath) and the media cache.
	DataDir string `yaml:"data_dir"`
	Cloud   Cloud  `yaml:"cloud"`
	WAN     WAN    `yaml:"wan"`
	LAN     LAN    `yaml:"lan"`
	// Discovery configures how devices find the server with no typing (docs/discovery.md).
	Discovery Discovery `yaml:"discovery"`
	// Orders configures how orders taken in the shop travel to the cloud.
	Orders Orders `yaml:"orders"`
	// ServiceBus configures receiving the shop's orders from Azure Service Bus.
	ServiceBus ServiceBus `yaml:"servicebus"`
	// Media configures the media cache: images, videos and documents fetched from the shop's
	// Blob container and served on the media port (docs/media.md).
	Media Media `yaml:"media"`
	// BackOffice configures the exchange with the shop's back office (ERP): order export and
	// stock import.
	BackOffice BackOffice `yaml:"backoffice"`
	// Admin configures the admin credential.
	Admin Admin `yaml:"admin"`
	// Metrics configures the Prometheus metrics on the admin port.
	Metrics Metrics `yaml:"metrics"`
	// Devices configures pairing and the push channel to devices.
	Devices Devices `yaml:"devices"`
	// Backup configures scheduled backups of the database.
	Backup Backup `yaml:"backup"`
	// SMTP and Alerts configure the alerts by e-mail (config/alerts.go).
	SMTP   SMTP   `yaml:"smtp"`
	Alerts Alerts `yaml:"alerts"`
	Log    Log    `yaml:"log"`
	// Logs configures shipping the log to the vendor's log intake (logship.go).
	Logs Logs `yaml:"logs"`
	// Support configures the remote support channel (support.go).
	Support Support `yaml:"support"`

	// UnknownEnv lists the STOREEDGE_* environment variables that Load found but that name no
	// key (a typo, or a variable from another version). They are ignored; the caller should
	// warn about them (EnvWarnings). Names only: their values may be secrets.
	UnknownEnv []string `yaml:"-"`
}

// EnvWarning is a STOREEDGE_* variable that names no key and was ignored.
type EnvWarning struct {
	Name       string // e.g. STOREEDGE_CLOUD_STOREKEY
	DidYouMean string // the variable of the nearest key, e.g. STOREEDGE_CLOUD_STORE_KEY; "" when none is near
}

func (w EnvWarning) String() string {
	s := "environment " + w.Name + ": names no configuration key; ignored"
	if w.DidYouMean != "" {
		s += " (did you mean " + w.DidYouMean + "?)"
	}
	return s
}

// EnvWarnings returns a warning for each variable of UnknownEnv, with the variable probably
// meant. Every command that loads the configuration shows them.
func (c *Config) EnvWarnings() []EnvWarning {
	var out []EnvWarning
	for _, name := range c.UnknownEnv {
		out = append(out, EnvWarning{Name: name, DidYouMean: suggestEnv(name)})
	}
	return out
}

// Shop describes the shop this server serves.
type Shop struct {
	// ID is the shop's id at the vendor. Optional: the cloud's remote configuration fills it.
	ID string `yaml:"id"`
	// Name is shown to devices and on the status page.
	Name string `yaml:"name"`
	// Mode is ModeTest or ModeProduction. In test mode orders are flagged as test, carry the
	// note "TEST" in every back-office export, and never reach the production export targets
	// (BackOffice.Export.Dir, BackOffice.Webhook.URL): they go to BackOffice.Export.TestDir if
	// it is set, and nowhere else. Going to production is a deliberate change of this key.
	Mode string `yaml:"mode"`
}

// The values of Shop.Mode.
const (
	ModeTest       = "test"
	ModeProduction = "production"
)

// IsTest reports whether the shop runs in test mode. Anything but ModeProduction counts as
// test (a Config that passed Validate holds one of the two), so that a mistake never sends
// test orders to the production targets.
func (s Shop) IsTest() bool { return s.Mode != ModeProduction }

// Cloud configures the connection to the vendor's platform (docs/cloud-api.md).
type Cloud struct {
	// URL is the base URL of the cloud sync API. https is required, except for loopback hosts
	// (a local cloudsim), which may use http.
	URL string `yaml:"url"`
	// StoreKey is the bearer key that identifies the shop to the cloud. Required to run.
	StoreKey Secret `yaml:"store_key"`
	// PageSize is the number of changes asked for per feed page.
	PageSize int `yaml:"page_size"`
	// PollInterval is how long to wait between feed polls once caught up.
	PollInterval time.Duration `yaml:"poll_interval"`
	// RequestTimeout bounds one cloud request, body included.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// Sync turns background sync with the cloud on or off.
	Sync bool `yaml:"sync"`
}

// WAN configures how the server reaches the internet. Every WAN connection goes through one
// proxy-aware dialer that reads these settings.
type WAN struct {
	// Proxy is "" (use the proxy environment variables if UseEnvironment, else connect
	// directly), "direct", or a proxy URL: http://[user:password@]host:port (HTTP CONNECT) or
	// socks5://[user:password@]host:port.
	Proxy Proxy `yaml:"proxy"`
	// UseEnvironment lets an empty Proxy fall back to HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and
	// NO_PROXY.
	UseEnvironment bool `yaml:"use_environment"`
	// ExtraCAFile is a PEM file of certificates trusted in addition to the system's, for
	// proxies that inspect TLS. Validate checks that it exists; its content is read at start.
	ExtraCAFile string `yaml:"extra_ca_file"`
	// ConnectTimeout bounds establishing one connection (proxy, TCP and TLS handshakes).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// LAN configures the listeners that shop devices use.
type LAN struct {
	// Bind is the IP address to listen on; "" listens on every interface.
	Bind string `yaml:"bind"`
	// FrontDoor is the port that carries every service; 0 turns it off.
	FrontDoor int `yaml:"front_door"`
	// FrontDoorAdmin puts the admin API and the status page on the front door too; false keeps
	// them on the admin port only, so that a firewall rule on that port keeps them to shop IT.
	FrontDoorAdmin bool `yaml:"front_door_admin"`
	// Services are the ports of each service's own listener.
	Services Services `yaml:"services"`

	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxHeaderBytes bounds a request's header block.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ShutdownGrace is how long in-flight requests get to finish when the server stops.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// ReadCacheMB is the memory, in MiB, that may hold products for lookups by id and by
	// barcode; 0 turns the cache off and every lookup reads the database.
	ReadCacheMB int `yaml:"read_cache_mb"`
}

// Services holds the port of each service's own listener; 0 turns that listener off (the
// service stays reachable through the front door).
type Services struct {
	Catalog int `yaml:"catalog"`
	Media   int `yaml:"media"`
	Orders  int `yaml:"orders"`
	Devices int `yaml:"devices"`
	Events  int `yaml:"events"`
	Admin   int `yaml:"admin"`
}

// Discovery configures UDP discovery on the LAN and the mDNS/DNS-SD service.
type Discovery struct {
	UDP  DiscoveryUDP  `yaml:"udp"`
	MDNS DiscoveryMDNS `yaml:"mdns"`
	// Interfaces limits discovery to these network interfaces, by name ("eth0", "Ethernet 2");
	// empty means every interface that is up, not loopback and has an IPv4 address.
	Interfaces []string `yaml:"interfaces"`
	// AnnounceInterval is the period of UDP announcements; they also go out at start and when
	// the interfaces' addresses change.
	AnnounceInterval time.Duration `yaml:"announce_interval"`
}

// DiscoveryUDP configures probes, answers, announcements and hellos on UDP.
type DiscoveryUDP struct {
	Enabled bool `yaml:"enabled"`
	// Port is the UDP port, 57854 unless every device is configured otherwise.
	Port int `yaml:"port"`
	// AnswerInterval and AnswerBurst limit answers per source address: one per interval on
	// average, bursts of AnswerBurst.
	AnswerInterval time.Duration `yaml:"answer_interval"`
	AnswerBurst    int           `yaml:"answer_burst"`
}

// DiscoveryMDNS configures the mDNS/DNS-SD service (_storeedge._tcp).
type DiscoveryMDNS struct {
	Enabled bool `yaml:"enabled"`
}

// Orders configures how orders travel to the cloud.
type Orders struct {
	// OutboxBatch is the number of events sent per upload to the cloud (POST /v1/events).
	OutboxBatch int `yaml:"outbox_batch"`
}

// ServiceBus configures receiving the shop's orders (web shop, marketplace) from an Azure
// Service Bus queue.
type ServiceBus struct {
	// Enabled turns the receiver on.
	Enabled bool `yaml:"enabled"`
	// ConnectionString is the Azure connection string of a shared access policy:
	// Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…
	// (or SharedAccessSignature=… in place of the key name and key). Required when Enabled.
	ConnectionString Secret `yaml:"connection_string"`
	// Queue is the queue to receive from; "" takes the one the cloud's remote configuration
	// names.
	Queue string `yaml:"queue"`
	// Transport is TransportWebSockets (AMQP over WebSockets on port 443, through the WAN
	// proxy) or TransportAMQP (plain AMQP on ports 5671/5672, no proxy; for local testing).
	Transport string `yaml:"transport"`
	// LockRenewInterval is how often the lock on a message is renewed while it is stored.
	LockRenewInterval time.Duration `yaml:"lock_renew_interval"`
	// MaxConcurrent bounds the messages processed at once.
	MaxConcurrent int `yaml:"max_concurrent"`
}

// The values of ServiceBus.Transport.
const (
	TransportWebSockets = "websockets"
	TransportAMQP       = "amqp"
)

// Media configures fetching the shop's media from Azure Blob storage into the cache under
// DataDir, and serving them (docs/media.md).
type Media struct {
	// Enabled turns fetching on. Off, the media port still answers from what is cached.
	Enabled bool `yaml:"enabled"`
	// ContainerURL is a container URL with a SAS token, for a shop that hosts its own container;
	// "" takes the one the cloud's remote configuration names, and reads it again when the SAS
	// expires or is refused.
	ContainerURL Secret `yaml:"container_url"`
	// ConnectionString, with Container, names a shop's own container by an Azure Storage
	// connection string instead of a URL.
	ConnectionString Secret `yaml:"connection_string"`
	Container        string `yaml:"container"`
	// Prefetch fetches every media item the catalog lists; false fetches only what devices ask
	// for (and new versions of what is cached).
	Prefetch bool `yaml:"prefetch"`
	// CacheMaxBytes bounds the files in the cache; when full, files no product refers to go
	// first, then the least recently served.
	CacheMaxBytes int64 `yaml:"cache_max_bytes"`
	// MaxBandwidth caps the downloads from Blob storage, all together, in bytes per second;
	// 0: no cap.
	MaxBandwidth int64 `yaml:"max_bandwidth"`
	// Parallel is the number of downloads at once.
	Parallel int `yaml:"parallel"`
	// LargeFileBytes is the size from which a file is large: large files are prefetched only
	// inside LargeFileWindow.
	LargeFileBytes int64 `yaml:"large_file_bytes"`
	// LargeFileWindow is "HH:MM-HH:MM" in the server's local time (it may cross midnight), or ""
	// for any time.
	LargeFileWindow string `yaml:"large_file_window"`
	// OnDemandWait bounds how long a device's request for a media item that is not cached yet
	// waits for it to be fetched.
	OnDemandWait time.Duration `yaml:"on_demand_wait"`
	// StallTimeout cuts a download that receives nothing for this long; it resumes later.
	StallTimeout time.Duration `yaml:"stall_timeout"`
	// RetryMax caps the wait between attempts at a blob that failed or was quarantined.
	RetryMax time.Duration `yaml:"retry_max"`
	// ProgressInterval is how often a long prefetch logs its progress.
	ProgressInterval time.Duration `yaml:"progress_interval"`
}

// ParseWindow reads a media.large_file_window value: "" (always open) or "HH:MM-HH:MM". It
// returns the start and end as minutes after midnight; start == end is refused.
func ParseWindow(s string) (start, end int, always bool, err error) {
	if s == "" {
		return 0, 0, true, nil
	}
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, false, errors.New(`want "HH:MM-HH:MM", e.g. "22:00-06:00", or "" for any time`)
	}
	if start, err = parseClock(strings.TrimSpace(from)); err == nil {
		end, err = parseClock(strings.TrimSpace(to))
	}
	if err != nil {
		return 0, 0, false, err
	}
	if start == end {
		return 0, 0, false, errors.New(`starts and ends at the same time; use "" for any time`)
	}
	return start, end, false, nil
}

func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, fmt.Errorf("%q is not a time of day HH:MM (00:00 to 23:59)", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// BackOffice configures the exchange of files and calls with the shop's back office (ERP).
type BackOffice struct {
	// Schedule says when exports and imports run: a standard 5-field cron expression
	// ("*/5 * * * *") or a descriptor ("@every 10m", "@hourly"), parsed by ParseSchedule.
	Schedule string            `yaml:"schedule"`
	Export   BackOfficeExport  `yaml:"export"`
	Webhook  BackOfficeWebhook `yaml:"webhook"`
	Import   BackOfficeImport  `yaml:"import"`
}

// ParseSchedule parses a backoffice.schedule value with the standard cron parser (5 fields,
// or a descriptor such as "@every 10m" or "@hourly"; "CRON_TZ=Europe/Paris " before it picks
// the time zone, else the server's local time applies). The scheduler must use it, so that
// what runs is what Validate accepted.
func ParseSchedule(spec string) (s cron.Schedule, err error) {
	body := spec
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		_, rest, ok := strings.Cut(spec, " ")
		if !ok || strings.TrimSpace(rest) == "" {
			return nil, errors.New("a time zone with no schedule after it")
		}
		body = strings.TrimSpace(rest)
	}
	if every, ok := strings.CutPrefix(body, "@every "); ok {
		// The cron library would silently run a zero, negative or sub-second interval every
		// second, and cut the fraction of a second off any other ("1500ms" runs every second).
		if d, err := time.ParseDuration(every); err == nil {
			if d < time.Second {
				return nil, errors.New("@every needs an interval of at least 1s")
			}
			if d%time.Second != 0 {
				return nil, fmt.Errorf("@every needs a whole number of seconds, not %v", d)
			}
		}
	}
	defer func() {
		// Should the cron library ever panic on a value (it slices the text by hand), that
		// value is an error, not a crash.
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("cannot be read: %v", r)
		}
	}()
	return cron.ParseStandard(spec)
}

// BackOfficeExport configures the order files written for the back office.
type BackOfficeExport struct {
	// Dir is the absolute path of the drop folder for order files; "" writes none.
	Dir string `yaml:"dir"`
	// TestDir is the absolute path of the drop folder for test orders while Shop.Mode is
	// ModeTest; "" exports no test orders. It differs from Dir.
	TestDir string `yaml:"test_dir"`
	// Format is ExportJSON, ExportCSV or ExportXML.
	Format string `yaml:"format"`
}

// The values of BackOfficeExport.Format.
const (
	ExportJSON = "json"
	ExportCSV  = "csv"
	ExportXML  = "xml"
)

// BackOfficeWebhook configures the POST of each order to the back office.
type BackOfficeWebhook struct {
	// URL receives each order; "" posts none. https, or http for a loopback host.
	URL string `yaml:"url"`
	// Secret, when set, is the key of the HMAC-SHA256 signature header carried by each POST.
	Secret Secret `yaml:"secret"`
	// Timeout bounds one POST.
	Timeout time.Duration `yaml:"timeout"`
}

// BackOfficeImport configures the files the back office drops for storeedge.
type BackOfficeImport struct {
	// Dir is the absolute path of the folder where the ERP drops stock adjustments; "" imports
	// none. It differs from the export folders.
	Dir string `yaml:"dir"`
}

// Admin configures access to the admin API (status, devices, commands, outbox, back office).
type Admin struct {
	// Token is the admin credential, sent as "Authorization: Bearer <token>". Empty turns the
	// admin API off; required in production mode.
	Token Secret `yaml:"token"`
}

// Metrics configures access to the Prometheus metrics (GET /metrics on the admin port).
type Metrics struct {
	// Token is a credential that reads the metrics and nothing else, so the monitoring system
	// does not hold the admin token. The admin token reads them too. Empty: admin token only.
	Token Secret `yaml:"token"`
}

// Devices configures how devices pair and how commands are pushed to them.
type Devices struct {
	// EnrollmentSecret, when set, pairs any device that presents it: for rolling out many
	// devices at once without a pairing code each. Empty: pairing codes only.
	EnrollmentSecret Secret `yaml:"enrollment_secret"`
	// PairingCodeTTL is how long a pairing code an admin creates stays valid.
	PairingCodeTTL time.Duration `yaml:"pairing_code_ttl"`
	// PairingAttempts is how many failed pairing attempts one address may make per minute.
	PairingAttempts int `yaml:"pairing_attempts"`
	// PushPortDefault is the push port of a device that names none when it pairs.
	PushPortDefault int `yaml:"push_port_default"`
	// CommandTTL is how long a command waits for its device before it expires.
	CommandTTL time.Duration `yaml:"command_ttl"`
	// PushRetryMax caps the wait between attempts to reach a device that is away.
	PushRetryMax time.Duration `yaml:"push_retry_max"`
	// PushTimeout bounds connecting to a device, the hello exchange, and the wait for an ack.
	PushTimeout time.Duration `yaml:"push_timeout"`
	// PushMinVersion is the oldest push protocol version a device may speak: 1 accepts devices
	// not yet updated to version 2, whose hello can be replayed (docs/push-protocol.md).
	PushMinVersion int `yaml:"push_min_version"`
}

// Backup configures the backups the server takes of its database on a schedule, into a folder
// where the newest Keep are kept.
type Backup struct {
	// Dir is the absolute path of the folder for scheduled backups, best on another disk or a
	// network share; "" takes none. It differs from DataDir.
	Dir string `yaml:"dir"`
	// Schedule says when: a cron expression or descriptor, as BackOffice.Schedule.
	Schedule string `yaml:"schedule"`
	// Keep is how many scheduled backups stay in Dir; older ones are removed.
	Keep int `yaml:"keep"`
}

// Log configures the daemon's own log.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn or error
	Format string `yaml:"format"` // text or json
}

// Listener is one enabled LAN listener.
type Listener struct {
	Name string // "front_door", or a service name: "catalog", "media", …
	Key  string // the configuration key that sets its port, e.g. "lan.services.catalog"
	Port int
}

// Default returns the built-in configuration. It has no store key, so it does not validate
// on its own; ServerID is empty, meaning "derive from the host name". It is made of the
// Default… constants only: a key it leaves out defaults to its zero value.
func Default() Config {
	return Config{
		Shop:    Shop{Name: DefaultShopName, Mode: DefaultShopMode},
		DataDir: defaultDataDir(),
		Cloud: Cloud{
			URL:            DefaultCloudURL,
			PageSize:       DefaultCloudPageSize,
			PollInterval:   DefaultCloudPollInterval,
			RequestTimeout: DefaultCloudRequestTimeout,
			Sync:           DefaultCloudSync,
		},
		WAN: WAN{
			UseEnvironment: DefaultWANUseEnvironment,
			ConnectTimeout: DefaultWANConnectTimeout,
		},
		LAN:       defaultLAN(),
		Discovery: defaultDiscovery(),
		Orders:    Orders{OutboxBatch: DefaultOrdersOutboxBatch},
		ServiceBus: ServiceBus{
			Transport:         DefaultServiceBusTransport,
			LockRenewInterval: DefaultServiceBusLockRenewInterval,
			MaxConcurrent:     DefaultServiceBusMaxConcurrent,
		},
		Media: defaultMedia(),
		BackOffice: BackOffice{
			Schedule: DefaultBackOfficeSchedule,
			Export:   BackOfficeExport{Format: DefaultBackOfficeExportFormat},
			Webhook:  BackOfficeWebhook{Timeout: DefaultBackOfficeWebhookTimeout},
		},
		Devices: defaultDevices(),
		Backup:  Backup{Schedule: DefaultBackupSchedule, Keep: DefaultBackupKeep},
		SMTP:    defaultSMTP(),
		Alerts:  defaultAlerts(),
		Log:     Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
		Logs:    defaultLogs(),
		Support: Support{ServiceBus: SupportServiceBus{
			Transport: DefaultSupportServiceBusTransport,
			Allow:     SupportAllow{Ping: DefaultSupportServiceBusAllowPing, Diagnostics: DefaultSupportServiceBusAllowDiagnostics},
		}},
	}
}

func defaultLAN() LAN {
	return LAN{
		FrontDoor:      DefaultLANFrontDoor,
		FrontDoorAdmin: true,
		Services: Services{
			Catalog: DefaultLANServicesCatalog,
			Media:   DefaultLANServicesMedia,
			Orders:  DefaultLANServicesOrders,
			Devices: DefaultLANServicesDevices,
			Events:  DefaultLANServicesEvents,
			Admin:   DefaultLANServicesAdmin,
		},
		ReadHeaderTimeout: DefaultLANReadHeaderTimeout,
		ReadTimeout:       DefaultLANReadTimeout,
		WriteTimeout:      DefaultLANWriteTimeout,
		IdleTimeout:       DefaultLANIdleTimeout,
		MaxBodyBytes:      DefaultLANMaxBodyBytes,
		MaxHeaderBytes:    DefaultLANMaxHeaderBytes,
		ShutdownGrace:     DefaultLANShutdownGrace,
		ReadCacheMB:       DefaultLANReadCacheMB,
	}
}

func defaultDiscovery() Discovery {
	return Discovery{
		UDP: DiscoveryUDP{
			Enabled:        DefaultDiscoveryUDPEnabled,
			Port:           DefaultDiscoveryUDPPort,
			AnswerInterval: DefaultDiscoveryUDPAnswerInterval,
			AnswerBurst:    DefaultDiscoveryUDPAnswerBurst,
		},
		MDNS:             DiscoveryMDNS{Enabled: DefaultDiscoveryMDNSEnabled},
		AnnounceInterval: DefaultDiscoveryAnnounceInterval,
	}
}

func defaultMedia() Media {
	return Media{
		Enabled:          DefaultMediaEnabled,
		Prefetch:         DefaultMediaPrefetch,
		CacheMaxBytes:    DefaultMediaCacheMaxBytes,
		Parallel:         DefaultMediaParallel,
		LargeFileBytes:   DefaultMediaLargeFileBytes,
		OnDemandWait:     DefaultMediaOnDemandWait,
		StallTimeout:     DefaultMediaStallTimeout,
		RetryMax:         DefaultMediaRetryMax,
		ProgressInterval: DefaultMediaProgressInterval,
	}
}

func defaultDevices() Devices {
	return Devices{
		PairingCodeTTL:  DefaultDevicesPairingCodeTTL,
		PairingAttempts: DefaultDevicesPairingAttempts,
		PushPortDefault: DefaultDevicesPushPortDefault,
		CommandTTL:      DefaultDevicesCommandTTL,
		PushRetryMax:    DefaultDevicesPushRetryMax,
		PushTimeout:     DefaultDevicesPushTimeout,
		PushMinVersion:  DefaultDevicesPushMinVersion,
	}
}

func defaultDataDir() string {
	if runtime.GOOS == "windows" {
		return DefaultDataDirWindows
	}
	return DefaultDataDirUnix
}

// DefaultPath is where the configuration file lives when neither --config nor
// STOREEDGE_CONFIG says otherwise.
func DefaultPath() string {
	if runtime.GOOS == "windows" {
		return `C:\ProgramData\storeedge\storeedge.yaml`
	}
	return "/etc/storeedge/storeedge.yaml"
}

// DatabasePath is the SQLite database file inside DataDir.
func (c Config) DatabasePath() string {
	return filepath.Join(c.DataDir, "storeedge.db")
}

// DiscoveryOff says why discovery (UDP and mDNS) does not run with c, or "" when it does. A
// server bound to a loopback address cannot be reached from the LAN, so there is nothing to
// announce (the demo and the tests run so).
func (c Config) DiscoveryOff() string {
	if !c.Discovery.UDP.Enabled && !c.Discovery.MDNS.Enabled {
		return "discovery.udp.enabled and discovery.mdns.enabled are false"
	}
	if ip, err := netip.ParseAddr(c.LAN.Bind); err == nil && ip.IsLoopback() {
		return "lan.bind is a loopback address: devices on the LAN could not reach the server"
	}
	return ""
}

// MDNSOff says why mDNS does not run with c, or "" when it does: discovery is off, mDNS is off by
// its key, or lan.bind is an IPv6 address, which the A records of mDNS (IPv4 only) cannot give,
// so that they would send devices to addresses the server does not listen on. Discovery by UDP
// carries any address.
func (c Config) MDNSOff() string {
	if why := c.DiscoveryOff(); why != "" {
		return why
	}
	if !c.Discovery.MDNS.Enabled {
		return "discovery.mdns.enabled is false"
	}
	if ip, err := netip.ParseAddr(c.LAN.Bind); err == nil && !ip.IsUnspecified() && !ip.Is4() && !ip.Is4In6() {
		return "lan.bind is an IPv6 address, which mDNS's A records cannot give; devices find the server by UDP"
	}
	return ""
}

// MediaPath is the folder of the media cache inside DataDir.
func (c Config) MediaPath() string {
	return filepath.Join(c.DataDir, "media")
}

// Listeners returns the enabled LAN listeners (port not 0), the front door first, then the
// services in key order.
func (l LAN) Listeners() []Listener {
	all := l.allListeners()
	on := all[:0]
	for _, ln := range all {
		if ln.Port != 0 {
			on = append(on, ln)
		}
	}
	return on
}

func (l LAN) allListeners() []Listener {
	return []Listener{
		{"front_door", "lan.front_door", l.FrontDoor},
		{"catalog", "lan.services.catalog", l.Services.Catalog},
		{"media", "lan.services.media", l.Services.Media},
		{"orders", "lan.services.orders", l.Services.Orders},
		{"devices", "lan.services.devices", l.Services.Devices},
		{"events", "lan.services.events", l.Services.Events},
		{"admin", "lan.services.admin", l.Services.Admin},
	}
}

// SlogLevel is Level as a slog.Level; a level that does not validate gives slog.LevelInfo.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
