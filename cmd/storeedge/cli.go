package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise it comes from the
// module build information.
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// usageError is a mistake on the command line or in the configuration: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// configError is a usage or configuration error of the server itself (storeedge run): exit code
// 78, EX_CONFIG, which systemd shows as status=78/CONFIG and the unit does not restart. It is not
// 2 there because Go exits with 2 on a crash, which must be restarted.
type configError struct{ usageError }

// exitCodeConfig is the exit code of a configError.
const exitCodeConfig = 78

// exitCode maps run's error to the process exit code, in one place: 0 success, 2 usage or
// configuration error (78 for the server's own, storeedge run), 1 anything else.
func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	var ce configError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ce):
		fmt.Fprintf(stderr, "storeedge: %v\n", err)
		return exitCodeConfig
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "storeedge: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "storeedge: %v\n", err)
		return 1
	}
}

const topUsage = `storeedge — the in-store edge server

Usage:
  storeedge run       [--config PATH] [--set KEY=VALUE ...]     run the server (the service's command)
  storeedge demo      [--products N] [--port N] [--data-dir DIR] [--change-every 5s] [--set KEY=VALUE ...] [-v]
                                                                run against a built-in simulated cloud
  storeedge config    [--config PATH] [--set KEY=VALUE ...]     check the configuration and print it (secrets hidden)
  storeedge discovery [--config PATH] [--set KEY=VALUE ...] [--timeout 2s]
                                                                check that devices can find this server (UDP, mDNS)
  storeedge doctor    [--config PATH] [--set KEY=VALUE ...] [--json] [--timeout 15s]
                                                                check everything the server needs (WAN, LAN, disk, database)
  storeedge firewall  [--config PATH] [--set KEY=VALUE ...] [--format F] [--admin-port 22] [--outbound-drop]
                                                                print the firewall rules the configuration needs
  storeedge backup    [--config PATH] [--set KEY=VALUE ...] FILE
                                                                copy the database to FILE, while the service runs
  storeedge restore   [--config PATH] [--set KEY=VALUE ...] [--force] FILE
                                                                put a backup back (service stopped)
  storeedge service   install|uninstall|start|stop|status [--config PATH]
                                                                the Windows service (on Linux, systemd's unit)
  storeedge alert test [--config PATH] [--set KEY=VALUE ...]
                                                                send a test alert mail through the configured mail server
  storeedge version                                             print the version

Run "storeedge COMMAND --help" for the options of a command.
`

// run is the whole program: it parses the subcommand and calls it.
func run(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage)
		return usageError{errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(ctx, rest, env, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, rest, env, stdout, stderr)
	case "config":
		return cmdConfig(rest, env, stdout, stderr)
	case "discovery":
		return cmdDiscovery(ctx, rest, env, stdout, stderr)
	case "service":
		return cmdService(ctx, rest, env, stdout, stderr)
	case "firewall":
		return cmdFirewall(ctx, rest, env, stdout, stderr)
	case "doctor":
		return cmdDoctor(ctx, rest, env, stdout, stderr)
	case "backup":
		return cmdBackup(ctx, rest, env, stdout, stderr)
	case "restore":
		return cmdRestore(ctx, rest, env, stdout, stderr)
	case "alert":
		return cmdAlert(ctx, rest, env, stdout, stderr)
	case "version", "--version":
		fs := newFlagSet("version", "Usage: storeedge version\n\nPrints the version of this binary.\n", stderr)
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return usageError{err}
		}
		if fs.NArg() > 0 {
			return usageError{unexpectedArg("version", fs.Arg(0), rest)}
		}
		fmt.Fprintf(stdout, "storeedge %s\n", buildVersion())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, topUsage)
		return nil
	default:
		fmt.Fprint(stderr, topUsage)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

// setFlags collects repeated --set KEY=VALUE flags. Their form is checked with the
// configuration, never here: the flag package would quote an argument it refuses, and one
// without "=" may be a secret typed in the wrong place (configuration.md, Secrets).
type setFlags []string

func (s *setFlags) String() string { return strings.Join(*s, " ") }
func (s *setFlags) Set(v string) error {
	*s = append(*s, v)
	return nil
}

func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// unexpectedArg says an argument is one too many without showing it when it may be a secret: the
// value of a "--set KEY VALUE" typed with a space, or text that looks like a token.
func unexpectedArg(name, arg string, args []string) error {
	if key, ok := setKeyBefore(args, arg); ok {
		if !config.IsKey(key) {
			key = "…" // the value alone, maybe, typed where its key goes
		}
		return fmt.Errorf("%s: unexpected argument after --set %s (not shown, in case it is a secret): give --set KEY=VALUE as one argument", name, key)
	}
	if _, err := os.Stat(arg); err == nil || !config.LooksSecret(arg) {
		return fmt.Errorf("%s: unexpected argument %q", name, arg) // a file, or a word
	}
	return fmt.Errorf("%s: unexpected argument of %d characters (not shown, in case it is a secret)", name, len(arg))
}

// setKeyAlone tells whether args[i] ends a "--set KEY" without a value (in one argument,
// --set=KEY, or two): "KEY", or "KEY=" for a key that holds a secret (an empty value is
// otherwise a value: --set wan.proxy= FILE), and the key.
func setKeyAlone(args []string, i int) (string, bool) {
	v, ok := "", false
	for _, flag := range []string{"--set=", "-set="} {
		if s, cut := strings.CutPrefix(args[i], flag); cut {
			v, ok = s, true
		}
	}
	if !ok && i > 0 && (args[i-1] == "--set" || args[i-1] == "-set") {
		v, ok = args[i], true
	}
	if !ok {
		return "", false
	}
	key, value, hasEq := strings.Cut(v, "=")
	return key, !hasEq || value == "" && config.HoldsSecret(key)
}

