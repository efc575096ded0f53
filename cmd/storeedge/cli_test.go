package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// storeedge config, the command shop IT checks a configuration with, warns about a STOREEDGE_
// variable that names no key, as run does, and says which one was meant; never its value.
func TestConfigWarnsAboutUnknownVariables(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "storeedge.yaml")
	if err := os.WriteFile(file, []byte("data_dir: "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"STOREEDGE_CLOUD_STORE_KEY=the-real-key",
		"STOREEDGE_CLOUD_STOREKEY=typo-secret-value",
		"STOREEDGE_PAGE_SIZE=500",
		"STOREEDGE_WHATEVER_ELSE_ENTIRELY=1",
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"config", "--config", file}, env, &stdout, &stderr); err != nil {
		t.Fatalf("config: %v\n%s", err, stderr.String())
	}
	warnings := stderr.String()
	for _, want := range []string{
		"environment STOREEDGE_CLOUD_STOREKEY: names no configuration key; ignored (did you mean STOREEDGE_CLOUD_STORE_KEY?)",
		"environment STOREEDGE_PAGE_SIZE: names no configuration key; ignored (did you mean STOREEDGE_CLOUD_PAGE_SIZE?)",
		"environment STOREEDGE_WHATEVER_ELSE_ENTIRELY: names no configuration key; ignored\n",
	} {
		if !strings.Contains(warnings, want) {
			t.Errorf("stderr lacks %q:\n%s", want, warnings)
		}
	}
	if strings.Contains(warnings+stdout.String(), "typo-secret-value") {
		t.Errorf("the value of an unknown variable, maybe a secret, was printed:\n%s%s", warnings, stdout.String())
	}
	if !strings.Contains(stdout.String(), "page_size: 1000") {
		t.Errorf("the configuration printed is not the effective one:\n%s", stdout.String())
	}

	// The typo is why the store key is missing: the warning comes with the error.
	stderr.Reset()
	err := run(context.Background(), []string{"config", "--config", file}, env[1:], &stdout, &stderr)
	if exitCode(err, &stderr) != 2 || !strings.Contains(stderr.String(), "cloud.store_key") ||
		!strings.Contains(stderr.String(), "did you mean STOREEDGE_CLOUD_STORE_KEY?") {
		t.Errorf("config without the store key: %v\n%s", err, stderr.String())
	}
}

// Every command that reads the configuration warns about a misspelt variable, not only config:
// shop IT runs firewall and doctor with the service's environment.
func TestEveryCommandWarnsAboutUnknownVariables(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "storeedge.yaml")
	if err := os.WriteFile(file, []byte("data_dir: "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"STOREEDGE_CLOUD_STORE_KEY=the-real-key", "STOREEDGE_LAN_FRONTDOOR=8080"}
	for _, args := range [][]string{
		{"firewall", "--config", file, "--format", "table"},
		{"backup", "--config", file, filepath.Join(dir, "b.db")},
	} {
		var stdout, stderr bytes.Buffer
		run(context.Background(), args, env, &stdout, &stderr) // backup fails without a database: the warning comes first
		if !strings.Contains(stderr.String(), "environment STOREEDGE_LAN_FRONTDOOR: names no configuration key; ignored (did you mean STOREEDGE_LAN_FRONT_DOOR?)") {
			t.Errorf("%s: no warning:\n%s", args[0], stderr.String())
		}
	}
}

// A --set argument without "=" may be a secret typed in the wrong place: every command that
// takes --set refuses it with exit code 2 (78 for run, a configuration error the service manager
// must not restart) and never prints it (configuration.md, Secrets).
func TestSetWithoutEqualsIsNotShown(t *testing.T) {
	const secret = "sk_live_typed-in-the-wrong-place"
	for _, args := range [][]string{
		{"config", "--set", "cloud.store_key=abc", "--set", secret},
		{"run", "--set", "data_dir=" + t.TempDir(), "--set", secret},
		{"demo", "--set", secret},
		// KEY VALUE with a space: the value is an argument too many.
		{"config", "--set", "cloud.store_key", secret},
		{"run", "--set", "data_dir=" + t.TempDir(), "--set", "admin.token", secret},
		{"doctor", "--set", "cloud.store_key", secret},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, nil, &stdout, &stderr)
		want := 2
		if args[0] == "run" {
			want = exitCodeConfig
		}
		if code := exitCode(err, &stderr); code != want || !strings.Contains(stderr.String(), "=") {
			t.Errorf("%s: exit code %d, want %d and what to write\n%s", args[0], code, want, stderr.String())
		}
		if strings.Contains(stdout.String()+stderr.String(), secret) {
			t.Errorf("%s printed the argument:\n%s%s", args[0], stdout.String(), stderr.String())
		}
	}
}

