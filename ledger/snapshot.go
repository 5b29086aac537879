package ledger

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"time"
)

// Snapshot format: the 8-byte magic, a big-endian uint16 version, the body
// (varints and length-prefixed strings, every collection in a fixed order:
// campaigns by number, inviters by number, registrations in log order, map
// entries sorted by key) and a CRC-32C of the body. The same state always
// gives the same bytes.
//
// Version 2 is version 1's body followed by one byte, the rules level. A
// ledger at rules level 0 still writes version 1, byte for byte as before,
// so that an older build (a follower during a rolling upgrade) can install
// it; level 1 and up can only be in force once every replica runs a build
// that reads version 2.
const (
	snapMagic   = "RRLEDGER"
	snapVersion = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli) //nolint:gochecknoglobals // read-only table

// Snapshot writes the whole state to w. The state is encoded under the read
// lock (reads continue, ApplyBatch waits) and written to w after the lock is
// released, so a slow w never stalls the ledger. Safe to call concurrently
// with the read methods and with ApplyBatch.
func (l *Ledger) Snapshot(w io.Writer) error {
	l.mu.RLock()
	body := l.st.encode()
	rules := l.st.rules
	l.mu.RUnlock()
	version := uint16(1)
	if rules > 0 {
		body = append(body, rules)
		version = 2
	}
	var hdr [10]byte
	copy(hdr[:], snapMagic)
	binary.BigEndian.PutUint16(hdr[8:], version)
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc32.Checksum(body, castagnoli))
	for _, part := range [][]byte{hdr[:], body, sum[:]} {
		if _, err := w.Write(part); err != nil {
			return fmt.Errorf("write ledger snapshot: %w", err)
		}
	}
	return nil
}

