package doctor

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/sync/cloud/cloudsim"
	"github.com/storeedge/storeedge/sync/servicebus"
	"github.com/storeedge/storeedge/tools/testenv"
)

const storeKey = "doctor-test-key"

// vendorCA signs the test cloud's, Service Bus peer's and Azurite's certificates; the
// configuration trusts it through wan.extra_ca_file, as a test cloud needs.
type world struct {
	ca    *testenv.CA
	cloud string // https://127.0.0.1:PORT
}

// startCloud serves cloudsim over TLS; wrap, when set, sits in front of it.
func startCloud(t *testing.T, ca *testenv.CA, opts cloudsim.Options, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	opts.StoreKey = storeKey
	var h http.Handler = cloudsim.New(opts).Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewUnstartedServer(h)
	_, _, cert := ca.Issue(t, "127.0.0.1")
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// testConfig is a configuration for the cloud at url that checks nothing on the LAN.
func testConfig(t *testing.T, ca *testenv.CA, url string) config.Config {
	c := config.Default()
	c.DataDir = t.TempDir()
	c.Cloud.URL = url
	c.Cloud.StoreKey = storeKey
	c.WAN.ExtraCAFile = ca.File
	c.WAN.Proxy = "direct"
	c.LAN.Bind = "127.0.0.1"
	c.LAN.FrontDoor = 0
	c.LAN.Services = config.Services{}
	c.Discovery.UDP.Enabled, c.Discovery.MDNS.Enabled = false, false
	return c
}

func run(t *testing.T, c config.Config) Report {
	t.Helper()
	d, err := wan.New(wan.Options{ProxyURL: c.WAN.Proxy.Reveal(), ExtraCAFile: c.WAN.ExtraCAFile, ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Config: c, Dialer: d, Version: "test", Timeout: 10 * time.Second}
	if c.ServiceBus.Enabled {
		o.ServiceBus = func(queue string) servicebus.Options {
			return servicebus.Options{ConnectionString: c.ServiceBus.ConnectionString.Reveal(), Queue: queue, WebSockets: true, DialContext: d.DialContext, TLSConfig: d.TLSConfig}
		}
	}
	if c.Support.ServiceBus.Enabled {
		o.Support = func() servicebus.Connection {
			return servicebus.Connection{ConnectionString: c.Support.ServiceBus.ConnectionString.Reveal(), WebSockets: true, DialContext: d.DialContext, TLSConfig: d.TLSConfig}
		}
	}
	r := Run(context.Background(), o)
	var b strings.Builder
	r.WriteTable(&b)
	t.Logf("doctor:\n%s", b.String())
	return r
}

// expect finds the result of a check and compares its status and what it says.
func expect(t *testing.T, r Report, group, check string, status Status, says ...string) Result {
	t.Helper()
	res, ok := r.Find(group, check)
	if !ok {
		t.Fatalf("no %s check %q", group, check)
	}
	if res.Status != status {
		t.Errorf("%s %q: %s (%s; fix %q), want %s", group, check, res.Status, res.Detail, res.Fix, status)
	}
	for _, s := range says {
		if !strings.Contains(res.Detail+" "+res.Fix, s) {
			t.Errorf("%s %q does not say %q: %s / %s", group, check, s, res.Detail, res.Fix)
		}
	}
	if status != Pass && res.Fix == "" {
		t.Errorf("%s %q: %s without a fix", group, check, status)
	}
	return res
}

func TestCloudOverTLSPasses(t *testing.T) {
	ca := testenv.NewCA(t, "Vendor Test CA")
	url := startCloud(t, ca, cloudsim.Options{StoreID: "shop-7", StoreName: "Lyon"}, nil)
	r := run(t, testConfig(t, ca, url))
	host := strings.TrimPrefix(url, "https://")
	expect(t, r, "wan", "cloud "+host+" tcp", Pass, "direct")
	expect(t, r, "wan", "cloud "+host+" tls", Pass, "Vendor Test CA", "chain verified")
	expect(t, r, "wan", "cloud store key", Pass, `accepted: store "shop-7"`) // what configuration.md tells shop IT to copy into shop.id
	expect(t, r, "clock", "clock skew", Pass)
	if r.Failed() {
		t.Error("a check failed against a healthy cloud")
	}
}

func TestWrongStoreKeyFails(t *testing.T) {
	ca := testenv.NewCA(t, "Vendor Test CA")
	c := testConfig(t, ca, startCloud(t, ca, cloudsim.Options{}, nil))
	c.Cloud.StoreKey = "not-the-key"
	expect(t, run(t, c), "wan", "cloud store key", Fail, "refused", "cloud.store_key")
}

func TestUnknownCertificateAuthorityFails(t *testing.T) {
	ca := testenv.NewCA(t, "Vendor Test CA")
	c := testConfig(t, ca, startCloud(t, ca, cloudsim.Options{}, nil))
	c.WAN.ExtraCAFile = "" // the system's roots only
	r := run(t, c)
	expect(t, r, "wan", "cloud 127.0.0.1", Pass) // tcp
	res, _ := r.Find("wan", "cloud "+strings.TrimPrefix(c.Cloud.URL, "https://")+" tls")
	if res.Status != Fail || !strings.Contains(res.Fix, "wan.extra_ca_file") {
		t.Errorf("tls with an unknown CA: %+v", res)
	}
}

// A proxy that inspects TLS answers CONNECT and presents its own certificate for the real host,
// signed by a CA the machine does not know.
func TestTLSInspectingProxyIsRecognised(t *testing.T) {
	ca := testenv.NewCA(t, "Vendor Test CA")
	c := testConfig(t, ca, startCloud(t, ca, cloudsim.Options{}, nil))
	inspector := testenv.NewCA(t, "Contoso Firewall Inspection CA")
	_, _, forged := inspector.Issue(t, "127.0.0.1")
	c.WAN.Proxy = config.Proxy("http://" + startInspectingProxy(t, forged))
	r := run(t, c)
	host := strings.TrimPrefix(c.Cloud.URL, "https://")
	expect(t, r, "wan", "cloud "+host+" tcp", Pass, "http-connect via")
	expect(t, r, "wan", "cloud "+host+" tls", Fail, "Contoso Firewall Inspection CA", "inspecting", "wan.extra_ca_file")
}

// startInspectingProxy runs a CONNECT proxy that terminates TLS itself with cert.
func startInspectingProxy(t *testing.T, cert tls.Certificate) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil || req.Method != http.MethodConnect {
					return
				}
				conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
				tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
			}()
		}
	}()
	return ln.Addr().String()
}

