package cluster

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/hashicorp/memberlist"
)

// bareCluster is a Cluster with only what the membership callbacks use.
func bareCluster(name string) *Cluster {
	return &Cluster{
		cfg:     Config{Name: name},
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		members: map[string]*memberEntry{},
		subs:    map[int]chan struct{}{},
		kick:    make(chan struct{}, 1),
	}
}

// TestLeaveNoticeEitherOrder checks that a peer records a graceful leave as
// "left" whichever arrives first: memberlist's leave event or the member's
// own leave notice. Only a leave event with no notice means "dead".
func TestLeaveNoticeEitherOrder(t *testing.T) {
	meta, err := encodeWireMeta(Meta{PublicURL: "http://127.0.0.1:1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	node := &memberlist.Node{Name: "b", Meta: meta}
	for _, tc := range []struct {
		name   string
		events func(d delegate)
		want   string
	}{
		{"notice then leave", func(d delegate) {
			d.c.markLeaving("b")
			d.NotifyLeave(node)
		}, StateLeft},
		{"leave then notice", func(d delegate) {
			d.NotifyLeave(node)
			d.c.markLeaving("b")
		}, StateLeft},
		{"leave alone", func(d delegate) { d.NotifyLeave(node) }, StateDead},
		{"notice for another member", func(d delegate) {
			d.NotifyLeave(node)
			d.c.markLeaving("c")
		}, StateDead},
		{"notice naming this node", func(d delegate) {
			d.c.markLeaving("a")
			d.NotifyLeave(node)
		}, StateDead},
		{"rejoin clears the notice", func(d delegate) {
			d.c.markLeaving("b")
			d.NotifyLeave(node)
			d.NotifyJoin(node)
			d.NotifyLeave(node)
		}, StateDead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := bareCluster("a")
			d := delegate{c}
			d.NotifyJoin(node)
			tc.events(d)
			if got := c.members["b"].m.State; got != tc.want {
				t.Fatalf("state %q, want %q", got, tc.want)
			}
			if _, ok := c.members["c"]; ok {
				t.Fatal("a notice for an unknown member created an entry")
			}
		})
	}
}

// TestServeLeave checks the leave notice on the wire: a whole notice is
// recorded and acknowledged; a cut-off one is neither.
func TestServeLeave(t *testing.T) {
	meta, err := encodeWireMeta(Meta{PublicURL: "http://127.0.0.1:1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		send  []byte
		acked bool
		want  string
	}{
		{"whole notice", append([]byte{5}, "b-one"...), true, StateLeft},
		{"name cut off", append([]byte{9}, "b-one"...), false, StateDead},
		{"nothing sent", nil, false, StateDead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := bareCluster("a")
			d := delegate{c}
			node := &memberlist.Node{Name: "b-one", Meta: meta}
			d.NotifyJoin(node)
			client, server := net.Pipe()
			done := make(chan struct{})
			go func() { defer close(done); c.serveLeave(server); server.Close() }()
			if _, err := client.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if !tc.acked {
				client.Close() // the sender goes away mid-notice
			}
			var ack [1]byte
			_, err := io.ReadFull(client, ack[:])
			if (err == nil) != tc.acked {
				t.Fatalf("acknowledgement read: %v, want acked=%v", err, tc.acked)
			}
			client.Close()
			<-done
			d.NotifyLeave(node)
			if got := c.members["b-one"].m.State; got != tc.want {
				t.Fatalf("state %q, want %q", got, tc.want)
			}
		})
	}
}