// Restore replaces the state with the snapshot read from r. On any error the
// ledger is unchanged. Not for concurrent use with ApplyBatch.
func (l *Ledger) Restore(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read ledger snapshot: %w", err)
	}
	if len(data) < 14 || string(data[:8]) != snapMagic {
		return fmt.Errorf("%w: missing header", ErrBadSnapshot)
	}
	v := binary.BigEndian.Uint16(data[8:])
	if v < 1 || v > snapVersion {
		return fmt.Errorf("%w: version %d (this build reads 1 to %d)", ErrUnsupportedVersion, v, snapVersion)
	}
	body := data[10 : len(data)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(data[len(data)-4:]) {
		return fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	var rules uint8
	if v >= 2 {
		if len(body) == 0 {
			return fmt.Errorf("%w: no rules level", ErrBadSnapshot)
		}
		rules, body = body[len(body)-1], body[:len(body)-1]
		switch {
		case rules == 0:
			return fmt.Errorf("%w: rules level 0 in a version 2 snapshot", ErrBadSnapshot)
		case rules > RulesLevel:
			return fmt.Errorf("%w: rules level %d (this build knows up to %d)", ErrUnsupportedVersion, rules, RulesLevel)
		}
	}
	st, err := decodeState(body)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	st.rules = rules
	l.mu.Lock()
	l.st = st
	l.publishLocked()
	l.mu.Unlock()
	return nil
}

type enc struct{ b []byte }

func (e *enc) u(v uint64)   { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) i(v int64)    { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) s(v string)   { e.b = appendStr(e.b, v) }
func (e *enc) raw(v []byte) { e.b = append(e.b, v...) }
func (e *enc) by(v byte)    { e.b = append(e.b, v) }

func (e *enc) grants(gs []Grant) {
	e.u(uint64(len(gs)))
	for _, g := range gs {
		e.s(g.User)
		e.by(roleCode(g.Role))
		e.i(g.Value)
	}
}

func (e *enc) windows(t *wtable) {
	ents := t.entries()
	e.u(uint64(len(ents)))
	for _, s := range ents {
		e.u(s)
	}
}

func (s *state) encode() []byte {
	e := &enc{b: make([]byte, 0, 64+len(s.regs)*48+len(s.names.b)*2)}
	e.u(s.seq)
	e.u(s.index)
	e.u(uint64(len(s.camps)))
	for _, cs := range s.camps {
		j, err := json.Marshal(cs.c)
		if err != nil {
			j = nil // plain data: cannot happen
		}
		e.u(uint64(len(j)))
		e.raw(j)
		for _, v := range [...]int64{cs.st.links, cs.st.regs, cs.st.rewarded, cs.st.dups, cs.st.capped, cs.st.held, cs.st.rejected, cs.st.spent} {
			e.i(v)
		}
		e.u(uint64(len(cs.variants)))
		for _, v := range cs.variants {
			e.i(v.links)
			e.i(v.regs)
			e.i(v.rewarded)
			e.i(v.value)
		}
		e.u(uint64(len(cs.inviters)))
		for i := range cs.inviters {
			inv := &cs.inviters[i]
			e.s(s.names.get(inv.name))
			e.u(uint64(inv.firstLink))
			e.i(inv.value)
			e.u(uint64(inv.vel))
			e.u(uint64(inv.invites))
			e.u(uint64(inv.rewarded))
			e.u(uint64(inv.day))
			e.u(uint64(inv.dayCount))
			e.u(uint64(inv.team))
			e.by(inv.variant)
			e.by(inv.tasks)
			e.by(inv.flags)
		}
		e.u(uint64(len(cs.teams)))
		for _, t := range cs.teams {
			e.s(t.name)
			e.i(t.total)
			e.u(t.reached)
			e.i(t.members)
		}
		e.u(uint64(len(cs.lottery)))
		for _, n := range cs.lottery {
			e.u(uint64(n))
		}
		e.i(cs.ipSwept)
		e.windows(&cs.ipVel)
		e.i(cs.devSwept)
		e.windows(&cs.devVel)
		if st := cs.settled; st == nil {
			e.by(0)
		} else {
			e.by(1)
			e.i(st.At.UnixNano())
			e.u(st.Index)
			e.s(st.WinningTeam)
			e.u(uint64(len(st.LotteryWinners)))
			for _, w := range st.LotteryWinners {
				e.s(w)
			}
			e.grants(st.Grants)
		}
	}
	e.u(uint64(len(s.regs)))
	for p := range s.regs {
		r := &s.regs[p]
		if s.strID(uint32(p)) {
			e.by(regStrID)
			e.s(s.regStr[uint32(p)])
		} else {
			e.by(0)
			e.raw(r.id[:])
		}
		e.s(s.names.get(r.invitee))
		e.i(r.at)
		e.u(r.index)
		e.i(r.invVal)
		e.i(r.inveeVal)
		e.u(uint64(r.inviter))
		e.u(uint64(s.regDup[uint32(p)]))
		e.u(uint64(r.camp))
		e.by(r.status)
		e.by(r.reason)
		if r.camp == 0 {
			e.s(s.regCamp[uint32(p)])
		}
	}
	extra := make([]uint32, 0, len(s.regExtra))
	for p := range s.regExtra {
		extra = append(extra, p)
	}
	slices.Sort(extra)
	e.u(uint64(len(extra)))
	for _, p := range extra {
		e.u(uint64(p))
		e.grants(s.regExtra[p])
	}
	keys := make([]segKey, 0, len(s.segs))
	for k := range s.segs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b segKey) int {
		return cmp.Or(cmp.Compare(a.campaign, b.campaign), cmp.Compare(a.inviter, b.inviter))
	})
	e.u(uint64(len(keys)))
	for _, k := range keys {
		e.s(k.campaign)
		e.s(k.inviter)
		segs := s.segs[k]
		e.u(uint64(len(segs)))
		for _, g := range segs {
			e.s(g)
		}
	}
	return e.b
}

// count reads a collection length, bounded by the bytes left (every element
// takes at least one byte) so a corrupt length cannot make a huge allocation.
func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail("count out of range")
		return 0
	}
	return int(n)
}

func (r *reader) grants() []Grant {
	n := r.count()
	var gs []Grant
	for i := 0; i < n && r.err == nil; i++ {
		g := Grant{User: r.str()}
		rc := r.byte1()
		if rc == 0 || int(rc) >= len(roleCodes) {
			r.fail("bad role")
			return nil
		}
		g.Role = roleCodes[rc]
		g.Value = r.varint()
		gs = append(gs, g)
	}
	return gs
}

func (r *reader) windows() wtable {
	n := r.count()
	var t wtable
	t.n = n
	t.rebuild(16, nil) // sized for n, empty
	t.n = 0
	prev := uint64(0)
	for i := 0; i < n && r.err == nil; i++ {
		s := r.uvarint()
		if uint32(s) == 0 || (i > 0 && s>>32 <= prev>>32) {
			r.fail("window entries not sorted or empty")
			break
		}
		t.put(s)
		prev = s
	}
	return t
}

