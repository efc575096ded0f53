package media

// QueuedTasks is the number of tasks the fetcher holds in memory.
func QueuedTasks(f *Fetcher) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.q.tasks)
}
