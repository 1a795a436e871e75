package outergate

import "strings"

// currentScope is what a token of c is worth now: the scopes of the token
// that c is still allowed. A reload that narrows a configured client's
// scope, or a PATCH that narrows a managed client's, narrows its live
// tokens at once, since every validation and introspection goes through
// here. It allocates only when the token holds a scope c lost.
func (c *Client) currentScope(tokenScope string) string {
	narrowed := false
	for s := range strings.FieldsSeq(tokenScope) {
		if !containsScope(c.scopes, s) {
			narrowed = true
			break
		}
	}
	if !narrowed {
		return tokenScope
	}
	var kept []string
	for s := range strings.FieldsSeq(tokenScope) {
		if containsScope(c.scopes, s) {
			kept = append(kept, s)
		}
	}
	return strings.Join(kept, " ")
}
