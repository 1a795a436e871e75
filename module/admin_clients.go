package outergate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// The client management routes of the admin API (docs/API.md §5):
//
//	GET    /outergate/clients             configured and managed clients
//	POST   /outergate/clients             create a managed client → its secret, once
//	GET    /outergate/clients/<id>        one client
//	PATCH  /outergate/clients/<id>        change a managed client's settings
//	POST   /outergate/clients/<id>/rotate new secret; the old one works for "grace"
//	DELETE /outergate/clients/<id>        delete a managed client, revoke its tokens
//
// A managed client lives in the ClientStore of every running handler's
// token store; configured clients are read-only here.

// clientsPath is the admin path of the clients collection.
const clientsPath = "/outergate/clients"

// adminTries bounds the compare-and-swap retries of one change.
const adminTries = 5

// registry is one ClientStore of the running config, with the token store
// and the handlers it goes with.
type registry struct {
	clients  ClientStore
	tokens   Store
	handlers []*Handler
}

// liveRegistries returns the ClientStores of the live handlers, each once,
// and the clients configured in any of them by id.
func liveRegistries() ([]*registry, map[string]*Client) {
	byKey := map[string]*registry{}
	configured := map[string]*Client{}
	liveHandlers.Range(func(_, v any) bool {
		h := v.(liveHandler).h
		if h.managed == nil {
			return true
		}
		reg := byKey[h.managed.regKey]
		if reg == nil {
			reg = &registry{clients: h.managed.store, tokens: h.store}
			byKey[h.managed.regKey] = reg
		}
		reg.handlers = append(reg.handlers, h)
		for id, c := range h.clients {
			if _, seen := configured[id]; !seen {
				configured[id] = c
			}
		}
		return true
	})
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*registry, len(keys))
	for i, k := range keys {
		out[i] = byKey[k]
	}
	return out, configured
}

// apiErr is a caddy.APIError with a message.
func apiErr(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

// storeErr is the 503 of a storage or Redis failure.
func storeErr(what string, err error) error {
	return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("%s: %w", what, err)}
}

// configuredErr is the 409 for a configured client.
func configuredErr(id string) error {
	return apiErr(http.StatusConflict, "client %q is configured in the Caddy config; edit the config and reload to change it", id)
}

// handleClients serves the collection: GET lists, POST creates.
func (a *AdminAPI) handleClients(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet:
		return a.listClients(w, r)
	case http.MethodPost:
		return a.createClient(w, r)
	}
	return apiErr(http.StatusMethodNotAllowed, "method %s not allowed: use GET or POST", r.Method)
}

// handleClient serves /outergate/clients/<id>[/rotate].
func (a *AdminAPI) handleClient(w http.ResponseWriter, r *http.Request) error {
	id, action, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, clientsPath+"/"), "/")
	if err := checkClientID(id); err != nil {
		return apiErr(http.StatusBadRequest, "%v", err)
	}
	switch {
	case action == "" && r.Method == http.MethodGet:
		return a.showClient(w, r, id)
	case action == "" && r.Method == http.MethodPatch:
		return a.updateClient(w, r, id)
	case action == "" && r.Method == http.MethodDelete:
		return a.deleteClient(w, r, id)
	case action == "rotate" && r.Method == http.MethodPost:
		return a.rotateClient(w, r, id)
	case action == "":
		return apiErr(http.StatusMethodNotAllowed, "method %s not allowed: use GET, PATCH or DELETE", r.Method)
	case action == "rotate":
		return apiErr(http.StatusMethodNotAllowed, "method %s not allowed: use POST", r.Method)
	}
	return apiErr(http.StatusNotFound, "no such resource: %s", r.URL.Path)
}

// readJSONObject reads a request body that must be one JSON object (an
// empty body is allowed when empty is true) and returns its fields.
func readJSONObject(r *http.Request, empty bool) ([]byte, map[string]json.RawMessage, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, nil, apiErr(http.StatusBadRequest, "reading body: %v", err)
	}
	if len(raw) > maxBodyBytes {
		return nil, nil, apiErr(http.StatusRequestEntityTooLarge, "body larger than %d bytes", maxBodyBytes)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		if empty {
			return []byte("{}"), map[string]json.RawMessage{}, nil
		}
		return nil, nil, apiErr(http.StatusBadRequest, "body must be a JSON object")
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&fields); err != nil || fields == nil || dec.More() {
		return nil, nil, apiErr(http.StatusBadRequest, "body must be one JSON object")
	}
	return raw, fields, nil
}

// decodeClient decodes the fields of a Client from raw over c, refusing
// unknown fields; the error names the field.
func decodeClient(raw []byte, c *Client) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return apiErr(http.StatusBadRequest, "%s", fieldError(raw, err))
	}
	return nil
}

