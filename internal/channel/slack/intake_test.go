package slack

import (
	"reflect"
	"testing"
)

func TestIntake(t *testing.T) {
	bot := Bot{UserID: "UBOT", BotID: "BBOT"}
	allow := map[string]bool{"UANN": true}
	threads := map[string]bool{"C1/100.1": true}
	own := func(ch, root string) bool { return threads[ch+"/"+root] }
	dm := func(text string) Event {
		return Event{Type: "message", Team: "T1", Channel: "D1", ChannelType: "im", User: "UANN", Text: text, TS: "200.1"}
	}
	ch := func(text string) Event {
		return Event{Type: "message", Team: "T1", Channel: "C1", ChannelType: "channel", User: "UANN", Text: text, TS: "300.1"}
	}
	with := func(e Event, f func(*Event)) Event { f(&e); return e }
	for _, tc := range []struct {
		name string
		ev   Event
		want Intent
	}{
		{"direct message", dm("hello"), Intent{Action: Accept, Chat: "slack:T1:D1", Channel: "D1", User: "UANN", Text: "hello", TS: "200.1"}},
		{"direct message in a thread", with(dm("more"), func(e *Event) { e.ThreadTS = "150.1" }),
			Intent{Action: Accept, Chat: "slack:T1:D1", Channel: "D1", User: "UANN", Text: "more", TS: "200.1", Root: "150.1"}},
		{"escapes undone", dm("a &lt;b&gt; &amp;amp;"), Intent{Action: Accept, Chat: "slack:T1:D1", Channel: "D1", User: "UANN", Text: "a <b> &amp;", TS: "200.1"}},
		{"channel without mention", ch("hello all"), Intent{}},
		{"channel mention", ch("<@UBOT> status of the build?"),
			Intent{Action: Accept, Chat: "slack:T1:C1", Channel: "C1", User: "UANN", Text: "status of the build?", TS: "300.1", Root: "300.1"}},
		{"app_mention event, same decision", with(ch("<@UBOT> status of the build?"), func(e *Event) { e.Type, e.ChannelType = "app_mention", "" }),
			Intent{Action: Accept, Chat: "slack:T1:C1", Channel: "C1", User: "UANN", Text: "status of the build?", TS: "300.1", Root: "300.1"}},
		{"mention with a name", ch("<@UBOT|dispatch>: hi"),
			Intent{Action: Accept, Chat: "slack:T1:C1", Channel: "C1", User: "UANN", Text: "hi", TS: "300.1", Root: "300.1"}},
		{"mention mid-text kept", ch("ask <@UBOT> please"),
			Intent{Action: Accept, Chat: "slack:T1:C1", Channel: "C1", User: "UANN", Text: "ask <@UBOT> please", TS: "300.1", Root: "300.1"}},
		{"the bot's own thread, no mention", with(ch("and then?"), func(e *Event) { e.ThreadTS = "100.1" }),
			Intent{Action: Accept, Chat: "slack:T1:C1", Channel: "C1", User: "UANN", Text: "and then?", TS: "300.1", Root: "100.1"}},
		{"another thread, no mention", with(ch("and then?"), func(e *Event) { e.ThreadTS = "99.1" }), Intent{}},
		{"another thread, mention", with(ch("<@UBOT> join"), func(e *Event) { e.ThreadTS = "99.1" }),
			Intent{Action: Accept, Chat: "slack:T1:C1", Channel: "C1", User: "UANN", Text: "join", TS: "300.1", Root: "99.1"}},
		{"its own message", with(dm("echo"), func(e *Event) { e.User, e.BotID = "UBOT", "BBOT" }), Intent{}},
		{"another bot", with(dm("beep"), func(e *Event) { e.User, e.BotID = "UOTHER", "BOTHER" }), Intent{}},
		{"an edit", with(dm(""), func(e *Event) { e.Subtype = "message_changed"; e.User = "" }), Intent{}},
		{"edited flag", with(dm("x"), func(e *Event) { e.Edited = true }), Intent{}},
		{"a join", with(ch("<@UANN> has joined"), func(e *Event) { e.Subtype = "channel_join" }), Intent{}},
		{"a deletion", with(dm(""), func(e *Event) { e.Subtype = "message_deleted" }), Intent{}},
		{"another event", with(dm("x"), func(e *Event) { e.Type = "reaction_added" }), Intent{}},
		{"stranger in a DM", with(dm("hi"), func(e *Event) { e.User = "UEVE" }),
			Intent{Action: Refuse, Chat: "slack:T1:D1", Channel: "D1", User: "UEVE", TS: "200.1"}},
		{"stranger mentioning", with(ch("<@UBOT> hi"), func(e *Event) { e.User = "UEVE" }),
			Intent{Action: Refuse, Chat: "slack:T1:C1", Channel: "C1", User: "UEVE", TS: "300.1", Root: "300.1"}},
		{"stranger not addressing", with(ch("hi"), func(e *Event) { e.User = "UEVE" }), Intent{}},
		{"/new in a DM", dm("/new"), Intent{Action: Command, Chat: "slack:T1:D1", Channel: "D1", User: "UANN", TS: "200.1", Command: CmdNew}},
		{"status after a mention", ch("<@UBOT> status"),
			Intent{Action: Command, Chat: "slack:T1:C1", Channel: "C1", User: "UANN", TS: "300.1", Root: "300.1", Command: CmdStatus}},
		{"/STOP", dm(" /STOP "), Intent{Action: Command, Chat: "slack:T1:D1", Channel: "D1", User: "UANN", TS: "200.1", Command: CmdStop}},
		{"bare word without mention is text", dm("status"), Intent{Action: Accept, Chat: "slack:T1:D1", Channel: "D1", User: "UANN", Text: "status", TS: "200.1"}},
		{"other slash words are text", dm("/deploy now"), Intent{Action: Accept, Chat: "slack:T1:D1", Channel: "D1", User: "UANN", Text: "/deploy now", TS: "200.1"}},
		{"files Slack does not host", with(dm("see this"), func(e *Event) { e.Subtype, e.HasFiles = "file_share", true }),
			Intent{Action: Unsupported, Chat: "slack:T1:D1", Channel: "D1", User: "UANN", TS: "200.1"}},
		{"files", with(dm("see this"), func(e *Event) {
			e.Subtype, e.HasFiles, e.Files = "file_share", true, []FileRef{{ID: "F1", Name: "a.txt", Size: 3}}
		}),
			Intent{Action: Accept, Chat: "slack:T1:D1", Channel: "D1", User: "UANN", Text: "see this", TS: "200.1", Files: []FileRef{{ID: "F1", Name: "a.txt", Size: 3}}}},
		{"files without text", with(dm(""), func(e *Event) { e.Subtype, e.HasFiles, e.Files = "file_share", true, []FileRef{{ID: "F1"}} }),
			Intent{Action: Accept, Chat: "slack:T1:D1", Channel: "D1", User: "UANN", TS: "200.1", Files: []FileRef{{ID: "F1"}}}},
		{"a stranger's files", with(dm("x"), func(e *Event) { e.User, e.HasFiles, e.Files = "UEVE", true, []FileRef{{ID: "F1"}} }),
			Intent{Action: Refuse, Chat: "slack:T1:D1", Channel: "D1", User: "UEVE", TS: "200.1"}},
		{"a bare mention", ch("<@UBOT>"), Intent{Action: Unsupported, Chat: "slack:T1:C1", Channel: "C1", User: "UANN", TS: "300.1", Root: "300.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Intake(tc.ev, bot, allow, own); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestChatIDs(t *testing.T) {
	if c := ChatID("T1", "C2"); c != "slack:T1:C2" {
		t.Fatal(c)
	}
	for _, tc := range []struct {
		chat        string
		team, chann string
		ok          bool
	}{
		{"slack:T1:C2", "T1", "C2", true},
		{"slack:T1", "", "", false},
		{"slack::C2", "", "", false},
		{"slack:T1:C2:x", "", "", false},
		{"tg:1", "", "", false},
	} {
		team, ch, ok := ParseChatID(tc.chat)
		if ok != tc.ok || (ok && (team != tc.team || ch != tc.chann)) {
			t.Errorf("%q: %q %q %v", tc.chat, team, ch, ok)
		}
	}
	d := Intent{Root: "1.2", TS: "3.4"}
	if root, ts, ok := ParseClientID(d.ClientID()); !ok || root != "1.2" || ts != "3.4" {
		t.Fatal(root, ts, ok)
	}
	if root, ts, ok := ParseClientID(Intent{TS: "3.4"}.ClientID()); !ok || root != "" || ts != "3.4" {
		t.Fatal(root, ts, ok)
	}
}
