package outergate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// sentinelFenceMax bounds how long a failover announcement holds writes
// back if its end is never announced (a lost message, an aborted attempt
// whose abort was missed).
const sentinelFenceMax = 10 * time.Second

// sentinelWatch follows every Sentinel's announcements, for two things
// go-redis's failover client does not do:
//
//   - The invalidation subscription follows the master: on +switch-master
//     the store resubscribes on the new master (go-redis re-points its
//     command pools but leaves an open pub/sub connection on the old one).
//   - Writes are fenced during a failover: from +try-failover until
//     +switch-master (or the failover's end or abort) writes are refused
//     with 503, and a write that was in flight when a failover began is
//     not acknowledged. Between a replica's promotion and the old master's
//     demotion the old master still accepts writes, and its other replicas
//     still acknowledge them to WAIT; all of them are discarded when the
//     old master and those replicas resync from the new master.
//   - The data connections follow the master too (see dial): go-redis's
//     failover client listens to a single Sentinel and was seen keeping
//     an instance on the demoted master.
type sentinelWatch struct {
	name   string
	opts   *redis.UniversalOptions
	logger *zap.Logger

	// master is the current master's host:port, as last announced.
	master atomic.Pointer[string]
	// fenceUntil is when the current failover fence lapses (Unix ns), 0
	// when there is none.
	fenceUntil atomic.Int64
	// gen changes whenever a failover begins or the master switches.
	gen atomic.Uint64
	// epoch changes when the master switches: connections dialed before
	// refuse to carry anything more (see dial).
	epoch atomic.Uint64
	// live counts the Sentinel subscriptions that are up.
	live atomic.Int32

	// onSwitch runs after the master changed; onUp when a Sentinel
	// subscription comes up.
	onSwitch, onUp func()

	mu      sync.Mutex
	clients []*redis.SentinelClient
	subs    map[*redis.PubSub]struct{} // live subscriptions, closed by close
	closed  bool
}

func newSentinelWatch(opts *redis.UniversalOptions, logger *zap.Logger) *sentinelWatch {
	w := &sentinelWatch{name: opts.MasterName, opts: opts, logger: logger,
		subs: make(map[*redis.PubSub]struct{})}
	for _, addr := range opts.Addrs {
		w.clients = append(w.clients, redis.NewSentinelClient(&redis.Options{
			Addr:            addr,
			Username:        opts.SentinelUsername,
			Password:        opts.SentinelPassword,
			TLSConfig:       opts.TLSConfig,
			DialTimeout:     opts.DialTimeout,
			ReadTimeout:     opts.ReadTimeout,
			WriteTimeout:    opts.WriteTimeout,
			PoolTimeout:     opts.PoolTimeout,
			MaxRetries:      -1,
			DisableIdentity: true,
		}))
	}
	return w
}

// run watches every Sentinel until ctx ends.
func (w *sentinelWatch) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, cl := range w.clients {
		wg.Add(1)
		go func() { defer wg.Done(); w.watch(ctx, cl) }()
	}
	wg.Wait()
}

// close ends the subscriptions, which unblocks run once its context is
// done, and closes the Sentinel clients.
func (w *sentinelWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for ps := range w.subs {
		_ = ps.Close()
	}
	for _, cl := range w.clients {
		_ = cl.Close()
	}
}

// fenced reports whether a failover is under way.
func (w *sentinelWatch) fenced() bool {
	return time.Now().UnixNano() < w.fenceUntil.Load()
}

// known reports whether at least one Sentinel subscription is up, so that
// a failover would be seen.
func (w *sentinelWatch) known() bool { return w.live.Load() > 0 }

// masterAddr is the current master's address, "" until known.
func (w *sentinelWatch) masterAddr() string {
	if p := w.master.Load(); p != nil {
		return *p
	}
	return ""
}

// setMaster records addr as the master and reports whether it replaced
// another one (learning the first master is no change).
func (w *sentinelWatch) setMaster(addr string) bool {
	old := w.master.Swap(&addr)
	changed := old != nil && *old != addr
	if changed {
		w.epoch.Add(1)
	}
	return changed
}

// lookupMaster asks the Sentinels for the master, for the first dial
// before any subscription is up.
func (w *sentinelWatch) lookupMaster(ctx context.Context) (string, error) {
	var last error = errors.New("no sentinel answered")
	for _, cl := range w.clients {
		addr, err := cl.GetMasterAddrByName(ctx, w.name).Result()
		if err == nil && len(addr) == 2 {
			a := net.JoinHostPort(addr[0], addr[1])
			if w.master.CompareAndSwap(nil, &a) {
				return a, nil
			}
			return w.masterAddr(), nil
		}
		if err != nil {
			last = err
		}
	}
	return "", fmt.Errorf("sentinel: master %q: %w", w.name, last)
}

