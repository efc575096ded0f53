package config

import "time"

// The default of every key whose default is not its zero value ("", false, none), but those of
// alerts.*, smtp.* and logs.* (beside their sections, in alerts.go and logship.go) and the
// booleans that are true (lan.front_door_admin, …), written where Default builds their section.
// Each is written once: Default uses these constants, the packages that take the value as an
// option fall back to the same constant when the option is zero (feed, outbox, servicebus,
// backoffice, server, devices, discovery, wan), and the tests hold
// deploy/storeedge.example.yaml and docs/configuration.md to Default. A constant is named
// Default and the key's Go field path: cloud.page_size is DefaultCloudPageSize.
const (
	DefaultShopName = "My shop"
	DefaultShopMode = ModeTest

	// data_dir's, by system; Default picks the one of the system it runs on.
	DefaultDataDirUnix    = "/var/lib/storeedge"
	DefaultDataDirWindows = `C:\ProgramData\storeedge`

	DefaultCloudURL            = "https://api.server.commerce-hub.io"
	DefaultCloudPageSize       = 1000
	DefaultCloudPollInterval   = 30 * time.Second
	DefaultCloudRequestTimeout = 2 * time.Minute
	DefaultCloudSync           = true

	DefaultWANUseEnvironment = true
	DefaultWANConnectTimeout = 10 * time.Second

	DefaultLANFrontDoor         = 80
	DefaultLANServicesCatalog   = 8000
	DefaultLANServicesMedia     = 8001
	DefaultLANServicesOrders    = 8002
	DefaultLANServicesDevices   = 8003
	DefaultLANServicesEvents    = 8004
	DefaultLANServicesAdmin     = 8005
	DefaultLANReadHeaderTimeout = 5 * time.Second
	DefaultLANReadTimeout       = 30 * time.Second
	DefaultLANWriteTimeout      = 60 * time.Second
	DefaultLANIdleTimeout       = 120 * time.Second
	DefaultLANMaxBodyBytes      = 1 << 20
	DefaultLANMaxHeaderBytes    = 64 << 10
	DefaultLANShutdownGrace     = 10 * time.Second
	DefaultLANReadCacheMB       = 1024

	DefaultDiscoveryUDPEnabled = true
	// DefaultDiscoveryUDPPort is also the port devices probe and listen on (docs/discovery.md).
	DefaultDiscoveryUDPPort           = 57854
	DefaultDiscoveryUDPAnswerInterval = 500 * time.Millisecond
	DefaultDiscoveryUDPAnswerBurst    = 5
	DefaultDiscoveryMDNSEnabled       = true
	DefaultDiscoveryAnnounceInterval  = 30 * time.Second

	DefaultOrdersOutboxBatch = 100

	DefaultServiceBusTransport         = TransportWebSockets
	DefaultServiceBusLockRenewInterval = 10 * time.Second
	DefaultServiceBusMaxConcurrent     = 4

	DefaultMediaEnabled          = true
	DefaultMediaPrefetch         = true
	DefaultMediaCacheMaxBytes    = 50 << 30
	DefaultMediaParallel         = 4
	DefaultMediaLargeFileBytes   = 20 << 20
	DefaultMediaOnDemandWait     = 10 * time.Second
	DefaultMediaStallTimeout     = time.Minute
	DefaultMediaRetryMax         = time.Hour
	DefaultMediaProgressInterval = 30 * time.Second

	DefaultBackOfficeSchedule       = "*/5 * * * *"
	DefaultBackOfficeExportFormat   = ExportJSON
	DefaultBackOfficeWebhookTimeout = 10 * time.Second

	DefaultDevicesPairingCodeTTL  = 10 * time.Minute
	DefaultDevicesPairingAttempts = 5
	// DefaultDevicesPushPortDefault is also the port docs/push-protocol.md tells device makers
	// to listen on.
	DefaultDevicesPushPortDefault = 8081
	DefaultDevicesCommandTTL      = 24 * time.Hour
	DefaultDevicesPushRetryMax    = time.Minute
	DefaultDevicesPushTimeout     = 10 * time.Second
	DefaultDevicesPushMinVersion  = 1

	DefaultBackupSchedule = "0 3 * * *"
	DefaultBackupKeep     = 7

	// The support channel, once turned on, answers the requests that only read (ping,
	// diagnostics); those that change something (resync, retry-outbox) are the shop's to allow.
	DefaultSupportServiceBusTransport        = TransportWebSockets
	DefaultSupportServiceBusAllowPing        = true
	DefaultSupportServiceBusAllowDiagnostics = true

	DefaultLogLevel  = "info"
	DefaultLogFormat = "text"
)
