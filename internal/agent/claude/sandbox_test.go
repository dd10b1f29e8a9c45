package claude

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// A new view gets the operator's CLI state less its per-project records
// (which name every chat's folder); an existing view is left alone.
func TestSeedState(t *testing.T) {
	home := t.TempDir()
	conf := filepath.Join(home, ".claude")
	view := t.TempDir()
	os.MkdirAll(conf, 0o700)
	os.WriteFile(filepath.Join(home, ".claude.json"), []byte(`{"userID":"u1","oauthAccount":{"emailAddress":"me@example"},"projects":{"/state/work/bob":{"lastSessionId":"x"}}}`), 0o600)
	env := []string{"HOME=" + home}
	if err := seedState(conf, view, env); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(view, ".claude.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	json.Unmarshal(b, &got)
	if got["userID"] != "u1" || got["oauthAccount"] == nil || got["projects"] != nil {
		t.Errorf("seeded state %s", b)
	}
	os.WriteFile(filepath.Join(view, ".claude.json"), []byte(`{"mine":1}`), 0o600)
	if err := seedState(conf, view, env); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(view, ".claude.json")); string(b) != `{"mine":1}` {
		t.Errorf("an existing view's state was replaced: %s", b)
	}
	// With $CLAUDE_CONFIG_DIR the state file is in the config folder.
	view2 := t.TempDir()
	os.WriteFile(filepath.Join(conf, ".claude.json"), []byte(`{"userID":"u2"}`), 0o600)
	if err := seedState(conf, view2, env); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(view2, ".claude.json")); string(b) != `{"userID":"u2"}` {
		t.Errorf("seeded from the config folder: %s", b)
	}
}
