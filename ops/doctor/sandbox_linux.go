package doctor

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
)

// SystemdSandbox returns Options.Sandbox for the systemd unit unit: with ProtectSystem=strict,
// the service may write only to its ReadWritePaths and StateDirectory (under /var/lib). ok is
// false when the unit is not loaded, does not confine the whole system, or systemctl cannot say.
func SystemdSandbox(unit string) func() ([]string, bool) {
	return func() ([]string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), folderTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, "systemctl", "show", "--property=LoadState,ProtectSystem,ReadWritePaths,StateDirectory", unit).Output()
		if err != nil {
			return nil, false
		}
		return parseSandbox(string(out))
	}
}

// parseSandbox reads systemctl show's Key=Value lines.
func parseSandbox(show string) ([]string, bool) {
	props := map[string]string{}
	for _, line := range strings.Split(show, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			props[k] = v
		}
	}
	if props["LoadState"] != "loaded" || props["ProtectSystem"] != "strict" {
		return nil, false
	}
	var writable []string
	for _, p := range strings.Fields(props["ReadWritePaths"]) {
		if p = strings.TrimLeft(p, "-+"); filepath.IsAbs(p) {
			writable = append(writable, filepath.Clean(p))
		}
	}
	for _, d := range strings.Fields(props["StateDirectory"]) {
		writable = append(writable, filepath.Join("/var/lib", d))
	}
	return writable, true
}
