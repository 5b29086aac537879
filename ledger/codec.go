package ledger

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Command errors travel in results and come back from
// DecodeResult wrapping one of these, so callers classify them with errors.Is.
var (
	ErrMalformed          = errors.New("ledger: malformed command")
	ErrUnknownCommand     = errors.New("ledger: unknown command")
	ErrInvalidCampaign    = errors.New("ledger: invalid campaign")
	ErrNotFound           = errors.New("ledger: not found")
	ErrConflict           = errors.New("ledger: conflict")
	ErrExhausted          = errors.New("ledger: numbers exhausted")
	ErrMalformedResult    = errors.New("ledger: malformed result")
	ErrBadSnapshot        = errors.New("ledger: bad snapshot")
	ErrUnsupportedVersion = errors.New("ledger: unsupported snapshot version")
)

// wireVersion is the first byte of every command and result.
const wireVersion = 1

// CommandType is the second byte of a command (and of its result).
type CommandType uint8

// Command types.
const (
	CmdNoop        CommandType = 0
	CmdPutCampaign CommandType = 1
	CmdIssueLink   CommandType = 2
	CmdRegister    CommandType = 3
	CmdReview      CommandType = 4
	CmdSetSegments CommandType = 5
	CmdJoinTeam    CommandType = 6
	CmdSetRules    CommandType = 7

	resError CommandType = 0xff
)

// String names the command type.
func (t CommandType) String() string {
	switch t {
	case CmdNoop:
		return "noop"
	case CmdPutCampaign:
		return "put_campaign"
	case CmdIssueLink:
		return "issue_link"
	case CmdRegister:
		return "register"
	case CmdReview:
		return "review"
	case CmdSetSegments:
		return "set_segments"
	case CmdJoinTeam:
		return "join_team"
	case CmdSetRules:
		return "set_rules"
	}
	return fmt.Sprintf("command(%d)", uint8(t))
}

// IssueLink asks for the inviter's number in a campaign (assigned on first issue).
type IssueLink struct {
	Campaign string
	Inviter  string
}

// Register is one registration to decide. ID is the node-made ULID and makes
// the command idempotent. ClickAt is zero for a registration by code.
type Register struct {
	ID            string
	Campaign      string
	InviterNumber uint32
	Invitee       string
	Device        string
	IP            string
	ClickAt       time.Time
	AckAt         time.Time
	Node          string
}

// Review actions.
const (
	ActionRelease = "release"
	ActionReject  = "reject"
)

// Review releases or rejects a held registration.
type Review struct {
	RegistrationID string
	Action         string
}

// SetSegments replaces the segments of an inviter, for one campaign or, with
// Campaign "", for all campaigns. An empty list clears them.
type SetSegments struct {
	Campaign string
	Inviter  string
	Segments []string
}

// JoinTeam puts an inviter in a team of a campaign with teams.
type JoinTeam struct {
	Campaign string
	Inviter  string
	Team     string
}

// Status of a registration decision (an alias of string, so it serves
// wherever a plain string label is wanted).
type Status = string

// Statuses. The ledger never stores StatusPending; the node reports it before
// the decision is known.
const (
	StatusPending  Status = "pending"
	StatusRewarded Status = "rewarded"
	StatusDup      Status = "duplicate"
	StatusCapped   Status = "capped"
	StatusHeld     Status = "held"
	StatusRejected Status = "rejected"
)

var statusCodes = [...]Status{"", StatusRewarded, StatusDup, StatusCapped, StatusHeld, StatusRejected, StatusPending} //nolint:gochecknoglobals // read-only

const (
	stRewarded uint8 = 1
	stDup      uint8 = 2
	stCapped   uint8 = 3
	stHeld     uint8 = 4
	stRejected uint8 = 5
)

// Grant roles.
const (
	RoleInviter = "inviter"
	RoleInvitee = "invitee"
	RoleTask    = "task"
	RoleLottery = "lottery"
	RoleTeam    = "team"
)

var roleCodes = [...]string{"", RoleInviter, RoleInvitee, RoleTask, RoleLottery, RoleTeam} //nolint:gochecknoglobals // read-only

// Grant is a reward given to a user.
type Grant struct {
	User  string `json:"user"`
	Role  string `json:"role"`
	Value int64  `json:"value"`
}

