package outergate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// liveHandlers lets the admin API reach the handlers of the running
// configs (Caddy builds admin modules with no reference to them). Each
// handler holds an entry from Provision to Cleanup; during a reload the old
// and the new config's handlers are both present.
var liveHandlers = caddy.NewUsagePool()

// liveHandler is a UsagePool value; there is nothing to destruct.
type liveHandler struct{ h *Handler }

func (liveHandler) Destruct() error { return nil }

// registerLive adds h to liveHandlers; the returned key removes it.
func registerLive(h *Handler) string {
	key := fmt.Sprintf("handler/%p", h)
	liveHandlers.LoadOrStore(key, liveHandler{h})
	return key
}

// liveStores returns the distinct stores of the live handlers, and for each
// the client ids configured on it.
func liveStores() (map[string]Store, map[string][]string) {
	stores := map[string]Store{}
	clients := map[string][]string{}
	liveHandlers.Range(func(_, v any) bool {
		h := v.(liveHandler).h
		k := storeKey(h.store)
		stores[k] = h.store
		for id := range h.clients {
			if !slices.Contains(clients[k], id) {
				clients[k] = append(clients[k], id)
			}
		}
		return true
	})
	return stores, clients
}

// AdminAPI is the admin endpoint module admin.api.outergate:
//
//	POST /outergate/revoke   {"token": "..."} or {"client_id": "..."} → {"revoked": N}
//	GET  /outergate/clients  → {"clients": [{"id": "...", "source": "config", "live_tokens": N}, ...]}
//
// and the management of clients at runtime (admin_clients.go).
//
// It works on the stores of every running outergate handler; with the
// Redis store a revocation reaches every instance.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.outergate",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/outergate/revoke", Handler: caddy.AdminHandlerFunc(a.handleRevoke)},
		{Pattern: clientsPath, Handler: caddy.AdminHandlerFunc(a.handleClients)},
		{Pattern: clientsPath + "/", Handler: caddy.AdminHandlerFunc(a.handleClient)},
	}
}

// adminTimeout bounds one admin call's store work.
const adminTimeout = 5 * time.Second

// revokeRequest is the body of POST /outergate/revoke.
type revokeRequest struct {
	Token    string `json:"token"`
	ClientID string `json:"client_id"`
}

func (a *AdminAPI) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed: use POST", r.Method)}
	}
	var req revokeRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("body must be one object: {\"token\": ...} or {\"client_id\": ...}")}
	}
	if (req.Token == "") == (req.ClientID == "") {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("give exactly one of token and client_id")}
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	stores, _ := liveStores()
	key := hashToken(req.Token)
	revoked := 0
	for _, s := range stores {
		if req.ClientID != "" {
			n, err := s.RevokeClient(ctx, req.ClientID)
			if err != nil {
				return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("revoking: %w", err)}
			}
			revoked += n
			continue
		}
		ok, err := s.RevokeToken(ctx, key)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("revoking: %w", err)}
		}
		if ok {
			revoked++
		}
	}
	countRevocations(viaAdmin, revoked)
	fields := []zap.Field{zap.String("via", string(viaAdmin)), zap.Int("revoked", revoked), zap.String("remote_ip", remoteHost(r))}
	if req.ClientID != "" {
		fields = append(fields, zap.String("client_id", req.ClientID))
	} else {
		fields = append(fields, zap.String("token_fp", key.Fingerprint()))
	}
	caddy.Log().Named(handlerModuleID+"."+auditLoggerName).Info("tokens revoked", fields...)
	return writeJSON(w, http.StatusOK, map[string]int{"revoked": revoked})
}

// remoteHost is the admin client's address without its port.
func remoteHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// Interface guards
var (
	_ caddy.AdminRouter = (*AdminAPI)(nil)
	_ caddy.Destructor  = liveHandler{}
)
