package store

// FaultFunc decides whether a write fails before it reaches the database;
// a nil result lets it through.
type FaultFunc func() error

// InjectWriteFault makes every write (accepts, claims, turn outcomes,
// session saves) call f first and fail with its error, classified like a
// driver's (wrap syscall.ENOSPC for a full disk, syscall.EIO for an I/O
// error), without touching the database. nil removes the fault. It is for
// tests that need a storage failure where a real one cannot be arranged;
// a full file system is tested for real as well.
func (s *Store) InjectWriteFault(f FaultFunc) {
	if f == nil {
		s.fault.Store(nil)
		return
	}
	s.fault.Store(&f)
}

func (s *Store) injected() error {
	if f := s.fault.Load(); f != nil {
		return (*f)()
	}
	return nil
}