// storeedge config checks what run checks as it starts beyond the keys: a proxy variable of the
// environment that run refuses (exit 78) is refused here too, with exit code 2, so that a
// check before an upgrade's restart says what the restart would meet (install.md).
func TestConfigChecksTheProxyOfTheEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "storeedge.yaml")
	if err := os.WriteFile(file, []byte("data_dir: "+t.TempDir()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	t.Setenv("HTTPS_PROXY", "ftp://proxy.lan:21") // the dialer reads the process's environment
	err := run(context.Background(), []string{"config", "--config", file}, []string{"STOREEDGE_CLOUD_STORE_KEY=the-real-key"}, &stdout, &stderr)
	if code := exitCode(err, &stderr); code != 2 || !strings.Contains(stderr.String(), `unsupported proxy scheme "ftp"`) {
		t.Fatalf("exit code %d, want 2 naming the scheme:\n%s", code, stderr.String())
	}
}

// Mistakes in "storeedge service" arguments are mistakes on the command line: exit code 2
// (operations.md), before the service manager is asked anything.
func TestServiceArgumentMistakesAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"service", "instal"},
		{"service", "install", "--config", "storeedge.yaml"},
		{"service", "install", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, nil, &stdout, &stderr)
		if code := exitCode(err, &stderr); code != 2 {
			t.Errorf("%q: exit code %d, want 2\n%s", args, code, stderr.String())
		}
	}
}

// An argument too many is shown unless it looks like a secret: a file name is, a token is not.
func TestUnexpectedArgumentShownUnlessSecret(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		shown bool
	}{
		{[]string{"config", "--set", "cloud.store_key=", "sk_live_3f9c0a1b2c3d4e5f6a7b8c9d"}, false},
		{[]string{"config", "--set", "admin.token=", "9f86d081884c7d659a2feaa0c55ad015"}, false},
		{[]string{"config", "--set", "admin.token=", "Summer2024!"}, false},
		{[]string{"config", "--set=cloud.store_key", "Kq3/9xZ+abcdefghijklmnop=="}, false},
		{[]string{"config", "--set", "media.connection_string=", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Kq3/9xZ+ab=="}, false},
		{[]string{"config", "--set", "media.container_url=", "https://a.blob.core.windows.net/m?sv=2021&sig=Kq3%2F9x"}, false},
		{[]string{"config", "--set", "cloud.store_key=", "SommerZeit"}, false},
		{[]string{"config", "--set=cloud.store_key=", "SommerZeit"}, false},
		{[]string{"backup", "--set", "cloud.store_key", "SommerZeit"}, false}, // not taken as the file
		{[]string{"backup", "--set", "SommerZeit", "x.backup"}, false},        // the value alone, as a key
		{[]string{"config", os.TempDir()}, true},                              // a folder that exists
		{[]string{"config", "shop.backup"}, true},
		{[]string{"config", "now"}, true},
		{[]string{"demo", "--set", "smtp.password", "Zk39aJf8sLq0PwXnTt3v"}, false},
		{[]string{"version", "extra"}, true},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), tc.args, nil, &stdout, &stderr)
		msg := stderr.String()
		if err != nil {
			msg += err.Error()
		}
		arg := tc.args[len(tc.args)-1]
		if strings.Contains(msg, arg) != tc.shown || !strings.Contains(msg, "unexpected argument") {
			t.Errorf("%q: shown %v, want %v:\n%s", tc.args, strings.Contains(msg, arg), tc.shown, msg)
		}
		if code := exitCode(err, io.Discard); code != 2 {
			t.Errorf("%q: exit status %d, want 2 (a mistake on the command line)", tc.args, code)
		}
	}
}

// "storeedge help" shows each command with the options its own --help gives, so that shop IT
// reading the summary does not miss one.
func TestTopUsageListsEachCommandsOptions(t *testing.T) {
	flagRE := regexp.MustCompile(`\[(--?[a-z-]+)`)
	for _, cmd := range [][]string{{"run"}, {"demo"}, {"config"}, {"discovery"}, {"doctor"}, {"firewall"}, {"backup"}, {"restore"}, {"service"}, {"alert", "test"}} {
		var out, errOut bytes.Buffer
		args := append(append([]string{}, cmd...), "--help")
		if cmd[0] == "alert" {
			args = []string{"alert", "--help"}
		}
		run(context.Background(), args, nil, &out, &errOut)
		usage, _, _ := strings.Cut(out.String()+errOut.String(), "\n\n")
		name := "storeedge " + strings.Join(cmd, " ")
		if !strings.HasPrefix(usage, "Usage: "+name) {
			t.Errorf("%s --help starts %q", name, usage)
			continue
		}
		// The command's lines in the summary: its own and those indented under it.
		i := strings.Index(topUsage, "  "+name+" ")
		if i < 0 {
			t.Errorf("storeedge help does not list %s", name)
			continue
		}
		summary := topUsage[i:]
		if j := strings.Index(summary[2:], "\n  storeedge "); j >= 0 {
			summary = summary[:j+2]
		}
		for _, m := range flagRE.FindAllStringSubmatch(usage, -1) {
			flag := "[" + m[1]
			if !strings.Contains(summary, flag) {
				t.Errorf("storeedge help's %s line lacks %s], which %s --help gives:\n%s", name, flag, name, usage)
			}
		}
	}
}
