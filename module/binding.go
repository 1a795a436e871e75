package outergate

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
)

// This file binds a token to the authority that issued it. Handlers that
// share a store (the default memory store is one per process) would
// otherwise accept each other's tokens: a token issued by one site to its
// client "shared" would work on another site whose client "shared" has a
// different secret. A token's record carries a binding, a hash of the
// handler's issuer, the client id and the secret hash the client
// authenticated with; a handler accepts the token (and lets it be revoked
// or introspected) only if that client is configured there with that same
// secret hash under that same issuer. Handlers that share a store and the
// client's credentials, on purpose (instances of one gateway, one site on
// two listeners), share its tokens; removing a secret hash from a client
// ends the tokens issued with it.

// tokenBinding is the binding of the tokens issued to client id with the
// configured secret hash under issuer ("" when none is configured).
func tokenBinding(issuer, id, secretHash string) string {
	h := sha256.New()
	for _, s := range []string{"outergate token binding v1", issuer, id, secretHash} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// binds reports whether rec is a token this handler's client c could have
// been issued: c is configured and holds the secret hash and issuer rec was
// bound to. A nil c (a client not configured here) binds nothing.
func (c *Client) binds(rec TokenRecord) bool {
	return c != nil && rec.ClientID == c.ID && slices.Contains(c.bindings, rec.Binding)
}
