package supervisor

// Accepted is told that a message for chat was accepted outside Submit
// (a channel's intake committed it together with its cursor): it is
// counted, and the chat's session is made if needed and woken, as Submit
// does after its own accept.
func (s *Supervisor) Accepted(chat string) {
	s.metrics.Accepted.Inc()
	if ss := s.session(chat); ss != nil {
		ss.Notify()
	}
}
