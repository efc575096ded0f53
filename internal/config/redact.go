package config

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Redacted returns c as a YAML configuration file, every key in document order, with secrets
// shown as "xxxxx" (a proxy URL keeps everything but its credentials; a URL that Validate
// refuses for holding credentials or a query shows those as "xxxxx" too). It is what `storeedge
// config` prints and the admin service serves at /api/v1/admin/config. Fed back to Load, it
// gives c again, secrets aside.
func (c Config) Redacted() string {
	root := &yaml.Node{Kind: yaml.MappingNode}
	v := reflect.ValueOf(c)
	for _, l := range leaves {
		parent := root
		parts := strings.Split(l.key, ".")
		for _, section := range parts[:len(parts)-1] {
			parent = childMapping(parent, section)
		}
		parent.Content = append(parent.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: parts[len(parts)-1]},
			valueNode(l, v.FieldByIndex(l.index)))
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := encodeNode(enc, root); err != nil {
		// Only valid-UTF-8 scalars and mappings are built above, so this is not expected;
		// still, a view of the configuration is no reason to crash.
		return "# cannot show the configuration: " + err.Error() + "\n"
	}
	return b.String()
}

func encodeNode(enc *yaml.Encoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	if err := enc.Encode(n); err != nil {
		return err
	}
	return enc.Close()
}

func childMapping(parent *yaml.Node, name string) *yaml.Node {
	for i := 0; i+1 < len(parent.Content); i += 2 {
		if parent.Content[i].Value == name {
			return parent.Content[i+1]
		}
	}
	m := &yaml.Node{Kind: yaml.MappingNode}
	parent.Content = append(parent.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}, m)
	return m
}

func valueNode(l leaf, f reflect.Value) *yaml.Node {
	if l.kind == kindList {
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
		for _, item := range f.Interface().([]string) {
			seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: yaml.DoubleQuotedStyle,
				Value: strings.ToValidUTF8(item, "\uFFFD")})
		}
		return seq
	}
	n := &yaml.Node{Kind: yaml.ScalarNode}
	switch l.kind {
	case kindSecret:
		n.Tag, n.Style, n.Value = "!!str", yaml.DoubleQuotedStyle, f.Interface().(Secret).String()
	case kindProxy:
		n.Tag, n.Style, n.Value = "!!str", yaml.DoubleQuotedStyle, f.Interface().(Proxy).String()
	case kindString:
		n.Tag, n.Style, n.Value = "!!str", yaml.DoubleQuotedStyle, f.String()
		switch l.key {
		case "cloud.url", "backoffice.webhook.url", "logs.ship.url":
			// Validate refuses credentials and a query there, but a view of a bad
			// configuration must not show them either.
			n.Value = redactURLQuery(n.Value)
		}
	case kindDuration:
		n.Tag, n.Style, n.Value = "!!str", yaml.DoubleQuotedStyle, formatDuration(time.Duration(f.Int()))
	case kindInt:
		n.Tag, n.Value = "!!int", strconv.FormatInt(f.Int(), 10)
	case kindBool:
		n.Tag, n.Value = "!!bool", strconv.FormatBool(f.Bool())
	}
	// yaml cannot write invalid UTF-8 as text; such a value (only possible from the environment
	// or a flag) fails Validate anyway, and is shown with U+FFFD in place of the bad bytes.
	n.Value = strings.ToValidUTF8(n.Value, "\uFFFD")
	return n
}
