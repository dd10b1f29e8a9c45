package supervisor

// AgentPids maps the pid of every live agent process (each leads its own
// process group) to its chat; the API-health probe's agent maps to "".
func (s *Supervisor) AgentPids() map[int]string {
	out := map[int]string{}
	for _, ss := range s.all() {
		if pid := ss.Snapshot().Pid; pid > 0 {
			out[pid] = ss.ChatID()
		}
	}
	if pid := s.probePid.Load(); pid > 0 {
		out[int(pid)] = ""
	}
	return out
}