// fieldError says which field of raw a decoding error is about: a field's
// own decoder (a duration's) does not name it.
func fieldError(raw []byte, err error) string {
	msg := strings.TrimPrefix(err.Error(), "json: ")
	var typeErr *json.UnmarshalTypeError
	if (errors.As(err, &typeErr) && typeErr.Field != "") || strings.HasPrefix(msg, "unknown field") {
		return msg // it names the field already
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return msg
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		one, _ := json.Marshal(map[string]json.RawMessage{k: fields[k]})
		if json.Unmarshal(one, new(Client)) != nil {
			return k + ": " + msg
		}
	}
	return msg
}

// checkManaged checks a managed client as every handler of every
// registry would provision it, so that a bad field is a 400 and never a
// client that cannot work.
func checkManaged(regs []*registry, rec *managedClient) error {
	if err := checkClientID(rec.ID); err != nil {
		return apiErr(http.StatusBadRequest, "%v", err)
	}
	if err := checkScope(rec.Scope); err != nil {
		return apiErr(http.StatusBadRequest, "%v", err)
	}
	for _, reg := range regs {
		for _, h := range reg.handlers {
			if _, err := h.provisionManaged(rec); err != nil {
				return apiErr(http.StatusBadRequest, "%v", err)
			}
		}
	}
	return nil
}

// now is the time stamps' clock: UTC milliseconds, so that a record's
// JSON reads back the same.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// auditAdmin writes one audit entry of a client change: the client id and
// the admin caller, never a secret.
func auditAdmin(r *http.Request, msg, id string, fields ...zap.Field) {
	caddy.Log().Named(handlerModuleID+"."+auditLoggerName).Info(msg,
		append([]zap.Field{zap.String("client_id", id), zap.String("via", string(viaAdmin)), zap.String("remote_ip", remoteHost(r))}, fields...)...)
}

func (a *AdminAPI) createClient(w http.ResponseWriter, r *http.Request) error {
	raw, fields, err := readJSONObject(r, false)
	if err != nil {
		return err
	}
	if _, ok := fields["secret_hashes"]; ok {
		return apiErr(http.StatusBadRequest, "secret_hashes cannot be set: the gateway generates the secret and answers it once")
	}
	var c Client
	if err := decodeClient(raw, &c); err != nil {
		return err
	}
	regs, configured := liveRegistries()
	if len(regs) == 0 {
		return apiErr(http.StatusServiceUnavailable, "no outergate handler is running")
	}
	if err := checkClientID(c.ID); err != nil {
		return apiErr(http.StatusBadRequest, "%v", err)
	}
	if configured[c.ID] != nil {
		return apiErr(http.StatusConflict, "client %q exists: it is configured in the Caddy config; edit the config to change it", c.ID)
	}
	secret, err := randomSecret()
	if err != nil {
		return fmt.Errorf("generating secret: %w", err)
	}
	t := now()
	c.SecretHashes = []string{secretHash(secret)}
	rec := &managedClient{Client: c, CreatedAt: t, UpdatedAt: t}
	if err := checkManaged(regs, rec); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	for i, reg := range regs {
		if err := reg.clients.Create(ctx, rec); err != nil {
			if errors.Is(err, ErrClientExists) && i == 0 {
				return apiErr(http.StatusConflict, "client %q exists: change it with PATCH, or delete it first", c.ID)
			}
			return storeErr("storing the client", err)
		}
	}
	auditAdmin(r, "client created", c.ID, zap.String("scope", rec.Scope))
	view, err := clientView(ctx, regs[0], rec, nil)
	if err != nil {
		return err
	}
	view["client_id"] = c.ID
	view["client_secret"] = secret
	return writeJSON(w, http.StatusCreated, view)
}

// clientView is the admin API's view of a client: its settings (never a
// secret or hash), where it comes from, its live tokens and, for a
// managed client, its history. Exactly one of rec and conf is set.
func clientView(ctx context.Context, reg *registry, rec *managedClient, conf *Client) (map[string]any, error) {
	var view map[string]any
	var id, scope string
	if rec != nil {
		raw, err := json.Marshal(rec.Client)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, &view); err != nil {
			return nil, err
		}
		delete(view, "secret_hashes")
		id, scope = rec.ID, rec.Scope
		if scope == "" && len(reg.handlers) > 0 {
			scope = reg.handlers[0].Scope
		}
		view["source"] = "api"
		view["created_at"] = rec.CreatedAt
		view["updated_at"] = rec.UpdatedAt
		if rec.RotatedAt != nil {
			view["rotated_at"] = *rec.RotatedAt
		}
		if until := graceUntil(rec); !until.IsZero() {
			view["grace_until"] = until
		}
	} else {
		id, scope = conf.ID, strings.Join(conf.scopes, " ")
		view = map[string]any{"id": id, "source": "config"}
	}
	view["scope"] = scope
	n := 0
	if reg != nil {
		var err error
		if n, err = reg.tokens.CountClient(ctx, id); err != nil {
			return nil, storeErr("counting tokens", err)
		}
	}
	view["live_tokens"] = n
	return view, nil
}

