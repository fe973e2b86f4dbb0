package auth

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