func TestSkewedClockFails(t *testing.T) {
	ca := testenv.NewCA(t, "Vendor Test CA")
	ahead := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Date", time.Now().Add(-17*time.Minute).UTC().Format(http.TimeFormat))
			h.ServeHTTP(w, r)
		})
	}
	c := testConfig(t, ca, startCloud(t, ca, cloudsim.Options{}, ahead))
	res := expect(t, run(t, c), "clock", "clock skew", Fail, "ahead of", "NTP")
	// A Date has whole seconds, and the request's middle is not exactly when the server wrote
	// it: the skew is known to a second.
	if !strings.Contains(res.Detail, "is 17m0s ahead") && !strings.Contains(res.Detail, "is 16m59s ahead") &&
		!strings.Contains(res.Detail, "is 17m1s ahead") {
		t.Errorf("clock skew: %s; want 17 minutes ahead, to a second", res.Detail)
	}
}

func TestThroughProxies(t *testing.T) {
	ca := testenv.NewCA(t, "Vendor Test CA")
	url := startCloud(t, ca, cloudsim.Options{}, nil)
	host := strings.TrimPrefix(url, "https://")
	for _, tc := range []struct {
		name, proxy, route string
	}{
		{"tinyproxy CONNECT", "http://" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{}), "http-connect via"},
		{"tinyproxy CONNECT with login", "http://shop:s3cret@" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{BasicAuthUser: "shop", BasicAuthPass: "s3cret"}), "(user shop)"},
		{"dante SOCKS5", "socks5://" + testenv.StartDante(t), "socks5 via"},
		{"microsocks SOCKS5 with login", "socks5://shop:s3cret@" + testenv.StartMicrosocks(t, "shop", "s3cret"), "socks5 via"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig(t, ca, url)
			c.WAN.Proxy = config.Proxy(tc.proxy)
			r := run(t, c)
			expect(t, r, "wan", "cloud "+host+" tcp", Pass, tc.route)
			expect(t, r, "wan", "cloud store key", Pass)
		})
	}
	t.Run("wrong proxy password", func(t *testing.T) {
		c := testConfig(t, ca, url)
		c.WAN.Proxy = config.Proxy("socks5://shop:wrong@" + testenv.StartMicrosocks(t, "shop", "s3cret"))
		expect(t, run(t, c), "wan", "cloud "+host+" tcp", Fail, "refused the login", "wan.proxy")
	})
	t.Run("proxy refuses the port", func(t *testing.T) {
		c := testConfig(t, ca, url)
		c.WAN.Proxy = config.Proxy("http://" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{ConnectPorts: []int{443}}))
		expect(t, run(t, c), "wan", "cloud "+host+" tcp", Fail, "does not let storeedge through")
	})
	t.Run("proxy down", func(t *testing.T) {
		c := testConfig(t, ca, url)
		c.WAN.Proxy = config.Proxy("http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)))
		expect(t, run(t, c), "wan", "cloud "+host+" tcp", Fail, "proxy does not answer")
	})
}

