package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/raft"
)

// Status is a point-in-time view of one node, for `refrouter cluster status`
// and GET /v1/cluster. It is a plain value, safe to copy and encode.
type Status struct {
	Name         string   `json:"name"`
	Leader       string   `json:"leader"`
	LeaderAddr   string   `json:"leader_addr"`
	RaftState    string   `json:"raft_state"`
	Term         uint64   `json:"term"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"` // last command applied to this node's FSM
	LastIndex    uint64   `json:"last_index"`
	Voters       []string `json:"voters"`
	Nonvoters    []string `json:"nonvoters"`
	Members      []Member `json:"members"`
}

// Status returns this node's view of the cluster.
func (c *Cluster) Status() Status {
	s := Status{Name: c.cfg.Name, Members: c.Members(), Voters: []string{}, Nonvoters: []string{}}
	if !c.started.Load() {
		s.RaftState = "not started"
		return s
	}
	addr, id := c.raft.LeaderWithID()
	s.Leader, s.LeaderAddr = string(id), string(addr)
	s.RaftState = c.raft.State().String()
	s.Term = c.raft.CurrentTerm()
	s.CommitIndex = c.raft.CommitIndex()
	s.AppliedIndex = c.fsm.appliedIndex()
	s.LastIndex = c.raft.LastIndex()
	if f := c.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				s.Voters = append(s.Voters, string(srv.ID))
			} else {
				s.Nonvoters = append(s.Nonvoters, string(srv.ID))
			}
		}
	}
	sort.Strings(s.Voters)
	sort.Strings(s.Nonvoters)
	return s
}

// WriteText writes s as a human-readable report.
func (s Status) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node\t%s\n", s.Name)
	fmt.Fprintf(tw, "raft\t%s, term %d\n", s.RaftState, s.Term)
	leader := s.Leader
	if leader == "" {
		leader = "(none)"
	}
	fmt.Fprintf(tw, "leader\t%s %s\n", leader, s.LeaderAddr)
	fmt.Fprintf(tw, "index\tcommit %d, applied %d, last %d\n", s.CommitIndex, s.AppliedIndex, s.LastIndex)
	fmt.Fprintf(tw, "voters\t%v\n", s.Voters)
	fmt.Fprintf(tw, "nonvoters\t%v\n", s.Nonvoters)
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NAME\tSTATE\tROLE\tREGION\tLOAD\tGOSSIP\tCLUSTER\tPUBLIC URL\tVERSION")
	for _, m := range s.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\n",
			m.Name, m.State, m.Role, m.Region, m.Load, m.GossipAddr, m.ClusterAddr, m.PublicURL, m.Version)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	return nil
}

// serveStatus answers a status connection with this node's Status as JSON.
func (c *Cluster) serveStatus(conn net.Conn) {
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = json.NewEncoder(conn).Encode(c.Status())
}

// FetchStatus asks the node at clusterAddr for its Status over the cluster
// port, authenticating with key (and tlsConf, if the port uses TLS).
func FetchStatus(ctx context.Context, clusterAddr string, key []byte, tlsConf *tls.Config) (Status, error) {
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	conn, err := dialer{key: key, tls: tlsConf}.dial(clusterAddr, kindStatus, timeout)
	if err != nil {
		return Status{}, err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var s Status
	if err := json.NewDecoder(io.LimitReader(conn, 16<<20)).Decode(&s); err != nil {
		return Status{}, fmt.Errorf("read status from %s: %w", clusterAddr, err)
	}
	return s, nil
}