// Decision is the ledger's final word on a registration (or, with Reason
// "settlement", a campaign's settlement grants). Index and DecidedAt are those
// of the raft entry that decided it (for a released hold, the review's entry).
type Decision struct {
	ID          string    `json:"id"`
	Status      Status    `json:"status"`
	Reason      string    `json:"reason,omitempty"`
	Campaign    string    `json:"campaign"`
	Inviter     string    `json:"inviter,omitempty"`
	Invitee     string    `json:"invitee,omitempty"`
	DuplicateOf string    `json:"duplicate_of,omitempty"`
	Grants      []Grant   `json:"grants,omitempty"`
	DecidedAt   time.Time `json:"decided_at"`
	Index       uint64    `json:"index"`
	// Review is set on the observer's copy of a decision made by a Review
	// (a held registration released or rejected); it is not part of a
	// command's encoded result.
	Review bool `json:"-"`
}

// PutResult is the result of a PutCampaign.
type PutResult struct {
	ID      string `json:"id"`
	Number  uint16 `json:"number"`
	Version uint64 `json:"version"`
}

// LinkResult is the result of an IssueLink. New is true on the inviter's
// first link in the campaign.
type LinkResult struct {
	InviterNumber uint32 `json:"inviter_number"`
	Variant       uint8  `json:"variant"`
	New           bool   `json:"new"`
}

// Result is a decoded command result. Type says which field is set: Put for
// CmdPutCampaign, Link for CmdIssueLink, Decision for CmdRegister and
// CmdReview; the others carry nothing.
type Result struct {
	Type     CommandType
	Put      PutResult
	Link     LinkResult
	Decision Decision
}

// resultError is a command error decoded from a result.
type resultError struct {
	kind error
	msg  string
}

// Error returns the ledger's message.
func (e *resultError) Error() string { return e.msg }

// Unwrap returns the sentinel that classifies the error.
func (e *resultError) Unwrap() error { return e.kind }

var errKinds = [...]error{ErrMalformed, ErrUnknownCommand, ErrInvalidCampaign, ErrNotFound, ErrConflict, ErrExhausted} //nolint:gochecknoglobals // read-only

// ---- wire primitives ----

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