// setKeyBefore finds the "--set KEY" without a value that arg comes right after in args, and
// its key.
func setKeyBefore(args []string, arg string) (string, bool) {
	for i := 0; i+1 < len(args); i++ {
		if key, ok := setKeyAlone(args, i); ok && args[i+1] == arg {
			return key, true
		}
	}
	return "", false
}

// loadConfig parses the configuration flags of run and config and loads the configuration.
func loadConfig(name, usage string, args, env []string, stderr io.Writer) (config.Config, error) {
	return loadConfigWith(name, usage, args, env, stderr, nil)
}

// loadConfigWith is loadConfig for a subcommand with flags of its own (added by flags, if not
// nil) that can do without the keys in optional (WithoutKeys).
func loadConfigWith(name, usage string, args, env []string, stderr io.Writer, flags func(*flag.FlagSet), optional ...string) (config.Config, error) {
	cfg, _, err := loadConfigArgs(name, usage, args, env, stderr, flags, 0, optional...)
	return cfg, err
}

// loadConfigArgs is loadConfigWith for a subcommand that takes nargs arguments after its flags
// (storeedge backup FILE), which it returns.
func loadConfigArgs(name, usage string, args, env []string, stderr io.Writer, flags func(*flag.FlagSet), nargs int, optional ...string) (config.Config, []string, error) {
	fs := newFlagSet(name, usage+"\n"+config.FlagUsage()+"\nFlags:\n", stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	var sets setFlags
	fs.Var(&sets, "set", "set one configuration key, KEY=VALUE (repeatable)")
	if flags != nil {
		flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config.Config{}, nil, err
		}
		return config.Config{}, nil, usageError{err}
	}
	// Flags may follow the arguments too: "storeedge backup FILE --config PATH".
	var rest []string
	for more := fs.Args(); len(more) > 0; more = fs.Args() {
		rest = append(rest, more[0])
		if err := fs.Parse(more[1:]); err != nil {
			return config.Config{}, nil, usageError{err}
		}
	}
	// An argument that follows "--set KEY" (or "--set KEY=") is the value typed with a space:
	// a secret, maybe, which must not become a file name.
	for _, a := range rest {
		if _, ok := setKeyBefore(args, a); ok {
			return config.Config{}, nil, usageError{unexpectedArg(name, a, args)}
		}
	}
	switch {
	case len(rest) > nargs:
		return config.Config{}, nil, usageError{unexpectedArg(name, rest[nargs], args)}
	case len(rest) < nargs:
		fs.Usage()
		return config.Config{}, nil, usageError{fmt.Errorf("%s: missing argument", name)}
	}
	cfg, err := config.Load(config.ResolvePath(*path, env), env, sets)
	if len(optional) > 0 {
		err = config.WithoutKeys(err, optional...)
	}
	if err != nil {
		// A misspelt variable is often why a key is missing: say so beside the errors.
		printEnvWarnings(stderr, cfg)
		return cfg, nil, usageError{fmt.Errorf("invalid configuration:\n%w", err)}
	}
	if name != "run" && name != "service run" { // the server logs them (logEnvWarnings)
		printEnvWarnings(stderr, cfg)
	}
	return cfg, rest, nil
}

// printEnvWarnings tells, on stderr, of the STOREEDGE_* variables that name no key.
func printEnvWarnings(stderr io.Writer, cfg config.Config) {
	for _, w := range cfg.EnvWarnings() {
		fmt.Fprintf(stderr, "storeedge: warning: %s\n", w)
	}
}

func cmdRun(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig("run", "Usage: storeedge run [--config PATH] [--set KEY=VALUE ...]\n\nRuns the server: serves the shop's devices from the local database and syncs it with the cloud.\n", args, env, stderr)
	if err == nil {
		err = daemon(ctx, cfg, newLogger(cfg.Log, stderr), nil)
	}
	if ue := (usageError{}); errors.As(err, &ue) {
		return configError{ue}
	}
	if se := (*storage.SchemaError)(nil); errors.As(err, &se) {
		// A database a newer storeedge upgraded: starting again cannot mend it, so it is said
		// as a configuration error is (exit 78, which systemd does not restart).
		return configError{usageError{err}}
	}
	return err
}

// logEnvWarnings logs the STOREEDGE_* variables that name no key, for the server's log.
func logEnvWarnings(log *slog.Logger, cfg config.Config) {
	for _, w := range cfg.EnvWarnings() {
		attrs := []any{slog.String("name", w.Name)}
		if w.DidYouMean != "" {
			attrs = append(attrs, slog.String("did_you_mean", w.DidYouMean))
		}
		log.Warn("ignoring unknown environment variable", attrs...)
	}
}

func cmdConfig(args, env []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig("config", "Usage: storeedge config [--config PATH] [--set KEY=VALUE ...]\n\nChecks the configuration and prints the effective values, secrets hidden.\n", args, env, stderr)
	if err != nil {
		return err
	}
	// What run checks as it starts, beyond the keys: the proxy variables of the environment
	// (with wan.use_environment) and the extra CA file. A check that passes here must not be
	// followed by a run that stops with 78 (an upgrade restarts the service on it). A CA file
	// this user may not read is left to the server, as the key's check leaves it: the
	// service's account may.
	check := cfg
	if file := check.WAN.ExtraCAFile; file != "" {
		if _, err := config.ReadCAFile(file); errors.Is(err, fs.ErrPermission) {
			check.WAN.ExtraCAFile = ""
		}
	}
	if _, err := newWANDialer(check); err != nil {
		return usageError{fmt.Errorf("%w (as this command's environment and user see it; the service's may differ)", err)}
	}
	fmt.Fprint(stdout, cfg.Redacted())
	return nil
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.SlogLevel()}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
