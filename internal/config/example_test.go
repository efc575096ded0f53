package config

import (
	"os"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const (
	examplePath = "../../deploy/storeedge.example.yaml"
	docsPath    = "../../docs/configuration.md"
)

// The example file is what shop IT copies: it must load, show every key, and show the real
// defaults.
func TestExampleFile(t *testing.T) {
	var flags []string
	if runtime.GOOS == "windows" {
		// The example shows the Unix data_dir, which is not an absolute path on Windows.
		flags = []string{"data_dir=" + defaultDataDir()}
	}
	c, err := Load(examplePath, envKey, flags)
	if err != nil {
		t.Fatalf("%s does not load: %v", examplePath, err)
	}
	// The file leaves server_id empty (derived from this host) and shows the Unix data_dir;
	// the store key comes from envKey.
	for _, d := range diffDefaults(c, "server_id", "data_dir", "cloud.store_key") {
		t.Errorf("%s: %s", examplePath, d)
	}
	if c.DataDir != DefaultDataDirUnix && runtime.GOOS != "windows" {
		t.Errorf("%s: data_dir is %q, but its default is %q", examplePath, c.DataDir, DefaultDataDirUnix)
	}

	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	present := map[string]*yaml.Node{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind == yaml.MappingNode {
				walk(v, prefix+k.Value+".")
				continue
			}
			present[prefix+k.Value] = k
			if k.LineComment == "" {
				k.LineComment = v.LineComment // yaml puts "key: value # comment" on the value
			}
		}
	}
	walk(doc.Content[0], "")
	for _, key := range Keys() {
		k := present[key]
		if k == nil {
			t.Errorf("%s lacks key %s", examplePath, key)
			continue
		}
		// Every key is explained, above it or beside it (a list of ports shares one comment).
		if k.HeadComment == "" && k.LineComment == "" && !strings.HasPrefix(key, "lan.services.") {
			t.Errorf("%s: key %s has no comment", examplePath, key)
		}
	}
	if k := present["data_dir"]; k != nil && !strings.Contains(k.HeadComment, DefaultDataDirWindows) {
		t.Errorf("%s: data_dir's comment does not give the Windows default %s", examplePath, DefaultDataDirWindows)
	}
}

// docs/configuration.md documents every key, and its table agrees with the code.
func TestDocsListEveryKey(t *testing.T) {
	data, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\| `([^`]*)` \\| `([A-Z_]+)` \\|")
	rows := map[string][]string{}
	var order []string
	for _, m := range row.FindAllStringSubmatch(string(data), -1) {
		rows[m[1]] = m
		order = append(order, m[1])
	}
	if !reflect.DeepEqual(order, Keys()) {
		t.Errorf("%s key table = %q\nwant Keys() = %q", docsPath, order, Keys())
	}

	// The defaults column, read as YAML, gives Default().
	var yamlText strings.Builder
	for _, key := range Keys() {
		m := rows[key]
		if m == nil {
			t.Errorf("%s: no table row for %s", docsPath, key)
			continue
		}
		if m[3] != EnvName(key) {
			t.Errorf("%s: %s has environment variable %s, want %s", docsPath, key, m[3], EnvName(key))
		}
		if !strings.Contains(string(data), "`"+key+"`") {
			t.Errorf("%s does not mention %s", docsPath, key)
		}
		yamlText.WriteString(strings.ReplaceAll(key, ".", "__") + ": " + m[2] + "\n")
	}
	var flat map[string]yaml.Node
	if err := yaml.Unmarshal([]byte(yamlText.String()), &flat); err != nil {
		t.Fatalf("defaults column is not YAML: %v", err)
	}
	var got Config
	for k, v := range flat {
		v := v
		key := strings.ReplaceAll(k, "__", ".")
		if err := setLeaf(&got, leafByKey[key], &v, false); err != nil {
			t.Errorf("%s: default of %s: %v", docsPath, key, err)
		}
	}
	for _, d := range diffDefaults(got, "data_dir") {
		t.Errorf("%s: %s", docsPath, d)
	}
	// data_dir's row gives the Unix default and names the Windows one.
	if got.DataDir != DefaultDataDirUnix {
		t.Errorf("%s: data_dir is %q, but its default is %q", docsPath, got.DataDir, DefaultDataDirUnix)
	}
	if !strings.Contains(rowOf(string(data), "data_dir"), DefaultDataDirWindows) {
		t.Errorf("%s: data_dir's row does not give the Windows default %s", docsPath, DefaultDataDirWindows)
	}
}

// rowOf returns the line of the key table for key, or "".
func rowOf(doc, key string) string {
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "| `"+key+"` |") {
			return line
		}
	}
	return ""
}
