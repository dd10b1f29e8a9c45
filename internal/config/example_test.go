package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const examplePath = "../../contrib/dispatch.example.yaml"

// The shipped example config loads, and names every key the loader knows
// (derived from the Config struct), so it can never drift from the loader.
// Its commented example webhook, uncommented, loads too and supplies the
// webhook keys.
func TestExampleConfigHasEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_STATE_HOME", "")
	if _, err := Parse(data); err != nil {
		t.Fatalf("%s does not load: %v", examplePath, err)
	}
	full := uncommentExample(t, string(data))
	cfg, err := Parse([]byte(full))
	if err != nil {
		t.Fatalf("%s with its example webhook does not load: %v", examplePath, err)
	}
	if len(cfg.Webhooks) != 1 {
		t.Fatalf("the example webhook did not load: %+v", cfg.Webhooks)
	}
	if len(cfg.Channels) != 2 {
		t.Fatalf("the example channels (Telegram, Slack) did not load: %+v", cfg.Channels)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(full), &doc); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	collectKeys(doc.Content[0], "", present)
	for _, k := range Keys() {
		if !present[k] {
			t.Errorf("%s lacks the key %s", filepath.Base(examplePath), k)
		}
	}
	for k := range present {
		if !slices.Contains(Keys(), k) {
			t.Errorf("%s has %s, which the loader does not know", filepath.Base(examplePath), k)
		}
	}
	// Every value in it is the default (state_dir aside, which depends on
	// the environment): copying it changes nothing.
	def, _ := Parse(nil)
	cfg.Webhooks, cfg.Channels, cfg.StateDir, def.StateDir = nil, nil, "", ""
	a, _ := cfg.ShowYAML()
	b, _ := def.ShowYAML()
	if string(a) != string(b) {
		t.Errorf("the example's values differ from the defaults:\nexample:\n%s\ndefaults:\n%s", a, b)
	}
}

// uncommentExample replaces the top-level "webhooks: []" and "channels:
// []" with the commented examples between their markers.
func uncommentExample(t *testing.T, s string) string {
	t.Helper()
	out := s
	for _, ex := range []struct{ marker, empty string }{
		{"webhook", "webhooks: []\n"},
		{"channel", "channels: []\n"},
	} {
		_, rest, ok := strings.Cut(s, "# >>> example "+ex.marker+"\n")
		block, _, ok2 := strings.Cut(rest, "# <<< example "+ex.marker)
		if !ok || !ok2 {
			t.Fatalf("no example %s between the markers", ex.marker)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSuffix(block, "\n"), "\n") {
			lines = append(lines, strings.TrimPrefix(l, "# "))
		}
		out = strings.Replace(out, ex.empty, "", 1)
		out += "\n" + strings.Join(lines, "\n") + "\n"
	}
	return out
}

// collectKeys adds the dotted key paths of a YAML mapping's values (not of
// its sections); the entries of a list of mappings are "key[].sub".
func collectKeys(n *yaml.Node, prefix string, out map[string]bool) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := join(prefix, n.Content[i].Value)
		v := n.Content[i+1]
		if v.Kind != yaml.MappingNode || key == "agent.env" {
			out[key] = true // a section's name is not a key
		}
		switch v.Kind {
		case yaml.MappingNode:
			if key != "agent.env" {
				collectKeys(v, key, out)
			}
		case yaml.SequenceNode:
			for _, e := range v.Content {
				collectKeys(e, key+"[]", out)
			}
		}
	}
}
