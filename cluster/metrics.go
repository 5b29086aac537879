package cluster

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are always present; they are exported only when
// Config.Registerer is set.
type metrics struct {
	batch     prometheus.Histogram
	forwarded prometheus.Counter
	served    prometheus.Counter
	gauges    *statusCollector
}

func newMetrics(c *Cluster) *metrics {
	return &metrics{
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "refrouter_cluster_apply_batch_commands",
			Help:    "Commands per raft entry proposed by this node as leader.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "refrouter_cluster_forwarded_commands_total",
			Help: "Commands this node forwarded to the leader (attempts).",
		}),
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "refrouter_cluster_forward_received_commands_total",
			Help: "Commands this node received from followers as leader.",
		}),
		gauges: &statusCollector{
			c:       c,
			state:   prometheus.NewDesc("refrouter_cluster_raft_state", "1 for the current raft state of this node.", []string{"state"}, nil),
			applied: prometheus.NewDesc("refrouter_cluster_applied_index", "Index of the last command applied to this node's FSM.", nil, nil),
			commit:  prometheus.NewDesc("refrouter_cluster_commit_index", "Raft commit index known to this node.", nil, nil),
			term:    prometheus.NewDesc("refrouter_cluster_raft_term", "Current raft term.", nil, nil),
			members: prometheus.NewDesc("refrouter_cluster_members", "Gossip members by state.", []string{"state"}, nil),
		},
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.batch, m.forwarded, m.served, m.gauges}
}

func (m *metrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	for _, col := range m.collectors() {
		if err := r.Register(col); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return fmt.Errorf("register cluster metrics: %w", err)
		}
	}
	return nil
}

func (m *metrics) unregister(r prometheus.Registerer) {
	if r == nil {
		return
	}
	for _, col := range m.collectors() {
		r.Unregister(col)
	}
}

// statusCollector reads raft and gossip state at scrape time.
type statusCollector struct {
	c                                     *Cluster
	state, applied, commit, term, members *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (s *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.state, s.applied, s.commit, s.term, s.members} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := s.c.Status()
	for _, name := range []string{"Follower", "Candidate", "Leader", "Shutdown"} {
		v := 0.0
		if st.RaftState == name {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(s.state, prometheus.GaugeValue, v, name)
	}
	ch <- prometheus.MustNewConstMetric(s.applied, prometheus.GaugeValue, float64(st.AppliedIndex))
	ch <- prometheus.MustNewConstMetric(s.commit, prometheus.GaugeValue, float64(st.CommitIndex))
	ch <- prometheus.MustNewConstMetric(s.term, prometheus.GaugeValue, float64(st.Term))
	counts := map[string]int{StateAlive: 0, StateDead: 0, StateLeft: 0}
	for _, m := range st.Members {
		counts[m.State]++
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(s.members, prometheus.GaugeValue, float64(n), state)
	}
}
