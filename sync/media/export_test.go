package media

// QueuedTasks is the number of tasks the fetcher holds in memory.
func QueuedTasks(f *Fetcher) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.q.tasks)
}

// FirstScanDone reports whether the fetcher has read the catalog once since it started and
// decided what to keep of the files found on disk.
func FirstScanDone(f *Fetcher) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started
}

// Wake wakes the workers, as their timer would when the time they wait for comes: a test that
// moves Options.Now forward calls it.
func Wake(f *Fetcher) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changedLocked()
}