func (r *reader) u16() uint16 {
	v := r.uvarint()
	if v > 0xffff {
		r.fail("value out of range")
	}
	return uint16(v)
}

func (r *reader) nameChecked() string {
	n := r.uvarint()
	if n > maxName {
		r.fail("name too long")
		return ""
	}
	return string(r.raw(n))
}

func decodeState(body []byte) (*state, error) {
	s := newState()
	r := &reader{b: body}
	s.seq = r.uvarint()
	s.index = r.uvarint()
	nc := r.count()
	if nc > math.MaxUint16 {
		return nil, errors.New("too many campaigns")
	}
	for i := 0; i < nc && r.err == nil; i++ {
		var c Campaign
		if err := json.Unmarshal(r.raw(r.uvarint()), &c); err != nil && r.err == nil {
			return nil, fmt.Errorf("campaign %d: %w", i+1, err)
		}
		if r.err != nil {
			break
		}
		if c.Number != uint16(i+1) || c.Validate() != nil {
			return nil, fmt.Errorf("campaign %d: invalid", i+1)
		}
		if _, dup := s.campIdx[c.ID]; dup {
			return nil, fmt.Errorf("campaign %q twice", c.ID)
		}
		cs := &campState{}
		cs.setCampaign(&c, c.canonical())
		cs.variants = cs.variants[:0]
		for _, p := range []*int64{&cs.st.links, &cs.st.regs, &cs.st.rewarded, &cs.st.dups, &cs.st.capped, &cs.st.held, &cs.st.rejected, &cs.st.spent} {
			*p = r.varint()
		}
		nv := r.count()
		for k := 0; k < nv && r.err == nil; k++ {
			cs.variants = append(cs.variants, varCounters{links: r.varint(), regs: r.varint(), rewarded: r.varint(), value: r.varint()})
		}
		if len(cs.variants) < len(c.Variants) {
			return nil, fmt.Errorf("campaign %d: variant counters missing", i+1)
		}
		s.camps = append(s.camps, cs)
		s.campIdx[c.ID] = c.Number
		ni := r.count()
		cs.inviters = make([]inviter, 0, ni)
		cs.invIdx.reserve(ni)
		for k := 0; k < ni && r.err == nil; k++ {
			name := r.nameChecked()
			if _, dup := s.findInviter(cs, name); dup {
				return nil, fmt.Errorf("campaign %d: inviter %q twice", i+1, name)
			}
			p, err := s.addInviter(cs, name)
			if err != nil {
				return nil, err
			}
			inv := &cs.inviters[p]
			inv.firstLink = r.u32()
			inv.value = r.varint()
			inv.vel = window(r.uvarint())
			inv.invites = r.u32()
			inv.rewarded = r.u32()
			inv.day = r.u16()
			inv.dayCount = r.u16()
			team := r.uvarint()
			inv.variant = r.byte1()
			inv.tasks = r.byte1()
			inv.flags = r.byte1()
			if team > math.MaxUint16 || int(inv.variant) > len(cs.variants) {
				r.fail("inviter out of range")
			}
			inv.team = uint16(team)
		}
		nt := r.count()
		for k := 0; k < nt && r.err == nil; k++ {
			cs.teams = append(cs.teams, team{name: r.nameChecked(), total: r.varint(), reached: r.uvarint(), members: r.varint()})
		}
		for k := range cs.inviters {
			if int(cs.inviters[k].team) > len(cs.teams) {
				r.fail("team out of range")
			}
		}
		nl := r.count()
		entered := make([]bool, len(cs.inviters))
		for k := 0; k < nl && r.err == nil; k++ {
			n := r.u32()
			if n == 0 || int(n) > len(cs.inviters) || entered[n-1] || cs.inviters[n-1].flags&flagLottery == 0 {
				r.fail("lottery entry out of range, repeated or not flagged")
				break
			}
			entered[n-1] = true
			cs.lottery = append(cs.lottery, n)
		}
		for k := range cs.inviters {
			if r.err == nil && cs.inviters[k].flags&flagLottery != 0 && !entered[k] {
				r.fail("lottery flag without an entry")
			}
		}
		cs.ipSwept = r.varint()
		cs.ipVel = r.windows()
		cs.devSwept = r.varint()
		cs.devVel = r.windows()
		switch r.byte1() {
		case 0:
		case 1:
			st := &Settlement{At: time.Unix(0, r.varint()).UTC(), Index: r.uvarint(), WinningTeam: r.str()}
			nw := r.count()
			for k := 0; k < nw && r.err == nil; k++ {
				st.LotteryWinners = append(st.LotteryWinners, r.str())
			}
			st.Grants = r.grants()
			cs.settled = st
		default:
			r.fail("bad settlement flag")
		}
		cs.allowUse(nil)
	}
	nr := r.count()
	s.regs = make([]reg, 0, nr)
	s.regIdx.reserve(nr)
	for i := 0; i < nr && r.err == nil; i++ {
		p := uint32(i)
		var g reg
		flags := r.byte1()
		var id string
		if flags&regStrID != 0 {
			id = r.nameChecked()
			s.regStr[p] = id
		} else {
			copy(g.id[:], r.raw(16))
			id = unpackULID(g.id)
		}
		if flags&^regStrID != 0 {
			r.fail("bad registration flags")
		}
		if r.err != nil {
			break
		}
		if _, dup := s.findReg(id); dup {
			return nil, fmt.Errorf("registration %q twice", id)
		}
		invitee := r.nameChecked()
		g.invitee = s.names.add(invitee)
		g.at = r.varint()
		g.index = r.uvarint()
		g.invVal = r.varint()
		g.inveeVal = r.varint()
		g.inviter = r.u32()
		dupOf := r.u32()
		camp := r.uvarint()
		g.status = r.byte1()
		g.reason = r.byte1()
		if camp > uint64(len(s.camps)) || g.status == 0 || int(g.status) >= len(statusCodes)-1 || g.reason >= rsCount || (g.status == stDup && dupOf >= p) || (g.status != stDup && dupOf != 0) {
			r.fail("registration out of range")
			break
		}
		g.camp = uint16(camp)
		if g.status == stDup {
			s.regDup[p] = dupOf
		}
		if g.camp == 0 {
			s.regCamp[p] = r.str()
		} else if int(g.inviter) > len(s.camps[g.camp-1].inviters) {
			r.fail("registration inviter out of range")
			break
		}
		if err := checkRegRefs(&g); err != nil {
			r.fail(err.Error())
			break
		}
		s.regs = append(s.regs, g)
		s.regIdx.insert(hashKey(id), p, func(q uint32) uint64 { return hashKey(s.regID(q)) })
		if g.camp != 0 && attributed(&g) {
			cs := s.camps[g.camp-1]
			if _, dup := s.findInvitee(cs, invitee); dup {
				return nil, fmt.Errorf("invitee %q attributed twice", invitee)
			}
			cs.invitees.insert(hashKey(invitee), p, func(q uint32) uint64 { return hashKey(s.names.bytes(s.regs[q].invitee)) })
		}
	}
	ne := r.count()
	for i := 0; i < ne && r.err == nil; i++ {
		p := r.u32()
		if int(p) >= len(s.regs) {
			r.fail("grant owner out of range")
			break
		}
		s.regExtra[p] = r.grants()
	}
	ns := r.count()
	for i := 0; i < ns && r.err == nil; i++ {
		k := segKey{campaign: r.nameChecked(), inviter: r.nameChecked()}
		n := r.count()
		var segs []string
		for j := 0; j < n && r.err == nil; j++ {
			segs = append(segs, r.nameChecked())
		}
		s.segs[k] = segs
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	s.computeNextEnd()
	return s, nil
}

// checkRegRefs checks the campaign and inviter references of a registration
// against its status, as the rules leave them: without a campaign only
// "campaign_not_running" (an unknown campaign, no inviter); duplicates and
// attributed registrations (which a review or the reads follow to their
// campaign and inviter) have both.
func checkRegRefs(g *reg) error {
	switch {
	case g.camp == 0 && (g.status != stRejected || g.reason != rsNotRunning || g.inviter != 0):
		return fmt.Errorf("registration without a campaign is %s/%s with inviter %d", statusCodes[g.status], reasonNames[g.reason], g.inviter)
	case (g.status == stDup || attributed(g)) && (g.camp == 0 || g.inviter == 0):
		return fmt.Errorf("%s registration without a campaign or inviter", statusCodes[g.status])
	}
	return nil
}

// attributed reports whether a registration holds its invitee's attribution.
func attributed(g *reg) bool {
	switch g.status {
	case stRewarded, stCapped, stHeld:
		return true
	case stRejected:
		return g.reason == rsReview
	}
	return false
}
