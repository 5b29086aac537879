// Package attribution holds the events that refrouter records for every click,
// share link, registration, decision and grant, in the form the node's outbox
// stores and the replicator ships to the database.
package attribution

import "time"

// Kind says what an Event records.
type Kind uint8

// The kinds of events. The numbers are stored on disk and must not change.
const (
	KindClick        Kind = 1 // a counted click on a share link
	KindLink         Kind = 2 // a share link issued to an inviter
	KindRegistration Kind = 3 // a registration acknowledged by a node (durable)
	KindDecision     Kind = 4 // the ledger's decision on a registration
	KindGrant        Kind = 5 // one reward granted by a decision
)

// String returns the kind's lower-case name, as used in logs, metrics and table names.
func (k Kind) String() string {
	switch k {
	case KindClick:
		return "click"
	case KindLink:
		return "link"
	case KindRegistration:
		return "registration"
	case KindDecision:
		return "decision"
	case KindGrant:
		return "grant"
	}
	return "unknown"
}

// Durable reports whether events of this kind must never be shed: everything but clicks.
func (k Kind) Durable() bool { return k != KindClick }

// Event is one attribution record. ID is unique cluster-wide (a ULID made by the
// node that records the event) and is the primary key in the database, so that
// replaying an event is a no-op. Fields that do not apply to a kind stay empty.
type Event struct {
	ID     string    // ULID; primary key
	Kind   Kind      // what this records
	At     time.Time // when the node recorded it (UTC)
	Node   string    // name of the recording node
	Region string    // region of the recording node

	Campaign string    // campaign id
	Code     string    // share code (click, link)
	Inviter  string    // inviter user id (click, link, registration, decision)
	Invitee  string    // invitee user id (registration, decision)
	Device   string    // device id given at registration
	IP       string    // client IP (click, registration)
	Country  string    // ISO country of the client IP, when known
	UA       string    // user agent (click), truncated by the recorder
	ClickAt  time.Time // registration: when the click it came through happened (zero when registered by code)

	Registration string // registration id (registration: its own id; decision, grant: the one decided)
	Status       string // decision: rewarded, duplicate, capped, held, rejected
	Reason       string // decision: why, for rejected and held
	User         string // grant: who receives the reward
	Role         string // grant: inviter or invitee
	Value        int64  // grant: value in minor units
}