// graceUntil is when the last rotated-out secret of rec stops working;
// zero if none works any more.
func graceUntil(rec *managedClient) time.Time {
	var until time.Time
	for _, g := range rec.Grace {
		if g.Until.After(until) && time.Now().Before(g.Until) {
			until = g.Until
		}
	}
	return until
}

func (a *AdminAPI) listClients(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	regs, _ := liveRegistries()
	byID := map[string]map[string]any{}
	add := func(view map[string]any) {
		id := view["id"].(string)
		if prev, ok := byID[id]; ok {
			prev["live_tokens"] = prev["live_tokens"].(int) + view["live_tokens"].(int)
			return
		}
		byID[id] = view
	}
	for _, reg := range regs {
		seen := map[string]bool{}
		for _, h := range reg.handlers {
			for id, c := range h.clients {
				if seen[id] {
					continue
				}
				seen[id] = true
				view, err := clientView(ctx, reg, nil, c)
				if err != nil {
					return err
				}
				add(view)
			}
		}
		for _, rec := range reg.clients.List() {
			if seen[rec.ID] {
				continue // the configured client of that id wins
			}
			view, err := clientView(ctx, reg, rec, nil)
			if err != nil {
				return err
			}
			add(view)
		}
	}
	out := make([]map[string]any, 0, len(byID))
	for _, v := range byID {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b map[string]any) int { return strings.Compare(a["id"].(string), b["id"].(string)) })
	return writeJSON(w, http.StatusOK, map[string]any{"clients": out})
}

// findClient returns the registries and the current record of a managed
// client in the first registry; 409 for a configured client, 404 for an
// unknown one.
func findClient(ctx context.Context, id string) ([]*registry, *managedClient, error) {
	regs, configured := liveRegistries()
	if configured[id] != nil {
		return regs, nil, configuredErr(id)
	}
	if len(regs) == 0 {
		return nil, nil, apiErr(http.StatusServiceUnavailable, "no outergate handler is running")
	}
	rec, err := regs[0].clients.Get(ctx, id)
	if err != nil {
		return nil, nil, storeErr("reading the client", err)
	}
	if rec == nil {
		return nil, nil, apiErr(http.StatusNotFound, "no client %q", id)
	}
	return regs, rec, nil
}

func (a *AdminAPI) showClient(w http.ResponseWriter, r *http.Request, id string) error {
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	regs, configured := liveRegistries()
	if c := configured[id]; c != nil {
		for _, reg := range regs {
			for _, h := range reg.handlers {
				if h.clients[id] != nil {
					view, err := clientView(ctx, reg, nil, c)
					if err != nil {
						return err
					}
					return writeJSON(w, http.StatusOK, view)
				}
			}
		}
	}
	regs, rec, err := findClient(ctx, id)
	if err != nil {
		return err
	}
	view, err := clientView(ctx, regs[0], rec, nil)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, view)
}

