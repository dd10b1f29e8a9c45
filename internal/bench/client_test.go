package bench

import "testing"

func TestQueueLenReadsBothShapes(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"page", `{"messages":[{"id":"a"}],"next":"a"}`, 1},
		{"empty page", `{"messages":[]}`, 0},
		{"earlier releases' array", ` [{"id":"a"},{"id":"b"}]`, 2},
		{"empty array", `[]`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := queueLen([]byte(tc.body))
			if err != nil || n != tc.want {
				t.Fatalf("queueLen(%s) = %d, %v; want %d", tc.body, n, err, tc.want)
			}
		})
	}
	if _, err := queueLen([]byte(`"x"`)); err == nil {
		t.Fatal("queueLen of a string: no error")
	}
}

func TestSumSamples(t *testing.T) {
	text := `# HELP dispatch_turn_duration_seconds Duration of agent turns by outcome.
dispatch_turn_duration_seconds_bucket{outcome="ok",le="0.1"} 7
dispatch_turn_duration_seconds_count{outcome="ok"} 10
dispatch_turn_duration_seconds_count{outcome="error"} 2
dispatch_turn_duration_seconds_count_other 100
dispatch_sessions_reaped_total 3
`
	for _, tc := range []struct {
		name string
		want float64
		ok   bool
	}{
		{"dispatch_turn_duration_seconds_count", 12, true},
		{"dispatch_sessions_reaped_total", 3, true},
		{"dispatch_missing", 0, false},
	} {
		got, ok := sumSamples(text, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("sumSamples(%s) = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
