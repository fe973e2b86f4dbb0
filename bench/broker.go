package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// broker is one running Mosquitto, started fresh for one row so no row inherits another's sessions,
// caches or connection backlog.
type broker struct {
	endpoint
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
}

// brokerConfig writes a mosquitto.conf for a listener on 127.0.0.1:port plus the row's extra lines.
// Logging goes to a file with errors and warnings only: per-connect notice lines would cost broker CPU
// that belongs to no configuration, yet a crash must leave a trace. max_keepalive and set_tcp_nodelay
// are there because operators write them: on 2.1 max_keepalive refuses a 3.1.1 client asking for
// keepalive 0 or above it (the bench's clients ask for clientKeepAlive), and nodelay changes when
// small packets leave.
// With certFile and keyFile the listener speaks TLS only, as an internet-facing one does.
func brokerConfig(dir string, port int, certFile, keyFile, extra string) (string, string, error) {
	logPath := filepath.Join(dir, "mosquitto.log")
	var b strings.Builder
	if os.Geteuid() == 0 {
		// Started as root, Mosquitto would drop to the mosquitto user, which cannot read our temp dir.
		b.WriteString("user root\n")
	}
	fmt.Fprintf(&b, "listener %d 127.0.0.1\n", port)
	if certFile != "" {
		fmt.Fprintf(&b, "certfile %s\nkeyfile %s\n", certFile, keyFile)
	}
	fmt.Fprintf(&b, "log_dest file %s\nlog_type error\nlog_type warning\n", logPath)
	b.WriteString("max_connections -1\npersistence false\n")
	b.WriteString("max_keepalive 600\nset_tcp_nodelay true\n")
	b.WriteString(extra)
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(b.String()), 0o600); err != nil {
		return "", "", fmt.Errorf("write broker config: %w", err)
	}
	return confPath, logPath, nil
}

// startBroker writes the config into a new directory under tmp, starts mosquitto -c on it and waits up
// to 10 s for the port to accept connections. withTLS gives the listener a certificate made for the
// row (see tlsFiles); the returned broker's endpoint then dials with TLS.
func startBroker(mosquitto, tmp, name, extra string, withTLS bool) (*broker, error) {
	for attempt := 1; ; attempt++ {
		b, err := startBrokerOnce(mosquitto, tmp, name, extra, withTLS)
		// The port freePort found was taken before the broker bound it: by another process, or by one
		// of this run's own client sockets, which draw from the same range. Another port will do.
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "Address already in use") {
			return b, err
		}
	}
}

func startBrokerOnce(mosquitto, tmp, name, extra string, withTLS bool) (*broker, error) {
	dir, err := os.MkdirTemp(tmp, name+"-")
	if err != nil {
		return nil, fmt.Errorf("broker dir: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	b := &broker{endpoint: endpoint{Addr: fmt.Sprintf("127.0.0.1:%d", port)}, exited: make(chan struct{})}
	var certFile, keyFile string
	if withTLS {
		if certFile, keyFile, b.TLS, err = tlsFiles(dir); err != nil {
			return nil, err
		}
	}
	confPath, logPath, err := brokerConfig(dir, port, certFile, keyFile, extra)
	if err != nil {
		return nil, err
	}
	b.logPath = logPath
	b.cmd = exec.Command(mosquitto, "-c", confPath)
	var stderr bytes.Buffer
	b.cmd.Stdout, b.cmd.Stderr = &stderr, &stderr
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", mosquitto, err)
	}
	go func() { b.waitErr = b.cmd.Wait(); close(b.exited) }()
	if err := b.waitListening(10 * time.Second); err != nil {
		b.Stop()
		if out := withoutRootWarning(stderr.String()); out != "" {
			err = fmt.Errorf("%w; output: %s", err, out)
		}
		if tail := b.logTail(); tail != "" {
			err = fmt.Errorf("%w; %s", err, tail)
		}
		return nil, err
	}
	return b, nil
}

// waitListening polls the port until it accepts a connection, the broker exits, or within passes.
func (b *broker) waitListening(within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if err := b.Died(); err != nil {
			return err
		}
		if c, err := net.DialTimeout("tcp", b.Addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("mosquitto not listening on %s after %v", b.Addr, within)
}

// Died returns a non-nil error describing the exit if the broker process has gone.
func (b *broker) Died() error {
	select {
	case <-b.exited:
		return fmt.Errorf("mosquitto exited: %v", b.waitErr)
	default:
		return nil
	}
}

// Stop sends SIGTERM and waits up to 5 s before killing. It reports a broker that had already died
// on its own, so a crash in the middle of a row is never mistaken for a clean stop.
func (b *broker) Stop() error {
	if err := b.Died(); err != nil {
		return err
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
		return errors.New("mosquitto ignored SIGTERM for 5s and was killed")
	}
	return nil
}

// logTail returns the last lines of the broker's log file, to explain a death.
func (b *broker) logTail() string {
	data, err := os.ReadFile(b.logPath)
	if err != nil || len(data) == 0 {
		return ""
	}
	lines := strings.Split(withoutRootWarning(string(data)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "log: " + strings.Join(lines, " / ") // not '|': it would break the table's columns
}

// withoutRootWarning drops Mosquitto's "should not be run as root" line, which `user root` always
// causes and which would hide the line that explains a failure.
func withoutRootWarning(out string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(l, "should not be run as root") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// CPUTicks returns utime+stime of the broker process in clock ticks, from /proc/PID/stat.
func (b *broker) CPUTicks() (uint64, error) {
	return procCPUTicks(b.cmd.Process.Pid)
}

// procCPUTicks reads fields 14 (utime) and 15 (stime) of /proc/PID/stat. The command name (field 2) may
// contain spaces and parentheses, so fields are counted from the last ')'.
func procCPUTicks(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read broker CPU time: %w", err)
	}
	return parseStatTicks(string(data))
}

func parseStatTicks(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc stat: no ')' in %q", stat)
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc stat: only %d fields after the command name", len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc stat utime/stime: %w", err)
	}
	return utime + stime, nil
}

// clockTicksPerSecond returns the kernel's USER_HZ, the unit of /proc/PID/stat times. It is sysconf
// (_SC_CLK_TCK), which glibc reads from the AT_CLKTCK entry of the auxiliary vector; the bench reads the
// same entry from /proc/self/auxv to stay free of cgo, and falls back to Linux's fixed 100.
func clockTicksPerSecond() int {
	const atClkTck = 17
	data, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	for i := 0; i+16 <= len(data); i += 16 {
		key := binary.NativeEndian.Uint64(data[i:])
		val := binary.NativeEndian.Uint64(data[i+8:])
		if key == atClkTck && val > 0 && val < 1_000_000 {
			return int(val)
		}
	}
	return 100
}

// freePort asks the kernel for a free TCP port on 127.0.0.1. Another socket could take it before the
// broker binds it; startBroker then tries another.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// brokerVersion returns the first line of `mosquitto -h`, which names the version (the command exits
// non-zero, so its status is ignored).
func brokerVersion(mosquitto string) string {
	// Stdout only: 2.1 also logs a "terminating" line to stderr.
	out, _ := exec.Command(mosquitto, "-h").Output()
	line, _, _ := strings.Cut(string(out), "\n")
	if line = strings.TrimSpace(line); line == "" {
		return "unknown (" + mosquitto + " -h printed nothing)"
	}
	return line
}
