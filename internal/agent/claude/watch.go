package claude

// Watch, when set (a cluster node: the agent watchdog), is told of every
// agent process group once it is started, and released before the group's
// leader is reaped (while its id cannot be reused): a watched group is
// killed when its node can no longer vouch for its leases. The group is
// the launched process's own, so this holds however the agent is launched.
type Watch func(pgid int) (release func())

// watchStarted hands the started process's group to cfg.Watch; not the
// API probe's (it works for no chat, and must be able to run while the
// node has no lease).
func (p *Process) watchStarted(w Watch) {
	if w != nil && !p.spec.Ephemeral {
		p.unwatch = w(p.pid)
	}
}

// unwatchExited releases the group; called once the group is dead, before
// the leader is reaped.
func (p *Process) unwatchExited() {
	if p.unwatch != nil {
		p.unwatch()
	}
}