// errStaleMaster is a connection to a master the Sentinels have since
// replaced: it carries nothing more, so go-redis drops it and dials the
// new master. It is a net.Error that is not a timeout, which go-redis
// retries.
var errStaleMaster net.Error = staleMasterError{}

type staleMasterError struct{}

func (staleMasterError) Error() string   { return "sentinel: connection to a replaced master" }
func (staleMasterError) Timeout() bool   { return false }
func (staleMasterError) Temporary() bool { return true }

// dial is the data client's dialer: it connects to the master the
// Sentinels announced last (go-redis's own failover client listens to one
// Sentinel only and was seen to keep using a demoted master), and tags
// the connection with the current epoch, so that a master switch retires
// every connection to the old master at its next use.
func (w *sentinelWatch) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	epoch := w.epoch.Load()
	addr := w.masterAddr()
	if addr == "" {
		var err error
		if addr, err = w.lookupMaster(ctx); err != nil {
			return nil, err
		}
	}
	d := net.Dialer{Timeout: w.opts.DialTimeout, KeepAlive: 5 * time.Minute}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if w.opts.TLSConfig != nil {
		cfg := w.opts.TLSConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		conn = tls.Client(conn, cfg)
	}
	return &epochConn{Conn: conn, w: w, epoch: epoch}, nil
}

// epochConn is a connection that stops working once its master has been
// replaced.
type epochConn struct {
	net.Conn
	w     *sentinelWatch
	epoch uint64
}

func (c *epochConn) Read(b []byte) (int, error) {
	if c.w.epoch.Load() != c.epoch {
		return 0, errStaleMaster
	}
	return c.Conn.Read(b)
}

func (c *epochConn) Write(b []byte) (int, error) {
	if c.w.epoch.Load() != c.epoch {
		return 0, errStaleMaster
	}
	return c.Conn.Write(b)
}

// watch keeps one Sentinel subscription up.
func (w *sentinelWatch) watch(ctx context.Context, cl *redis.SentinelClient) {
	for ctx.Err() == nil {
		w.watchOnce(ctx, cl)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (w *sentinelWatch) watchOnce(ctx context.Context, cl *redis.SentinelClient) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	ps := cl.PSubscribe(ctx, "+switch-master", "+try-failover", "+failover-end", "-failover-abort-*")
	w.subs[ps] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.subs, ps)
		w.mu.Unlock()
		_ = ps.Close()
	}()
	up := false
	defer func() {
		if up {
			w.live.Add(-1)
		}
	}()
	timeout := max(w.opts.ReadTimeout*2, time.Second)
	pingPending := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, timeout)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pingPending {
				if ps.Ping(ctx) == nil {
					pingPending = true
					continue
				}
			}
			return
		}
		pingPending = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "psubscribe" && !up && m.Count == 4 {
				up = true
				w.live.Add(1)
				// Learn (or re-check) the master now that no switch can
				// be missed on this Sentinel.
				qctx, cancel := context.WithTimeout(ctx, timeout)
				addr, err := cl.GetMasterAddrByName(qctx, w.name).Result()
				cancel()
				if err == nil && len(addr) == 2 && w.setMaster(net.JoinHostPort(addr[0], addr[1])) && w.onSwitch != nil {
					w.gen.Add(1)
					w.onSwitch()
				} else if w.onUp != nil {
					w.onUp()
				}
			}
		case *redis.Message:
			w.event(m.Channel, m.Payload)
		}
	}
}

// event handles one Sentinel announcement about our master.
func (w *sentinelWatch) event(channel, payload string) {
	f := strings.Fields(payload)
	switch {
	case channel == "+switch-master":
		// <name> <old ip> <old port> <new ip> <new port>
		if len(f) < 5 || f[0] != w.name {
			return
		}
		changed := w.setMaster(net.JoinHostPort(f[3], f[4]))
		w.gen.Add(1)
		w.fenceUntil.Store(0)
		w.logger.Info("redis sentinel switched master", zap.String("master_name", w.name), zap.String("master", net.JoinHostPort(f[3], f[4])))
		if changed && w.onSwitch != nil {
			w.onSwitch()
		}
	case channel == "+try-failover":
		// master <name> <ip> <port>
		if len(f) < 2 || f[1] != w.name {
			return
		}
		w.gen.Add(1)
		w.fenceUntil.Store(time.Now().Add(sentinelFenceMax).UnixNano())
		w.logger.Info("redis sentinel failover begins; writes wait for the new master", zap.String("master_name", w.name))
	default: // +failover-end, -failover-abort-*
		if len(f) < 2 || f[1] != w.name {
			return
		}
		w.fenceUntil.Store(0)
	}
}
