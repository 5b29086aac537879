package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// metrics are the node's own Prometheus metrics, registered on the node's
// registry (never the global one).
type metrics struct {
	requests      *prometheus.CounterVec
	apiSeconds    *prometheus.HistogramVec
	redirects     *prometheus.CounterVec
	redirCounted  prometheus.Counter // resolved once: the redirect path does no label lookups
	redirBot      prometheus.Counter
	redirNotFound prometheus.Counter
	redirFar      prometheus.Counter
	redirectTime  prometheus.Histogram
	clicksShed    prometheus.Counter
	clicksDropped prometheus.Counter
	registrations *prometheus.CounterVec
	decisions     *prometheus.CounterVec
	handler       fasthttp.RequestHandler
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refrouter_http_requests_total", Help: "API requests by route and status class.",
		}, []string{"route", "status"}),
		apiSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "refrouter_http_request_seconds", Help: "API request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"route"}),
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refrouter_redirects_total", Help: "Share-link requests by outcome (counted, uncounted bot/HEAD, not_found, far).",
		}, []string{"outcome"}),
		redirectTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "refrouter_redirect_seconds", Help: "Time to answer a share-link request (sampled 1 in 64).",
			Buckets: prometheus.ExponentialBuckets(0.000002, 2, 16),
		}),
		clicksShed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "refrouter_clicks_shed_total", Help: "Clicks not recorded because the outbox was over its bound.",
		}),
		clicksDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "refrouter_clicks_dropped_total", Help: "Clicks not recorded because the recorder queue was full (the redirect never waits).",
		}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refrouter_registrations_total", Help: "Registration requests by result (accepted, replayed, failed).",
		}, []string{"result"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refrouter_decisions_total", Help: "Ledger decisions applied on this replica, by status.",
		}, []string{"status"}),
	}
	reg.MustRegister(m.requests, m.apiSeconds, m.redirects, m.redirectTime, m.clicksShed, m.clicksDropped,
		m.registrations, m.decisions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.redirCounted = m.redirects.WithLabelValues("counted")
	m.redirBot = m.redirects.WithLabelValues("uncounted")
	m.redirNotFound = m.redirects.WithLabelValues("not_found")
	m.redirFar = m.redirects.WithLabelValues("far")
	m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return m
}

func (n *Node) metricsHandler(ctx *fasthttp.RequestCtx) { n.metrics.handler(ctx) }

// registerGauges adds gauges read at scrape time.
func (n *Node) registerGauges() {
	n.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "refrouter_outbox_bytes", Help: "Bytes retained in the outbox.",
		}, func() float64 { return float64(n.outbox.Bytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "refrouter_outbox_depth", Help: "Outbox records not yet consumed by every consumer.",
		}, func() float64 {
			return float64(n.outbox.LastSeq() + 1 - minCursor(n.outbox, n.replicator != nil))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "refrouter_registrations_pending", Help: "Registrations acknowledged here and not yet decided.",
		}, func() float64 { return float64(n.regs.pendingCount()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "refrouter_edge_fast_requests_total", Help: "Share-code requests answered on the fast path, below fasthttp.",
		}, func() float64 { return float64(n.edge.Stats().Served) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "refrouter_edge_handoffs_total", Help: "Connections the fast path handed to fasthttp, at their first request outside its subset of HTTP/1.1.",
		}, func() float64 { return float64(n.edge.Stats().HandedOff) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "refrouter_ready", Help: "1 when the node is ready.",
		}, func() float64 {
			if n.ready.Load() {
				return 1
			}
			return 0
		}),
	)
}
