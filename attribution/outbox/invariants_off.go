//go:build !invariants

package outbox

// invariants is set in builds with the invariants tag: AppendBatch then
// decodes every event it is given before storing it.
const invariants = false
