package main

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"time"
	"unsafe"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/auth"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/metrics"
)

// instanceMetrics are an instance's ways of showing what it counts: a Prometheus endpoint
// (metrics_listen) and $SYS topics (sys_interval). Either may be off.
type instanceMetrics struct {
	server *metrics.Server
	sys    *metrics.SysTree
	stop   chan struct{} // ends the goroutine that makes the tick publish to $SYS
}

// snapshot reads what the instance counted. Any goroutine.
func (inst *instance) snapshot() metrics.Snapshot {
	return metrics.Snapshot{Engine: inst.engine.Stats(), Sessions: inst.machine.Stats(), At: time.Now()}
}

// startMetrics serves the instance's metrics and starts its $SYS publications, as cfg asks. A
// metrics_listen address that cannot be listened on fails the start-up, naming the option.
func (inst *instance) startMetrics(cfg *config.Config) error {
	if cfg.MetricsListen != "" {
		srv, err := metrics.Serve(cfg.MetricsListen, inst.snapshot)
		if err != nil {
			return &config.OptionError{Key: "metrics_listen", Err: err}
		}
		inst.metrics.server = srv
	}
	if cfg.SysInterval > 0 {
		t := metrics.NewSysTree(cfg.SysInterval)
		if t.Prefix() != metrics.SysBase {
			logLine(auth.LevelInfo, "another instance of this plugin publishes under "+metrics.SysBase+
				": this one publishes under "+t.Prefix())
		}
		inst.metrics.sys, inst.metrics.stop = t, make(chan struct{})
		// Only the broker thread may publish, from its tick; this makes a tick come, and enter Go,
		// once an interval at least. The first publication is due at the first tick.
		inst.ring()
		go func() {
			every := time.NewTicker(cfg.SysInterval)
			defer every.Stop()
			for {
				select {
				case <-every.C:
					inst.ring()
				case <-inst.metrics.stop:
					return
				}
			}
		}()
	}
	return nil
}

// publishSys publishes the counters under $SYS when a publication is due. Broker thread, from the tick.
func (inst *instance) publishSys() {
	if inst.metrics.sys != nil {
		inst.metrics.sys.Publish(time.Now(), inst.snapshot, brokerPublish)
	}
}

// brokerPublish publishes a retained QoS 0 message to every subscriber, as Mosquitto's own example
// plugins publish their $SYS counters; the broker copies the payload. Broker thread only.
func brokerPublish(topic, payload string) {
	ct, cp := C.CString(topic), C.CString(payload)
	defer C.free(unsafe.Pointer(ct))
	defer C.free(unsafe.Pointer(cp))
	C.mosquitto_broker_publish_copy(nil, ct, C.int(len(payload)), unsafe.Pointer(cp), 0, true, nil)
}

// stopMetrics stops serving and publishing, and gives the $SYS prefix back.
func (inst *instance) stopMetrics() {
	if inst.metrics.server != nil {
		inst.metrics.server.Close()
	}
	if inst.metrics.sys != nil {
		close(inst.metrics.stop)
		inst.metrics.sys.Close()
	}
}
