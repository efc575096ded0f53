package config

import (
	"slices"
	"strings"
	"testing"
)

// discovery.interfaces is a list: a YAML list in the file, names separated by commas in the
// environment and --set, and it survives the trip through Redacted.
func TestInterfacesList(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		env, flags []string
		want       []string
	}{
		{name: "default", want: nil},
		{name: "file list", file: "discovery:\n  interfaces: [eth0, \"Ethernet 2\"]\n", want: []string{"eth0", "Ethernet 2"}},
		{name: "file block list", file: "discovery:\n  interfaces:\n    - eth0\n    - wlan0\n", want: []string{"eth0", "wlan0"}},
		{name: "file empty", file: "discovery:\n  interfaces: []\n", want: nil},
		{name: "environment", env: []string{"STOREEDGE_DISCOVERY_INTERFACES=eth0, wlan0"}, want: []string{"eth0", "wlan0"}},
		{name: "flag wins", file: "discovery:\n  interfaces: [eth0]\n", flags: []string{"discovery.interfaces=br0"}, want: []string{"br0"}},
		{name: "flag empties", file: "discovery:\n  interfaces: [eth0]\n", flags: []string{"discovery.interfaces="}, want: nil},
	} {
		path := ""
		if tc.file != "" {
			path = writeConfig(t, tc.file)
		}
		c, err := Load(path, append(slices.Clone(envKey), tc.env...), tc.flags)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !slices.Equal(c.Discovery.Interfaces, tc.want) {
			t.Errorf("%s: interfaces = %q, want %q", tc.name, c.Discovery.Interfaces, tc.want)
		}
		back, err := Load(writeConfig(t, c.Redacted()), envKey, nil)
		if err != nil || !slices.Equal(back.Discovery.Interfaces, tc.want) {
			t.Errorf("%s: through Redacted: %q, %v", tc.name, back.Discovery.Interfaces, err)
		}
	}
}

func TestDiscoveryProblems(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"discovery:\n  interfaces: {eth0: 1}\n", "discovery.interfaces: a mapping: want a list of names"},
		{"discovery:\n  interfaces: [[eth0]]\n", "discovery.interfaces: a list: want a list of names"},
		{"discovery:\n  interfaces: [eth0, eth0]\n", `discovery.interfaces: "eth0": given twice`},
		{"discovery:\n  interfaces: [\"a\\tb\"]\n", `discovery.interfaces: "a\tb": not an interface name`},
		{"discovery:\n  udp: {port: 0}\n", "discovery.udp.port: 0: must be a port between 1 and 65535"},
		{"discovery:\n  udp: {answer_burst: 0}\n", "discovery.udp.answer_burst: 0: must be between 1 and 100"},
		{"discovery:\n  announce_interval: 100ms\n", `discovery.announce_interval: "100ms": must be between "1s" and "1h"`},
	} {
		_, err := Load(writeConfig(t, tc.file), envKey, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.file, err, tc.want)
		}
	}
}