// change applies edit to the current record of a managed client in every
// registry, retrying when it changed concurrently, and returns the new
// record of the first registry. edit must not modify its argument.
func change(ctx context.Context, id string, edit func(cur *managedClient) (*managedClient, error)) ([]*registry, *managedClient, error) {
	regs, cur, err := findClient(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	var first *managedClient
	for i, reg := range regs {
		for try := 0; ; try++ {
			if i > 0 || try > 0 {
				if cur, err = reg.clients.Get(ctx, id); err != nil {
					return nil, nil, storeErr("reading the client", err)
				}
				if cur == nil {
					return nil, nil, apiErr(http.StatusNotFound, "no client %q", id)
				}
			}
			next, err := edit(cur)
			if err != nil {
				return nil, nil, err
			}
			if err := checkManaged(regs, next); err != nil {
				return nil, nil, err
			}
			err = reg.clients.Replace(ctx, cur, next)
			if errors.Is(err, ErrClientChanged) && try < adminTries {
				continue
			}
			if errors.Is(err, ErrClientNotFound) {
				return nil, nil, apiErr(http.StatusNotFound, "no client %q", id)
			}
			if err != nil {
				return nil, nil, storeErr("storing the client", err)
			}
			if first == nil {
				first = next
			}
			break
		}
	}
	return regs, first, nil
}

func (a *AdminAPI) updateClient(w http.ResponseWriter, r *http.Request, id string) error {
	raw, fields, err := readJSONObject(r, false)
	if err != nil {
		return err
	}
	if _, ok := fields["id"]; ok {
		return apiErr(http.StatusBadRequest, "id cannot be changed: create a new client and delete this one")
	}
	if _, ok := fields["secret_hashes"]; ok {
		return apiErr(http.StatusBadRequest, "secret_hashes cannot be set: rotate the secret with POST %s/%s/rotate", clientsPath, id)
	}
	if len(fields) == 0 {
		return apiErr(http.StatusBadRequest, "nothing to change: give the fields to change")
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	regs, rec, err := change(ctx, id, func(cur *managedClient) (*managedClient, error) {
		// A deep copy through JSON, so that decoding over it never
		// writes into the current record's slices or maps.
		base, err := json.Marshal(cur.Client)
		if err != nil {
			return nil, err
		}
		var c Client
		if err := json.Unmarshal(base, &c); err != nil {
			return nil, err
		}
		if err := decodeClient(raw, &c); err != nil {
			return nil, err
		}
		next := *cur
		next.Client, next.UpdatedAt, next.raw = c, now(), nil
		return &next, nil
	})
	if err != nil {
		return err
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	auditAdmin(r, "client updated", id, zap.Strings("fields", names), zap.String("scope", rec.Scope))
	view, err := clientView(ctx, regs[0], rec, nil)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, view)
}

// rotateRequest is the body of POST /outergate/clients/<id>/rotate.
type rotateRequest struct {
	// Grace is how long the current secret keeps working, as a Go or
	// Caddy duration ("24h", "7d"). Default: 0, it stops at once.
	Grace string `json:"grace"`
}

func (a *AdminAPI) rotateClient(w http.ResponseWriter, r *http.Request, id string) error {
	raw, _, err := readJSONObject(r, true)
	if err != nil {
		return err
	}
	var req rotateRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return apiErr(http.StatusBadRequest, "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	var grace time.Duration
	if req.Grace != "" {
		if grace, err = caddy.ParseDuration(req.Grace); err != nil {
			return apiErr(http.StatusBadRequest, "grace %q: not a duration such as \"24h\" or \"7d\"", req.Grace)
		}
	}
	if grace < 0 || grace > maxGrace {
		return apiErr(http.StatusBadRequest, "grace %q: must be between 0 and %s", req.Grace, maxGrace)
	}
	secret, err := randomSecret()
	if err != nil {
		return fmt.Errorf("generating secret: %w", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	var until time.Time
	_, rec, err := change(ctx, id, func(cur *managedClient) (*managedClient, error) {
		t := now()
		until = t.Add(grace)
		next := *cur
		next.raw = nil
		next.Grace = nil
		for _, g := range cur.Grace {
			if t.Before(g.Until) {
				next.Grace = append(next.Grace, g)
			}
		}
		if grace > 0 {
			for _, h := range cur.SecretHashes {
				next.Grace = append(next.Grace, graceHash{Hash: h, Until: until})
			}
		}
		slices.SortFunc(next.Grace, func(a, b graceHash) int { return a.Until.Compare(b.Until) })
		if n := len(next.Grace); n > maxGraceHashes {
			next.Grace = next.Grace[n-maxGraceHashes:]
		}
		next.SecretHashes = []string{secretHash(secret)}
		next.RotatedAt, next.UpdatedAt = &t, t
		return &next, nil
	})
	if err != nil {
		return err
	}
	auditAdmin(r, "client secret rotated", id, zap.String("grace", grace.String()))
	out := map[string]any{"client_id": id, "client_secret": secret, "rotated_at": *rec.RotatedAt}
	if grace > 0 {
		out["grace_until"] = until
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *AdminAPI) deleteClient(w http.ResponseWriter, r *http.Request, id string) error {
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	regs, cur, err := findClient(ctx, id)
	if err != nil {
		return err
	}
	revoked := 0
	for i, reg := range regs {
		for try := 0; ; try++ {
			if i > 0 || try > 0 {
				if cur, err = reg.clients.Get(ctx, id); err != nil {
					return storeErr("reading the client", err)
				}
			}
			if cur == nil {
				break
			}
			err = reg.clients.Delete(ctx, cur)
			if (errors.Is(err, ErrClientChanged) && try < adminTries) || errors.Is(err, ErrClientNotFound) {
				continue
			}
			if err != nil {
				return storeErr("deleting the client", err)
			}
			break
		}
		// The client is gone, so its tokens are refused already; revoking
		// them frees the store and keeps a future client of this id clear.
		n, err := reg.tokens.RevokeClient(ctx, id)
		if err != nil {
			return storeErr("revoking the client's tokens", err)
		}
		revoked += n
	}
	countRevocations(viaAdmin, revoked)
	auditAdmin(r, "client deleted", id, zap.Int("revoked", revoked))
	return writeJSON(w, http.StatusOK, map[string]any{"deleted": id, "revoked": revoked})
}
