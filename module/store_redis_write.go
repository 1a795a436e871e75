package outergate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// errNotReplicated is a write that fewer replicas than required
// acknowledged within the WAIT timeout: it is not answered as done,
// because a failover could discard it.
var errNotReplicated = errors.New("too few replicas acknowledged the write")

// errFailover is a write made while the Sentinels announced a failover: it
// may have reached a master that is being demoted, whose writes are then
// discarded, so it is not answered as done.
var errFailover = errors.New("sentinel failover in progress")

// waitTimeout is how long WAIT may block: 40% of the operation's budget,
// under the connection's read timeout (half of it), leaving the rest for
// the write itself.
func (c *redisConn) waitTimeout() time.Duration { return c.timeout * 2 / 5 }

// write sends the commands fn adds for key to key's master, on one
// connection, followed by WAIT for the required replicas (see
// writeKeys).
func (c *redisConn) write(ctx context.Context, key string, fn func(p redis.Pipeliner)) error {
	return c.writeKeys(ctx, []string{key}, func(p redis.Pipeliner, _ string) { fn(p) })
}

// writeKeys sends, for every key, the commands fn adds, grouped by the
// master that holds the key: each group is one pipeline on one connection
// to that master (the masters in parallel, so fn must be safe for
// concurrent use), followed by WAIT (WAIT counts the writes of its own
// connection, which is why the writes do not go through the Cluster
// client's own routing). A group that meets a stale slot map or a dead
// node is retried, after asking go-redis to reload the slot map, until the
// operation's deadline.
//
// With Sentinel, a write is refused (errFailover) if a failover began
// before it was acknowledged.
func (c *redisConn) writeKeys(ctx context.Context, keys []string, fn func(p redis.Pipeliner, key string)) error {
	if c.sentinel != nil && c.sentinel.fenced() {
		return errFailover
	}
	if c.cluster == nil {
		gen := c.sentinelGen()
		if err := c.writeOn(ctx, c.client, "", keys, fn); err != nil {
			return err
		}
		if c.sentinel != nil && (c.sentinel.fenced() || c.sentinelGen() != gen) {
			return errFailover
		}
		return nil
	}
	pending := keys
	for attempt := 0; ; attempt++ {
		groups := make(map[*redis.Client][]string)
		var err error
		for _, k := range pending {
			node, e := c.cluster.MasterForKey(ctx, k)
			if e != nil {
				err = e
				break
			}
			groups[node] = append(groups[node], k)
		}
		var failed []string
		if err == nil {
			failed, err = c.writeGroups(ctx, groups, fn)
		}
		if err == nil {
			return nil
		}
		if failed != nil {
			pending = failed
		}
		if errors.Is(err, errNotReplicated) || !topologyError(err) {
			return err
		}
		c.cluster.ReloadState(ctx)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(20<<min(attempt, 4)) * time.Millisecond):
		}
	}
}

// writeGroups writes each master's group (writeOn), the masters in
// parallel, and returns the keys of the groups that failed with the first
// error.
func (c *redisConn) writeGroups(ctx context.Context, groups map[*redis.Client][]string, fn func(p redis.Pipeliner, key string)) ([]string, error) {
	if len(groups) == 1 {
		for node, ks := range groups {
			if err := c.writeOn(ctx, node, node.Options().Addr, ks, fn); err != nil {
				return ks, err
			}
		}
		return nil, nil
	}
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		failed []string
		first  error
	)
	for node, ks := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.writeOn(ctx, node, node.Options().Addr, ks, fn); err != nil {
				mu.Lock()
				defer mu.Unlock()
				if first == nil {
					first = err
				}
				failed = append(failed, ks...)
			}
		}()
	}
	wg.Wait()
	return failed, first
}

// writeOn runs one group on one connection of client, with WAIT when
// replicas are required. Outside a Cluster the group shares its pipeline
// with the writes of concurrent requests (writeShared).
func (c *redisConn) writeOn(ctx context.Context, client redis.Cmdable, addr string, keys []string, fn func(p redis.Pipeliner, key string)) error {
	if addr == "" && c.writes != nil {
		return c.writeShared(ctx, keys, fn)
	}
	p := client.Pipeline()
	for _, k := range keys {
		fn(p, k)
	}
	var wait *redis.Cmd
	n := c.replicasFor(addr)
	if n > 0 {
		wait = p.Do(ctx, "wait", n, c.waitTimeout().Milliseconds())
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if wait != nil {
		if got, err := wait.Int64(); err != nil || got < int64(n) {
			return fmt.Errorf("%w: %d of %d within %s", errNotReplicated, got, n, c.waitTimeout())
		}
	}
	return nil
}

// sentinelGen is the Sentinel watcher's failover generation (0 off
// Sentinel).
func (c *redisConn) sentinelGen() uint64 {
	if c.sentinel == nil {
		return 0
	}
	return c.sentinel.gen.Load()
}

// newWriteBatch is the shared pipeline of the writes on one server or
// Sentinel master: concurrent requests' writes (an issuance's one script,
// a revocation's) go in one pipeline, each script still atomic on its
// own, followed by one WAIT for the replicas required when it is sent,
// which acknowledges every write before it on that connection. A write
// alone is sent at once (pipeBatch).
func (c *redisConn) newWriteBatch() *pipeBatch {
	b := newPipeBatch(c.client, c.timeout)
	b.tail = func(ctx context.Context, p redis.Pipeliner) *redis.Cmd {
		n := c.replicasFor("")
		if n <= 0 {
			return nil
		}
		return p.Do(ctx, "wait", n, c.waitTimeout().Milliseconds())
	}
	return b
}

// writeShared is writeOn through the shared pipeline: this request's
// commands (what fn queued) decide its error, and the pipeline's WAIT
// whether enough replicas acknowledged it.
func (c *redisConn) writeShared(ctx context.Context, keys []string, fn func(p redis.Pipeliner, key string)) error {
	var own []redis.Cmder
	sent, wait := c.writes.runTail(ctx, func(p redis.Pipeliner) {
		before := p.Len()
		for _, k := range keys {
			fn(p, k)
		}
		own = p.Cmds()[before:]
	})
	if !sent {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("write not sent: %w", err)
		}
		return errors.New("write not sent")
	}
	for _, cmd := range own {
		if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	if wait != nil {
		n, _ := wait.Args()[1].(int)
		if got, err := wait.Int64(); err != nil || got < int64(n) {
			return fmt.Errorf("%w: %d of %d within %s", errNotReplicated, got, n, c.waitTimeout())
		}
	}
	return nil
}
