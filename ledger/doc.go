// Package ledger is refrouter's reward ledger: a deterministic state machine
// that the cluster replicates with raft. It holds campaigns (with the numbers
// used in share codes), inviters (with the numbers assigned on first link),
// registrations and their decisions, budgets, caps, fraud counters, teams,
// lottery entries and settlements.
//
// The package is pure: no I/O besides the snapshot's io.Writer/io.Reader, no
// clock (time is the raft entry's timestamp, passed to ApplyBatch), no network,
// no goroutines, and no randomness except a PRNG seeded from the log. Nothing
// depends on map iteration order, so every replica that applies the same log
// reaches byte-identical snapshots.
//
// # Commands
//
// A command is one version byte (1), one CommandType byte and a body: JSON of
// the Campaign for PutCampaign, a compact binary form (uvarint-prefixed
// strings, uvarints, varint unix-nanosecond times) for the others. Build them
// with EncodePutCampaign, EncodeIssueLink, EncodeRegister (or AppendRegister),
// EncodeReview, EncodeSetSegments, EncodeJoinTeam and EncodeNoop; read the
// results with DecodeResult. A malformed, unknown or refused command produces
// an error result (ErrMalformed, ErrUnknownCommand, ErrInvalidCampaign,
// ErrNotFound, ErrConflict, ErrExhausted) and changes nothing.
//
//   - PutCampaign creates or replaces a campaign by id. Campaign numbers are
//     1..65535 in creation order and never reused. The same body again keeps
//     the version; a changed body increments it. Replacing keeps the
//     campaign's state (inviters, counters, teams); done tasks follow their
//     names. A replacement is ErrConflict when it renames, reorders or
//     removes (other than from the end) existing variants, fills again a
//     removed variant's position that inviters still hold, or moves the
//     end of a settled campaign later. It may lower the budget or the caps
//     below what is already used: nothing is taken back, and no grant is
//     made beyond the new limits (see Campaign). Ledger.CheckPut runs the
//     same checks against the local replica before a command is proposed.
//   - IssueLink returns the inviter's number (assigned on first sight, never
//     changed), variant and whether this is the first link (which also records
//     the first-link time used by tasks and counts in Stats.Links). The variant
//     is FNV-1a 64 of campaign id, a zero byte and inviter name, modulo the
//     total weight, over the variants' cumulative weights in order (1-based;
//     0 without variants). It is fixed at the inviter's creation.
//   - Register decides a registration (below). It is idempotent by ID: the
//     same ID again returns the stored decision unchanged.
//   - Review releases (the reward rules run at the review entry's time and
//     index; no fraud checks) or rejects (rejected, reason "review") a held
//     registration. Anything else is ErrConflict. A release after the
//     campaign is settled still grants what fits (caps, budget) but no
//     longer changes team totals or lottery entries.
//   - SetSegments replaces an inviter's segments for one campaign or, with
//     campaign "", for all; the two sets are used together.
//   - JoinTeam puts an inviter in a team of a campaign with a teams block
//     (creating the inviter's number if needed). An inviter stays in the first
//     team joined: another team is ErrConflict.
//
// # Registration rules, in order
//
//  1. The campaign exists, is not settled and is running at the entry time
//     (starts_at ≤ at < ends_at), else rejected "campaign_not_running".
//  2. The inviter number is known, else rejected "unknown_inviter".
//  3. With a click, AckAt − ClickAt ≤ attribution_window (default 168h; a zero
//     AckAt means the entry time), else rejected "attribution_expired".
//  4. The invitee is not the inviter, else rejected "self_invite".
//  5. The invitee is not already attributed in the campaign, else duplicate,
//     with DuplicateOf naming the first registration. One decision per
//     invitee: the first registration decided wins. Across raft entries that
//     is log order, whatever the model. Within one entry, registrations of the
//     same invitee and campaign are decided best click first: the earliest
//     ClickAt for first_click, the latest for last_click, those without a
//     click last, ties in batch order (the model as of the entry's start);
//     other commands keep their places and results stay in batch order.
//  6. If the campaign lists segments, the inviter has at least one of them,
//     else rejected "segment".
//  7. From here the registration is attributed (the invitee is taken, even if
//     it is later rejected on review). Fraud counters count it, then it is held
//     (attributed, not rewarded until review) with the first reason that
//     applies: "too_fast" (AckAt − ClickAt below min_click_to_register,
//     default 2s, also when the click is after the ack), "velocity_inviter"
//     (more than max_per_inviter_per_hour, default 100), "velocity_ip" (more
//     than max_per_ip_per_hour, default 20) or "velocity_device" (more than
//     max_per_device_per_day, default 3). A fraud value of 0 means the
//     default; a negative value disables the check. Velocity is a sliding
//     window estimated from two fixed buckets of the entry time (count of the
//     current bucket plus the previous bucket's count weighted by the part of
//     it still inside the window); per-IP and per-device counters are kept by
//     64-bit hash and dropped once they are two windows old, so memory follows
//     the keys active in the last two windows (8 bytes a slot, keyed by a
//     32-bit tag: two keys sharing a tag share a counter, which can only
//     over-count). Counts saturate at 1023 per IP or device bucket, so those
//     limits are at most 1000. Empty IP or device: not counted.
//  8. Otherwise it is a successful invite: the inviter's invite count grows
//     (team total and lottery entry follow), and the rewards are computed from
//     the inviter's variant (or the campaign's scheme): the ladder tier that
//     contains the new invite count gives the inviter's value, invitee_reward
//     the invitee's. The grants fit whole or the decision is capped
//     (attributed, no grants), with the first reason that applies:
//     "inviter_cap" (per_inviter_cap rewarded invites reached; 0: none),
//     "daily_cap" (per_inviter_daily_cap in the UTC day of the entry; 0: none;
//     the day only moves forward: an entry stamped in an earlier day than
//     the inviter's latest, as after a leader change, counts in the latest),
//     "budget_count" (budget.count rewarded registrations reached; 0: none),
//     "budget" (budget.value would be exceeded; no budget block: unlimited).
//     Grants of value 0 are omitted from decisions.
//  9. On a rewarded decision, each task whose invite count is reached within
//     `within` of the inviter's first link unlocks once, as an extra grant
//     (role "task") when its bonus fits the budget; if it does not fit, the
//     task stays open and is tried again on the next rewarded invite.
//
// Invites (Progress.Invites, tiers, tasks, lottery, team totals) count
// rewarded and capped registrations, and held ones once released (team
// totals and lottery entries only until the campaign is settled).
//
// # Settlement
//
// The first entry whose time is at or after a campaign's ends_at settles it,
// once, before that entry's commands (campaigns in number order):
//   - Team PK: the team with the highest total wins; on a tie, the team that
//     reached that total first in log order wins. Teams with total 0 never
//     win. Every member of the winning team, in inviter-number order, gets the
//     award (role "team") if it fits the remaining budget.
//   - Lottery: entries are inviters in the order they reached lottery.after.
//     A PCG-DXSM generator seeded with (raft index of the settling entry,
//     campaign number) draws, prize by prize in order, each winner uniformly
//     (rejection sampling on Uint64) from the remaining entries, without
//     replacement (swap-remove). A prize that does not fit the budget is
//     drawn but not granted.
//
// The observer gets the settlement as a Decision with ID "settlement:<id>",
// Reason "settlement"; Settlement returns it.
//
// # Concurrency
//
// ApplyBatch and Restore are called from one goroutine; the reads, Snapshot
// and Campaigns may run concurrently with them. State is guarded by a
// sync.RWMutex; the campaign table is also published as an immutable Table
// through an atomic pointer for the redirect path.
//
// # Memory
//
// Names live in one byte arena, indexes are open-addressing tables of uint32
// positions, an inviter takes 48 bytes and a registration 64, fraud counters
// 8 bytes a slot, so an inviter with one link and one registration (with its
// own IP and device) costs about 205 bytes of heap (BenchmarkMemoryPerInviter).
package ledger
