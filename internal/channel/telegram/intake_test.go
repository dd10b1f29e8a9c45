package telegram

import (
	"testing"

	"github.com/go-telegram/bot/models"
)

func TestIntake(t *testing.T) {
	bot := Bot{ID: 99, Username: "dispatch_bot"}
	allow := map[int64]bool{42: true}
	ann := &models.User{ID: 42, FirstName: "Ann"}
	eve := &models.User{ID: 7, FirstName: "Eve"}
	private := models.Chat{ID: 42, Type: models.ChatTypePrivate}
	group := models.Chat{ID: -100, Type: models.ChatTypeSupergroup}
	ent := func(typ models.MessageEntityType, off, n int) []models.MessageEntity {
		return []models.MessageEntity{{Type: typ, Offset: off, Length: n}}
	}
	tests := []struct {
		name string
		m    *models.Message
		want Decision
	}{
		{"not a message", nil, Decision{}},
		{"private text", &models.Message{From: ann, Chat: private, Text: "hi"}, Decision{Action: Accept, Chat: 42, User: 42, Text: "hi"}},
		{"stranger in private", &models.Message{From: eve, Chat: models.Chat{ID: 7, Type: models.ChatTypePrivate}, Text: "hi"}, Decision{Action: Refuse, Chat: 7, User: 7}},
		{"another bot", &models.Message{From: &models.User{ID: 42, IsBot: true}, Chat: private, Text: "hi"}, Decision{}},
		{"group, not addressed", &models.Message{From: ann, Chat: group, Text: "lunch?"}, Decision{}},
		{"group, stranger not addressing", &models.Message{From: eve, Chat: group, Text: "lunch?"}, Decision{}},
		{"group mention", &models.Message{From: ann, Chat: group, Text: "@dispatch_bot status?", Entities: ent(models.MessageEntityTypeMention, 0, 13)},
			Decision{Action: Accept, Chat: -100, User: 42, Text: "@dispatch_bot status?"}},
		{"group mention, any case", &models.Message{From: ann, Chat: group, Text: "hey @Dispatch_Bot", Entities: ent(models.MessageEntityTypeMention, 4, 13)},
			Decision{Action: Accept, Chat: -100, User: 42, Text: "hey @Dispatch_Bot"}},
		{"group mention of someone else", &models.Message{From: ann, Chat: group, Text: "@other_bot hi", Entities: ent(models.MessageEntityTypeMention, 0, 10)}, Decision{}},
		{"group command", &models.Message{From: ann, Chat: group, Text: "/status", Entities: ent(models.MessageEntityTypeBotCommand, 0, 7)},
			Decision{Action: Command, Chat: -100, User: 42, Command: CmdStatus}},
		{"group command for this bot", &models.Message{From: ann, Chat: group, Text: "/new@dispatch_bot", Entities: ent(models.MessageEntityTypeBotCommand, 0, 17)},
			Decision{Action: Command, Chat: -100, User: 42, Command: CmdNew}},
		{"another command is text for the agent", &models.Message{From: ann, Chat: group, Text: "/deploy now", Entities: ent(models.MessageEntityTypeBotCommand, 0, 7)},
			Decision{Action: Accept, Chat: -100, User: 42, Text: "/deploy now"}},
		{"private command", &models.Message{From: ann, Chat: private, Text: "/NEW please", Entities: ent(models.MessageEntityTypeBotCommand, 0, 4)},
			Decision{Action: Command, Chat: 42, User: 42, Command: CmdNew}},
		{"a command later in the text is text", &models.Message{From: ann, Chat: private, Text: "try /new", Entities: ent(models.MessageEntityTypeBotCommand, 4, 4)},
			Decision{Action: Accept, Chat: 42, User: 42, Text: "try /new"}},
		{"a stranger's command is refused", &models.Message{From: eve, Chat: models.Chat{ID: 7, Type: models.ChatTypePrivate}, Text: "/new", Entities: ent(models.MessageEntityTypeBotCommand, 0, 4)},
			Decision{Action: Refuse, Chat: 7, User: 7}},
		{"group command for another bot", &models.Message{From: ann, Chat: group, Text: "/status@other_bot", Entities: ent(models.MessageEntityTypeBotCommand, 0, 17)}, Decision{}},
		{"group reply to the bot", &models.Message{From: ann, Chat: group, Text: "yes", ReplyToMessage: &models.Message{From: &models.User{ID: 99, IsBot: true}}},
			Decision{Action: Accept, Chat: -100, User: 42, Text: "yes"}},
		{"group reply to someone else", &models.Message{From: ann, Chat: group, Text: "yes", ReplyToMessage: &models.Message{From: eve}}, Decision{}},
		{"group stranger addressing", &models.Message{From: eve, Chat: group, Text: "@dispatch_bot hi", Entities: ent(models.MessageEntityTypeMention, 0, 13)},
			Decision{Action: Refuse, Chat: -100, User: 7}},
		{"mention after an emoji (UTF-16 offsets)", &models.Message{From: ann, Chat: group, Text: "🙂 @dispatch_bot", Entities: ent(models.MessageEntityTypeMention, 3, 13)},
			Decision{Action: Accept, Chat: -100, User: 42, Text: "🙂 @dispatch_bot"}},
		{"sticker", &models.Message{From: ann, Chat: private}, Decision{Action: Unsupported, Chat: 42, User: 42}},
		{"photo with caption", &models.Message{From: ann, Chat: private, Caption: "look", Photo: []models.PhotoSize{{FileID: "s", FileSize: 10}, {FileID: "f", FileSize: 900}, {FileID: "m", FileSize: 90}}},
			Decision{Action: Accept, Chat: 42, User: 42, Text: "look", File: FileRef{ID: "f", Name: "photo.jpg", Size: 900}}},
		{"photo without caption", &models.Message{From: ann, Chat: private, Photo: []models.PhotoSize{{FileID: "f", Width: 10, Height: 10}}},
			Decision{Action: Accept, Chat: 42, User: 42, File: FileRef{ID: "f", Name: "photo.jpg"}}},
		{"document", &models.Message{From: ann, Chat: private, Document: &models.Document{FileID: "d", FileName: "../../etc/passwd", FileSize: 5}},
			Decision{Action: Accept, Chat: 42, User: 42, File: FileRef{ID: "d", Name: "../../etc/passwd", Size: 5}}},
		{"document with a command caption", &models.Message{From: ann, Chat: private, Caption: "/new", Document: &models.Document{FileID: "d"},
			CaptionEntities: []models.MessageEntity{{Type: models.MessageEntityTypeBotCommand, Offset: 0, Length: 4}}},
			Decision{Action: Accept, Chat: 42, User: 42, Text: "/new", File: FileRef{ID: "d"}}},
		{"document from a stranger", &models.Message{From: &models.User{ID: 9}, Chat: models.Chat{ID: 9, Type: models.ChatTypePrivate}, Document: &models.Document{FileID: "d"}},
			Decision{Action: Refuse, Chat: 9, User: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Intake(&models.Update{ID: 1, Message: tt.m}, bot, allow); got != tt.want {
				t.Fatalf("Intake = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestChatID(t *testing.T) {
	for _, id := range []int64{42, -1001234567890} {
		got, ok := ParseChatID(ChatID(id))
		if !ok || got != id {
			t.Fatalf("round trip of %d: %d %v", id, got, ok)
		}
	}
	for _, s := range []string{"42", "tg:", "tg:x", "slack:T:C"} {
		if _, ok := ParseChatID(s); ok {
			t.Fatalf("ParseChatID(%q) ok", s)
		}
	}
}
