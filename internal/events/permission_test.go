package events

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestPermissionEventsRoundTrip: the fields of the permission and progress
// events survive what a store keeps (Payload, FromPayload), and their JSON
// carries exactly the documented names.
func TestPermissionEventsRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)
	exp := at.Add(30 * time.Minute)
	for _, tt := range []struct {
		e    Event
		json []string
	}{
		{NewPermissionRequest(at, "c1", "perm-1", "Bash", "touch x", exp),
			[]string{`"type":"permission_request"`, `"chat_id":"c1"`, `"request_id":"perm-1"`, `"tool":"Bash"`, `"summary":"touch x"`, `"expires_at":"2026-12-07T18:30:00Z"`}},
		{NewPermissionDecided(at, "c1", "perm-1", "Bash", "allow_always", "cli", ""),
			[]string{`"type":"permission_decided"`, `"decision":"allow_always"`, `"by":"cli"`, `"request_id":"perm-1"`}},
		{NewPermissionDecided(at, "c1", "perm-2", "Write", "expired", "dispatch", "timeout"),
			[]string{`"decision":"expired"`, `"by":"dispatch"`, `"reason":"timeout"`}},
		{NewProgress(at, "c1", "turn-3", "Write", "/tmp/a.txt (6 B)"),
			[]string{`"type":"progress"`, `"turn_id":"turn-3"`, `"tool":"Write"`, `"summary":"/tmp/a.txt (6 B)"`}},
	} {
		if !tt.e.Type.Valid() {
			t.Errorf("%s is not in AllTypes", tt.e.Type)
		}
		data, err := tt.e.Payload()
		if err != nil {
			t.Fatal(err)
		}
		back, err := FromPayload(7, tt.e.Type, at, data)
		if err != nil {
			t.Fatal(err)
		}
		if want := tt.e.WithSeq(7); !reflect.DeepEqual(back, want) {
			t.Errorf("round trip:\n got %+v\nwant %+v", back, want)
		}
		b, _ := json.Marshal(back)
		for _, w := range tt.json {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %s", b, w)
			}
		}
	}
}

func TestOptIn(t *testing.T) {
	for _, ty := range AllTypes {
		if ty.OptIn() != (ty == Progress) {
			t.Errorf("%s.OptIn() = %v", ty, ty.OptIn())
		}
	}
	if got, err := ParseTypes("progress, permission_request,permission_decided"); err != nil || len(got) != 3 {
		t.Errorf("ParseTypes = %v, %v", got, err)
	}
}
