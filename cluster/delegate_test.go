package cluster

import (
	"io"
	"log/slog"
	"testing"

	"github.com/hashicorp/memberlist"
)

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
			d.NotifyMsg(leavingMsg("b"))
			d.NotifyLeave(node)
		}, StateLeft},
		{"leave then notice", func(d delegate) {
			d.NotifyLeave(node)
			d.NotifyMsg(leavingMsg("b"))
		}, StateLeft},
		{"leave alone", func(d delegate) { d.NotifyLeave(node) }, StateDead},
		{"notice for another member", func(d delegate) {
			d.NotifyLeave(node)
			d.NotifyMsg(leavingMsg("c"))
		}, StateDead},
		{"other message kinds", func(d delegate) {
			d.NotifyMsg(nil)
			d.NotifyMsg([]byte{msgLeaving})
			d.NotifyMsg(append([]byte{'X'}, "b"...))
			d.NotifyLeave(node)
		}, StateDead},
		{"rejoin clears the notice", func(d delegate) {
			d.NotifyMsg(leavingMsg("b"))
			d.NotifyLeave(node)
			d.NotifyJoin(node)
			d.NotifyLeave(node)
		}, StateDead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{
				cfg:     Config{Name: "a"},
				log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
				members: map[string]*memberEntry{},
				subs:    map[int]chan struct{}{},
				kick:    make(chan struct{}, 1),
			}
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
