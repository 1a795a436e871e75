package outergate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// ClientStore keeps the clients managed through the admin API, beside a
// token store: with the memory store in Caddy's configured storage
// (storageClients), with the Redis store in Redis (redisClients), shared
// by every instance. The token path reads only the local copy (Lookup);
// the admin API reads with Get and writes with Create, Replace and
// Delete, which return once the change is stored and visible locally.
// Implementations must be safe for concurrent use.
type ClientStore interface {
	// Lookup returns the local copy of a managed client, nil if unknown.
	// It does no I/O. The record must not be modified; a changed client
	// is a new record.
	Lookup(id string) *managedClient
	// List returns the local copies of every managed client, by id.
	List() []*managedClient
	// Get reads a managed client from where it is stored; nil if unknown.
	Get(ctx context.Context, id string) (*managedClient, error)
	// Create stores a new client; ErrClientExists if the id is taken.
	Create(ctx context.Context, rec *managedClient) error
	// Replace stores rec in place of old; ErrClientChanged if the stored
	// client is no longer old (a concurrent change), ErrClientNotFound if
	// it is gone.
	Replace(ctx context.Context, old, rec *managedClient) error
	// Delete removes old; the same errors as Replace.
	Delete(ctx context.Context, old *managedClient) error
}

// Errors of a ClientStore.
var (
	ErrClientExists   = errors.New("client exists")
	ErrClientNotFound = errors.New("client not found")
	ErrClientChanged  = errors.New("client changed concurrently")
)

// clientStores holds the ClientStores by the identity of their token
// store, so that a reload keeps them (and their Redis subscription).
var clientStores = caddy.NewUsagePool()

// clientStoreFor finds or creates the ClientStore that goes with a
// handler's token store, and returns its pool key for Cleanup.
func clientStoreFor(ctx caddy.Context, s Store, logger *zap.Logger) (ClientStore, string, error) {
	if rs, ok := unwrapStore(s).(*RedisStore); ok {
		key := "clients/" + rs.poolKey()
		val, _, err := clientStores.LoadOrNew(key, func() (caddy.Destructor, error) {
			return newRedisClients(rs, logger)
		})
		if err != nil {
			return nil, "", err
		}
		return val.(*redisClients), key, nil
	}
	storage := configStorage(ctx)
	prefix := "outergate/clients/" + url.PathEscape(storeKey(s))
	key := fmt.Sprintf("clients/%s|%v", prefix, storage)
	val, _, err := clientStores.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newStorageClients(storage, prefix, logger)
	})
	if err != nil {
		return nil, "", err
	}
	return val.(*storageClients), key, nil
}

// configStorage is the config's storage (Caddy's `storage` global option,
// by default the file system under Caddy's data directory); nil when the
// context has no config, as in unit tests, whose managed clients then live
// in memory only.
func configStorage(ctx caddy.Context) (s clientStorage) {
	defer func() {
		if recover() != nil {
			s = nil
		}
	}()
	if st := ctx.Storage(); st != nil {
		return st
	}
	return nil
}

// clientStorage is the part of Caddy's storage (certmagic.Storage) the
// managed clients use.
type clientStorage interface {
	Store(ctx context.Context, key string, value []byte) error
	Load(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, path string, recursive bool) ([]string, error)
}

// storageOpTimeout bounds one storage operation.
const storageOpTimeout = 5 * time.Second

// storageClients is the ClientStore of the memory store: every client is
// one JSON file (storage key) under prefix in Caddy's storage, read once
// when the first config that needs it loads; the copy in memory is the
// truth of this process, written through to storage before a change is
// answered.
type storageClients struct {
	storage clientStorage // nil: not persisted
	prefix  string
	logger  *zap.Logger

	localClients
	wmu sync.Mutex // one write at a time: storage, then memory
}

func newStorageClients(storage clientStorage, prefix string, logger *zap.Logger) (*storageClients, error) {
	c := &storageClients{storage: storage, prefix: prefix, logger: logger, localClients: newLocalClients()}
	if storage == nil {
		return c, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storageOpTimeout)
	defer cancel()
	keys, err := storage.List(ctx, prefix, false)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listing managed clients in storage: %w", err)
	}
	for _, k := range keys {
		if !strings.HasSuffix(k, ".json") {
			continue
		}
		raw, err := storage.Load(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("loading managed client %s: %w", k, err)
		}
		var rec managedClient
		if err := json.Unmarshal(raw, &rec); err != nil || checkClientID(rec.ID) != nil {
			// One bad file must not stop the gateway; that client is gone.
			logger.Error("skipping unreadable managed client in storage", zap.String("key", k), zap.Error(err))
			continue
		}
		c.byID[rec.ID] = &rec
	}
	return c, nil
}

// Destruct implements caddy.Destructor; nothing to release.
func (c *storageClients) Destruct() error { return nil }

func (c *storageClients) key(id string) string {
	return c.prefix + "/" + id + ".json"
}

// Get implements ClientStore: this process's copy is the truth.
func (c *storageClients) Get(_ context.Context, id string) (*managedClient, error) {
	return c.Lookup(id), nil
}

// Create implements ClientStore.
func (c *storageClients) Create(ctx context.Context, rec *managedClient) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.Lookup(rec.ID) != nil {
		return ErrClientExists
	}
	return c.write(ctx, rec.ID, rec)
}

// Replace implements ClientStore.
func (c *storageClients) Replace(ctx context.Context, old, rec *managedClient) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.current(old); err != nil {
		return err
	}
	return c.write(ctx, old.ID, rec)
}

// Delete implements ClientStore.
func (c *storageClients) Delete(ctx context.Context, old *managedClient) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.current(old); err != nil {
		return err
	}
	return c.write(ctx, old.ID, nil)
}

// current checks that old is still the stored record; c.wmu is held.
func (c *storageClients) current(old *managedClient) error {
	switch cur := c.Lookup(old.ID); {
	case cur == nil:
		return ErrClientNotFound
	case cur != old:
		return ErrClientChanged
	}
	return nil
}

// write stores rec (nil: deletes) under id, then makes it visible.
func (c *storageClients) write(ctx context.Context, id string, rec *managedClient) error {
	if c.storage != nil {
		ctx, cancel := context.WithTimeout(ctx, storageOpTimeout)
		defer cancel()
		if rec == nil {
			if err := c.storage.Delete(ctx, c.key(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("deleting managed client from storage: %w", err)
			}
		} else {
			raw, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			if err := c.storage.Store(ctx, c.key(id), raw); err != nil {
				return fmt.Errorf("writing managed client to storage: %w", err)
			}
		}
	}
	c.mu.Lock()
	if rec == nil {
		delete(c.byID, id)
	} else {
		c.byID[id] = rec
	}
	c.mu.Unlock()
	return nil
}

// localClients is a ClientStore's copy of the managed clients in memory,
// which Lookup and List read.
type localClients struct {
	mu   sync.RWMutex
	byID map[string]*managedClient
}

func newLocalClients() localClients {
	return localClients{byID: map[string]*managedClient{}}
}

// Lookup implements ClientStore.
func (c *localClients) Lookup(id string) *managedClient {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byID[id]
}

// List implements ClientStore, by id.
func (c *localClients) List() []*managedClient {
	c.mu.RLock()
	out := make([]*managedClient, 0, len(c.byID))
	for _, rec := range c.byID {
		out = append(out, rec)
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b *managedClient) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Interface guards
var (
	_ ClientStore      = (*storageClients)(nil)
	_ caddy.Destructor = (*storageClients)(nil)
)
