package auth

import "sync"

// Level is a log level. The plugin maps it to the broker's MOSQ_LOG_* values, so log_type in
// mosquitto.conf filters the plugin's lines like the broker's own.
type Level int

const (
	LevelDebug Level = iota
	LevelInfo
	LevelNotice
	LevelWarning
	LevelError
)

// Logger receives the engine's log lines. The plugin implements it with the broker's log function, which
// may only be called on the broker thread.
type Logger interface {
	Log(level Level, msg string)
}

// LogQueue is the Logger for a broker whose log may only be written on its own thread, while the core
// also logs from goroutines (delayed checks, the circuit breaker, key fetches): lines wait here until
// that thread calls Flush. Queued, when set, is called after each line so the thread learns that there
// is something to write.
type LogQueue struct {
	Queued func()

	mu    sync.Mutex
	lines []logEntry
}

type logEntry struct {
	level Level
	msg   string
}

func (q *LogQueue) Log(level Level, msg string) {
	q.mu.Lock()
	q.lines = append(q.lines, logEntry{level, msg})
	q.mu.Unlock()
	if q.Queued != nil {
		q.Queued()
	}
}

// Flush writes the queued lines, in order, with write.
func (q *LogQueue) Flush(write func(Level, string)) {
	q.mu.Lock()
	lines := q.lines
	q.lines = nil
	q.mu.Unlock()
	for _, l := range lines {
		write(l.level, l.msg)
	}
}