func TestPortHeldByAnotherProgramIsNamed(t *testing.T) {
	ca := testenv.NewCA(t, "Vendor Test CA")
	proxy := testenv.StartTinyproxy(t, testenv.TinyproxyOptions{})
	_, port, _ := net.SplitHostPort(proxy)
	c := testConfig(t, ca, "https://127.0.0.1:1")
	c.LAN.FrontDoor, _ = strconv.Atoi(port)
	free := testenv.FreePort(t)
	c.LAN.Services.Catalog = free
	r := run(t, c)
	expect(t, r, "lan", "tcp "+port+" (lan.front_door)", Fail, "tinyproxy (pid ", "lan.front_door")
	expect(t, r, "lan", "tcp "+strconv.Itoa(free), Pass, "free")
}

func TestServiceBusLinkOnTheQueue(t *testing.T) {
	ca := testenv.NewCA(t, "Vendor Test CA")
	certFile, keyFile, _ := ca.Issue(t, "127.0.0.1")
	peer := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{TLSCert: certFile, TLSKey: keyFile})
	c := testConfig(t, ca, startCloud(t, ca, cloudsim.Options{}, nil))
	c.ServiceBus.Enabled = true
	c.ServiceBus.ConnectionString = config.Secret(peer.WebSocketConnectionString())
	c.ServiceBus.Queue = "orders"
	peer.Send(t, "orders", testenv.SBMessage{MessageID: "m1", Body: []byte(`{}`)})
	r := run(t, c)
	expect(t, r, "wan", "servicebus 127.0.0.1", Pass)
	expect(t, r, "wan", "servicebus link orders", Pass, "nothing taken")
	if st := peer.Stats(t, "orders"); st.Active != 1 || st.Locked != 0 {
		t.Errorf("doctor touched the queue's messages: %+v", st)
	}
	c.ServiceBus.Queue = "no-such-queue"
	expect(t, run(t, c), "wan", "servicebus link no-such-queue", Fail)

	// servicebus.queue empty: the queue the cloud names, which must keep the same rule.
	c = testConfig(t, ca, startCloud(t, ca, cloudsim.Options{StoreID: "lyon 01"}, nil))
	c.ServiceBus.Enabled = true
	c.ServiceBus.ConnectionString = config.Secret(peer.WebSocketConnectionString())
	expect(t, run(t, c), "wan", "servicebus link", Fail, `servicebus.queue "orders-lyon 01" cannot be used`, "set servicebus.queue")
}

