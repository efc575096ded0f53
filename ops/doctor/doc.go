// Package doctor checks everything a storeedge server needs, as shop IT would before calling
// support: the WAN (DNS, TCP 443 directly or through the proxy, TLS and who signed the
// certificate, the store key, the Service Bus link, the Blob container, the clock against the
// servers'), the LAN (ports free or held by the running service, and by whom if not; the
// interfaces discovery uses), the data folder (writable, free space, database integrity and
// schema) and the configuration file's permissions.
//
// Each check is a small function that returns PASS, WARN or FAIL with what it found and, unless
// it passed, the fix in one sentence. WAN checks go through the one WAN dialer (internal/wan)
// and the same clients the server uses (sync/cloud, sync/servicebus, the Azure Blob SDK), so
// what doctor sees is what the server sees.
package doctor
