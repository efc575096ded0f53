package dirlock

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// holdEnv makes the test binary a process that holds the folder it names until it is killed.
const holdEnv = "DIRLOCK_TEST_HOLD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(holdEnv); dir != "" {
		if _, err := Acquire(dir, Owner{PID: os.Getpid(), StartedAt: time.Now(), Host: "holder", Version: "v-test"}); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {}
	}
	os.Exit(m.Run())
}

func me() Owner { return Owner{PID: os.Getpid(), StartedAt: time.Now().Truncate(time.Second)} }

func TestSecondHolderIsRefusedAndToldWho(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	started := time.Date(2026, 12, 2, 15, 4, 5, 0, time.UTC)
	first, err := Acquire(dir, Owner{PID: os.Getpid(), StartedAt: started, Host: "shop-pc", Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir, me())
	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("second Acquire: %v, want a HeldError", err)
	}
	for _, want := range []string{dir, "pid " + strconv.Itoa(os.Getpid()), "on shop-pc", "started 2026-12-02T15:04:05Z", "version 1.2.3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "namespace") {
		t.Errorf("message %q speaks of another namespace for a holder in this one", err)
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	// A holder in a container: its pid is not this system's, and the message says so.
	inContainer, err := Acquire(dir, Owner{PID: 1, StartedAt: started, Host: "shop-pc", PIDNamespace: "pid:[4026532999]"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = Acquire(dir, me()); err == nil || !strings.Contains(err.Error(), "in another PID namespace") {
		t.Errorf("refused by a holder in a container: %v", err)
	}
	inContainer.Release()
	again, err := Acquire(dir, me())
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}
	again.Release()
}

func TestUnreadableHolderIsStillRefused(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, me())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	// What an older program, or one caught writing the file, leaves.
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("{\"pi"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir, me())
	var held *HeldError
	if !errors.As(err, &held) || held.OwnerErr == nil || !strings.Contains(err.Error(), "which one is unknown") {
		t.Fatalf("second Acquire: %v", err)
	}
}

func TestLeftoverFileIsTakenOver(t *testing.T) {
	dir := t.TempDir()
	// A long, stale content: the new owner must replace all of it.
	stale := `{"pid":999999,"started_at":"2020-01-01T00:00:00Z","host":"` + strings.Repeat("x", 500) + `"}`
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(stale), 0o640); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(dir, me())
	if err != nil {
		t.Fatalf("a file nobody holds: %v", err)
	}
	defer l.Release()
	b, _ := os.ReadFile(filepath.Join(dir, FileName))
	if strings.Contains(string(b), "999999") || strings.Contains(string(b), "xxx") {
		t.Fatalf("stale content kept: %s", b)
	}
}

// TestKilledHolderReleases holds the folder in another process, checks that it is named, kills
// it, and takes the folder over.
func TestKilledHolderReleases(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("holder: %q %v", line, err)
	}
	_, err = Acquire(dir, me())
	var held *HeldError
	if !errors.As(err, &held) || held.Owner.PID != cmd.Process.Pid || held.Owner.Host != "holder" {
		t.Fatalf("while another process holds it: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	l, err := Acquire(dir, me())
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	l.Release()
}

// FuzzParseOwner reads arbitrary lock file contents: an owner is named only with a pid, and the
// message built from it never fails.
func FuzzParseOwner(f *testing.F) {
	f.Add([]byte(`{"pid":1234,"started_at":"2026-12-02T15:04:05Z","host":"shop-pc","version":"1.2.3"}` + "\n" + `tail of an older owner"}`))
	f.Add([]byte(`{"pid":0}`))
	f.Add([]byte(`{"pid":1,"started_at":"yesterday"}`))
	f.Add([]byte("\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, ok := parseOwner(b)
		if !ok {
			return
		}
		if o.PID <= 0 {
			t.Fatalf("owner %+v from %q", o, b)
		}
		if msg := (&HeldError{Dir: "/d", Owner: o}).Error(); !strings.Contains(msg, "pid "+strconv.Itoa(o.PID)) {
			t.Fatalf("message %q", msg)
		}
	})
}
