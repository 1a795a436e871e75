package outergate

import (
	"golang.org/x/crypto/bcrypt"
)

// failureCost is the work every failed client authentication pays, so that
// the time of a failure tells nothing about the id (known or not, SHA-256
// or bcrypt): slots bcrypt comparisons at the highest configured cost. A
// configured client's own bcrypt hashes at that cost count towards them
// (they ran in full: the match cache holds only secrets that matched); the
// decoy pays the rest, all of them for an unknown id or a SHA-256 client.
// A success is not padded, but a right secret that a lockout then refuses
// is (clientAuth.saved): the 429 of a locked-out key must cost the same
// whatever the credentials, or its timing would tell a right guess.
// Provision plans it once.
type failureCost struct {
	slots int
}

// payDecoy checks secret against the decoy for the slots that the id's own
// hashes did not pay.
func (f failureCost) payDecoy(decoy secretVerifier, secret string, paid int) {
	for i := paid; i < f.slots; i++ {
		decoy.verify(secret)
	}
}

// planFailureCost sets each client's decoyEquivalents (its bcrypt hashes at
// the highest cost) and returns the plan: as many slots as the most any
// client holds, at least one. It also returns the clients holding a
// bcrypt hash below the highest cost, whose failures cost more than the
// others' by that hash's work.
func planFailureCost(clients map[string]*Client) (failureCost, []string) {
	top := 0
	for _, c := range clients {
		for _, v := range c.verifiers {
			if b, ok := v.(*bcryptVerifier); ok {
				if n, err := bcrypt.Cost(b.hash); err == nil && n > top {
					top = n
				}
			}
		}
	}
	plan := failureCost{slots: 1}
	var cheaper []string
	for id, c := range clients {
		c.decoyEquivalents, c.decoyCost = 0, top
		low := false
		for _, v := range c.verifiers {
			if b, ok := v.(*bcryptVerifier); ok {
				if n, err := bcrypt.Cost(b.hash); err == nil && n == top {
					c.decoyEquivalents++
				} else {
					low = true
				}
			}
		}
		plan.slots = max(plan.slots, c.decoyEquivalents)
		if low {
			cheaper = append(cheaper, id)
		}
	}
	return plan, cheaper
}
