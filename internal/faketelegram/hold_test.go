package faketelegram_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/faketelegram"
)

// Held downloads send half the file and wait; let go, they finish.
func TestHoldFiles(t *testing.T) {
	s := faketelegram.New()
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	u, err := s.Send(faketelegram.Incoming{From: faketelegram.User{ID: 42}, Document: data, FileName: "d.txt"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.URL() + "/bot" + s.Token() + "/getFile?file_id=" + u.Message.Document.FileID)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Result faketelegram.File `json:"result"`
	}
	json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	s.HoldFiles(true)
	got := make(chan []byte, 1)
	half := make(chan int, 1)
	go func() {
		resp, err := http.Get(s.URL() + "/file/bot" + s.Token() + "/" + r.Result.FilePath)
		if err != nil {
			got <- nil
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, len(data)/2)
		n, _ := io.ReadFull(resp.Body, buf)
		half <- n
		rest, _ := io.ReadAll(resp.Body)
		got <- append(buf[:n], rest...)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitFor(ctx, func() bool { return s.FilesHeld() == 1 }); err != nil {
		t.Fatal("the download was not held")
	}
	if n := <-half; n != len(data)/2 {
		t.Fatalf("%d bytes before the hold, want %d", n, len(data)/2)
	}
	select {
	case <-got:
		t.Fatal("the download finished while held")
	case <-time.After(100 * time.Millisecond):
	}
	s.HoldFiles(false)
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("downloaded %d bytes of %d", len(b), len(data))
	}
	if s.FilesHeld() != 0 {
		t.Fatal("still counted as held")
	}
}