// With the support channel on, doctor checks the support namespace and both of its queues, and
// takes nor sends anything.
func TestSupportNamespace(t *testing.T) {
	ca := testenv.NewCA(t, "Vendor Test CA")
	certFile, keyFile, _ := ca.Issue(t, "127.0.0.1")
	peer := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{TLSCert: certFile, TLSKey: keyFile, Queues: []string{"support-lyon-01", "support-replies"}})
	c := testConfig(t, ca, startCloud(t, ca, cloudsim.Options{}, nil))
	s := &c.Support.ServiceBus
	s.Enabled, s.ConnectionString, s.Queue, s.ReplyQueue = true, config.Secret(peer.WebSocketConnectionString()), "support-lyon-01", "support-replies"
	peer.Send(t, "support-lyon-01", testenv.SBMessage{MessageID: "r1", Body: []byte("a request")})
	r := run(t, c)
	expect(t, r, "wan", "support 127.0.0.1", Pass)
	expect(t, r, "wan", "support link support-lyon-01", Pass, "nothing taken")
	expect(t, r, "wan", "support link support-replies", Pass, "nothing sent")
	if st := peer.Stats(t, "support-lyon-01"); st.Active != 1 || st.Locked != 0 {
		t.Errorf("doctor touched the request queue: %+v", st)
	}
	if st := peer.Stats(t, "support-replies"); st.Active != 0 {
		t.Errorf("doctor sent to the reply queue: %+v", st)
	}
	s.ReplyQueue = "no-such-queue"
	expect(t, run(t, c), "wan", "support link no-such-queue", Fail, "support.servicebus.reply_queue")
}

func TestBlobContainerReadable(t *testing.T) {
	ca := testenv.NewCA(t, "Vendor Test CA")
	certFile, keyFile, _ := ca.Issue(t, "127.0.0.1")
	account := testenv.StartAzurite(t, testenv.AzuriteOptions{TLSCert: certFile, TLSKey: keyFile}).BlobURL
	containerURL := makeMediaContainer(t, ca, account)
	c := testConfig(t, ca, startCloud(t, ca, cloudsim.Options{MediaContainerURL: containerURL}, nil))
	r := run(t, c)
	expect(t, r, "wan", "blob container "+account+"/media", Pass, "readable")
	if strings.Contains(mustJSON(t, r), "sig=") {
		t.Error("the report shows the container's signature")
	}
	// A read-only signature, which cloud-api.md allows: listing is refused, which is no failure.
	c = testConfig(t, ca, startCloud(t, ca, cloudsim.Options{MediaContainerURL: containerSAS(t, account, sas.ContainerPermissions{Read: true})}, nil))
	expect(t, run(t, c), "wan", "blob container "+account+"/media", Warn, "does not allow listing")
	// The same signature in the shop's own connection string.
	readOnly := strings.SplitN(containerSAS(t, account, sas.ContainerPermissions{Read: true}), "?", 2)
	c.Media.ConnectionString = config.Secret("BlobEndpoint=" + account + ";SharedAccessSignature=" + readOnly[1])
	c.Media.Container = "media"
	expect(t, run(t, c), "wan", "blob container "+account+"/media", Warn, "does not allow listing")
	// One without read rights cannot serve media at all.
	c = testConfig(t, ca, startCloud(t, ca, cloudsim.Options{MediaContainerURL: containerSAS(t, account, sas.ContainerPermissions{Write: true})}, nil))
	expect(t, run(t, c), "wan", "blob container "+account+"/media", Fail, "does not allow reading")
	bad := strings.Replace(containerURL, "sig=", "sig=AAAA", 1)
	c = testConfig(t, ca, startCloud(t, ca, cloudsim.Options{MediaContainerURL: bad}, nil))
	expect(t, run(t, c), "wan", "blob container", Fail, "signature")

	// A container the cloud names over plain HTTP, or without a SAS token, is not used.
	for _, u := range []string{strings.Replace(containerURL, "https://127.0.0.1", "http://blob.example", 1), strings.Split(containerURL, "?")[0] + "?sv=2021"} {
		c = testConfig(t, ca, startCloud(t, ca, cloudsim.Options{MediaContainerURL: u}, nil))
		r = run(t, c)
		expect(t, r, "wan", "blob container", Fail, "media.container_url cannot be used")
		if j := mustJSON(t, r); strings.Contains(j, sasSignature(t, containerURL)) || strings.Contains(j, "blob.example") {
			t.Error("the report shows the container's URL")
		}
	}

	// A shop that hosts its own container: doctor reads the one the media service would, with
	// the account key of the connection string, and never shows the key.
	c = testConfig(t, ca, startCloud(t, ca, cloudsim.Options{MediaContainerURL: bad}, nil))
	c.Media.ConnectionString = config.Secret(testenv.AzuriteConnectionString(account))
	c.Media.Container = "media"
	r = run(t, c)
	expect(t, r, "wan", "blob container "+account+"/media", Pass, "readable")
	if strings.Contains(mustJSON(t, r), testenv.AzuriteKey) {
		t.Error("the report shows the account key")
	}
	c.Media.ConnectionString = config.Secret(strings.Replace(testenv.AzuriteConnectionString(account), testenv.AzuriteKey, "d3Jvbmcga2V5", 1))
	expect(t, run(t, c), "wan", "blob container "+account+"/media", Fail)
}

