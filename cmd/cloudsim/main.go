// Command cloudsim is the reference implementation of storeedge's cloud sync API
// (docs/cloud-api.md): a deterministic catalog with a change feed, event upload, remote
// configuration and heartbeat, plus a control API under /_sim/ and injectable faults. It is
// meant for tests, demos and benchmarks; see package sync/cloud/cloudsim.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a bad command line.
type usageError struct{ error }

// exitCode maps run's error to the process exit code: 0 success or help, 2 usage, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintln(stderr, "cloudsim:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "cloudsim:", err)
		return 1
	}
}

// shutdownGrace is how long in-flight requests get to finish after a stop signal.
const shutdownGrace = 5 * time.Second

// envStoreKey names the environment variable that supplies the store key, so the key need not
// appear in a process listing.
const envStoreKey = "CLOUDSIM_STORE_KEY"

type config struct {
	listen           string
	tlsCert, tlsKey  string
	logLevel         slog.Level
	opts             cloudsim.Options
	faults           cloudsim.Faults
	latency          time.Duration
	pageDelay        time.Duration
	storeKeyFromFlag string
	mediaCAFile      string
}

// envMediaConnectionString names the environment variable that supplies the storage account's
// connection string, so its key need not appear in a process listing.
const envMediaConnectionString = "CLOUDSIM_MEDIA_CONNECTION_STRING"

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("cloudsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: cloudsim [flags]

cloudsim serves the cloud sync API of docs/cloud-api.md from a deterministic generated catalog,
for storeedge's tests, demos and benchmarks. On start it prints one line to stdout:

    cloudsim listening on http://127.0.0.1:PORT

Every /v1 request needs "Authorization: Bearer <store key>". The unauthenticated control API
under /_sim/ mutates the catalog (POST /_sim/mutate), sets faults (GET/POST /_sim/faults) and
shows state (/_sim/export/{collection}, /_sim/stats, /_sim/events, /_sim/heartbeat).

Flags:
`)
		fs.PrintDefaults()
	}
	c.define(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, usageError{err}
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}

	if err := c.complete(); err != nil {
		return c, err
	}
	return c, nil
}

// define declares the flags into c.
func (c *config) define(fs *flag.FlagSet) {
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8443", "`address` to listen on; port 0 picks a free port")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate `file`; with -tls-key, serve HTTPS")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key `file`; with -tls-cert, serve HTTPS")
	fs.Int64Var(&c.opts.Seed, "seed", cloudsim.DefaultSeed, "catalog seed; the same seed gives the same catalog and changes")
	fs.IntVar(&c.opts.Products, "products", cloudsim.DefaultProducts, fmt.Sprintf("number of products, 1..%d", cloudsim.MaxProducts))
	fs.StringVar(&c.opts.StoreID, "store-id", cloudsim.DefaultStoreID, "store id served by /v1/config")
	fs.StringVar(&c.opts.StoreName, "store-name", cloudsim.DefaultStoreName, "store name served by /v1/config and the settings feed")
	fs.StringVar(&c.storeKeyFromFlag, "store-key", "", "bearer store `key` (default $"+envStoreKey+", else "+cloudsim.DefaultStoreKey+")")
	fs.StringVar(&c.opts.ServiceBusNamespace, "servicebus-namespace", "", "Service Bus namespace served by /v1/config")
	fs.StringVar(&c.opts.MediaContainerURL, "media-container-url", "", "blob container URL served by /v1/config as it is (when no media store is set)")
	fs.BoolVar(&c.opts.Media.BuiltIn, "media-builtin", false, "serve the media blobs from cloudsim's own Blob endpoint (/_blob/) and hand out SAS URLs for it")
	fs.StringVar(&c.opts.Media.ConnectionString, "media-connection-string", os.Getenv(envMediaConnectionString),
		"Azure Storage `connection string` (Azurite's, say) of the account to fill with the media blobs (default $"+envMediaConnectionString+")")
	fs.StringVar(&c.opts.Media.Container, "media-container", "media", "`container` of the media blobs in that account")
	fs.DurationVar(&c.opts.Media.SASLifetime, "media-sas-lifetime", time.Hour, "how long each media container URL handed out stays valid")
	fs.StringVar(&c.mediaCAFile, "media-ca-file", "", "PEM `file` of a CA to trust for the storage account (an Azurite with a test certificate)")
	fs.DurationVar(&c.opts.ChangeEvery, "change-every", 0, "apply a small random catalog change at this `interval` (0: never)")
	fs.DurationVar(&c.latency, "latency", 0, "fault: delay every /v1 answer by this `duration`")
	fs.DurationVar(&c.pageDelay, "page-delay", 0, "fault: delay each further page of a streamed feed answer by this `duration`")
	fs.Float64Var(&c.faults.ErrorRate, "error-rate", 0, "fault: share of /v1 requests answered 500 or 503")
	fs.Float64Var(&c.faults.RateLimitRate, "rate-limit-rate", 0, "fault: share of /v1 requests answered 429")
	fs.IntVar(&c.faults.RetryAfterSeconds, "retry-after", 1, "fault: Retry-After `seconds` of a 429")
	fs.IntVar(&c.faults.RetryAfter503, "retry-after-503", 0, "fault: Retry-After `seconds` of the injected 503s (0: none)")
	fs.BoolVar(&c.faults.RetryAfterDate, "retry-after-date", false, "fault: send Retry-After as an HTTP date instead of seconds")
	fs.Float64Var(&c.faults.CutRate, "cut-rate", 0, "fault: share of feed responses cut in the middle of a line")
	fs.Float64Var(&c.faults.MalformedRate, "malformed-rate", 0, "fault: share of changes sent as malformed lines (the same ones every time)")
	fs.Float64Var(&c.faults.UploadErrorRate, "upload-error-rate", 0, "fault: share of event uploads answered 503")
	fs.Float64Var(&c.faults.LostAnswerRate, "lost-answer-rate", 0, "fault: share of event uploads stored, then answered 503 (the answer lost)")
	fs.Float64Var(&c.faults.BadAnswerRate, "bad-answer-rate", 0, "fault: share of event uploads stored, then answered 200 with a body that is not the upload answer")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log `level`: DEBUG, INFO, WARN or ERROR")
}

// complete fills in what the flags leave to the environment or to defaults, and names the first
// value out of range.
func (c *config) complete() error {
	c.opts.StoreKey = c.storeKeyFromFlag
	if c.opts.StoreKey == "" {
		c.opts.StoreKey = os.Getenv(envStoreKey)
	}
	if c.opts.StoreKey == "" {
		c.opts.StoreKey = cloudsim.DefaultStoreKey
	}
	c.faults.LatencyMS = int(c.latency / time.Millisecond)
	c.faults.PageDelayMS = int(c.pageDelay / time.Millisecond)
	switch {
	case c.listen == "":
		return usageError{errors.New("-listen is empty")}
	case c.opts.Products < 1 || c.opts.Products > cloudsim.MaxProducts:
		return usageError{fmt.Errorf("-products %d outside 1..%d", c.opts.Products, cloudsim.MaxProducts)}
	case c.opts.Seed == 0:
		return usageError{errors.New("-seed 0 is reserved; use any other value")}
	case c.opts.ChangeEvery < 0:
		return usageError{fmt.Errorf("-change-every %v is negative", c.opts.ChangeEvery)}
	case c.latency < 0:
		return usageError{fmt.Errorf("-latency %v is negative", c.latency)}
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return usageError{errors.New("-tls-cert and -tls-key go together")}
	case c.opts.Media.BuiltIn && c.opts.Media.ConnectionString != "":
		return usageError{errors.New("-media-builtin and -media-connection-string exclude each other")}
	case c.opts.Media.SASLifetime < time.Second:
		return usageError{fmt.Errorf("-media-sas-lifetime %v is under 1s", c.opts.Media.SASLifetime)}
	}
	if err := c.faults.Validate(); err != nil {
		return usageError{err}
	}
	return nil
}

// caTransport is an HTTP client trusting the system's roots and the CA in file.
func caTransport(file string) (*http.Client, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-media-ca-file %s: no PEM certificate", file)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	cfg.opts.Logger = logger
	if cfg.mediaCAFile != "" {
		t, err := caTransport(cfg.mediaCAFile)
		if err != nil {
			return usageError{err}
		}
		cfg.opts.Media.Transport = t
	}
	sim := cloudsim.New(cfg.opts)
	// The blobs are in the store before the first client can read a manifest naming them.
	if n, err := sim.SyncBlobs(ctx); err != nil {
		return err
	} else if n > 0 {
		logger.Info("cloudsim: media blobs uploaded", "blobs", n)
	}
	if err := sim.SetFaults(cfg.faults); err != nil {
		return usageError{err}
	}

	var tlsConfig *tls.Config
	if cfg.tlsCert != "" {
		// Load the key pair before announcing the address, so a bad file fails the start.
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return serve(ctx, sim, cfg.listen, tlsConfig, stdout, logger)
}

// serve serves sim on addr until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, sim *cloudsim.Sim, addr string, tlsConfig *tls.Config, stdout io.Writer, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           sim.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Requests end with ctx, so a long feed stream does not hold up the shutdown.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		TLSConfig:   tlsConfig,
	}
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	fmt.Fprintf(stdout, "cloudsim listening on %s://%s\n", scheme, ln.Addr())

	simCtx, stopSim := context.WithCancel(ctx)
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Run(simCtx) }()
	served := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()

	var serveErr error
	select {
	case <-ctx.Done():
		logger.Info("cloudsim: shutting down")
	case serveErr = <-served:
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close()
	}
	if serveErr == nil {
		serveErr = <-served
	}
	stopSim()
	<-simDone
	if errors.Is(serveErr, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve: %w", serveErr)
}