// reader decodes wire primitives; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%s", what)
	}
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte1() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("short input")
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) raw(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail("short input")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string { return string(r.raw(r.uvarint())) }

// name reads a string of 0..maxName bytes.
func (r *reader) name() string {
	n := r.uvarint()
	if n > maxName {
		r.fail("string too long")
		return ""
	}
	return string(r.raw(n))
}

func (r *reader) time() time.Time {
	v := r.varint()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

func (r *reader) u32() uint32 {
	v := r.uvarint()
	if v > 0xffffffff {
		r.fail("value out of range")
	}
	return uint32(v)
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	return r.err
}

func header(t CommandType, size int) []byte {
	b := make([]byte, 2, size+2)
	b[0], b[1] = wireVersion, byte(t)
	return b
}

// ---- command encoders ----

// EncodeNoop returns a command that changes nothing (a barrier through the log).
func EncodeNoop() []byte { return header(CmdNoop, 0) }

// EncodeSetRules encodes a command that raises the ledger's rules level to
// level (see RulesLevel). Apply it only once every replica runs a build that
// knows the level: an older build answers ErrUnknownCommand and keeps its
// rules, and replicas on different levels decide some registrations
// differently.
func EncodeSetRules(level uint8) []byte { return append(header(CmdSetRules, 1), level) }

// EncodePutCampaign encodes a create-or-replace of c (Number and Version are
// ignored by the ledger).
func EncodePutCampaign(c Campaign) []byte {
	c.Number, c.Version = 0, 0
	j, err := json.Marshal(c)
	if err != nil {
		j = nil // plain data: cannot fail; an empty body is rejected by the ledger
	}
	return append(header(CmdPutCampaign, len(j)), j...)
}

// EncodeIssueLink encodes an IssueLink.
func EncodeIssueLink(l IssueLink) []byte {
	b := header(CmdIssueLink, len(l.Campaign)+len(l.Inviter)+4)
	b = appendStr(b, l.Campaign)
	return appendStr(b, l.Inviter)
}

// EncodeRegister encodes a Register in the compact binary form.
func EncodeRegister(r Register) []byte {
	return AppendRegister(make([]byte, 0, 64+len(r.ID)+len(r.Campaign)+len(r.Invitee)+len(r.Device)+len(r.IP)+len(r.Node)), r)
}

// AppendRegister appends the encoding of r to dst.
func AppendRegister(dst []byte, r Register) []byte {
	dst = append(dst, wireVersion, byte(CmdRegister))
	dst = appendStr(dst, r.ID)
	dst = appendStr(dst, r.Campaign)
	dst = binary.AppendUvarint(dst, uint64(r.InviterNumber))
	dst = appendStr(dst, r.Invitee)
	dst = appendStr(dst, r.Device)
	dst = appendStr(dst, r.IP)
	dst = appendTime(dst, r.ClickAt)
	dst = appendTime(dst, r.AckAt)
	return appendStr(dst, r.Node)
}

// EncodeReview encodes a Review.
func EncodeReview(v Review) []byte {
	b := header(CmdReview, len(v.RegistrationID)+len(v.Action)+4)
	b = appendStr(b, v.RegistrationID)
	return appendStr(b, v.Action)
}

// EncodeSetSegments encodes a SetSegments.
func EncodeSetSegments(s SetSegments) []byte {
	b := header(CmdSetSegments, 32)
	b = appendStr(b, s.Campaign)
	b = appendStr(b, s.Inviter)
	b = binary.AppendUvarint(b, uint64(len(s.Segments)))
	for _, g := range s.Segments {
		b = appendStr(b, g)
	}
	return b
}

// EncodeJoinTeam encodes a JoinTeam.
func EncodeJoinTeam(j JoinTeam) []byte {
	b := header(CmdJoinTeam, len(j.Campaign)+len(j.Inviter)+len(j.Team)+6)
	b = appendStr(b, j.Campaign)
	b = appendStr(b, j.Inviter)
	return appendStr(b, j.Team)
}

// ---- command decoders (used by ApplyBatch) ----

func decodeRegister(b []byte) (Register, error) {
	r := reader{b: b}
	var v Register
	v.ID = r.name()
	v.Campaign = r.name()
	v.InviterNumber = r.u32()
	v.Invitee = r.name()
	v.Device = r.name()
	v.IP = r.name()
	v.ClickAt = r.time()
	v.AckAt = r.time()
	v.Node = r.name()
	if err := r.done(); err != nil {
		return v, err
	}
	if v.ID == "" || v.Invitee == "" {
		return v, errors.New("id and invitee are required")
	}
	return v, nil
}

func decodeIssueLink(b []byte) (IssueLink, error) {
	r := reader{b: b}
	v := IssueLink{Campaign: r.name(), Inviter: r.name()}
	if err := r.done(); err != nil {
		return v, err
	}
	if v.Inviter == "" {
		return v, errors.New("inviter is required")
	}
	return v, nil
}

func decodeReview(b []byte) (Review, error) {
	r := reader{b: b}
	v := Review{RegistrationID: r.name(), Action: r.name()}
	if err := r.done(); err != nil {
		return v, err
	}
	if v.Action != ActionRelease && v.Action != ActionReject {
		return v, fmt.Errorf("action must be %q or %q", ActionRelease, ActionReject)
	}
	return v, nil
}

func decodeSetSegments(b []byte) (SetSegments, error) {
	r := reader{b: b}
	v := SetSegments{Campaign: r.name(), Inviter: r.name()}
	n := r.uvarint()
	if n > 64 {
		return v, errors.New("at most 64 segments")
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		s := r.name()
		if s == "" {
			r.fail("empty segment")
		}
		v.Segments = append(v.Segments, s)
	}
	if err := r.done(); err != nil {
		return v, err
	}
	if v.Inviter == "" {
		return v, errors.New("inviter is required")
	}
	return v, nil
}

func decodeJoinTeam(b []byte) (JoinTeam, error) {
	r := reader{b: b}
	v := JoinTeam{Campaign: r.name(), Inviter: r.name(), Team: r.name()}
	if err := r.done(); err != nil {
		return v, err
	}
	if v.Inviter == "" || v.Team == "" {
		return v, errors.New("inviter and team are required")
	}
	return v, nil
}

// ---- results ----

func encodeError(err error) []byte {
	code := byte(0)
	for i, k := range errKinds {
		if errors.Is(err, k) {
			code = byte(i)
			break
		}
	}
	msg := err.Error()
	b := header(resError, len(msg)+4)
	b = append(b, code)
	return appendStr(b, msg)
}

func encodeEmpty(t CommandType) []byte { return header(t, 0) }

func encodePut(p PutResult) []byte {
	b := header(CmdPutCampaign, len(p.ID)+12)
	b = appendStr(b, p.ID)
	b = binary.AppendUvarint(b, uint64(p.Number))
	return binary.AppendUvarint(b, p.Version)
}

func encodeLink(l LinkResult) []byte {
	b := header(CmdIssueLink, 8)
	b = binary.AppendUvarint(b, uint64(l.InviterNumber))
	b = append(b, l.Variant)
	if l.New {
		return append(b, 1)
	}
	return append(b, 0)
}

func encodeDecision(t CommandType, d *Decision) []byte {
	b := header(t, 64+len(d.ID)+len(d.Campaign)+len(d.Inviter)+len(d.Invitee)+len(d.Grants)*16)
	b = append(b, statusCode(d.Status))
	b = appendStr(b, d.Reason)
	b = appendStr(b, d.ID)
	b = appendStr(b, d.Campaign)
	b = appendStr(b, d.Inviter)
	b = appendStr(b, d.Invitee)
	b = appendStr(b, d.DuplicateOf)
	b = binary.AppendUvarint(b, uint64(len(d.Grants)))
	for _, g := range d.Grants {
		b = appendStr(b, g.User)
		b = append(b, roleCode(g.Role))
		b = binary.AppendVarint(b, g.Value)
	}
	b = appendTime(b, d.DecidedAt)
	return binary.AppendUvarint(b, d.Index)
}

func statusCode(s Status) byte {
	for i, v := range statusCodes {
		if v == s && i > 0 {
			return byte(i)
		}
	}
	return 0
}

func roleCode(r string) byte {
	for i, v := range roleCodes {
		if v == r && i > 0 {
			return byte(i)
		}
	}
	return 0
}

// DecodeResult decodes a command result. A command the ledger refused comes
// back as an error wrapping ErrMalformed, ErrUnknownCommand, ErrInvalidCampaign,
// ErrNotFound, ErrConflict or ErrExhausted; bytes that are not a result give
// ErrMalformedResult.
func DecodeResult(b []byte) (Result, error) {
	if len(b) < 2 || b[0] != wireVersion {
		return Result{}, fmt.Errorf("%w: bad header", ErrMalformedResult)
	}
	t := CommandType(b[1])
	r := reader{b: b[2:]}
	res := Result{Type: t}
	switch t {
	case resError:
		code := r.byte1()
		msg := r.str()
		if err := r.done(); err != nil || int(code) >= len(errKinds) {
			return Result{}, fmt.Errorf("%w: bad error result", ErrMalformedResult)
		}
		return Result{}, &resultError{kind: errKinds[code], msg: msg}
	case CmdNoop, CmdSetSegments, CmdJoinTeam, CmdSetRules:
	case CmdPutCampaign:
		res.Put.ID = r.str()
		n := r.uvarint()
		if n > 0xffff {
			r.fail("number out of range")
		}
		res.Put.Number = uint16(n)
		res.Put.Version = r.uvarint()
	case CmdIssueLink:
		res.Link.InviterNumber = r.u32()
		res.Link.Variant = r.byte1()
		res.Link.New = r.byte1() == 1
	case CmdRegister, CmdReview:
		d := &res.Decision
		sc := r.byte1()
		if sc == 0 || int(sc) >= len(statusCodes) {
			r.fail("bad status")
		} else {
			d.Status = statusCodes[sc]
		}
		d.Reason = r.str()
		d.ID = r.str()
		d.Campaign = r.str()
		d.Inviter = r.str()
		d.Invitee = r.str()
		d.DuplicateOf = r.str()
		n := r.uvarint()
		if n > uint64(len(r.b)) {
			r.fail("bad grant count")
		}
		for i := uint64(0); i < n && r.err == nil; i++ {
			g := Grant{User: r.str()}
			rc := r.byte1()
			if rc == 0 || int(rc) >= len(roleCodes) {
				r.fail("bad role")
				break
			}
			g.Role = roleCodes[rc]
			g.Value = r.varint()
			d.Grants = append(d.Grants, g)
		}
		d.DecidedAt = r.time()
		d.Index = r.uvarint()
	default:
		return Result{}, fmt.Errorf("%w: unknown result type %d", ErrMalformedResult, t)
	}
	if err := r.done(); err != nil {
		return Result{}, fmt.Errorf("%w: %s: %w", ErrMalformedResult, t, err)
	}
	return res, nil
}