// The media container the cloud names is checked with the cloud: a cloud that names none, or whose
// configuration cannot be read, says so in a line of its own rather than nothing.
func TestBlobContainerOfTheCloudUnknown(t *testing.T) {
	ca := testenv.NewCA(t, "Vendor Test CA")
	c := testConfig(t, ca, startCloud(t, ca, cloudsim.Options{}, nil))
	c.Media.Enabled = true
	expect(t, run(t, c), "wan", "blob container", Warn, "names no media container", "media.container_url")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + ln.Addr().String()
	ln.Close()
	c = testConfig(t, ca, closed)
	c.Media.Enabled = true
	expect(t, run(t, c), "wan", "blob container", Warn, "not checked", "cloud")
	c.Media.Enabled = false
	if res, ok := run(t, c).Find("wan", "blob container"); ok {
		t.Errorf("a blob container line with media off: %+v", res)
	}
}

// sasSignature is the sig= value of a SAS URL.
func sasSignature(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Query().Get("sig") == "" {
		t.Fatalf("%q is no SAS URL", raw)
	}
	return u.Query().Get("sig")
}

func mustJSON(t *testing.T, r Report) string {
	var b strings.Builder
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal([]byte(b.String()), &back); err != nil {
		t.Fatalf("--json output is not JSON: %v", err)
	}
	return b.String()
}

// A cloud that cannot be reached does not hide a missing store key: both are said.
func TestMissingStoreKeyIsSaidWhenTheCloudIsAway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	c := testConfig(t, testenv.NewCA(t, "Vendor Test CA"), "https://"+addr)
	c.Cloud.StoreKey = ""
	r := run(t, c)
	expect(t, r, "wan", "cloud "+addr+" tcp", Fail)
	expect(t, r, "wan", "cloud store key", Fail, "cloud.store_key is not set")
}

// A proxy that takes the connection and never answers CONNECT is named, rather than advising a
// proxy that is set already.
func TestSilentProxyIsNamed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	c := testConfig(t, testenv.NewCA(t, "Vendor Test CA"), "https://cloud.example:443")
	c.WAN.Proxy = config.Proxy("http://" + ln.Addr().String())
	d, err := wan.New(wan.Options{ProxyURL: c.WAN.Proxy.Reveal(), ExtraCAFile: c.WAN.ExtraCAFile, ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := Run(context.Background(), Options{Config: c, Dialer: d, Version: "test", Timeout: 2 * time.Second})
	res := expect(t, r, "wan", "cloud cloud.example:443 tcp", Fail)
	if !strings.Contains(res.Fix, "the proxy took the connection") || !strings.Contains(res.Fix, "firewall drops its connections to TCP 443 there") ||
		!strings.Contains(res.Fix, "cloud.example") || strings.Contains(res.Fix, "or set wan.proxy") {
		t.Errorf("fix for a silent proxy: %q", res.Fix)
	}
}
