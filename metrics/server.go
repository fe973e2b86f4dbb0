package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/auth"
)

// descs are the Prometheus descriptions of the table's metrics. They describe names, not values, so
// every instance's registry shares them.
var descs = func() map[*metric]*prometheus.Desc {
	d := make(map[*metric]*prometheus.Desc, len(all))
	for _, m := range all {
		d[m] = prometheus.NewDesc(namePrefix+m.name, m.help, m.labels, nil)
	}
	return d
}()

// buckets are auth.IdPBuckets in seconds, Prometheus's unit.
var buckets = func() []float64 {
	b := make([]float64, len(auth.IdPBuckets))
	for i, d := range auth.IdPBuckets {
		b[i] = d.Seconds()
	}
	return b
}()

// collector turns each scrape's snapshot into constant metrics: the values live in the core's
// atomics, not in Prometheus's own counters.
type collector struct {
	read func() Snapshot
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range all {
		ch <- descs[m]
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range samples(c.read()) {
		ch <- s.prometheus()
	}
}

func (s sample) prometheus() prometheus.Metric {
	d := descs[s.metric]
	switch s.metric.kind {
	case counter:
		return prometheus.MustNewConstMetric(d, prometheus.CounterValue, s.value, s.labels...)
	case histogram:
		cumulative := make(map[float64]uint64, len(buckets))
		for i, b := range buckets {
			cumulative[b] = s.idp.Counts[i]
		}
		return prometheus.MustNewConstHistogram(d, s.idp.Counts[len(s.idp.Counts)-1], s.idp.Sum.Seconds(), cumulative, s.labels...)
	}
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, s.value, s.labels...)
}

// Server serves one instance's metrics at /metrics.
type Server struct {
	http *http.Server
}

// Serve listens on addr (HOST:PORT) now, so that a taken address fails the broker's start-up, and
// serves the snapshots read returns at /metrics from then on, with a registry of this instance's own.
// read is called on the server's goroutines.
func Serve(addr string, read func() Snapshot) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s is taken (by another instance of this plugin, or another program): give each instance its own address", addr)
		}
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{read})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4}))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
		// net/http would write its complaints to the broker's stderr, around the broker's own log.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go srv.Serve(ln)
	return &Server{http: srv}, nil
}

// Close stops serving, and waits a moment for scrapes in progress.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if s.http.Shutdown(ctx) != nil {
		s.http.Close()
	}
}
